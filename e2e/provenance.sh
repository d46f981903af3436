#!/usr/bin/env bash
# End-to-end check of model signatures where sigstore's model-validation operator checks them: in
# a KServe pod, through the sidecar's link (/mnt/models -> /proc/<pid>/root/models), as a random
# UID in group 0. Called by e2e/run.sh; runs alone too, as root:
#
#   e2e/provenance.sh MODELCAR BASE REGISTRY WORKDIR UID
#
# MODELCAR is the binary, BASE a base image with sh, ln, sleep (oci:DIR:TAG), REGISTRY a plain
# HTTP registry and repository prefix (127.0.0.1:PORT/e2e), WORKDIR a new directory (others
# must be able to enter its parents), UID the serving UID. It builds the sklearn example signed,
# streaming it to REGISTRY, pulls and unpacks it (skopeo, umoci), starts KServe's sidecar with
# e2e/pod.sh, then runs the reference verifier, `model_signing verify key` of model-signing 1.1.1
# (PyPI; a venv under E2E_CACHE, default ~/.cache/modelcar-e2e, keyed on
# tests/fixtures/model-signing-requirements.txt and the interpreter), as UID:0 on /mnt/models
# with the unpacked image hidden (`--allow_symlinks`: /mnt/models itself is a symlink, which the
# reference tool refuses otherwise): it must pass, and fail once a model file is changed. Prints
# PASS/FAIL lines, exits non-zero on any failure, stops what it started.
set -uo pipefail
umask 022

E2E=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E/.." && pwd)
MC=${1:?usage: provenance.sh MODELCAR BASE REGISTRY WORKDIR UID}
BASE=${2:?base image}
REG=${3:?registry}
WD=${4:?work directory}
SERVE_UID=${5:?serving UID}
CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelcar-e2e}
PYTHON=${E2E_PYTHON:-python3}
mkdir -p "$WD" && chmod 0755 "$WD" || exit 1
LOG=$WD/log
: >"$LOG"
printf '\n== Model signatures through the sidecar path (e2e/provenance.sh)\n'

FAILED=0
pass() { printf 'PASS  %s\n' "$1"; }
fail() {
  printf 'FAIL  %s\n' "$1"
  tail -n 25 "$LOG" | sed 's/^/      | /'
  FAILED=$((FAILED + 1))
}
SIDECAR=
cleanup() {
  if [ -n "$SIDECAR" ]; then
    kill -TERM -- "-$SIDECAR" 2>/dev/null
    wait "$SIDECAR" 2>/dev/null
  fi
}
trap cleanup EXIT

# The reference verifier, in a venv of its own reused while its requirements stay the same.
requirements=$REPO/tests/fixtures/model-signing-requirements.txt
key=$({ cat "$requirements"; "$PYTHON" -c 'import sys, platform; print(sys.version, platform.machine(), sys.executable)'; } | sha256sum | cut -c1-16)
VENV=$CACHE/model-signing-$key
if [ ! -f "$VENV/.complete" ]; then
  find "$CACHE" -mindepth 1 -maxdepth 1 -name 'model-signing-*' -exec rm -rf {} + 2>/dev/null
  { "$PYTHON" -m venv "$VENV" &&
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$requirements" &&
    "$VENV/bin/python" -m model_signing --help >/dev/null && touch "$VENV/.complete"; } >>"$LOG" 2>&1 ||
    { fail "model-signing 1.1.1 venv (pip install -r $requirements)"; exit 1; }
fi
PYBASE=$(realpath "$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')")

# A signed image, streamed to the registry while it is built.
openssl ecparam -name prime256v1 -genkey -noout 2>>"$LOG" | openssl pkcs8 -topk8 -nocrypt -out "$WD/model.pem" 2>>"$LOG"
openssl pkey -in "$WD/model.pem" -pubout -out "$WD/model.pub" 2>>"$LOG"
chmod 0644 "$WD/model.pub"
REF=$REG/signed-sklearn:v1
if "$MC" --tls-verify=false --store "$WD/store" -q build --push --models "$REPO/models/mlserver/sklearn" \
  --tag "$REF" --base "$BASE" --sign-model "$WD/model.pem" >>"$LOG" 2>&1 &&
  "$MC" --tls-verify=false --store "$WD/verify-store" verify "$REF" --model-key "$WD/model.pub" >>"$LOG" 2>&1; then
  pass "modelcar build --push --sign-model $REF; modelcar verify --model-key passes after a pull"
