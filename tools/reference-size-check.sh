#!/usr/bin/env bash
# The reference target at its real size on a 24 GiB machine (issue #15, item 4): TURKCELL-LLM-7b-v1's
# full shape (32 layers, hidden 4096, random bf16 weights from `tunebench make-model`, SmolLM2's
# tokenizer with a 49 152-row vocabulary), then three runs, each measured as its peak RSS
# (VmHWM, mapped pages included) by /usr/bin/time:
#
#   make-model  writing the 14.5 GB model itself, one tensor at a time (target <= 1 GiB)
#   peft     `train peft`, base held in bf16, one optimizer step at 64 tokens, micro-batch 1
#            (target <= 18 GiB)
#   unsloth  `train unsloth --gguf q4_k_m`, NF4 base, the same step, then merge into the bf16
#            base, Q4_K_M GGUF and Modelfile in the same command (target <= 8 GiB)
#   generate `generate` on that Q4_K_M GGUF, 16 tokens (target <= 8 GiB)
#
# Each run is started inside its own memory cgroup (cgroup v1, as root) capped at CAP_GIB, so a
# regression is killed alone instead of waking the machine's OOM killer (`ulimit -v` cannot serve:
# mapped checkpoint files count against the address space). Not part of `cargo test`: it writes
# ~34 GB to $OUT and takes tens of minutes on two cores.
#
#   tools/reference-size-check.sh                 # build --release, then run
#   BIN=target/release/tunebench OUT=/big/disk RUNS="unsloth generate" tools/reference-size-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(mkdir -p "${OUT:-target/reference-size-check}" && cd "${OUT:-target/reference-size-check}" && pwd)
RUNS=${RUNS:-"peft unsloth generate"}
CAP_GIB=${CAP_GIB:-22}
if [ -z "${BIN:-}" ]; then
  echo "== cargo build --release"
  cargo build --release -q
  BIN=target/release/tunebench
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package: time)" >&2; exit 1; }
models=$(pwd)/models
tok="$models/smollm2-135m"
[ -f "$tok/tokenizer.json" ] || "$BIN" fetch-model smollm2-135m --models-dir "$models"
base="$OUT/turkcell7b"
data=$(pwd)/datasets/turkish-support/train.jsonl
config() { # name method base_quant
  cat > "$OUT/$1.toml" <<TOML
name = "size-$1"
[model]
base = "$base"
dtype = "bf16"
base_quant = "$3"
[data]
train = "$data"
max_seq_len = 64
[train]
micro_batch = 1
grad_accum = 1
max_steps = 1
warmup_measure_steps = 0
checkpoint_every = 0
eval_every = 0
activation_checkpointing = "layer"
device = "cpu"
runs_dir = "$OUT/runs"
[optimizer]
lr = 2e-4
warmup_steps = 0
[lora]
r = 16
alpha = 32
dropout = 0.0
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
[eval]
num_ctx = 2048
TOML
}
cgroup=
if [ -w /sys/fs/cgroup/memory ]; then
  cgroup=/sys/fs/cgroup/memory/tunebench-size-check
  mkdir -p "$cgroup"
  echo $((CAP_GIB << 30)) > "$cgroup/memory.limit_in_bytes"
  echo "memory cgroup $cgroup capped at $CAP_GIB GiB"
else
  echo "no writable cgroup v1 memory controller: runs are not capped" >&2
fi
measured() { # name command...
  local name=$1
  shift
  local log="$OUT/$name.log" start status=ok
  start=$(date +%s)
  # A subshell joins the cgroup, then becomes the measured command.
  ( [ -z "$cgroup" ] || echo $BASHPID > "$cgroup/tasks"
    exec /usr/bin/time -f "%M" -o "$OUT/$name.rss" "$@" ) > "$log" 2>&1 || status="failed (see $log)"
  local secs=$(( $(date +%s) - start ))
  local kib
  kib=$(tail -1 "$OUT/$name.rss" 2>/dev/null | grep -E '^[0-9]+$' || echo 0)
  echo "$status|$secs|$kib" > "$OUT/$name.result"
  tail -2 "$log"
}
if [ ! -d "$base" ]; then
  echo "== make-model --preset turkcell7b (bf16, ~14.5 GB)"
  measured make-model "$BIN" make-model --preset turkcell7b --dtype bf16 --vocab 49152 \
    --tokenizer "$tok" --out "$base"
fi
for run in $RUNS; do
  case $run in
    peft)
      echo "== train peft (bf16 base, one step)"
      config peft peft none
      measured peft "$BIN" train peft --config "$OUT/peft.toml" --no-progress ;;
    unsloth)
      echo "== train unsloth (NF4 base, one step) --gguf q4_k_m"
      config unsloth unsloth nf4
      measured unsloth "$BIN" train unsloth --config "$OUT/unsloth.toml" --no-progress --gguf q4_k_m ;;
    generate)
      gguf=$(ls -t "$OUT"/runs/*-unsloth/size-unsloth-Q4_K_M.gguf 2>/dev/null | head -1 || true)
      [ -n "$gguf" ] || { echo "generate: no Q4_K_M GGUF yet (run unsloth first)" >&2; continue; }
      echo "== generate on $gguf"
      measured generate "$BIN" generate --model "$gguf" --prompt "Merhaba, nasılsın?" --chat --max-tokens 16 ;;
    *) echo "unknown run $run (peft, unsloth, generate)" >&2; exit 2 ;;
  esac
done
[ -z "$cgroup" ] || rmdir "$cgroup" 2>/dev/null || true
target() { case $1 in peft) echo 18 ;; make-model) echo 1 ;; *) echo 8 ;; esac; }
echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
echo
echo "| run | status | wall | peak RSS (VmHWM) | target |"
echo "|---|---|---:|---:|---:|"
for name in make-model peft unsloth generate; do
  [ -f "$OUT/$name.result" ] || continue
  IFS='|' read -r status secs kib < "$OUT/$name.result"
  gib=$(python3 -c "print(f'{$kib / 1048576:.2f}')")
  verdict=$(python3 -c "print('within' if 0 < $kib <= $(target "$name") * 1048576 else 'OVER')")
  echo "| $name | $status | ${secs}s | $gib GiB | <= $(target "$name") GiB ($verdict) |"
done
# The same table as JSON beside the logs, for reports/.
python3 - "$OUT" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY'
import json, os, sys, datetime
out, commit = sys.argv[1], sys.argv[2]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
runs = {}
for name, target in (("make-model", 1), ("peft", 18), ("unsloth", 8), ("generate", 8)):
    path = os.path.join(out, f"{name}.result")
    if os.path.exists(path):
        status, secs, kib = open(path).read().strip().split("|")
        runs[name] = {"status": status, "wall_s": int(secs), "peak_rss_kib": int(kib),
                      "peak_rss_gib": round(int(kib) / 1048576, 2), "target_gib": target,
                      "within": 0 < int(kib) <= target * 1048576}
doc = {"commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
       "cpu": cpu, "cores": os.cpu_count(),
       "simd": [f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c")],
       "model": "make-model --preset turkcell7b --dtype bf16 --vocab 49152 (7 382 241 280 parameters)",
       "step": "max_seq_len 64, micro_batch 1, one optimizer step, LoRA r 16 on all 7 projections",
       "runs": runs}
json.dump(doc, open(os.path.join(out, "size-check.json"), "w"), indent=2)
print(f"wrote {os.path.join(out, 'size-check.json')}")
PY
