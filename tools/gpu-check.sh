#!/usr/bin/env bash
# The prepared GPU check of issue #6, one script for a lent GPU machine (about 8 minutes):
# both trainers on CUDA, on the tiny shape and on TURKCELL-LLM-7b-v1's full width with LAYERS
# decoder layers (seeded random weights from `tunebench make-model`), SEQ tokens per example,
# 4 examples per step, LoRA r 16 on all 7 projections; prints trained tokens/s and peak device
# memory per run; the tiny shape is run again on the CPU and each final loss must agree with
# the CPU's within 1e-3 (relative, f32). Exits non-zero if any run fails. RUNS picks the runs per shape: `peft`, `unsloth`, and `unsloth-nf4` (the
# Unsloth-style trainer on a 4-bit NF4 frozen base, kept packed on the device). Everything lands
# in $OUT (default target/gpu-check).
#
#   tools/gpu-check.sh                      # build with --features cuda, then run
#   DEVICE=wgpu tools/gpu-check.sh          # the same through wgpu (lavapipe here: tiny only)
#   BIN=path/to/tunebench SHAPES=tiny ...   # reuse a built binary, pick shapes
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
LAYERS=${LAYERS:-4}
STEPS=${STEPS:-6}
SEQ=${SEQ:-512}
SHAPES=${SHAPES:-"tiny t7b"}
RUNS=${RUNS:-"peft unsloth unsloth-nf4"}
OUT=$(mkdir -p "${OUT:-target/gpu-check}" && cd "${OUT:-target/gpu-check}" && pwd)
if [ -z "${BIN:-}" ]; then
  echo "== cargo build --release --features $DEVICE"
  CARGO_PROFILE_RELEASE_DEBUG=false cargo build --release -q --features "$DEVICE"
  BIN=target/release/tunebench
fi
tok=crates/model/tests/fixtures/tokenizer
data=$(pwd)/datasets/turkish-support/train.jsonl
[ -d "$OUT/tiny" ] || "$BIN" make-model --preset tiny --dtype f32 --tokenizer $tok --out "$OUT/tiny"
case " $SHAPES " in *" t7b "*)
  [ -d "$OUT/t7b" ] || "$BIN" make-model --preset turkcell7b --layers "$LAYERS" --tokenizer $tok --out "$OUT/t7b" ;;
esac
nvsmi() { command -v nvidia-smi >/dev/null && nvidia-smi "$@"; }
nvsmi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
rows=()
failed=0
for shape in $SHAPES; do
  for variant in $RUNS; do
    method=${variant%%-*}
    quant=none
    [ "$variant" = "$method" ] || quant=${variant#*-}
    cfg="$OUT/$shape-$variant.toml"
    cat > "$cfg" <<TOML
name = "gpu-$shape-$variant"
[model]
base = "$OUT/$shape"
dtype = "f32"
base_quant = "$quant"
[data]
train = "$data"
max_seq_len = $SEQ
[train]
micro_batch = 4
max_steps = $STEPS
warmup_measure_steps = 2
checkpoint_every = 0
device = "$DEVICE"
runs_dir = "$OUT/runs"
[optimizer]
lr = 2e-4
warmup_steps = 1
[lora]
r = 16
alpha = 32
dropout = 0.0
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TOML
    log="$OUT/$shape-$variant.log"
    mem="$OUT/$shape-$variant.mem"
    : > "$mem"
    sampler=
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$mem" &
      sampler=$!
    fi
    echo "== train $method (base_quant $quant) on $shape ($DEVICE)"
    start=$(date +%s)
    status=ok
    "$BIN" train "$method" --config "$cfg" --no-progress > "$log" 2>&1 || status="failed (see $log)"
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
    secs=$(( $(date +%s) - start ))
    run=$(ls -td "$OUT"/runs/*-"$method" 2>/dev/null | head -1 || true)
    loss=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['final_train_loss'])" "$run/summary.json" 2>/dev/null || echo "-")
    # The tiny shape again on the CPU: the device's losses must agree (f32, 1e-3 relative).
    cpu_loss="-"
    if [ "$shape" = tiny ] && [ "$DEVICE" != cpu ] && [ "$status" = ok ]; then
      sed -e 's/^device = .*/device = "cpu"/' -e "s#^runs_dir = .*#runs_dir = \"$OUT/runs-cpu\"#" \
        "$cfg" > "$OUT/$shape-$variant-cpu.toml"
      if "$BIN" train "$method" --config "$OUT/$shape-$variant-cpu.toml" --no-progress > "$log.cpu" 2>&1; then
        cpu_run=$(ls -td "$OUT"/runs-cpu/*-"$method" 2>/dev/null | head -1 || true)
        cpu_loss=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['final_train_loss'])" "$cpu_run/summary.json" 2>/dev/null || echo "-")
        if ! python3 -c "import sys;a,b=float(sys.argv[1]),float(sys.argv[2]);sys.exit(0 if abs(a-b)<=1e-3*abs(b) else 1)" "$loss" "$cpu_loss" 2>/dev/null; then
          status="loss $loss differs from the CPU's $cpu_loss by more than 1e-3 relative"
        fi
      else
        status="CPU reference failed (see $log.cpu)"
      fi
    fi
    [ "$status" = ok ] || failed=$((failed + 1))
    tps=$(python3 -c "import json,sys;print(round(json.load(open(sys.argv[1]))['tokens_per_s'],1))" "$run/summary.json" 2>/dev/null || echo "-")
    rss=$(python3 -c "import json,sys;print(round(json.load(open(sys.argv[1]))['peak_rss_mib']))" "$run/summary.json" 2>/dev/null || echo "-")
    vram=$(sort -n "$mem" | tail -1)
    rows+=("| $shape | $variant | $status | ${secs}s | $tps | ${vram:--} | $rss | $loss | $cpu_loss |")
    tail -3 "$log"
  done
done
echo
echo "| shape | run | status | wall | tokens/s | peak VRAM MiB (nvidia-smi) | peak RSS MiB | final loss | CPU's final loss |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
if [ "$failed" -gt 0 ]; then
  echo "$failed run(s) failed" >&2
  exit 1
fi
