#!/usr/bin/env bash
# cpu_bench.sh: lpo against PyTorch eager on this machine's CPU, both sides in
# one invocation, printing the ratios (> 1: lpo faster).
#
#   PYTHON=/path/to/venv/bin/python bash scripts/bench/cpu_bench.sh
#
# Needs a python with torch and transformers from PyPI (not part of CI). The
# lpo side is the release binary's own `lpo run` (its timing.csv) and, for
# sampling, the `sample_bench` example of lpo-train; both are built here.
#
# Training: DPO, best vs worst of K = 4, batch 8 prompts, 1 CPU thread per
# side, lpo's tiny and small presets, on two shapes of data: arithmetic-shaped
# lists (prompts "a+b=", answers of 1-3 digits: short, ragged, padded) and
# fixed prompt 128 / response 64 tokens. Peers (scripts/bench/torch_peer.py):
#   trl         TRL-style: every (prompt, response) its own sequence
#               (transformers' MistralForCausalLM, sdpa)
#   shared-hf   prompt once, KV cache repeated K times (transformers' cache)
#   shared-mini the same with a minimal Mistral (is_causal SDPA when unpadded)
# Sampling: K = 4 samples of 64 tokens for 8 prompts of 128 tokens, small
# dims with a 32,000-token vocabulary, same weights on both sides, lpo's
# sampler against transformers' generate(do_sample=True).
#
# The measure is CPU seconds per step (process time: robust on a shared,
# loaded machine), median over the timed steps after warm-up ones.
#
# Env: PYTHON (python3), STEPS (timed steps, default 8), WARMUP (2),
#      SIZES ("tiny small"), SHAPES ("arith long"), SAMPLING (1 = run it),
#      OUT (directory for logs and results.txt), ONEDNN (0 = lpo's oneDNN
#      products off, LPO_ONEDNN=0: both sides multiply with MKL's sgemm, so
#      the ratios measure lpo's design apart from its choice of BLAS),
#      PACKED (1 = train.packed, padding-free lists, the default; 0 = padded
#      rows like the peers), PEERS ("trl shared-hf shared-mini").
#
# The header names the CPU and which kernels multiply on each side.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
STEPS=${STEPS:-8}
WARMUP=${WARMUP:-2}
SIZES=${SIZES:-tiny small}
SHAPES=${SHAPES:-arith long}
SAMPLING=${SAMPLING:-1}
ONEDNN=${ONEDNN:-1}
PACKED=${PACKED:-1}
PEERS=${PEERS:-trl shared-hf shared-mini}
[[ $ONEDNN == 0 ]] && export LPO_ONEDNN=0
OUT=${OUT:-$(mktemp -d /tmp/cpu_bench.XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/cpu_bench_work.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
RESULTS="$OUT/results.txt"
: >"$RESULTS"
PEER="$ROOT/scripts/bench/torch_peer.py"

bash scripts/setup-libtorch.sh >/dev/null
cargo build --release --locked --quiet
cargo build --release --locked --quiet -p lpo-train --example sample_bench
LPO="$ROOT/target/release/lpo"
SAMPLER="$ROOT/target/release/examples/sample_bench"

echo "== cpu_bench $(date -u +%FT%TZ) on $(nproc) cores; $("$LPO" --version)"
echo "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') (flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o 'avx512f\|avx2' | sort -u | tr '\n' ' '))"
echo "lpo products: $("$LPO" doctor | sed -n 's/^products *//p')"
echo "lpo lists: $([[ $PACKED == 1 ]] && echo "packed (train.packed = true)" || echo "padded")"
echo "peer products: at::linear (torch's MKL sgemm for f32 on the CPU)"
"$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'

# Data: 32 lists of each shape, the same file for both sides (lpo trains on
# 24 of the records its content-hash split keeps for training).
"$PY" "$PEER" --write-synthetic "$WORK/arith.jsonl" --arith --n-lists 32 --k 4
"$PY" "$PEER" --write-synthetic "$WORK/long.jsonl" --n-lists 32 --k 4 \
  --prompt-tokens 128 --response-tokens 64

# lpo's recipe: the reference is a 1-step SFT of the same model (its own
# path to a reference); only the training steps are timed.
recipe() { # recipe DATA SIZE
  cat <<EOF
name = "cpubench"
[model]
size = "$2"
max_len = 256
[reference]
sft_steps = 1
sft_batch_size = 8
[loss]
kind = "dpo"
pairing = "best-worst"
beta = 0.1
[data]
form = "reward"
list_size = 4
train_prompts = 24
mix = [{ path = "$1", format = "native", weight = 1.0 }, { task = "arith", weight = 1e-9 }]
[train]
steps = $((WARMUP + STEPS))
batch_size = 8
checkpoint_every = 0
packed = $([[ $PACKED == 1 ]] && echo true || echo false)
lr_schedule = "constant"
warmup_steps = 0
[eval]
prompts = 1
max_new_tokens = 1
EOF
}

# Median CPU seconds per step of a timing.csv after the warm-up steps.
lpo_cpu_s() {
  "$PY" - "$1" "$WARMUP" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))[int(sys.argv[2]):]
print(statistics.median(float(r["cpu_seconds"]) for r in rows))
EOF
}
# median_cpu_s of a peer's TORCHSTEP line.
peer_cpu_s() {
  "$PY" -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("TORCHSTEP "): print(json.loads(l[10:])["median_cpu_s"])' "$1"
}
ratio() { awk "BEGIN{printf \"%.2f\", $2/$1}"; }
result() { echo "RESULT $*" | tee -a "$RESULTS"; }

