#!/usr/bin/env bash
# End-to-end test of modelcar: would KServe's predictor pod serve the example images?
#
# Proved with components nobody here wrote: the CNCF distribution registry, containerd + runc,
# skopeo, umoci, buildah, util-linux namespaces and MLServer 1.7.1 (PyPI), as root, no network
# but the package registries. See e2e/README.md. Prints PASS/FAIL per check, exits non-zero on
# any failure, and stops every process it started.
#
# Environment: MODELCAR=path (skip `cargo build`), E2E_UID (default 1000650000, OpenShift's kind
# of random UID), E2E_CACHE (default ~/.cache/modelcar-e2e: the MLServer venv and its wheels),
# E2E_PYTHON (default python3, a 3.11), E2E_KEEP=1 (keep the work directory).
set -uo pipefail
umask 022
unset REGISTRY VERSION BASE_IMAGE MODELCAR_STORE CONTAINERD_SNAPSHOTTER

E2E=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E/.." && pwd)
SERVE_UID=${E2E_UID:-1000650000}
CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelcar-e2e}
PYTHON=${E2E_PYTHON:-python3}
T0=$(date +%s)
TOOLS=(python3 "$E2E/tools.py")
CLIENT=(python3 "$E2E/v2client.py")

# KServe's modelcar containers (args only; the image's entrypoint, if any, goes in front).
INIT_OK_LINE='OK ... Prefetched and valid (/models exists)'
INIT_NOK_LINE='NOK ... Prefetched but modelcar is invalid (/models does not exist or is empty)'
init_args() { # IMAGE
  printf '%s' "echo 'Pre-fetching modelcar $1: ' && [ -d /models ] && [ \"\$(ls -A /models)\" ] && echo '$INIT_OK_LINE' || (echo '$INIT_NOK_LINE' && exit 1)"
}
MODELCAR_MEMORY=$((15 * 1024 * 1024)) # KServe's default memoryModelcar: 15Mi

# ---------------------------------------------------------------------------------------------
# Reporting

