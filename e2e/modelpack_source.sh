#!/usr/bin/env bash
# End-to-end check of `modelcar build --models modelpack:REF`: CNCF ModelPack artifacts pushed by
# a third-party client become modelcars that KServe's pod serves. Called by e2e/run.sh; runs
# alone too, as root:
#
#   e2e/modelpack_source.sh MODELCAR BASE REGISTRY WORKDIR UID VENV PYBASE
#
# MODELCAR is the binary, BASE a base image with sh, ln, sleep (oci:DIR:TAG), REGISTRY a plain
# HTTP registry and repository prefix (127.0.0.1:PORT/e2e), WORKDIR a new directory (others must
# be able to enter its parents), UID the serving UID, VENV MLServer's venv (e2e/requirements.txt)
# and PYBASE the Python it was made from.
#
# For each ModelPack layer kind (raw, tar, tar+gzip, tar+zstd), modelpack-client 0.1.0 (PyPI; a
# venv under E2E_CACHE, default ~/.cache/modelcar-e2e, keyed on tests/fixtures/modelpack-client-requirements.txt (e2e/modelpack_venv.sh)
# and the interpreter) pushes an artifact holding an example model (sklearn or LightGBM) in a
# layer of that kind and its README in a doc layer of that kind (a directory the client packs
# itself, for the tar kinds). modelcar builds each into a modelcar straight from the registry
# (`build --push`), `modelcar verify` passes on it from a fresh store, and MLServer 1.7.1 serves
# it as UID:0 through KServe's sidecar link (/mnt/models -> /proc/<pid>/root/models), answering
# the right iris classes. Prints PASS/FAIL lines, exits non-zero on any failure, stops what it
# started.
set -uo pipefail
umask 022

E2E=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E/.." && pwd)
USAGE="usage: modelpack_source.sh MODELCAR BASE REGISTRY WORKDIR UID VENV PYBASE"
MC=${1:?$USAGE}
BASE=${2:?$USAGE}
REG=${3:?$USAGE}
WD=${4:?$USAGE}
SERVE_UID=${5:?$USAGE}
VENV=${6:?$USAGE}
PYBASE=${7:?$USAGE}
CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelcar-e2e}
PYTHON=${E2E_PYTHON:-python3}
TOOLS=(python3 "$E2E/tools.py")
CLIENT=(python3 "$E2E/v2client.py")
mkdir -p "$WD" && chmod 0755 "$WD" || exit 1
LOG=$WD/log
: >"$LOG"
printf '\n== ModelPack artifacts of every layer kind, pushed by modelpack-client (e2e/modelpack_source.sh)\n'

FAILED=0
pass() { printf 'PASS  %s\n' "$1"; }
fail() { # TEXT [LOG]
  printf 'FAIL  %s\n' "$1"
  tail -n 25 "${2:-$LOG}" | sed 's/^/      | /'
  FAILED=$((FAILED + 1))
}
STARTED_GROUPS=()
stop_group() { # PGID
  kill -TERM -- "-$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 -- "-$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}
cleanup() {
  local g
  for g in "${STARTED_GROUPS[@]}"; do stop_group "$g"; done
}
trap cleanup EXIT
start_group() { # LOG CMD...: sets STARTED
  local log=$1
  shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  STARTED=$!
  STARTED_GROUPS+=("$STARTED")
}

# modelpack-client, in the venv e2e/modelpack_venv.sh keeps.
. "$E2E/modelpack_venv.sh"
modelpack_venv || { fail "modelpack-client 0.1.0 venv (pip install -r tests/fixtures/modelpack-client-requirements.txt)"; exit 1; }
MPV=$MODELPACK_VENV
pass "modelpack-client environment: $MPV ($("$MPV/bin/python" -c 'import importlib.metadata as m; print("modelpack-client", m.version("modelpack-client"))'))"

declare -A FILE=([sklearn]=model.joblib [lightgbm]=model.bst)
declare -A IMPL=([sklearn]=mlserver_sklearn.SKLearnModel [lightgbm]=mlserver_lightgbm.LightGBMModel)
declare -A EXPECT=([sklearn]=classes [lightgbm]=proba)
declare -A MODEL=([raw]=sklearn [tar]=lightgbm [tar+gzip]=sklearn [tar+zstd]=lightgbm)
mkdir -p "$WD/bundles"