for size in $SIZES; do
  for shape in $SHAPES; do
    data="$WORK/$shape.jsonl"
    recipe "$data" "$size" >"$WORK/r.toml"
    rm -rf "$WORK/res"
    "$LPO" run "$WORK/r.toml" --index 0 --results "$WORK/res" --no-bars --threads 1 \
      >"$OUT/lpo-$size-$shape.log" 2>&1
    lpo=$(lpo_cpu_s "$(ls "$WORK"/res/cpubench/*/timing.csv)")
    for peer in $PEERS; do
      mode=${peer%%-*}
      impl=hf
      [[ $peer == shared-mini ]] && impl=mini
      "$PY" "$PEER" --size "$size" --max-len 256 --data "$data" --k 4 --batch 8 \
        --mode "$mode" --impl "$impl" --threads 1 --steps "$STEPS" --warmup "$WARMUP" \
        >"$OUT/torch-$size-$shape-$peer.log" 2>&1
      torch=$(peer_cpu_s "$OUT/torch-$size-$shape-$peer.log")
      result "train $size $shape vs $peer: lpo_cpu_ms=$(awk "BEGIN{printf \"%.1f\", 1000*$lpo}") torch_cpu_ms=$(awk "BEGIN{printf \"%.1f\", 1000*$torch}") ratio=$(ratio "$lpo" "$torch")"
    done
  done
done

if [[ $SAMPLING == 1 ]]; then
  ckpt="$WORK/ckpt-small-32k"
  "$PY" "$PEER" --size small --vocab 32000 --max-len 256 --write-ckpt "$ckpt"
  "$SAMPLER" --ckpt "$ckpt" --data "$WORK/long.jsonl" --batch 8 --k 4 --max-new-tokens 64 \
    --steps 3 --warmup 1 --threads 1 >"$OUT/lpo-sample.log" 2>&1
  lpo=$("$PY" -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("LPOSAMPLE "): print(json.loads(l[10:])["median_cpu_s"])' "$OUT/lpo-sample.log")
  "$PY" "$PEER" --mode sample --impl hf --ckpt "$ckpt" --data "$WORK/long.jsonl" --batch 8 --k 4 \
    --max-new-tokens 64 --steps 3 --warmup 1 --threads 1 >"$OUT/torch-sample.log" 2>&1
  torch=$(peer_cpu_s "$OUT/torch-sample.log")
  result "sample small-32k 8x4x64 vs generate: lpo_cpu_ms=$(awk "BEGIN{printf \"%.1f\", 1000*$lpo}") torch_cpu_ms=$(awk "BEGIN{printf \"%.1f\", 1000*$torch}") ratio=$(ratio "$lpo" "$torch")"
fi

echo "== results (logs in $OUT)"
cat "$RESULTS"