PASSED=0
FAILED=0
FAILURES=()
pass() { printf 'PASS  %s\n' "$1"; PASSED=$((PASSED + 1)); }
fail() { # TEXT [LOG]
  printf 'FAIL  %s\n' "$1"
  if [ -n "${2:-}" ] && [ -s "$2" ]; then tail -n 25 "$2" | sed 's/^/      | /'; fi
  FAILED=$((FAILED + 1))
  FAILURES+=("$1")
}
check() { # TEXT LOG CONDITION...: PASS when the command succeeds
  local text=$1 log=$2
  shift 2
  if "$@"; then pass "$text"; else fail "$text" "$log"; fi
}
note() { printf '      %s\n' "$*"; }
section() { printf '\n== %s  [%ss]\n' "$*" "$(($(date +%s) - T0))"; }
die() { fail "$@"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Processes and cleanup: every long-lived process is started with setsid, so its process group
# id is its pid, and the whole group (MLServer's workers, the sidecar's sleep) is stopped by id.

W=
GROUPS_STARTED=()
CTD=

start_group() { # LOG CMD...: start CMD in a session of its own; sets STARTED to its pid
  local log=$1
  shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  STARTED=$!
  GROUPS_STARTED+=("$STARTED")
}

stop_group() { # PGID
  local g=$1 i
  kill -TERM -- "-$g" 2>/dev/null || return 0
  for i in $(seq 50); do
    kill -0 -- "-$g" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$g" 2>/dev/null
  wait "$g" 2>/dev/null
  return 0
}

alive() { # PID: running (not gone, not a zombie)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

CTR_NS= # containerd namespace of this run (also the parent of its containers' cgroups)
ctr_() { ctr --address "$CTD/containerd.sock" --namespace "$CTR_NS" "$@"; }

cleanup() {
  local rc=$? g f m
  set +e
  trap - EXIT INT TERM
  if [ -n "$CTD" ] && [ -S "$CTD/containerd.sock" ]; then
    for c in $(ctr_ tasks ls -q 2>/dev/null); do
      ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1
      ctr_ tasks rm -f "$c" >/dev/null 2>&1
    done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$c" >/dev/null 2>&1; done
  fi
  for ((i = ${#GROUPS_STARTED[@]} - 1; i >= 0; i--)); do stop_group "${GROUPS_STARTED[i]}"; done
  if [ -n "$CTD" ]; then
    # Shims left behind by a killed containerd.
    for f in "$CTD"/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
      [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null
    done
    # The cgroups ctr made for the namespace (its containers' are gone with them).
    find /sys/fs/cgroup -maxdepth 2 -type d -name "$CTR_NS" -exec rmdir {} + 2>/dev/null
  fi
  if [ -n "$W" ] && [ -d "$W" ]; then
    # Mounts left under the work directory (containerd's snapshots), deepest first.
    awk -v w="$W" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null; done
    if [ "${E2E_KEEP:-0}" = 1 ]; then
      echo "work directory kept: $W"
    else
      if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
        local keep
        keep=$(mktemp -d /tmp/modelcar-e2e-logs.XXXXXX)
        cp -r "$W/logs/." "$keep/" 2>/dev/null
        echo "logs kept: $keep"
      fi
      rm -rf "$W"
    fi
  fi
  echo
  if [ "$FAILED" -gt 0 ]; then
    echo "Failed checks:"
    printf '  - %s\n' "${FAILURES[@]}"
  fi
  [ "$rc" -ne 0 ] && [ "$FAILED" = 0 ] && echo "stopped early (exit code $rc)"
  echo "e2e: $PASSED passed, $FAILED failed  [$(($(date +%s) - T0))s]"
  if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then exit 1; fi
  exit 0
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
section "Prerequisites"

[ "$(id -u)" = 0 ] || die "e2e/run.sh runs as root (containerd, runc, mount namespaces, chroot, setpriv)"

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need containerd containerd
need ctr containerd
need runc runc
need buildah buildah
need skopeo skopeo
need umoci umoci
need docker-registry docker-registry
need unshare util-linux
need setpriv util-linux
need chroot coreutils
need flock util-linux
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx sh || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/tmp/modelcar-e2e-apt.log 2>&1 ||
    die "apt-get install ${missing[*]}" /tmp/modelcar-e2e-apt.log
fi
"$PYTHON" -c 'import sys, venv; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null ||
  die "$PYTHON is a Python 3.11 with venv (set E2E_PYTHON)"

W=$(mktemp -d /tmp/modelcar-e2e.XXXXXX)
chmod 0755 "$W" # the serving UID walks through it to its home and to the shared volume
RUN_ID=${W##*.}
LOGS=$W/logs
mkdir -p "$LOGS" "$W/pods"
note "work directory $W, serving UID $SERVE_UID (group 0)"

# The Python environments, in the background while the images are built: venvs under the cache,
# each keyed on its requirements file and the interpreter, reused when complete. MLServer's
# (requirements.txt: venv-<hash>) and KServe's storage initializer with the LLM and ONNX
# libraries (requirements-kserve.txt: kserve-venv-<hash>), apart so that changing one does not
# make the other again.
setup_venv() { # REQUIREMENTS PREFIX OUTFILE IMPORTS
  set -e
  local reqs=$1 prefix=$2 out=$3 imports=$4 key venv
  mkdir -p "$CACHE"
  exec 9>"$CACHE/${prefix}lock"
  flock 9
  key=$({ cat "$reqs"; "$PYTHON" -c 'import sys, platform; print(sys.version, platform.machine(), sys.executable)'; } | sha256sum | cut -c1-16)
  venv=$CACHE/${prefix}venv-$key
  if [ -f "$venv/.complete" ]; then
    echo "reusing $venv"
  else
    find "$CACHE" -mindepth 1 -maxdepth 1 \( -name "${prefix}venv-*" -o -name "${prefix}wheels-*" \) ! -name "*-$key" -exec rm -rf {} +
    rm -rf "$venv"
    echo "creating $venv"
    "$PYTHON" -m venv "$venv"
    # The wheels are kept too (pip's own cache stays empty behind some registry proxies): a venv
    # made again for the same requirements downloads nothing.
    "$venv/bin/python" -m pip download --disable-pip-version-check --progress-bar off --no-deps \
      -d "$CACHE/${prefix}wheels-$key" -r "$reqs"
    "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off --no-deps \
      --no-index --find-links "$CACHE/${prefix}wheels-$key" -r "$reqs"
    "$venv/bin/python" -c "$imports"
    touch "$venv/.complete"
  fi
  echo "$venv" >"$out"
}
start_group "$LOGS/venv.log" env CACHE="$CACHE" PYTHON="$PYTHON" \
  bash -c "$(declare -f setup_venv); setup_venv '$E2E/requirements.txt' '' '$W/venv.path' \
    'import mlserver, mlserver_sklearn, mlserver_xgboost, mlserver_lightgbm, sklearn, xgboost, lightgbm; print(\"xgboost\", xgboost.__version__)'"
VENV_JOB=$STARTED
start_group "$LOGS/kserve-venv.log" env CACHE="$CACHE" PYTHON="$PYTHON" \
  bash -c "$(declare -f setup_venv); setup_venv '$E2E/requirements-kserve.txt' kserve- '$W/kserve-venv.path' \
    'import kserve_storage, oras.client, transformers, tokenizers, safetensors.numpy, onnx, onnxruntime, yaml, jsonschema'"
KVENV_JOB=$STARTED

if [ -n "${MODELCAR:-}" ]; then
  MC=$(realpath "$MODELCAR")
else
  (cd "$REPO" && cargo build --release --locked --quiet) >"$LOGS/cargo.log" 2>&1 ||
    die "cargo build --release" "$LOGS/cargo.log"
  MC=${CARGO_TARGET_DIR:-$REPO/target}/release/modelcar
  MC=$(realpath "$MC")
fi
note "modelcar: $MC ($("$MC" --version 2>&1))"

# ---------------------------------------------------------------------------------------------
section "1. Registry, modelcar build and push"

"$REPO/tests/fixtures/make-bases.sh" "$W/bases" >"$LOGS/bases.log" 2>&1 ||
  die "tests/fixtures/make-bases.sh (busybox base)" "$LOGS/bases.log"
BASE="oci:$W/bases/layout:busybox"

REG_PORT=$("${TOOLS[@]}" free-ports 1)
mkdir -p "$W/registry"
cat >"$W/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $W/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REG_PORT
EOF
start_group "$LOGS/registry.log" docker-registry serve "$W/registry/config.yml"
registry_up() {
  python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$REG_PORT/v2/', timeout=1)" 2>/dev/null
}
for _ in $(seq 100); do registry_up && break; sleep 0.1; done
registry_up || die "distribution registry on 127.0.0.1:$REG_PORT" "$LOGS/registry.log"
REG=127.0.0.1:$REG_PORT/e2e
pass "distribution registry serving plain HTTP on 127.0.0.1:$REG_PORT"

NAMES=(sklearn xgboost lightgbm)
declare -A DIGEST REF
for n in "${NAMES[@]}"; do REF[$n]=$REG/mlserver-$n:v1; done

(cd "$REPO" && "$MC" --store "$W/store" build "${NAMES[@]}" --base "$BASE" --registry "$REG" --image-version v1) \
  >"$LOGS/build.out" 2>"$LOGS/build.err"
rc=$?
cat "$LOGS/build.out" "$LOGS/build.err" >"$LOGS/build.log"
for n in "${NAMES[@]}"; do
  DIGEST[$n]=$(sed -n "s|^${REF[$n]}@\(sha256:[0-9a-f]\{64\}\)$|\1|p" "$LOGS/build.out")
done
check "modelcar build sklearn xgboost lightgbm --base oci:.../layout:busybox (exit 0, REF@DIGEST each)" "$LOGS/build.log" \
  test "$rc" = 0 -a -n "${DIGEST[sklearn]}" -a -n "${DIGEST[xgboost]}" -a -n "${DIGEST[lightgbm]}"
[ "$rc" = 0 ] || die "cannot go on without the images"
xgb_warnings=$(grep -A1 '^warning: .*XGBoost .*/proc/<pid>/root' "$LOGS/build.err" | grep -c '^hint: .*oci+native')
check "modelcar build prints the XGBoost sidecar warning (once, for the xgboost image)" "$LOGS/build.err" \
  test "$xgb_warnings" = 1

(cd "$REPO" && REGISTRY=$REG VERSION=v1 "$MC" --store "$W/store" push "${NAMES[@]}") >"$LOGS/push.log" 2>&1
rc=$?
pushed_ok=1
for n in "${NAMES[@]}"; do grep -qx "${REF[$n]}@${DIGEST[$n]}" "$LOGS/push.log" || pushed_ok=0; done
check "modelcar push sklearn xgboost lightgbm to $REG (the built digests)" "$LOGS/push.log" \
  test "$rc" = 0 -a "$pushed_ok" = 1
[ "$rc" = 0 ] || die "cannot go on without the pushed images"
for n in "${NAMES[@]}"; do
  d=$(skopeo inspect --tls-verify=false --raw "docker://${REF[$n]}" 2>>"$LOGS/skopeo.log" | sha256sum | cut -d' ' -f1)
  check "skopeo reads ${REF[$n]} from the registry with digest ${DIGEST[$n]:0:19}..." "$LOGS/skopeo.log" \
    test "sha256:$d" = "${DIGEST[$n]}"
done

# Images that break the contract, built by buildah from e2e/fixtures/Containerfile.*.
BROKEN=(perms noshell empty entrypoint)
declare -A BROKEN_CHECK=([perms]=permissions [noshell]=binaries [empty]=models [entrypoint]=entrypoint)
for k in "${BROKEN[@]}"; do REF[broken-$k]=$REG/broken-$k:v1; done
BUILDAH=(buildah --root "$W/buildah/root" --runroot "$W/buildah/run" --storage-driver vfs)
skopeo copy --quiet --dest-tls-verify=false "$BASE" "docker://$REG/busybox:base" >"$LOGS/base-push.log" 2>&1 ||
  fail "skopeo copy of the busybox base to $REG/busybox:base" "$LOGS/base-push.log"
for k in "${BROKEN[@]}"; do
  log=$LOGS/buildah-$k.log
  if "${BUILDAH[@]}" bud --quiet --isolation chroot --tls-verify=false --build-arg "BASE=$REG/busybox:base" \
    -f "$E2E/fixtures/Containerfile.$k" -t "localhost/e2e/broken-$k:v1" "$REPO/models/mlserver/sklearn" >"$log" 2>&1 &&
    "${BUILDAH[@]}" push --quiet --tls-verify=false "localhost/e2e/broken-$k:v1" "docker://${REF[broken-$k]}" >>"$log" 2>&1; then
    pass "buildah builds and pushes broken-$k (Containerfile.$k)"
  else
    fail "buildah builds and pushes broken-$k (Containerfile.$k)" "$log"
  fi
done
ALL=("${NAMES[@]}" "${BROKEN[@]/#/broken-}")

# ---------------------------------------------------------------------------------------------
section "2. modelcar verify and modelcar kserve"

declare -A VERIFY_OK
for n in "${ALL[@]}"; do
  json=$LOGS/verify-$n.json
  "$MC" --store "$W/verify-store" verify --json "${REF[$n]}" >"$json" 2>"$LOGS/verify-$n.err"
  rc=$?
  failed=$("${TOOLS[@]}" failed-checks "$json" 2>>"$LOGS/verify-$n.err")
  if [[ $n == broken-* ]]; then
    want=${BROKEN_CHECK[${n#broken-}]}
    check "modelcar verify ${REF[$n]} fails (exit 1) on exactly the '$want' check (got: ${failed:-none})" "$LOGS/verify-$n.err" \
      test "$rc" = 1 -a "$failed" = "$want"
    msg=$("${TOOLS[@]}" finding "$json" "$want" fail)
    [ -n "$msg" ] && note "$want: $msg"
  else
    check "modelcar verify ${REF[$n]} passes (exit 0, no failed check${failed:+; failed: $failed})" "$LOGS/verify-$n.err" \
      test "$rc" = 0 -a -z "$failed"
  fi
  VERIFY_OK[$n]=$([ "$rc" = 0 ] && echo 1 || echo 0)
done
XGB_VERIFY_WARNED=0
"${TOOLS[@]}" finding "$LOGS/verify-xgboost.json" xgboost-sidecar warn >"$LOGS/verify-xgb-warn.log" 2>&1 && XGB_VERIFY_WARNED=1
check "modelcar verify --json warns 'xgboost-sidecar' for the xgboost image" "$LOGS/verify-xgboost.json" test "$XGB_VERIFY_WARNED" = 1
"$MC" --store "$W/verify-store" verify "${REF[xgboost]}" >"$LOGS/verify-xgboost.txt" 2>&1
check "modelcar verify (text) shows the XGBoost warning" "$LOGS/verify-xgboost.txt" \
  grep -q 'WARN  xgboost-sidecar' "$LOGS/verify-xgboost.txt"
no_xgb_warn=1
for n in sklearn lightgbm; do
  "${TOOLS[@]}" finding "$LOGS/verify-$n.json" xgboost-sidecar warn >/dev/null && no_xgb_warn=0
done
check "modelcar verify gives no XGBoost warning for sklearn and lightgbm" "" test "$no_xgb_warn" = 1

kserve() { # LOG ARGS...
  local log=$1
  shift
  (cd "$REPO" && REGISTRY=$REG VERSION=v1 "$MC" --store "$W/store" kserve "$@") >"$log.yaml" 2>"$log.err"
}
kserve "$LOGS/kserve-xgb" xgboost
rc=$?
check "modelcar kserve xgboost: storageUri oci://$REG/mlserver-xgboost@<pushed digest>" "$LOGS/kserve-xgb.yaml" \
  grep -qx "      storageUri: oci://$REG/mlserver-xgboost@${DIGEST[xgboost]}" "$LOGS/kserve-xgb.yaml"
check "modelcar kserve xgboost prints the XGBoost warning, pointing at --storage native" "$LOGS/kserve-xgb.err" \
  sh -c "grep -A1 '^warning: XGBoost' '$LOGS/kserve-xgb.err' | grep -q '^hint: .*--storage native'"
kserve "$LOGS/kserve-xgb-native" xgboost --storage native
check "modelcar kserve xgboost --storage native: storageUri oci+native://...@<pushed digest>, no warning" "$LOGS/kserve-xgb-native.yaml" \
  bash -c "grep -qx '      storageUri: oci+native://$REG/mlserver-xgboost@${DIGEST[xgboost]}' '$LOGS/kserve-xgb-native.yaml' && ! grep -q XGBoost '$LOGS/kserve-xgb-native.err'"
kserve "$LOGS/kserve-xgb-ref" "${REF[xgboost]}" --storage native
check "modelcar kserve ${REF[xgboost]} --storage native (REF form): oci+native://" "$LOGS/kserve-xgb-ref.yaml" \
  grep -qx "      storageUri: oci+native://$REG/mlserver-xgboost@${DIGEST[xgboost]}" "$LOGS/kserve-xgb-ref.yaml"
kserve "$LOGS/kserve-sklearn" sklearn --name sklearn-iris
check "modelcar kserve sklearn: kserve-mlserver runtime, oci:// pinned by digest, no warning" "$LOGS/kserve-sklearn.yaml" \
  bash -c "grep -qx '      storageUri: oci://$REG/mlserver-sklearn@${DIGEST[sklearn]}' '$LOGS/kserve-sklearn.yaml' && grep -qx '      runtime: kserve-mlserver' '$LOGS/kserve-sklearn.yaml' && ! [ -s '$LOGS/kserve-sklearn.err' ]"

# ---------------------------------------------------------------------------------------------
section "3. containerd + runc: KServe's modelcar-init container"

CTD=$W/containerd
CTR_NS=modelcar-e2e-$RUN_ID
mkdir -p "$CTD/root" "$CTD/state"
cat >"$CTD/config.toml" <<EOF
version = 2
root = "$CTD/root"
state = "$CTD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTD/containerd.sock"
[ttrpc]
  address = "$CTD/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
start_group "$LOGS/containerd.log" containerd --config "$CTD/config.toml"
for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done
ctr_ version >/dev/null 2>&1 || die "containerd with a private root, state and socket" "$LOGS/containerd.log"
pass "containerd $(containerd --version | awk '{print $3}') up on $CTD/containerd.sock (runc $(runc --version | awk 'NR==1{print $3}'))"

# overlayfs when this kernel and sandbox allow it, else native.
SNAP=native
probe=$CTD/overlay-probe
mkdir -p "$probe"/{l,u,w,m}
if ctr_ plugins ls 2>/dev/null | awk '$2 == "overlayfs" && $4 == "ok" {f = 1} END {exit !f}' &&
  unshare --mount -- sh -c "mount -t overlay overlay -o lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w $probe/m" 2>/dev/null; then
  SNAP=overlayfs
fi
rm -rf "$probe"
note "snapshotter: $SNAP"

declare -A INIT_OK SIDECAR_OK SERVE_OK SIDECAR_PID
for n in "${ALL[@]}"; do
  ref=${REF[$n]}
  log=$LOGS/ctr-$n.log
  if ! ctr_ images pull --plain-http --snapshotter "$SNAP" "$ref" >"$log" 2>&1; then
    fail "ctr images pull --plain-http $ref" "$log"
    INIT_OK[$n]=0
    continue
  fi
  if [ -n "${DIGEST[$n]:-}" ]; then
    got=$(ctr_ images ls | awk -v r="$ref" '$1 == r {print $3}')
    check "containerd pulled $ref with the digest modelcar pushed" "$log" test "$got" = "${DIGEST[$n]}"
  fi
  # KServe sets only args: the CRI runs the image's entrypoint with them. `ctr run IMAGE ID CMD...`
  # replaces the entrypoint instead, so the entrypoint is put in front here.
  pod=$W/pods/$n
  mkdir -p "$pod"
  if ! { skopeo inspect --tls-verify=false --config "docker://$ref" >"$pod/config.json" &&
    "${TOOLS[@]}" image-exec "$pod/config.json" "$pod"; } >>"$log" 2>&1; then
    fail "skopeo inspect --config $ref" "$log"
    INIT_OK[$n]=0
    continue
  fi
  readarray -d '' entrypoint <"$pod/entrypoint"
  timeout 120 ctr --address "$CTD/containerd.sock" --namespace "$CTR_NS" run --rm --snapshotter "$SNAP" \
    --memory-limit "$MODELCAR_MEMORY" "$ref" "e2e-$RUN_ID-init-$n" "${entrypoint[@]}" sh -c "$(init_args "$ref")" >"$log.run" 2>&1
  rc=$?
  ok_line=$(grep -cx -- "$INIT_OK_LINE" "$log.run")
  INIT_OK[$n]=$([ "$rc" = 0 ] && [ "$ok_line" = 1 ] && echo 1 || echo 0)
  case $n in
    broken-empty)
      check "modelcar-init on $n prints NOK and exits 1 (empty /models)" "$log.run" \
        test "$rc" = 1 -a "$(grep -cx -- "$INIT_NOK_LINE" "$log.run")" = 1
      ;;
    broken-noshell | broken-entrypoint)
      check "modelcar-init on $n fails (exit $rc, no OK line)" "$log.run" test "$rc" != 0 -a "$ok_line" = 0
      note "$(grep -v '^$' "$log.run" | tail -n 1)"
      ;;
    *)
      check "modelcar-init on $n (runc, 15Mi, image user) prints OK and exits 0" "$log.run" \
        test "${INIT_OK[$n]}" = 1
      ;;
  esac
done

# ---------------------------------------------------------------------------------------------
section "4. The pod's layout: KServe's modelcar sidecar, chrooted, as UID $SERVE_UID:0"

for n in "${ALL[@]}"; do
  ref=${REF[$n]}
  pod=$W/pods/$n
  mkdir -p "$pod/shared"
  chmod 0777 "$pod/shared" # an emptyDir
  log=$LOGS/unpack-$n.log
  if ! { skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$W/oci:$n" &&
    umoci unpack --image "$W/oci:$n" "$W/bundles/$n" &&
    skopeo inspect --config "oci:$W/oci:$n" >"$pod/config.json" &&
    "${TOOLS[@]}" image-exec "$pod/config.json" "$pod"; } >"$log" 2>&1; then
    fail "unpack $ref (skopeo copy, umoci unpack)" "$log"
    SIDECAR_OK[$n]=0
    continue
  fi
  start_group "$LOGS/sidecar-$n.log" unshare --mount -- "$E2E/pod.sh" sidecar "$W/bundles/$n/rootfs" "$pod/shared" "$SERVE_UID" "$pod"
  pid=$STARTED
  SIDECAR_PID[$n]=$pid
  for _ in $(seq 50); do [ -L "$pod/shared/models" ] && break; alive "$pid" || break; sleep 0.1; done
  sleep 0.3
  link=$(readlink "$pod/shared/models" 2>/dev/null)
  listing=$(setpriv --reuid="$SERVE_UID" --regid=0 --clear-groups ls -A "$pod/shared/models/" 2>"$LOGS/ls-$n.log" | tr '\n' ' ')
  if alive "$pid" && [ "$link" = "/proc/$pid/root/models" ]; then SIDECAR_OK[$n]=1; else SIDECAR_OK[$n]=0; fi
  case $n in
    broken-noshell | broken-entrypoint)
      check "sidecar on $n fails (no link, not running)" "$LOGS/sidecar-$n.log" test "${SIDECAR_OK[$n]}" = 0
      note "$(tail -n 1 "$LOGS/sidecar-$n.log")"
      ;;
    broken-empty)
      # The pod never gets here (modelcar-init failed); the link points to an empty directory.
      check "sidecar on $n links an empty /models (ls -A as UID $SERVE_UID lists nothing)" "$LOGS/sidecar-$n.log" \
        test "${SIDECAR_OK[$n]}" = 1 -a -z "$listing"
      ;;
    *)
      check "sidecar on $n: SHARED/models -> $link, running (sleep infinity); UID $SERVE_UID lists: ${listing:-nothing}" \
        "$LOGS/sidecar-$n.log" test "${SIDECAR_OK[$n]}" = 1 -a -n "$listing"
      ;;
  esac
done

# ---------------------------------------------------------------------------------------------
section "5. MLServer 1.7.1 as UID $SERVE_UID:0 with KServe's environment"

wait "$VENV_JOB"
rc=$?
VENV=$(cat "$W/venv.path" 2>/dev/null)
if [ "$rc" != 0 ] || [ -z "$VENV" ]; then
  die "MLServer venv (pip install -r e2e/requirements.txt) under $CACHE" "$LOGS/venv.log"
fi
PYBASE=$(realpath "$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')")
pass "MLServer environment: $VENV ($(grep -m1 '^reusing\|^creating' "$LOGS/venv.log" | cut -d' ' -f1))"
note "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(", ".join(p + " " + m.version(p) for p in ("mlserver", "mlserver-xgboost", "xgboost", "scikit-learn", "lightgbm")))')"

# serve CASE MODE SRC MODEL IMPLEMENTATION: start MLServer, wait for the model; READY=0 when it
# loaded. Leaves the server running as SERVER (stop with stop_group), on HTTP_PORT.
serve() {
  serve_start "$@"
  serve_wait "$1" "$4"
}

# serve_start CASE MODE SRC MODEL IMPLEMENTATION: start MLServer only (SERVER, HTTP_PORT).
serve_start() {
  local case=$1 mode=$2 src=$3 model=$4 impl=$5 ports home
  ports=$("${TOOLS[@]}" free-ports 3 | tr '\n' ' ')
  read -r HTTP_PORT GRPC_PORT METRICS_PORT <<<"$ports"
  home=$W/pods/$case-home
  mkdir -p "$home"
  chown "$SERVE_UID:0" "$home"
  chmod 0700 "$home"
  SERVE_LOG=$LOGS/mlserver-$case.log
  start_group "$SERVE_LOG" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$HOME" LANG=C.UTF-8 \
    MLSERVER_MODEL_URI=/mnt/models MLSERVER_MODEL_NAME="$model" MLSERVER_MODEL_IMPLEMENTATION="$impl" \
    MLSERVER_HTTP_PORT="$HTTP_PORT" MLSERVER_GRPC_PORT="$GRPC_PORT" MLSERVER_METRICS_PORT="$METRICS_PORT" \
    MLSERVER_HOST=127.0.0.1 \
    unshare --mount -- "$E2E/pod.sh" serve "$mode" "$src" "$SERVE_UID" "$VENV" "$home" "$W/bundles" "$VENV" "$PYBASE"
  SERVER=$STARTED
}

# serve_wait CASE MODEL: wait until the model of the server started last (SERVER, HTTP_PORT) is
# ready; READY=0 when it loaded.
serve_wait() {
  "${CLIENT[@]}" wait --port "$HTTP_PORT" --model "$2" --pid "$SERVER" --timeout 120 >"$LOGS/client-$1.log" 2>&1
  READY=$?
}

infer_check() { # CASE MODEL EXPECT TEXT
  "${CLIENT[@]}" infer --port "$HTTP_PORT" --model "$2" --expect "$3" >>"$LOGS/client-$1.log" 2>&1
  local rc=$?
  if [ "$rc" = 0 ]; then
    pass "$4: $(tail -n 1 "$LOGS/client-$1.log")"
  else
    fail "$4" "$LOGS/client-$1.log"
  fi
  return "$rc"
}

declare -A IMPL=([sklearn]=mlserver_sklearn.SKLearnModel [xgboost]=mlserver_xgboost.XGBoostModel [lightgbm]=mlserver_lightgbm.LightGBMModel)
declare -A EXPECT=([sklearn]=classes [xgboost]=classes [lightgbm]=proba)

# KServe's storage initializer (oci+fetch://), kserve-storage 0.21.0: see step 6.
wait "$KVENV_JOB"
rc=$?
KVENV=$(cat "$W/kserve-venv.path" 2>/dev/null)
if [ "$rc" != 0 ] || [ -z "$KVENV" ]; then
  die "KServe venv (pip install -r e2e/requirements-kserve.txt) under $CACHE" "$LOGS/kserve-venv.log"
fi
pass "KServe environment: $KVENV ($(grep -m1 '^reusing\|^creating' "$LOGS/kserve-venv.log" | cut -d' ' -f1))"
note "$("$KVENV/bin/python" -c 'import importlib.metadata as m; print(", ".join(p + " " + m.version(p) for p in ("kserve-storage", "oras", "transformers", "tokenizers", "safetensors", "onnx", "onnxruntime")))')"
# The helper is copied where the serving UID can read it.
cp "$E2E/kserve_e2e.py" "$W/kserve_e2e.py"
chmod 0644 "$W/kserve_e2e.py"
KPY=("$KVENV/bin/python" "$W/kserve_e2e.py")
# fetch LOG URI OUT: KServe's handler as the storage initializer runs it. The webhook gives it
# the URI with the oci+fetch:// scheme turned into oci://, and sets KSERVE_OCI_INSECURE_REGISTRY
# from ociInsecureRegistry (the loopback registry is plain HTTP).
fetch() {
  env -u HOME KSERVE_OCI_INSECURE_REGISTRY=true HOME="$W/pods" "${KPY[@]}" fetch "$2" "$3" >"$1" 2>&1
}

declare -A FETCH_OK
for n in "${NAMES[@]}"; do
  FETCH_OK[$n]=0
  out=$W/fetch/$n
  uri=oci://$REG/mlserver-$n@${DIGEST[$n]}
  if fetch "$LOGS/fetch-$n.log" "$uri" "$out" && diff -r "$out" "$W/bundles/$n/rootfs/models" >>"$LOGS/fetch-$n.log" 2>&1; then
    FETCH_OK[$n]=1
    pass "Storage.download($uri) extracts exactly the image's /models: $(cd "$out" && ls -A | tr '\n' ' ')"
  else
    fail "Storage.download($uri) extracts the image's /models" "$LOGS/fetch-$n.log"
  fi
done
# MLServer serves each downloaded directory (the emptyDir the initializer filled, at
# /mnt/models), the three at once, starting now while the servers below run (they use one core
# at a time); step 6 checks them.
declare -A FETCH_SERVER FETCH_PORT
for n in "${NAMES[@]}"; do
  [ "${FETCH_OK[$n]}" = 1 ] || continue
  serve_start "fetch-$n" native "$W/fetch/$n" "$n-iris" "${IMPL[$n]}"
  FETCH_SERVER[$n]=$SERVER
  FETCH_PORT[$n]=$HTTP_PORT
done

for n in sklearn lightgbm; do
  SERVE_OK[$n]=0
  serve "$n" sidecar "$W/pods/$n/shared" "$n-iris" "${IMPL[$n]}"
  if [ "$READY" = 0 ]; then
    infer_check "$n" "$n-iris" "${EXPECT[$n]}" "MLServer serves $n through the sidecar link (/mnt/models -> /proc/<pid>/root/models), iris rows 0, 50, 100 -> classes 0, 1, 2" &&
      SERVE_OK[$n]=1
  else
    fail "MLServer loads $n through the sidecar link" "$SERVE_LOG"
  fi
  stop_group "$SERVER"
done

# XGBoost through the sidecar link: the known failure, checked.
serve xgboost-sidecar sidecar "$W/pods/xgboost/shared" xgboost-iris "${IMPL[xgboost]}"
if [ "$READY" = 0 ]; then
  fail "XGBoost through the sidecar link was expected to fail (cannot make canonical path) but loaded: modelcar's XGBoost warning may be out of date" "$SERVE_LOG"
  infer_check xgboost-sidecar xgboost-iris classes "(observed) XGBoost serves through the sidecar link"
  stop_group "$SERVER"
else
  stop_group "$SERVER"
  err=$(grep -m1 -o 'XGBoostError: .*' "$SERVE_LOG")
  check "XGBoost through the sidecar link fails to load, as known (expected failure): ${err:-no XGBoostError in the log}" "$SERVE_LOG" \
    grep -q 'XGBoostError: .*cannot make canonical path.*/mnt/models/model\.bst' "$SERVE_LOG"
fi

# The same xgboost image as an image volume (oci+native://): /models mounted read-only.
SERVE_OK[xgboost]=0
serve xgboost-native native "$W/bundles/xgboost/rootfs/models" xgboost-iris "${IMPL[xgboost]}"
if [ "$READY" = 0 ]; then
  infer_check xgboost-native xgboost-iris classes "MLServer serves xgboost from an image volume (/models read-only at /mnt/models), iris rows 0, 50, 100 -> classes 0, 1, 2" &&
    SERVE_OK[xgboost]=1
else
  fail "MLServer loads xgboost from an image volume (oci+native)" "$SERVE_LOG"
fi
stop_group "$SERVER"

# broken-perms: modelcar-init and the sidecar succeed, but the random UID cannot read the model.
SERVE_OK[broken-perms]=0
serve broken-perms sidecar "$W/pods/broken-perms/shared" perms-iris "${IMPL[sklearn]}"
if [ "$READY" = 0 ]; then
  SERVE_OK[broken-perms]=1
  fail "MLServer as UID $SERVE_UID was expected not to read broken-perms' 0600 root-owned model, but loaded it" "$SERVE_LOG"
else
  check "MLServer as UID $SERVE_UID cannot read broken-perms' model (0600, root): $(grep -m1 -o 'PermissionError: .*' "$SERVE_LOG")" "$SERVE_LOG" \
    grep -q "PermissionError: .*Permission denied: '/mnt/models/model.joblib'" "$SERVE_LOG"
fi
stop_group "$SERVER"

# Stop the sidecars.
for n in "${!SIDECAR_PID[@]}"; do stop_group "${SIDECAR_PID[$n]}"; done

"$E2E/provenance.sh" "$MC" "$BASE" "$REG" "$W/provenance" "$SERVE_UID" || fail "e2e/provenance.sh" "$W/provenance/log"
"$E2E/modelpack_source.sh" "$MC" "$BASE" "$REG" "$W/modelpack-source" "$SERVE_UID" "$VENV" "$PYBASE" ||
  fail "e2e/modelpack_source.sh" "$W/modelpack-source/log"

# ---------------------------------------------------------------------------------------------
section "6. KServe's storage initializer (oci+fetch://): kserve-storage 0.21.0"

for n in "${!FETCH_SERVER[@]}"; do
  SERVER=${FETCH_SERVER[$n]} HTTP_PORT=${FETCH_PORT[$n]}
  serve_wait "fetch-$n" "$n-iris"
  if [ "$READY" = 0 ]; then
    infer_check "fetch-$n" "$n-iris" "${EXPECT[$n]}" "MLServer serves $n from the directory the oci+fetch handler wrote, iris rows 0, 50, 100 -> classes 0, 1, 2"
  else
    fail "MLServer loads $n from the directory the oci+fetch handler wrote" "$LOGS/mlserver-fetch-$n.log"
  fi
  stop_group "$SERVER"
done

# A zstd-compressed image: the handler refuses it (Python 3.11's tarfile has no zstd).
ZSTD_REF=$REG/mlserver-sklearn-zstd:v1
if (cd "$W" && "$MC" --store "$W/store" build --models "$REPO/models/mlserver/sklearn" --tag "$ZSTD_REF" --format sklearn \
  --compression zstd --base "$BASE") >"$LOGS/zstd-build.log" 2>&1 &&
  "$MC" --store "$W/store" push "$ZSTD_REF" >"$LOGS/zstd-push.log" 2>&1; then
  zstd_digest=$(sed -n "s|^$ZSTD_REF@\(sha256:[0-9a-f]\{64\}\)$|\1|p" "$LOGS/zstd-push.log")
  fetch "$LOGS/fetch-zstd.log" "oci://$REG/mlserver-sklearn-zstd@$zstd_digest" "$W/fetch/zstd"
  rc=$?
  check "Storage.download refuses the zstd-compressed image (exit $rc): $(grep -m1 -o 'OCI layer mediaType [^,]*zstd-compressed' "$LOGS/fetch-zstd.log")" "$LOGS/fetch-zstd.log" \
    bash -c "[ $rc != 0 ] && grep -q 'zstd-compressed, which this storage handler cannot decompress' '$LOGS/fetch-zstd.log'"
  "$MC" --store "$W/kserve-store" kserve "$ZSTD_REF" --storage fetch >"$LOGS/kserve-zstd.log" 2>&1
  rc=$?
  check "modelcar kserve $ZSTD_REF --storage fetch refuses it too, for the same reason (exit $rc)" "$LOGS/kserve-zstd.log" \
    bash -c "[ $rc = 1 ] && grep -q 'oci+fetch:// handler cannot read this image: .*tar+zstd' '$LOGS/kserve-zstd.log'"
else
  fail "modelcar build --compression zstd and push $ZSTD_REF" "$LOGS/zstd-build.log"
fi

# ---------------------------------------------------------------------------------------------
section "7. An LLM directory and an ONNX model through the sidecar, as UID $SERVE_UID:0"

mkdir -p "$W/llm" "$W/kserve-manifests"
"${KPY[@]}" make-llm "$W/llm/model" "$W/llm/orig.npz" >"$LOGS/make-llm.log" 2>&1 ||
  fail "make a tiny Llama-style model (transformers config, tokenizers BPE, safetensors shards)" "$LOGS/make-llm.log"
note "$(grep '^tiny Llama' "$LOGS/make-llm.log")"
"${KPY[@]}" make-onnx "$W/onnx/model" >"$LOGS/make-onnx.log" 2>&1 ||
  fail "make an ONNX model with onnx.helper" "$LOGS/make-onnx.log"
chmod -R a+rX "$W/llm"
# The home of the serving UID for these containers.
KHOME=$W/pods/kserve-home
mkdir -p "$KHOME"
chown "$SERVE_UID:0" "$KHOME"

declare -A EXTRA_DIR=([tiny-llama]=$W/llm/model [onnx-affine]=$W/onnx/model)
declare -A EXTRA_FORMAT=([tiny-llama]=huggingface [onnx-affine]=onnx)
for n in tiny-llama onnx-affine; do
  ref=$REG/$n:v1
  REF[$n]=$ref
  log=$LOGS/build-$n.log
  if (cd "$W" && "$MC" --store "$W/store" build --models "${EXTRA_DIR[$n]}" --tag "$ref" --format "${EXTRA_FORMAT[$n]}" --base "$BASE") >"$log" 2>&1 &&
    "$MC" --store "$W/store" push "$ref" >>"$log" 2>&1; then
    DIGEST[$n]=$(sed -n "s|^$ref@\(sha256:[0-9a-f]\{64\}\)$|\1|p" "$log" | tail -n 1)
    pass "modelcar build --format ${EXTRA_FORMAT[$n]} and push $ref (${DIGEST[$n]:0:19}...)"
  else
    fail "modelcar build --format ${EXTRA_FORMAT[$n]} and push $ref" "$log"
    continue
  fi
  # containerd pulls it with the pushed digest.
  ctr_ images pull --plain-http --snapshotter "$SNAP" "$ref" >"$LOGS/ctr-$n.log" 2>&1
  got=$(ctr_ images ls | awk -v r="$ref" '$1 == r {print $3}')
  check "containerd pulls $ref with the digest modelcar pushed" "$LOGS/ctr-$n.log" test "$got" = "${DIGEST[$n]}"
  pod=$W/pods/$n
  mkdir -p "$pod/shared"
  chmod 0777 "$pod/shared"
  if ! { skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$W/oci:$n" &&
    umoci unpack --image "$W/oci:$n" "$W/bundles/$n" &&
    skopeo inspect --config "oci:$W/oci:$n" >"$pod/config.json" &&
    "${TOOLS[@]}" image-exec "$pod/config.json" "$pod"; } >"$LOGS/unpack-$n.log" 2>&1; then
    fail "unpack $ref (skopeo copy, umoci unpack)" "$LOGS/unpack-$n.log"
    continue
  fi
done

# LLMInferenceService: the sidecar links /proc/<pid>/root/models at a custom model path under
# the emptyDir (mounted at the path's parent), after KServe's `mkdir -p`.
LLM_PATH=/mnt/models/tiny-llama
if [ -n "${DIGEST[tiny-llama]:-}" ]; then
  pod=$W/pods/tiny-llama
  start_group "$LOGS/sidecar-tiny-llama.log" unshare --mount -- "$E2E/pod.sh" sidecar "$W/bundles/tiny-llama/rootfs" "$pod/shared" "$SERVE_UID" "$pod" "$LLM_PATH"
  pid=$STARTED
  for _ in $(seq 50); do [ -L "$pod/shared/tiny-llama" ] && break; alive "$pid" || break; sleep 0.1; done
  link=$(readlink "$pod/shared/tiny-llama" 2>/dev/null)
  check "LLM sidecar (mkdir -p /mnt/models && ln -sf /proc/\$\$/root/models $LLM_PATH): link -> $link" "$LOGS/sidecar-tiny-llama.log" \
    test "$link" = "/proc/$pid/root/models"
  unshare --mount -- "$E2E/pod.sh" run "$pod/shared" /mnt/models "$SERVE_UID" "$KHOME" "$W/bundles" "$KVENV" "$PYBASE" -- \
    "${KPY[@]}" check-llm "$LLM_PATH" "$W/llm/orig.npz" >"$LOGS/check-llm.log" 2>&1
  rc=$?
  check "as UID $SERVE_UID through $LLM_PATH -> /proc/<pid>/root/models: $(grep -v '^\[transformers\]' "$LOGS/check-llm.log" | tail -n 1)" "$LOGS/check-llm.log" \
    test "$rc" = 0
  stop_group "$pid"
fi

# ONNX: the InferenceService sidecar (/mnt/models), onnxruntime as the random UID.
if [ -n "${DIGEST[onnx-affine]:-}" ]; then
  pod=$W/pods/onnx-affine
  start_group "$LOGS/sidecar-onnx-affine.log" unshare --mount -- "$E2E/pod.sh" sidecar "$W/bundles/onnx-affine/rootfs" "$pod/shared" "$SERVE_UID" "$pod"
  pid=$STARTED
  for _ in $(seq 50); do [ -L "$pod/shared/models" ] && break; alive "$pid" || break; sleep 0.1; done
  check "ONNX sidecar: /mnt/models -> $(readlink "$pod/shared/models")" "$LOGS/sidecar-onnx-affine.log" \
    test "$(readlink "$pod/shared/models")" = "/proc/$pid/root/models"
  unshare --mount -- "$E2E/pod.sh" run "$pod/shared" /mnt "$SERVE_UID" "$KHOME" "$W/bundles" "$KVENV" "$PYBASE" -- \
    "${KPY[@]}" check-onnx /mnt/models >"$LOGS/check-onnx.log" 2>&1
  rc=$?
  check "as UID $SERVE_UID through /mnt/models -> /proc/<pid>/root/models: $(tail -n 1 "$LOGS/check-onnx.log")" "$LOGS/check-onnx.log" \
    test "$rc" = 0
  stop_group "$pid"
fi

# A ModelPack manifest beside a runnable image (build --modelpack): modelpack-client, containerd,
# skopeo copy --all and the oci+fetch handler on the same registry and containerd.
"$E2E/modelpack.sh" "$MC" "$BASE" "$REG" "$W/modelpack" "$W/registry/data" "$CTD/containerd.sock" "$CTR_NS" "$SNAP" "$KVENV" ||
  fail "e2e/modelpack.sh" "$W/modelpack/log"

# ---------------------------------------------------------------------------------------------
section "8. modelcar kserve: manifests for every case, from the registry, against KServe's CRDs"

# A store that holds none of the images: kserve reads the format and digest from the registry.
kserve_reg() { # NAME ARGS...
  local n=$1
  shift
  "$MC" --store "$W/kserve-store" kserve "$@" >"$W/kserve-manifests/$n.yaml" 2>"$LOGS/kserve-$n.err"
}
manifest_ok=1
for n in "${NAMES[@]}"; do
  for st in oci native fetch; do
    kserve_reg "$n-$st" "${REF[$n]}" --name "$n-iris" --storage "$st" || manifest_ok=0
  done
done
check "modelcar kserve (empty store) prints the three examples in every storage mode, pinned to the pushed digests" "$LOGS/kserve-sklearn-fetch.err" \
  bash -c "[ $manifest_ok = 1 ] && grep -qx '      storageUri: oci+fetch://$REG/mlserver-sklearn@${DIGEST[sklearn]}' '$W/kserve-manifests/sklearn-fetch.yaml'"
if [ -n "${DIGEST[tiny-llama]:-}" ]; then
  kserve_reg llm-llm "${REF[tiny-llama]}" --kind llm
  check "modelcar kserve ${REF[tiny-llama]} --kind llm: LLMInferenceService, uri oci://...@<pushed digest> (format huggingface from the image)" "$LOGS/kserve-llm-llm.err" \
    bash -c "grep -qx 'kind: LLMInferenceService' '$W/kserve-manifests/llm-llm.yaml' && grep -qx '    uri: oci://$REG/tiny-llama@${DIGEST[tiny-llama]}' '$W/kserve-manifests/llm-llm.yaml'"
  kserve_reg llm-native "${REF[tiny-llama]}" --kind llm --storage native
  kserve_reg llm-isvc "${REF[tiny-llama]}"
  check "modelcar kserve ${REF[tiny-llama]}: InferenceService on kserve-huggingfaceserver" "$LOGS/kserve-llm-isvc.err" \
    grep -qx '      runtime: kserve-huggingfaceserver' "$W/kserve-manifests/llm-isvc.yaml"
fi
if [ -n "${DIGEST[onnx-affine]:-}" ]; then
  kserve_reg onnx "${REF[onnx-affine]}"
  check "modelcar kserve ${REF[onnx-affine]}: format onnx from the image, KServe's runtime for it" "$LOGS/kserve-onnx.err" \
    bash -c "grep -qx '        name: onnx' '$W/kserve-manifests/onnx.yaml' && grep -qx '      runtime: kserve-openvino' '$W/kserve-manifests/onnx.yaml'"
  kserve_reg onnx-triton "${REF[onnx-affine]}" --runtime kserve-tritonserver --storage native
fi
docs=$(ls "$W/kserve-manifests"/*.yaml | wc -l)
for f in "$W/kserve-manifests"/*.yaml; do cat "$f"; echo ---; done | sed '$d' >"$W/kserve-manifests.all"
"$KVENV/bin/python" "$REPO/tests/validate_isvc.py" <"$W/kserve-manifests.all" >"$LOGS/validate.log" 2>&1
rc=$?
check "all $docs manifests validate strictly against KServe's InferenceService and LLMInferenceService CRDs (tests/validate_isvc.py)" "$LOGS/validate.log" \
  bash -c "[ $rc = 0 ] && [ \$(grep -c '^ok: ' '$LOGS/validate.log') = $docs ]"
if [ -d "$W/kserve-store/blobs/sha256" ]; then
  check "modelcar kserve pulled no blob into its store" "" test -z "$(ls -A "$W/kserve-store/blobs/sha256")"
fi

# ---------------------------------------------------------------------------------------------
section "9. modelcar verify agrees with the pod"

yn() { [ "${1:-0}" = 1 ] && echo yes || echo no; }
printf '      %-18s %-8s %-6s %-8s %s\n' image verify init sidecar served
for n in "${ALL[@]}"; do
  served=$(yn "${SERVE_OK[$n]:-0}")
  [ "$n" = xgboost ] && served="as image volume only"
  printf '      %-18s %-8s %-6s %-8s %s\n' "$n" "$([ "${VERIFY_OK[$n]}" = 1 ] && echo pass || echo FAIL)" \
    "$(yn "${INIT_OK[$n]:-0}")" "$(yn "${SIDECAR_OK[$n]:-0}")" "$served"
done
for n in "${ALL[@]}"; do
  pod_ok=$([ "${INIT_OK[$n]:-0}" = 1 ] && [ "${SIDECAR_OK[$n]:-0}" = 1 ] && [ "${SERVE_OK[$n]:-0}" = 1 ] && echo 1 || echo 0)
  if [ "$n" = xgboost ]; then
    # Passes verify with its warning; served as an image volume, not through the sidecar link.
    check "verify agrees with the pod for xgboost (passes with the sidecar warning; serves as oci+native)" "" \
      test "${VERIFY_OK[$n]}" = 1 -a "$XGB_VERIFY_WARNED" = 1 -a "$pod_ok" = 1
  else
    check "verify agrees with the pod for $n ($([ "$pod_ok" = 1 ] && echo served || echo not served))" "" \
      test "${VERIFY_OK[$n]}" = "$pod_ok"
  fi
done

. "$E2E/image.sh" # modelcar's own image, run under containerd as CI steps run it
exit 0