for kind in raw tar tar+gzip tar+zstd; do
  slug=${kind//+/-}
  n=${MODEL[$kind]}
  file=${FILE[$n]}
  src=$WD/src-$slug
  klog=$WD/$slug.log
  : >"$klog"
  mkdir -p "$src/model" "$src/docs"
  cp "$REPO/models/mlserver/$n/$file" "$src/model/"
  printf '# iris (%s)\nAn example model of modelcar, packed as a ModelPack artifact.\n' "$n" >"$src/docs/README.md"
  printf '{"descriptor": {"name": "iris-%s", "version": "1.0.0"}, "config": {"format": "%s"}}\n' \
    "$n" "${file##*.}" >"$src/config.json"
  weight=application/vnd.cncf.model.weight.v1.$kind
  doc=application/vnd.cncf.model.doc.v1.$kind
  # The model as a layer of this kind; the README as a raw file, or a directory the client packs.
  case $kind in
    raw) layers=("$src/model/$file:$weight" "$src/docs/README.md:$doc") ;;
    tar) tar -C "$src/model" -cf "$src/model.tar" "$file" ;;
    tar+gzip) tar -C "$src/model" -czf "$src/model.tar" . ;;
    tar+zstd) tar -C "$src/model" --zstd -cf "$src/model.tar" "$file" ;;
  esac
  [ "$kind" = raw ] || layers=("$src/model.tar:$weight" "$src/docs:$doc")
  pack=$REG/modelpack-$slug:v1
  args=()
  for l in "${layers[@]}"; do args+=(--layer "$l"); done
  if ! (cd "$src" && "$MPV/bin/modelpack" --insecure push "$pack" --config "$src/config.json" "${args[@]}") >>"$klog" 2>&1; then
    fail "modelpack-client pushes $pack ($n model and README, $kind layers)" "$klog"
    continue
  fi
  kinds=$(skopeo inspect --raw --tls-verify=false "docker://$pack" 2>>"$klog" |
    python3 -c 'import json, sys; m = json.load(sys.stdin); print(m["artifactType"], *sorted({l["mediaType"].rsplit(".", 1)[1] for l in m["layers"]}))')
  if [ "$kinds" = "application/vnd.cncf.model.manifest.v1+json $kind" ]; then
    pass "modelpack-client pushes $pack: a ModelPack artifact of $kind layers ($n model, README)"
  else
    fail "modelpack-client pushes $pack as a ModelPack artifact of $kind layers (got: $kinds)" "$klog"
    continue
  fi

  ref=$REG/modelpack-$slug-modelcar:v1
  json=$WD/$slug-build.json
  if "$MC" --tls-verify=false --store "$WD/store" build --push --models "modelpack:$pack" --tag "$ref" \
    --base "$BASE" --json >"$json" 2>>"$klog" &&
    [ "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["format"]["format"])' "$json")" = "$n" ]; then
    pass "modelcar build --push --models modelpack:$pack --tag $ref (format $n detected)"
  else
    cat "$json" >>"$klog"
    fail "modelcar build --push --models modelpack:$pack --tag $ref" "$klog"
    continue
  fi
  if "$MC" --tls-verify=false --store "$WD/verify-store" verify "$ref" >>"$klog" 2>&1; then
    pass "modelcar verify $ref passes (a fresh store)"
  else
    fail "modelcar verify $ref" "$klog"
  fi

  # KServe's sidecar on the unpacked image, and MLServer through its link, as UID:0.
  pod=$WD/pods/$slug
  mkdir -p "$pod/shared" && chmod 0777 "$pod/shared"
  if ! { skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$WD/oci:$slug" &&
    umoci unpack --image "$WD/oci:$slug" "$WD/bundles/$slug" &&
    skopeo inspect --config "oci:$WD/oci:$slug" >"$pod/config.json" &&
    "${TOOLS[@]}" image-exec "$pod/config.json" "$pod"; } >>"$klog" 2>&1; then
    fail "pull and unpack $ref (skopeo copy, umoci unpack)" "$klog"
    continue
  fi
  start_group "$WD/sidecar-$slug.log" unshare --mount -- "$E2E/pod.sh" sidecar "$WD/bundles/$slug/rootfs" "$pod/shared" "$SERVE_UID" "$pod"
  sidecar=$STARTED
  for _ in $(seq 50); do [ -L "$pod/shared/models" ] && break; sleep 0.1; done
  listing=$(setpriv --reuid="$SERVE_UID" --regid=0 --clear-groups ls -A "$pod/shared/models/" 2>>"$klog" | tr '\n' ' ')
  if [ "$(readlink "$pod/shared/models")" != "/proc/$sidecar/root/models" ]; then
    fail "KServe's sidecar links /mnt/models to /proc/$sidecar/root/models" "$WD/sidecar-$slug.log"
    continue
  fi
  ports=$("${TOOLS[@]}" free-ports 3 | tr '\n' ' ')
  read -r http grpc metrics <<<"$ports"
  home=$pod/home
  mkdir -p "$home" && chown "$SERVE_UID:0" "$home" && chmod 0700 "$home"
  slog=$WD/mlserver-$slug.log
  start_group "$slog" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$HOME" LANG=C.UTF-8 \
    MLSERVER_MODEL_URI=/mnt/models MLSERVER_MODEL_NAME="$n-iris" MLSERVER_MODEL_IMPLEMENTATION="${IMPL[$n]}" \
    MLSERVER_HTTP_PORT="$http" MLSERVER_GRPC_PORT="$grpc" MLSERVER_METRICS_PORT="$metrics" MLSERVER_HOST=127.0.0.1 \
    unshare --mount -- "$E2E/pod.sh" serve sidecar "$pod/shared" "$SERVE_UID" "$VENV" "$home" "$WD/bundles" "$VENV" "$PYBASE"
  server=$STARTED
  if "${CLIENT[@]}" wait --port "$http" --model "$n-iris" --pid "$server" --timeout 120 >>"$klog" 2>&1 &&
    "${CLIENT[@]}" infer --port "$http" --model "$n-iris" --expect "${EXPECT[$n]}" >>"$klog" 2>&1; then
    pass "MLServer serves $ref through the sidecar link as UID $SERVE_UID:0 (/mnt/models: ${listing% }), iris rows 0, 50, 100 -> classes 0, 1, 2"
  else
    cat "$slog" >>"$klog"
    fail "MLServer serves $ref through the sidecar link as UID $SERVE_UID:0" "$klog"
  fi
  stop_group "$server"
  stop_group "$sidecar"
done
exit $((FAILED > 0))
