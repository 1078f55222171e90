#!/usr/bin/env bash
# The GPU check (issue 19): one prepared run that measures what only a GPU can, in about 12
# minutes on an H100/H200, and writes everything into one flat folder.
#
#   scripts/gpu_check.sh OUT                  # on the GPU machine
#   scripts/gpu_check.sh OUT --tiny           # seconds, on a CPU: checks the script itself
#
# 1. scripts/bench.py at VGG:256 and LeNet:256, fp32 and bf16: step times, LR / full-precision
#    ratios, peak memory, the data path and the cost of the selection.
# 2. Table 1's CIFAR-10 cells full precision -> LR ternary with the data on the device, bf16,
#    the schedules scaled by EPOCHS_SCALE (default 0.1: 12 reference and 29 ternary epochs):
#    test error of the chosen sample, median epoch time, the full schedules' projected time.
# 3. OUT/: bench_fp32.json, bench_bf16.json, table1.md, results_full_precision.json,
#    results_ternary.json, epochs_full_precision.csv, epochs_ternary.csv, log.txt (8 files,
#    what the device tool brings back).
#
# Environment: PY (the Python that has the project's dependencies; default python3),
# LRNETS_DATA (a folder holding cifar-10-batches-py/; when it lacks one and CIFAR_JPEG names
# the offline cifar10-jpeg.tar.gz, the batches are written there first), EPOCHS_SCALE.
set -euo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUT [--tiny]}
TINY=${2:-}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 LRNETS_DATA=${LRNETS_DATA:-$PWD/data}
exec > >(tee "$OUT/log.txt") 2>&1
echo "gpu_check $(date -u +%FT%TZ) on $(hostname); $($PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")')"

if [ -n "${CIFAR_JPEG:-}" ] && [ ! -d "$LRNETS_DATA/cifar-10-batches-py" ]; then
  mkdir -p "$LRNETS_DATA"
  $PY "$(dirname "$CIFAR_JPEG")/make_cifar10.py" "$LRNETS_DATA"
fi

if [ "$TINY" = "--tiny" ]; then
  bench=(--tiny)
  device=cpu
  runs=("+trainer.limit_train_batches=2" "+trainer.limit_val_batches=2" eval.num_samples=2)
  scale=0.01
  table=(--datasets mnist)   # the CPU check needs no CIFAR-10 files
else
  bench=(--nets vgg:256 lenet:256 --repeats 20)
  device=cuda
  runs=(trainer=gpu dataset.on_device=true trainer.precision=bf16-mixed eval.every_n_epochs=5
        eval.recalibrate_bn=true)
  scale=${EPOCHS_SCALE:-0.1}
  table=(--datasets cifar10)
fi

echo "== 1. bench, fp32 and bf16"
$PY scripts/bench.py --device "$device" "${bench[@]}" --out "$OUT/bench_fp32.json"
$PY scripts/bench.py --device "$device" "${bench[@]}" --bf16 --out "$OUT/bench_bf16.json"

echo "== 2. Table 1 cells, full precision -> ternary, schedules x$scale"
$PY scripts/reproduce_table1.py "${table[@]}" --modes full_precision ternary --epochs-scale "$scale" \
  --runs-dir "$OUT/runs" --out "$OUT/tables" trainer.enable_progress_bar=false "${runs[@]}" || true

echo "== 3. collect"
cp "$OUT/tables/table1.md" "$OUT/table1.md"
for cell in "$OUT"/runs/*_full_precision "$OUT"/runs/*_ternary; do
  mode=${cell##*/}; mode=${mode#*_}
  [ -f "$cell/seed0/results.json" ] && cp "$cell/seed0/results.json" "$OUT/results_$mode.json"
  $PY -c "import sys; from pathlib import Path; from lrnets.training.epochs import write_epochs_csv; write_epochs_csv(Path(sys.argv[1]), Path(sys.argv[2]))" \
    "$cell/seed0" "$OUT/epochs_$mode.csv"
done
rm -rf "$OUT/runs" "$OUT/tables"   # checkpoints and events stay behind
ls -la "$OUT"
