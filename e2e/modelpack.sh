#!/usr/bin/env bash
# End-to-end check of `modelcar build --modelpack`: the CNCF ModelPack manifest in the image's
# index, from the same blobs, next to what KServe runs. Called by e2e/run.sh; runs alone too, as
# root:
#
#   e2e/modelpack.sh MODELCAR BASE REGISTRY WORKDIR REGISTRY_ROOT CONTAINERD_SOCKET NAMESPACE SNAPSHOTTER KSERVE_VENV
#
# MODELCAR is the binary, BASE a base image with sh (oci:DIR:TAG), REGISTRY a plain HTTP
# registry and repository prefix (127.0.0.1:PORT/e2e) whose filesystem storage is REGISTRY_ROOT,
# WORKDIR a new directory, CONTAINERD_SOCKET a running containerd's socket and NAMESPACE a
# namespace of it, SNAPSHOTTER the snapshotter to use, KSERVE_VENV the venv of
# e2e/requirements-kserve.txt (kserve-storage 0.21.0, transformers, safetensors).
#
# It makes a tiny Llama-style model (e2e/kserve_e2e.py make-llm), streams it to the registry with
# `build --push --modelpack`, then checks with tools nobody here wrote: modelpack-client 0.1.0
# (PyPI; a venv under E2E_CACHE, default ~/.cache/modelcar-e2e, keyed on
# tests/fixtures/modelpack-client-requirements.txt and the interpreter) pulls the ModelPack by
# digest and gets the model's files (validating its config against the specification's schema,
# as the test does again with the schema's copy in tests/fixtures/modelpack); the registry's
# storage holds each weight shard once; containerd pulls and runs the image by tag and by digest
# and leaves the ModelPack alone; `skopeo copy --all` copies both to another repository, where
# modelpack-client pulls the same digest; KServe's oci+fetch handler resolves linux/<arch> and
# extracts exactly the model. The sklearn example is built into the store with `--modelpack` and
# sent by `modelcar push`, and pulled by modelpack-client too. Prints PASS/FAIL lines, exits
# non-zero on any failure, stops what it started.
set -uo pipefail
umask 022

E2E=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E/.." && pwd)
USAGE="usage: modelpack.sh MODELCAR BASE REGISTRY WORKDIR REGISTRY_ROOT CONTAINERD_SOCKET NAMESPACE SNAPSHOTTER KSERVE_VENV"
MC=${1:?$USAGE}
BASE=${2:?$USAGE}
REG=${3:?$USAGE}
WD=${4:?$USAGE}
REG_ROOT=${5:?$USAGE}
CTD_SOCK=${6:?$USAGE}
CTR_NS=${7:?$USAGE}
SNAP=${8:?$USAGE}
KVENV=${9:?$USAGE}
CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelcar-e2e}
PYTHON=${E2E_PYTHON:-python3}
mkdir -p "$WD" && chmod 0755 "$WD" || exit 1
LOG=$WD/log
: >"$LOG"
printf '\n== ModelPack beside the image (e2e/modelpack.sh)\n'

