#!/usr/bin/env bash
# The speed benchmark: modelcar against buildah and olot+skopeo, and the hashing floor, on the
# same inputs in the same run. Prints a Markdown table of medians (wall, CPU, peak memory) and
# each peer's wall time divided by modelcar's.
#
#   bench/run.sh                      all workloads, 3 runs of modelcar, the peers in the first
#   bench/run.sh --runs 1 --workloads 1,4 --no-peers
#   bench/run.sh --big                also workload 1 at 8 GiB (memory independent of size)
#   bench/run.sh --llm                also workload 5: a Llama-style model of 8 x 1 GiB safetensors
#                                     shards with index, config and tokenizer; it reports the bytes
#                                     the format check reads (BENCH_LLM_SHARD_BYTES sets the shard
#                                     size, e.g. 1048576 to try it in seconds)
#   bench/run.sh --peer-runs 3        the peers in every run too (buildah alone takes ~10 min a run)
#   bench/run.sh --report FILE        print the table of a results file (results.tsv) again
#
# Needs (installed when missing, as root): docker-registry, skopeo, umoci, buildah, busybox-static,
# openssl, GNU time, strace (--llm); olot from PyPI in a private virtualenv. Works in $BENCH_DIR
# (default /tmp/modelcar-bench), which needs about 12 GiB free (30 GiB with --big; with --llm
# 17 GiB more, and 8 GiB of memory for its registry in /dev/shm, so that model, store and registry
# need not share the disk; its peers need another 16 GiB for buildah's storage).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-/tmp/modelcar-bench}
runs=3
peer_runs=1
workloads=1,2,3,4
peers=1
big=0
llm=0
llm_shard_bytes=${BENCH_LLM_SHARD_BYTES:-$((1 << 30))}
report_only=""
step_timeout=${BENCH_STEP_TIMEOUT:-300}
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --peer-runs) peer_runs=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --no-peers) peers=0; shift ;;
    --big) big=1; shift ;;
    --llm) llm=1; shift ;;
    --report) report_only=$2; shift 2 ;;
    *) echo "usage: bench/run.sh [--runs N] [--peer-runs N] [--workloads 1,2,3,4,5] [--no-peers] [--big] [--llm] [--report FILE]" >&2; exit 2 ;;
  esac
done

log() { echo "bench: $*" >&2; }