else
  fail "modelcar build --push --sign-model $REF; modelcar verify --model-key"
  exit 1
fi

# KServe's sidecar on the unpacked image, as UID:0.
pod=$WD/pod
mkdir -p "$pod/shared" && chmod 0777 "$pod/shared"
if ! { skopeo copy --quiet --src-tls-verify=false "docker://$REF" "oci:$WD/oci:signed" &&
  umoci unpack --image "$WD/oci:signed" "$WD/bundle" &&
  skopeo inspect --config "oci:$WD/oci:signed" >"$pod/config.json" &&
  python3 "$E2E/tools.py" image-exec "$pod/config.json" "$pod"; } >>"$LOG" 2>&1; then
  fail "pull and unpack $REF (skopeo copy, umoci unpack)"
  exit 1
fi
setsid unshare --mount -- "$E2E/pod.sh" sidecar "$WD/bundle/rootfs" "$pod/shared" "$SERVE_UID" "$pod" >>"$LOG" 2>&1 </dev/null &
SIDECAR=$!
for _ in $(seq 50); do [ -L "$pod/shared/models" ] && break; sleep 0.1; done
if [ "$(readlink "$pod/shared/models")" != "/proc/$SIDECAR/root/models" ]; then
  fail "KServe's sidecar links /mnt/models to /proc/$SIDECAR/root/models"
  exit 1
fi

# The reference verifier as UID:0 in a mount namespace of its own, where the unpacked image is
# hidden (reachable only through /proc/<pid>/root, as in a pod) and only the venv and its
# Python are uncovered in a home directory only root may enter.
reference_verify() {
  mkdir -p "$WD/home" && chmod 0777 "$WD/home"
  unshare --mount -- bash -c '
    set -e
    wd=$1 venv=$2 pybase=$3 uid=$4 shared=$5
    mount -t tmpfs -o mode=0755 tmpfs "$wd/bundle"
    home=${HOME:-/}
    if [ "$home" != / ] && [ -d "$home" ]; then
      hold=$(mktemp -d /tmp/modelcar-e2e-home.XXXXXX)
      mount --rbind "$home" "$hold"
      mount -t tmpfs -o mode=0755 tmpfs "$home"
      for p in "$venv" "$pybase"; do
        case $p in "$home"/*) mkdir -p "$p"; mount --rbind "$hold/${p#"$home"/}" "$p" ;; esac
      done
      umount -l "$hold" && rmdir "$hold"
    fi
    exec env -i HOME="$wd/home" PATH=/usr/bin:/bin setpriv --reuid="$uid" --regid=0 --clear-groups \
      --inh-caps=-all --bounding-set=-all --no-new-privs "$venv/bin/python" -m model_signing \
      verify key --allow_symlinks --signature "$shared/models/model.sig" --public_key "$wd/model.pub" \
      "$shared/models"
  ' verify "$WD" "$VENV" "$PYBASE" "$SERVE_UID" "$pod/shared"
}
if reference_verify >>"$LOG" 2>&1; then
  pass "model_signing verify key accepts /mnt/models (-> /proc/<pid>/root/models) as UID $SERVE_UID:0"
else
  fail "model_signing verify key accepts /mnt/models (-> /proc/<pid>/root/models) as UID $SERVE_UID:0"
fi
# A model file changed under the running sidecar.
f=$WD/bundle/rootfs/models/model.joblib
chmod u+w "$f" && printf 'x' >>"$f"
if reference_verify >"$WD/changed.log" 2>&1; then
  cat "$WD/changed.log" >>"$LOG"
  fail "model_signing verify key refuses /mnt/models once model.joblib has changed"
else
  cat "$WD/changed.log" >>"$LOG"
  grep -q "Hash mismatch for 'model.joblib'" "$WD/changed.log" &&
    pass "model_signing verify key refuses /mnt/models once model.joblib has changed" ||
    fail "model_signing verify key refuses /mnt/models once model.joblib has changed (naming it)"
fi
exit $((FAILED > 0))
