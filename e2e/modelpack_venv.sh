# modelpack-client's venv for e2e/modelpack.sh and e2e/modelpack_source.sh, sourced by both: one
# venv under CACHE, reused while tests/fixtures/modelpack-client-requirements.txt and the
# interpreter stay the same; its wheels are kept beside it, so a venv made again downloads
# nothing. Needs REPO, CACHE, PYTHON and LOG; sets MODELPACK_VENV, or returns 1 (output in LOG).
modelpack_venv() {
  local requirements=$REPO/tests/fixtures/modelpack-client-requirements.txt key wheels
  key=$({ cat "$requirements"; "$PYTHON" -c 'import sys, platform; print(sys.version, platform.machine(), sys.executable)'; } | sha256sum | cut -c1-16)
  MODELPACK_VENV=$CACHE/modelpack-client-venv-$key
  wheels=$CACHE/modelpack-client-wheels-$key
  mkdir -p "$CACHE"
  (
    set -e
    exec 8>"$CACHE/modelpack-client-lock"
    flock 8
    [ -f "$MODELPACK_VENV/.complete" ] && exit 0
    find "$CACHE" -mindepth 1 -maxdepth 1 -name 'modelpack-client-*-*' ! -name "*-$key" -exec rm -rf {} +
    rm -rf "$MODELPACK_VENV"
    "$PYTHON" -m venv "$MODELPACK_VENV"
    "$MODELPACK_VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps -d "$wheels" -r "$requirements"
    "$MODELPACK_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-index --find-links "$wheels" -r "$requirements"
    "$MODELPACK_VENV/bin/python" -c 'import modelpack_client, jsonschema'
    "$MODELPACK_VENV/bin/modelpack" --help >/dev/null
    touch "$MODELPACK_VENV/.complete"
  ) >>"$LOG" 2>&1
}