# The Markdown table of a results file: medians per workload, step and tool.
report() {
  python3 - "$1" "$step_timeout" "$llm_shard_bytes" <<'PY'
import collections, statistics, sys, platform, os, subprocess
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
data = collections.defaultdict(list)
for w, step, tool, wall, user, sys_, rss in rows:
    if wall in ("fail", "timeout"):
        data[(w, step, tool)].append(wall)
    else:
        data[(w, step, tool)].append((float(wall), float(user) + float(sys_), int(rss) / 1024))
def med(k, i):
    v = [x[i] for x in data.get(k, []) if isinstance(x, tuple)]
    return statistics.median(v) if v else None
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print(f"Machine: {os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, {platform.system()} {platform.release()}")
print()
print("| workload | step | tool | wall s | CPU s | peak MiB | wall / modelcar | wall / floor |")
print("|---|---|---|---:|---:|---:|---:|---:|")
names = {"w1": "1: 2 GiB file", "w2": "2: 4 x 1 GiB", "w3": "3: 10,000 small files", "w4": "4: examples", "w8": "1 at 8 GiB"}
shard = int(sys.argv[3])
names["w5"] = f"5: LLM, 8 x {shard >> 30} GiB shards" if shard % (1 << 30) == 0 else f"5: LLM, 8 x {shard >> 20} MiB shards"
for w in sorted({k[0] for k in data}):
    floor = med((w, "floor", "openssl sha256"), 0)
    for (ww, step, tool) in [k for k in data if k[0] == w]:
        wall = med((ww, step, tool), 0)
        if wall is None:
            why = f"stopped after {sys.argv[2]} s" if "timeout" in data[(ww, step, tool)] else "failed"
            print(f"| {names.get(w, w)} | {step} | {tool} | {why} | | | | |"); continue
        mc = med((w, step, "modelcar"), 0)
        ratio = f"{wall / mc:.1f}x" if mc and tool != "modelcar" and step != "floor" else ""
        fl = f"{wall / floor:.2f}" if floor and step != "floor" else ""
        print(f"| {names.get(w, w)} | {step} | {tool} | {wall:.2f} | {med((ww, step, tool), 1):.2f} | {med((ww, step, tool), 2):.0f} | {ratio} | {fl} |")
    # End to end: build + push.
    def e2e(tool_build, tool_push):
        b, p = med((w, "build", tool_build), 0), med((w, "push", tool_push), 0)
        return b + p if b is not None and p is not None else None
    m = e2e("modelcar", "modelcar")
    for label, tb, tp in [("buildah", "buildah", "buildah"), ("olot+skopeo", "olot", "olot+skopeo")]:
        other = e2e(tb, tp)
        if m and other:
            print(f"| {names.get(w, w)} | build+push | {label} vs modelcar | {other:.2f} vs {m:.2f} | | | {other / m:.1f}x | |")
# Against the registry floors, in the same run: each push's wall and CPU time over curl's
# single PUTs of the same files into the same kind of registry; for build --push, the CPU budget
# of the targets (the hashing floor's CPU plus 1.5 times curl's).
lines = []
for w in sorted({k[0] for k in data}):
    for step, floor_step, label in [("push", "push", "push, disk registry"),
                                    ("push-tmpfs", "push-tmpfs", "push, tmpfs registry"),
                                    ("build-push", "push", "build --push, disk registry"),
                                    ("build-push-tmpfs", "push-tmpfs", "build --push, tmpfs registry")]:
        mw, mc = med((w, step, "modelcar"), 0), med((w, step, "modelcar"), 1)
        fw, fc = med((w, floor_step, "registry floor (curl PUT)"), 0), med((w, floor_step, "registry floor (curl PUT)"), 1)
        if None in (mw, mc, fw, fc) or fw == 0 or fc == 0:
            continue
        budget = ""
        hc = med((w, "floor", "openssl sha256"), 1)
        if step.startswith("build-push") and hc is not None:
            budget = f"{mc:.2f} of {hc + 1.5 * fc:.2f}"
        lines.append(f"| {names.get(w, w)} | {label} | {mw:.2f} vs {fw:.2f} | {mw / fw:.2f} | {mc:.2f} vs {fc:.2f} | {mc / fc:.2f} | {budget} |")
if lines:
    print()
    print("| workload | step | wall s, modelcar vs curl | wall ratio | CPU s, modelcar vs curl | CPU ratio | build --push CPU vs hash + 1.5 x curl |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
# What the format check reads (format_read_bytes), when measured.
reads = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "format-read.tsv")
for line in open(reads) if os.path.exists(reads) else []:
    w, model, store, total = line.split()
    print()
    print(f"{names.get(w, w)}: an unchanged rebuild (format check, layer cache hits) read {int(model):,} bytes "
          f"of the model's {int(total):,} ({int(model) / int(total):.6%}) and {int(store):,} bytes of the store's blobs.")
PY
}
if [ -n "$report_only" ]; then
  report "$report_only"
  exit 0
fi

# --- tools ---------------------------------------------------------------------------------
need=()
for pair in docker-registry:docker-registry skopeo:skopeo umoci:umoci buildah:buildah openssl:openssl strace:strace; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[ -x /usr/bin/time ] || need+=(time)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ "$peers" = 1 ] && [ ! -x "$work/olot-venv/bin/olot" ]; then
  log "installing olot"
  python3 -m venv "$work/olot-venv"
  "$work/olot-venv/bin/pip" install -q olot
fi
(cd "$repo" && cargo build --release --locked --quiet)
modelcar="${CARGO_TARGET_DIR:-$repo/target}/release/modelcar"

mkdir -p "$work"
results="$work/results.tsv"
: > "$results"
: > "$work/format-read.tsv"

# --- registry and base ---------------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg="127.0.0.1:$port"
reg_pid=""
# Where the registry keeps its data. Workload 5 keeps it in memory (/dev/shm): its model, the
# store's copy and the registry's would need 24 GiB of disk at once.
reg_dir="$work/registry"
shm_reg_dir="/dev/shm/modelcar-bench-registry"
# A second registry that keeps its data in memory (/dev/shm), for the registry floor where
# storage costs nothing: what the registry's own work (HTTP, hashing) allows. The push targets
# are checked against it.
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fast="127.0.0.1:$port2"
fast_pid=""
fast_dir="/dev/shm/modelcar-bench-fast-registry"
stop_fast() { [ -z "$fast_pid" ] || { kill "$fast_pid" 2>/dev/null || true; wait "$fast_pid" 2>/dev/null || true; }; fast_pid=""; rm -rf "$fast_dir"; }
cleanup() { [ -z "$reg_pid" ] || kill "$reg_pid" 2>/dev/null || true; }
trap 'cleanup; stop_fast; rm -rf "$shm_reg_dir"' EXIT
if [ ! -d "$work/bases/layout" ]; then
  "$repo/tests/fixtures/make-bases.sh" "$work/bases" >/dev/null
