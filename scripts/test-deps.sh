#!/usr/bin/env bash
# Install what the tests need, when it is missing: the tools that check modelcar's output
# (skopeo, umoci, GNU tar, zstd), the CNCF distribution registry with htpasswd and openssl for
# its auth and TLS, Debian's static busybox for the test base images, util-linux's
# setpriv, GNU time (peak memory of a run), Python's PyYAML and jsonschema for validating
# InferenceService manifests, and Python's venv module (tests/provenance_cosign.rs makes a venv of
# its pinned checkers on first use).
set -euo pipefail

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need skopeo skopeo
need umoci umoci
need zstd zstd
need tar tar
need setpriv util-linux
need docker-registry docker-registry
need htpasswd apache2-utils
need openssl openssl
need curl curl
need strace strace
need gzip gzip
need mkfifo coreutils
# `time` is also a shell keyword: look for the program itself.
[ -x /usr/bin/time ] || missing+=(time)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx sh || missing+=(busybox-static)
# The model-signing reference tool is installed by its test into a venv of its own.
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-deps: missing Debian packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "test-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-deps: python3 has no venv module; install it (sudo apt-get install python3-venv)" >&2
    exit 1
  fi
  echo "test-deps: installing python3-venv" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

if ! python3 -c 'import yaml, jsonschema' 2>/dev/null; then
  echo "test-deps: installing PyYAML and jsonschema" >&2
  python3 -m pip install --quiet --disable-pip-version-check pyyaml jsonschema
fi
