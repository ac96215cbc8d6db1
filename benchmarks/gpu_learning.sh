#!/usr/bin/env bash
# The learning check at scale on one GPU, without Ray or MLflow (docs/RESULTS.md):
#   1. the paper preset's forward+backward in bf16 (time, peak memory, finiteness);
#   2. the synthetic dataset (VIDEOS clips) and its tiny-preset shards, in local processes;
#   3. V and AV trained side by side in memory (benchmarks/audio_diagnostics.py train).
#
#   bash benchmarks/gpu_learning.sh [OUT_DIR]        (env: VIDEOS, STRIDE, STEPS, BATCH,
#                                                     TRAIN_SECONDS, AUDIO, DEVICE, PAPER=0 skips 1)
#
# Needs torch with CUDA, pyarrow, numpy, pillow, pydantic, ffmpeg-python and an ffmpeg
# (system or imageio-ffmpeg). Wheels in ./.whl, if any, are installed first.
set -euo pipefail
out="${1:-${OUT:-gpu-learning}}"
mkdir -p "$out"
work="${WORK:-/tmp/avrsp-gpu}"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
cpus="$(nproc)"
device="${DEVICE:-cuda}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | tee "$out/gpu.txt" || true

if [ "${PAPER:-1}" != 0 ]; then
  echo "== 1. paper preset, bf16 forward+backward"
  python3 benchmarks/model_speed.py --preset paper --batch 1 4 8 --device "$device" \
    --repeats 10 | tee "$out/paper_bf16.txt" || echo "paper preset check FAILED (see above)"
fi

echo "== 2. synthetic data: ${VIDEOS:=1024} clips, stride ${STRIDE:=8}"
start=$(date +%s)
python3 -m workflows.cli synth --out "$work/synthetic" --videos "$VIDEOS" --workers "$cpus"
python3 -m workflows.cli preprocess --source "synthetic:$work/synthetic" --out "$work/shards" \
  --preset tiny --stride "$STRIDE" --no-ray --num-cpus "$cpus" | tail -3
echo "data ready in $(( $(date +%s) - start )) s"

echo "== 3. V and AV side by side"
python3 benchmarks/audio_diagnostics.py train --data "$work/shards" --synth "$work/synthetic" \
  --audio ${AUDIO:-0 1} --device "$device" --batch "${BATCH:-32}" --steps "${STEPS:-20000}" \
  --eval-every "${EVAL_EVERY:-250}" --eval-batch 256 --max-seconds "${TRAIN_SECONDS:-300}" \
  --threads 4 --workers "$cpus" --json-out "$out/learning.json" | tee "$out/learning.log"