fi
base_oci="oci:$work/bases/layout:busybox"

# Start a registry keeping its data in DIR, listening on ADDR, holding only the base; sets
# started_pid.
start_registry() {
  local dir=$1 addr=$2
  mkdir -p "$dir"
  printf '%s\n' "version: 0.1" "storage:" "  filesystem:" "    rootdirectory: $dir/data" \
    "http:" "  addr: $addr" "log:" "  level: error" > "$dir/config.yml"
  docker-registry serve "$dir/config.yml" > "$dir/log" 2>&1 &
  started_pid=$!
  for _ in $(seq 50); do curl -fs "http://$addr/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  skopeo copy --quiet --dest-tls-verify=false "$base_oci" "docker://$addr/base/busybox:latest"
}

# A fresh, empty registry holding only the base: each run of each workload starts with one, so
# that pushes meet an empty registry and its storage does not fill the disk.
fresh_registry() {
  cleanup
  [ -z "$reg_pid" ] || wait "$reg_pid" 2>/dev/null || true
  rm -rf "$work/registry" "$shm_reg_dir"
  start_registry "$reg_dir" "$reg"
  reg_pid=$started_pid
}

# A fresh, empty in-memory registry holding only the base (one image in it at a time, so that
# memory holds at most one copy of a workload).
fresh_fast_registry() {
  stop_fast
  start_registry "$fast_dir" "$fast"
  fast_pid=$started_pid
}

# --- workloads -------------------------------------------------------------------------------
# N bytes of incompressible data, the same on every run (AES-CTR keystream; openssl rand
# refuses sizes of 2 GiB and more).
random_bytes() {
  { openssl enc -aes-128-ctr -nosalt -pass "pass:$2" -pbkdf2 < /dev/zero 2>/dev/null || true; } | head -c "$1"
}

# A Llama-style Hugging Face directory that passes the format check: 8 safetensors shards of
# BYTES bytes of tensor data each (a multiple of 1 MiB), model.safetensors.index.json mapping
# every tensor to its shard, config.json and a small tokenizer.json. Each shard holds 16 BF16
# tensors that tile its data exactly; the data is random.
make_llm() {
  local model=$1 bytes=$2
  python3 - "$model" "$bytes" <<'PY'
import json, os, struct, sys
model, data_len = sys.argv[1], int(sys.argv[2])
if data_len <= 0 or data_len % (1 << 20):
    sys.exit(f"shard size {data_len} is not a positive multiple of 1 MiB")
shards, per_shard, names = 8, 16, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
tensor_bytes = data_len // per_shard
elements = tensor_bytes // 2  # BF16
cols = 4096 if elements % 4096 == 0 else 1024
weight_map = {}
for s in range(shards):
    shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for t in range(per_shard):
        layer = (s * per_shard + t) // len(names)
        name = f"model.layers.{layer}.{names[t % len(names)]}.weight"
        header[name] = {"dtype": "BF16", "shape": [elements // cols, cols], "data_offsets": [offset, offset + tensor_bytes]}
        weight_map[name] = shard
        offset += tensor_bytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors writes it
    with open(os.path.join(model, shard), "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
with open(os.path.join(model, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": shards * data_len}, "weight_map": weight_map}, f, indent=2)
with open(os.path.join(model, "config.json"), "w") as f:
    json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
               "intermediate_size": 11008, "num_attention_heads": 32, "num_hidden_layers": shards * per_shard // len(names),
               "num_key_value_heads": 32, "vocab_size": 256, "torch_dtype": "bfloat16"}, f, indent=2)
vocab = {f"<0x{i:02X}>": i for i in range(256)}
with open(os.path.join(model, "tokenizer.json"), "w") as f:
    json.dump({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
               "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
               "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<0x00>"}}, f)
PY
  local i
  for i in 1 2 3 4 5 6 7 8; do
    random_bytes "$bytes" "w5-$i" >> "$model/model-0000$i-of-00008.safetensors"
  done
}

make_workloads() {
  local w=$1 dir="$work/w$1"
  [ -f "$dir/.done" ] && return
  rm -rf "$dir"; mkdir -p "$dir/model"
  case "$w" in
    1) random_bytes $((2 << 30)) w1 > "$dir/model/model.safetensors" ;;
    2) for i in 1 2 3 4; do random_bytes $((1 << 30)) "w2-$i" > "$dir/model/model-0000$i-of-00004.safetensors"; done ;;
    3) python3 - "$dir/model" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