FAILED=0
pass() { printf 'PASS  %s\n' "$1"; }
fail() { # TEXT [LOG]
  printf 'FAIL  %s\n' "$1"
  tail -n 25 "${2:-$LOG}" | sed 's/^/      | /'
  FAILED=$((FAILED + 1))
}
check() { # TEXT LOG CONDITION...
  local text=$1 log=$2
  shift 2
  if "$@"; then pass "$text"; else fail "$text" "$log"; fi
}
ctr_() { ctr --address "$CTD_SOCK" --namespace "$CTR_NS" "$@"; }
HOST=${REG%%/*}

# modelpack-client, in the venv e2e/modelpack_venv.sh keeps.
. "$E2E/modelpack_venv.sh"
modelpack_venv || { fail "modelpack-client venv (pip install -r tests/fixtures/modelpack-client-requirements.txt)"; exit 1; }
VENV=$MODELPACK_VENV
CHECK=("$VENV/bin/python" "$REPO/tests/modelpack_check.py")

# A tiny Llama-style model, streamed to the registry with its ModelPack.
"$KVENV/bin/python" "$E2E/kserve_e2e.py" make-llm "$WD/model" "$WD/orig.npz" >>"$LOG" 2>&1 ||
  { fail "make a tiny Llama-style model (e2e/kserve_e2e.py make-llm)"; exit 1; }
MODEL=$WD/model
REF=$REG/modelpack-llm:v1
if "$MC" --tls-verify=false --store "$WD/store" build --push --json --models "$MODEL" --tag "$REF" \
  --base "$BASE" --layer-threshold 16KiB --modelpack >"$WD/build.json" 2>>"$LOG"; then
  read -r DIGEST MP SHARED WRITTEN < <(python3 -c 'import json, sys; o = json.load(open(sys.argv[1]))[0]; m = o["modelpack"]; print(o["digest"], m["digest"], m["layers_shared"], m["layers_written"])' "$WD/build.json")
  REPO_REF=${REF%:*}
  pass "modelcar build --push --modelpack $REF: index ${DIGEST:0:19}..., ModelPack ${MP:0:19}... ($SHARED layers the image's, $WRITTEN written for it)"
else
  fail "modelcar build --push --modelpack $REF"
  exit 1
fi

skopeo inspect --raw --tls-verify=false "docker://$REF" >"$WD/index.json" 2>>"$LOG"
skopeo inspect --raw --tls-verify=false "docker://$REPO_REF@$MP" >"$WD/modelpack.json" 2>>"$LOG"
check "the index under $REF lists the linux image and, as unknown/unknown, the ModelPack manifest (artifactType application/vnd.cncf.model.manifest.v1+json)" "$WD/index.json" \
  python3 -c 'import json, sys
i = json.load(open(sys.argv[1]))
mp = [m for m in i["manifests"] if m["digest"] == sys.argv[2]]
assert len(mp) == 1 and mp[0]["platform"] == {"os": "unknown", "architecture": "unknown"}, mp
assert any(m.get("platform", {}).get("os") == "linux" for m in i["manifests"])
assert json.load(open(sys.argv[3]))["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"' "$WD/index.json" "$MP" "$WD/modelpack.json"

# modelpack-client pulls the ModelPack (validating its config against the schema) and gets the
# model's files, under models/.
pulled() { # REF DEST LOG: modelpack-client pulls REF into DEST; DEST/models must equal the model
  "${CHECK[@]}" pull "$1" "$2" >"$3" 2>&1 && diff -r "$MODEL" "$2/models" >>"$3" 2>&1
}
check "modelpack-client 0.1.0 pulls $REPO_REF@${MP:0:19}... and gets exactly the model's files ($(ls "$MODEL" | wc -l) files under models/)" "$WD/pull.log" \
  pulled "$REPO_REF@$MP" "$WD/pulled" "$WD/pull.log"
python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["config"]))' "$WD/pull.log" >"$WD/config.json" 2>>"$LOG"
"${CHECK[@]}" validate "$REPO/tests/fixtures/modelpack/config-schema.json" "$WD/config.json" >"$WD/validate.log" 2>&1
check "its config validates against the specification's config-schema.json: $(head -c 300 "$WD/config.json")" "$WD/validate.log" \
  grep -qx valid "$WD/validate.log"

# The registry's storage holds each weight shard's bytes in one blob.
python3 - "$MODEL" "$REG_ROOT/docker/registry/v2/blobs/sha256" >"$WD/once.log" 2>&1 <<'EOF'
import os, sys
model, blobs = sys.argv[1:]
datas = [os.path.join(d, "data") for d, _, files in os.walk(blobs) if "data" in files]
bad = 0
for name in sorted(os.listdir(model)):
    if not name.endswith(".safetensors"):
        continue
    want = open(os.path.join(model, name), "rb").read()
    n = sum(want in open(p, "rb").read() for p in datas)
    print(f"{name}: {len(want)} bytes, in {n} blob(s) of {len(datas)}")
    bad += n != 1
sys.exit(bad)
EOF
rc=$?
check "the registry stores each weight shard once: $(tr '\n' ';' <"$WD/once.log")" "$WD/once.log" test "$rc" = 0

# containerd pulls and runs the image by tag and by digest; it leaves the ModelPack alone.
ls -A "$MODEL" | sort >"$WD/model.ls"
for ref in "$REF" "$REPO_REF@$DIGEST"; do
  id=e2e-modelpack-$RANDOM
  if ctr_ images pull --plain-http --snapshotter "$SNAP" "$ref" >"$WD/ctr.log" 2>&1 &&
    [ "$(ctr_ images ls | awk -v r="$ref" '$1 == r {print $3}')" = "$DIGEST" ] &&
    timeout 120 ctr --address "$CTD_SOCK" --namespace "$CTR_NS" run --rm --snapshotter "$SNAP" "$ref" "$id" sh -c 'ls -A /models' 2>>"$WD/ctr.log" | sort >"$WD/ctr.ls" &&
    diff "$WD/model.ls" "$WD/ctr.ls" >>"$WD/ctr.log"; then
    pass "containerd pulls $ref (digest ${DIGEST:0:19}...) and runs it with the ModelPack beside it: /models holds the model"
  else
    fail "containerd pulls and runs $ref with the ModelPack beside it" "$WD/ctr.log"
  fi
done
check "containerd fetched no blob of the ModelPack manifest (unknown/unknown matches no platform)" "$WD/ctr.log" \
  bash -c "! ctr --address '$CTD_SOCK' --namespace '$CTR_NS' content ls -q | grep -qx '$MP'"

# variant LAYOUT HOW: the image of $REF copied to the OCI layout LAYOUT (skopeo, digests kept),
# its ModelPack entry edited: HOW=noplat leaves out its platform, HOW=artifacttype adds
# artifactType.
variant() {
  skopeo copy --all --preserve-digests --quiet --src-tls-verify=false "docker://$REF" "oci:$1:v1" &&
    python3 - "$1" "$MP" "$2" <<'PY'
import hashlib, json, os, sys
layout, mp, how = sys.argv[1:]
blob = lambda d: os.path.join(layout, "blobs", "sha256", d.split(":")[1])
top = json.load(open(os.path.join(layout, "index.json")))
entry = top["manifests"][0]
index = json.load(open(blob(entry["digest"])))
for m in index["manifests"]:
    if m["digest"] == mp and how == "noplat":
        del m["platform"]
    if m["digest"] == mp and how == "artifacttype":
        m["artifactType"] = "application/vnd.cncf.model.manifest.v1+json"
data = json.dumps(index, separators=(",", ":")).encode()
entry["digest"], entry["size"] = "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
open(blob(entry["digest"]), "wb").write(data)
json.dump(top, open(os.path.join(layout, "index.json"), "w"))
PY
}

# Why unknown/unknown: the same index with the ModelPack entry's platform left out. containerd
# then fetches the ModelPack with the image, and modelcar's verify takes the entry for an image.
NOPLAT=$REG/modelpack-noplat:v1
if variant "$WD/noplat" noplat >"$WD/noplat.log" 2>&1 &&
  skopeo copy --all --preserve-digests --quiet --dest-tls-verify=false "oci:$WD/noplat:v1" "docker://$NOPLAT" >>"$WD/noplat.log" 2>&1 &&
  ctr_ images pull --plain-http --snapshotter "$SNAP" "$NOPLAT" >>"$WD/noplat.log" 2>&1; then
  check "(why a platform) with no platform on the entry, containerd fetches the ModelPack manifest with the image" "$WD/noplat.log" \
    bash -c "ctr --address '$CTD_SOCK' --namespace '$CTR_NS' content ls -q | grep -qx '$MP'"
  "$MC" --tls-verify=false --store "$WD/noplat-store" verify "$NOPLAT" >"$WD/noplat-verify.log" 2>&1
  rc=$?
  check "(why a platform) and modelcar verify takes that entry for an image (exit $rc: $(grep -m1 -o 'layer media type [^ ]* is not supported' "$WD/noplat-verify.log"))" "$WD/noplat-verify.log" \
    bash -c "[ $rc != 0 ] && grep -q 'layer media type application/vnd.cncf.model.[a-z.]*v1.tar[+a-z]* is not supported' '$WD/noplat-verify.log'"
else
  fail "an index with the ModelPack entry's platform left out (skopeo, containerd)" "$WD/noplat.log"
fi

# Why no artifactType on the entry: skopeo 1.9 does not know the field, drops it, and so cannot
# copy the index unchanged.
if variant "$WD/artifacttype" artifacttype >"$WD/artifacttype.log" 2>&1; then
  skopeo copy --all --preserve-digests --quiet --src-tls-verify=false --dest-tls-verify=false "oci:$WD/artifacttype:v1" "docker://$REG/modelpack-artifacttype:v1" >>"$WD/artifacttype.log" 2>&1
  rc=$?
  check "(why no artifactType) with artifactType on the entry, skopeo copy --all --preserve-digests fails (exit $rc: $(grep -m1 -o 'Manifest list must be converted[^,:]*' "$WD/artifacttype.log"))" "$WD/artifacttype.log" \
    bash -c "[ $rc != 0 ] && grep -q 'Instructed to preserve digests' '$WD/artifacttype.log'"
else
  fail "an index with artifactType on the ModelPack entry (skopeo)" "$WD/artifacttype.log"
fi

# skopeo copy --all copies both. With --preserve-digests the copy is byte for byte; without it
# skopeo 1.9 gzips the raw layers of the image it cannot mount (of any image modelcar writes
# uncompressed), while the ModelPack, whose layer types it does not know, keeps its digest.
COPY=$REG/modelpack-copy:v1
if skopeo copy --all --preserve-digests --quiet --src-tls-verify=false --dest-tls-verify=false "docker://$REF" "docker://$COPY" >"$WD/copy.log" 2>&1 &&
  [ "$(skopeo inspect --raw --tls-verify=false "docker://$COPY" | sha256sum | cut -d' ' -f1)" = "${DIGEST#sha256:}" ]; then
  check "skopeo copy --all --preserve-digests $REF $COPY keeps the index digest; modelpack-client pulls the ModelPack from the copy" "$WD/pull-copy.log" \
    pulled "${COPY%:*}@$MP" "$WD/pulled-copy" "$WD/pull-copy.log"
else
  fail "skopeo copy --all --preserve-digests $REF $COPY keeps the index digest" "$WD/copy.log"
fi
PLAIN=$REG/modelpack-copy-plain:v1
if skopeo copy --all --quiet --src-tls-verify=false --dest-tls-verify=false "docker://$REF" "docker://$PLAIN" >"$WD/copy-plain.log" 2>&1; then
  check "skopeo copy --all $REF $PLAIN (no --preserve-digests) copies the ModelPack too, same digest; modelpack-client pulls it" "$WD/pull-plain.log" \
    pulled "${PLAIN%:*}@$MP" "$WD/pulled-plain" "$WD/pull-plain.log"
  id=e2e-modelpack-$RANDOM
  if ctr_ images pull --plain-http --snapshotter "$SNAP" "$PLAIN" >"$WD/ctr-plain.log" 2>&1 &&
    timeout 120 ctr --address "$CTD_SOCK" --namespace "$CTR_NS" run --rm --snapshotter "$SNAP" "$PLAIN" "$id" sh -c 'ls -A /models' 2>>"$WD/ctr-plain.log" | sort >"$WD/ctr-plain.ls" &&
    diff "$WD/model.ls" "$WD/ctr-plain.ls" >>"$WD/ctr-plain.log"; then
    pass "containerd pulls and runs that copy"
  else
    fail "containerd pulls and runs $PLAIN" "$WD/ctr-plain.log"
  fi
else
  fail "skopeo copy --all $REF $PLAIN" "$WD/copy-plain.log"
fi

# KServe's oci+fetch handler resolves linux/<arch> and extracts the model.
env KSERVE_OCI_INSECURE_REGISTRY=true "$KVENV/bin/python" "$E2E/kserve_e2e.py" fetch "oci://$REF" "$WD/fetched" >"$WD/fetch.log" 2>&1 &&
  diff -r "$MODEL" "$WD/fetched" >>"$WD/fetch.log" 2>&1
rc=$?
check "KServe's Storage.download(oci://$REF) picks the linux image, not the ModelPack, and extracts exactly the model" "$WD/fetch.log" test "$rc" = 0

# The sklearn example: built into the store with its ModelPack, sent by `modelcar push`.
SK=$REG/modelpack-sklearn:v1
if "$MC" --store "$WD/store" build --models "$REPO/models/mlserver/sklearn" --tag "$SK" --base "$BASE" --modelpack \
  >"$WD/sklearn.log" 2>&1 &&
  "$MC" --tls-verify=false --store "$WD/store" push "$SK" >>"$WD/sklearn.log" 2>&1; then
  skmp=$(sed -n 's/.*ModelPack manifest [^@]*@\(sha256:[0-9a-f]\{64\}\).*/\1/p' "$WD/sklearn.log")
  MODEL=$REPO/models/mlserver/sklearn
  check "modelcar build --modelpack and push $SK; modelpack-client pulls its ModelPack (${skmp:0:19}...) and gets model.joblib" "$WD/pull-sklearn.log" \
    pulled "${SK%:*}@$skmp" "$WD/pulled-sklearn" "$WD/pull-sklearn.log"
else
  fail "modelcar build --modelpack and push $SK" "$WD/sklearn.log"
fi

[ "$FAILED" = 0 ]
