#!/usr/bin/env bash
# dp_bench.sh: one run on N = 1 and N = 2 ranks of this machine's CPU (data
# parallelism over Gloo, one thread a rank), printing step time, tokens/s and
# the scaling efficiency (speedup / N).
#
#   bash scripts/bench/dp_bench.sh
#
# The run: DPO on the built-in arith task, K = 4, batch 16 lists a step in
# train.grad_accum = 2 micro-batches (one a rank at N = 2), lpo's SIZE preset
# (default small). The measure is wall seconds per step from timing.csv,
# median over the timed steps after the warm-up ones (CPU seconds would hide
# the time a rank waits for the other). Both runs train the same steps on the
# same batches (the run id does not depend on N).
#
# Env: STEPS (timed steps, default 20), WARMUP (3), SIZE (small), OUT
#      (directory for logs and results.txt).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-3}
SIZE=${SIZE:-small}
OUT=${OUT:-$(mktemp -d /tmp/lpo-dp-bench.XXXXXX)}
mkdir -p "$OUT"
RESULTS="$OUT/results.txt"
: >"$RESULTS"
scripts/setup-libtorch.sh >/dev/null
cargo build --release --locked --bin lpo -q
LPO="$ROOT/target/release/lpo"
WORK="$OUT/work"
rm -rf "$WORK" && mkdir -p "$WORK"

echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores"
cat >"$WORK/r.toml" <<TOML
name = "dpbench"
[model]
size = "$SIZE"
[reference]
sft_steps = 1
sft_batch_size = 8
[loss]
kind = "dpo"
pairing = "best-worst"
[data]
list_size = 4
train_prompts = 64
[train]
steps = $((WARMUP + STEPS))
batch_size = 16
grad_accum = 2
checkpoint_every = 0
lr_schedule = "constant"
warmup_steps = 0
threads = 1
[eval]
prompts = 1
max_new_tokens = 1
every = 0
TOML

# "median seconds per step, median tokens/s" of a timing.csv after warm-up.
medians() {
  python3 - "$1" "$WARMUP" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))[int(sys.argv[2]):]
print(statistics.median(float(r["seconds"]) for r in rows),
      statistics.median(float(r["tokens_per_s"]) for r in rows))
PY
}

declare -A step tps
for n in 1 2; do
  rm -rf "$WORK/res-$n"
  "$LPO" run "$WORK/r.toml" --index 0 --results "$WORK/res-$n" --no-bars --nproc "$n" \
    >"$OUT/lpo-n$n.log" 2>&1
  read -r s t < <(medians "$(ls "$WORK"/res-"$n"/dpbench/*/timing.csv)")
  step[$n]=$s
  tps[$n]=$t
  echo "RESULT N=$n step_ms=$(awk "BEGIN{printf \"%.1f\", 1000*$s}") tokens_per_s=$(awk "BEGIN{printf \"%.0f\", $t}")" | tee -a "$RESULTS"
done
speedup=$(awk "BEGIN{printf \"%.2f\", ${step[1]}/${step[2]}}")
echo "RESULT speedup=$speedup efficiency=$(awk "BEGIN{printf \"%.2f\", $speedup/2}")" | tee -a "$RESULTS"
python3 - "$WORK"/res-1/dpbench/*/metrics.csv "$WORK"/res-2/dpbench/*/metrics.csv <<'PY'
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
worst = max(abs(float(x["loss"]) - float(y["loss"])) for x, y in zip(a, b))
print(f"RESULT same losses at N=1 and N=2: max |difference| = {worst:.2e}")
PY
echo "logs and results in $OUT"