for i in range(10000):
    d = os.path.join(root, f"part-{i // 500:02d}")
    os.makedirs(d, exist_ok=True)
    size = rng.randint(1024, 64 * 1024)
    with open(os.path.join(d, f"file-{i:05d}.json"), "wb") as f:
        f.write(os.urandom(size // 2) + b"{" * (size - size // 2))
PY
       ;;
    4) cp -r "$repo/models/mlserver/." "$dir/model/" ;;
    5) make_llm "$dir/model" "$llm_shard_bytes" ;;
    8) random_bytes $((8 << 30)) w8 > "$dir/model/model.safetensors" ;;
  esac
  [ "$(du -sb "$dir/model" | cut -f1)" -gt 0 ] || { log "could not generate workload $w"; exit 1; }
  touch "$dir/.done"
}

# measure LABEL TOOL WORKLOAD -- command...
# A step that runs longer than $step_timeout seconds is stopped and reported as such (olot makes
# one layer per file, and skopeo takes hours to push 10,000 layers).
measure() {
  local step=$1 tool=$2 w=$3; shift 4
  local out="$work/time.out" rc=0
  # Start every step with no dirty pages left by the one before, so that no tool pays for
  # another's writes.
  sync
  /usr/bin/time -f "%e %U %S %M" -o "$out" timeout -s KILL "$step_timeout" "$@" > "$work/cmd.log" 2>&1 || rc=$?
  if [ "$rc" = 137 ] || [ "$rc" = 124 ] || grep -q "Command terminated by signal 9" "$out"; then
    log "stopped after ${step_timeout}s: $step $tool w$w"
    echo -e "w$w\t$step\t$tool\ttimeout\t0\t0\t0" >> "$results"
    return 0
  elif [ "$rc" != 0 ]; then
    log "FAILED: $step $tool w$w: $*"; tail -5 "$work/cmd.log" >&2
    echo -e "w$w\t$step\t$tool\tfail\t0\t0\t0" >> "$results"
    return 0
  fi
  read -r wall user sys rss < <(tail -1 "$out")
  echo -e "w$w\t$step\t$tool\t$wall\t$user\t$sys\t$rss" >> "$results"
}

# What the registry itself can take in: each model file uploaded by curl in one PUT to a fresh
# repository (digests computed beforehand, outside the timing).
registry_floor() {
  local model=$1 repo=$2 reg=${3:-$reg} script="$work/registry-floor.sh"
  {
    echo "set -e"
    find "$model" -type f | sort | while read -r f; do
      d=$(sha256sum "$f" | cut -d' ' -f1)
      echo "loc=\$(curl -fsS -o /dev/null -D - -X POST 'http://$reg/v2/$repo/blobs/uploads/' | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')"
      echo "curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -T '$f' \"\$loc&digest=sha256:$d\""
    done
  } > "$script"
  echo "$script"
}

# The bytes an unchanged rebuild reads, by where they come from: the layer cache answers for the
# model's bytes, so what it reads of the model files is the format check's reading (headers,
# index, config, tokenizer), and what it reads of the store's blobs is the check of the built
# image. Every read(2)-family call of every thread is traced with its file's path.
format_read_bytes() {
  local w=$1 model=$2 store=$3; shift 3
  local trace="$work/strace"
  rm -rf "$trace"; mkdir -p "$trace"
  strace -f -ff -y -e trace=read,pread64,readv,preadv,preadv2 -e signal=none -o "$trace/t" "$@" >/dev/null 2>&1 ||
    { log "FAILED: traced rebuild of w$w"; return 0; }
  python3 - "$trace" "$model" "$store" "$w" >> "$work/format-read.tsv" <<'PY'
import os, re, sys
trace, model, store, w = sys.argv[1:]
call = re.compile(r'^\w+\((\d+)<(.*?)>,.*\)\s+=\s+(\d+)')
model_read = store_read = 0
for name in os.listdir(trace):
    for line in open(os.path.join(trace, name), errors="replace"):
        m = call.match(line)
        if not m:
            continue
        path, n = m.group(2), int(m.group(3))
        if path.startswith(model + "/"):
            model_read += n
        elif path.startswith(store + "/"):
            store_read += n
total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(model) for f in fs)
print(f"w{w}\t{model_read}\t{store_read}\t{total}")
PY
  rm -rf "$trace"
}

bench_workload() {
  local w=$1 dir="$work/w$1" model="$work/w$1/model"
  # Workload 5 is a real Hugging Face layout, checked as one; 1, 2, 3 and 8 are bare bytes (no
  # config.json, no safetensors header), declared as a custom format so that only their size
  # and count are measured; 4 (the examples) has its formats detected.
  local fmt=(--format bench-bytes --custom-format)
  [ "$w" = 5 ] && fmt=(--format huggingface)
  [ "$w" = 4 ] && fmt=()
  make_workloads "$w"
  reg_dir="$work/registry"
  [ "$w" = 5 ] && reg_dir="$shm_reg_dir"
  for run in $(seq "$runs"); do
    log "workload $w, run $run"
    fresh_registry
    # A repository per run: a registry holds a blob once per repository, and the push of each
    # run must find an empty one.
    local store="$work/store" tag="$reg/mc/w$w-r$run:v1"
    # The hashing floor: every byte read and hashed once (files warm in the page cache, as for the others).
    cat "$model"/* >/dev/null 2>&1 || true
    measure floor "openssl sha256" "$w" -- sh -c "find '$model' -type f -print0 | xargs -0 openssl dgst -sha256 >/dev/null"

    rm -rf "$store"
    if [ "$w" = 4 ]; then
      # The examples: one image each, as make build-all does.
      measure build modelcar "$w" -- sh -c "for m in sklearn xgboost lightgbm; do '$modelcar' -q --store '$store' build --models '$model/'\$m --tag '$reg/mc/w4-'\$m'-r$run:v1' --base '$base_oci' >/dev/null; done"
      measure push modelcar "$w" -- sh -c "for m in sklearn xgboost lightgbm; do '$modelcar' -q --store '$store' push '$reg/mc/w4-'\$m'-r$run:v1' >/dev/null; done"
      measure push-again modelcar "$w" -- sh -c "for m in sklearn xgboost lightgbm; do '$modelcar' -q --store '$store' push '$reg/mc/w4-'\$m'-r$run:v1' >/dev/null; done"
      find "$model" -type f -exec touch {} +
      measure rebuild-touched modelcar "$w" -- sh -c "for m in sklearn xgboost lightgbm; do '$modelcar' -q --store '$store' build --models '$model/'\$m --tag '$reg/mc/w4-'\$m'-r$run:v1' --base '$base_oci' >/dev/null; done"
      rm -rf "$store"
      measure build-push modelcar "$w" -- sh -c "for m in sklearn xgboost lightgbm; do '$modelcar' -q --store '$store' build --push --models '$model/'\$m --tag '$reg/mc/w4-bp-'\$m'-r$run:v1' --base '$base_oci' >/dev/null; done"
    elif [ "$w" = 5 ]; then
      # As for the others, in an order that never holds more than the model and one other copy
      # on disk: no rebuild of touched files (the store would hold a second copy while it is
      # written), and the registry floor on a registry of its own.
      measure build modelcar "$w" -- "$modelcar" -q --store "$store" build --models "$model" --tag "$tag" --base "$base_oci" "${fmt[@]}"
      measure push modelcar "$w" -- "$modelcar" -q --store "$store" push "$tag"
      measure push-again modelcar "$w" -- "$modelcar" -q --store "$store" push "$tag"
      fresh_registry
      measure push "registry floor (curl PUT)" "$w" -- sh "$(registry_floor "$model" "floor/w$w-r$run")"
      fresh_registry
      measure rebuild-unchanged modelcar "$w" -- "$modelcar" -q --store "$store" build --models "$model" --tag "$tag" --base "$base_oci" "${fmt[@]}"
      [ "$run" != 1 ] || format_read_bytes "$w" "$model" "$store" "$modelcar" -q --store "$store" build --models "$model" --tag "$tag" --base "$base_oci" "${fmt[@]}"
      rm -rf "$store"
      measure build-push modelcar "$w" -- "$modelcar" -q --store "$store" build --push --models "$model" --tag "$reg/mc/w$w-bp-r$run:v1" --base "$base_oci" "${fmt[@]}"
    else
      measure build modelcar "$w" -- "$modelcar" -q --store "$store" build --models "$model" --tag "$tag" --base "$base_oci" "${fmt[@]}"
      measure push modelcar "$w" -- "$modelcar" -q --store "$store" push "$tag"
      if [ "$w" != 3 ]; then
        measure push "registry floor (curl PUT)" "$w" -- sh "$(registry_floor "$model" "floor/w$w-r$run")"
        # The same push and floor into the in-memory registry, each into an empty one, in
        # turns (which goes first alternates from run to run): the registry's intake on this
        # machine drifts by more than the difference measured, over minutes.
        local turns=(push floor)
        [ $((run % 2)) = 1 ] || turns=(floor push)
        for turn in "${turns[@]}"; do
          fresh_fast_registry
          if [ "$turn" = push ]; then
            measure push-tmpfs modelcar "$w" -- "$modelcar" -q --store "$store" push "$tag" "$fast/mc/w$w-r$run:v1"
          else
            measure push-tmpfs "registry floor (curl PUT)" "$w" -- sh "$(registry_floor "$model" "floor/w$w-r$run" "$fast")"
          fi
        done
        stop_fast
      fi
      measure push-again modelcar "$w" -- "$modelcar" -q --store "$store" push "$tag"
      find "$model" -type f -exec touch {} +
      measure rebuild-touched modelcar "$w" -- "$modelcar" -q --store "$store" build --models "$model" --tag "$tag" --base "$base_oci" "${fmt[@]}"
      measure rebuild-unchanged modelcar "$w" -- "$modelcar" -q --store "$store" build --models "$model" --tag "$tag" --base "$base_oci" "${fmt[@]}"
      rm -rf "$store"
      measure build-push modelcar "$w" -- "$modelcar" -q --store "$store" build --push --models "$model" --tag "$reg/mc/w$w-bp-r$run:v1" --base "$base_oci" "${fmt[@]}"
      if [ "$w" != 3 ]; then
        rm -rf "$store"
        fresh_fast_registry
        measure build-push-tmpfs modelcar "$w" -- "$modelcar" -q --store "$store" build --push --models "$model" --tag "$fast/mc/w$w-bp-r$run:v1" --base "$base_oci" "${fmt[@]}"
        stop_fast
      fi
    fi
    rm -rf "$store"

    [ "$peers" = 1 ] && [ "$run" -le "$peer_runs" ] || continue
    # Workload 5's registry is in memory: one image in it at a time.
    [ "$w" != 5 ] || fresh_registry
    # buildah: build from a Containerfile, then push (gzip on push, as podman does).
    cat > "$dir/Containerfile" <<EOF
FROM $reg/base/busybox:latest
COPY --chown=1001:0 --chmod=444 model/ /models/
USER 1001
EOF
    local bstore="$work/buildah"
    rm -rf "$bstore"; mkdir -p "$bstore"
    local bflags=(--root "$bstore/root" --runroot "$bstore/run" --storage-driver vfs)
    measure build buildah "$w" -- buildah "${bflags[@]}" bud --quiet --isolation chroot --tls-verify=false -f "$dir/Containerfile" -t "bench-w$w" "$dir"
    measure push buildah "$w" -- buildah "${bflags[@]}" push --quiet --tls-verify=false "bench-w$w" "docker://$reg/buildah/w$w-r$run:v1"
    rm -rf "$bstore"
    [ "$w" != 5 ] || fresh_registry
    # olot: append model layers to an OCI layout of the base, then skopeo copies it.
    local layout="$work/olot-layout"
    rm -rf "$layout"
    skopeo copy --quiet "$base_oci" "oci:$layout:latest"
    measure build olot "$w" -- sh -c "find '$model' -type f -print0 | xargs -0 '$work/olot-venv/bin/olot' --root-dir '$model' '$layout' >/dev/null"
    measure push "olot+skopeo" "$w" -- skopeo copy --quiet --dest-tls-verify=false "oci:$layout:latest" "docker://$reg/olot/w$w-r$run:v1"
    rm -rf "$layout"
  done
}

IFS=, read -r -a wl <<< "$workloads"
[ "$llm" = 0 ] || [[ ",$workloads," == *,5,* ]] || wl+=(5)
for w in "${wl[@]}"; do bench_workload "$w"; done
if [ "$big" = 1 ]; then
  runs_saved=$runs; runs=1; peers_saved=$peers; peers=0
  bench_workload 8
  runs=$runs_saved; peers=$peers_saved
fi

# --- report ------------------------------------------------------------------------------------
report "$results"
