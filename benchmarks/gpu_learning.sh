#!/usr/bin/env bash
# The learning check at scale on one GPU, without Ray or MLflow (docs/RESULTS.md):
#   1. the paper preset's forward+backward in bf16 (time, peak memory, finiteness);
#   2. the synthetic dataset (VIDEOS clips) and its tiny-preset shards, in local processes;
#   3. V and AV trained side by side in memory (benchmarks/audio_diagnostics.py train), at
#      one batch size (BATCH), once per seed in SEEDS: one after the other, or all at once
#      on the same GPU with PARALLEL=1 (the tiny network leaves the GPU mostly idle).
#
#   bash benchmarks/gpu_learning.sh [OUT_DIR]        (env: VIDEOS, STRIDE, STEPS, BATCH,
#        SEEDS, PARALLEL, TRAIN_SECONDS, EVAL_EVERY, AUDIO, DEVICE, PAPER=0 skips 1)
#
# Writes OUT_DIR/learning-seed<S>.json (the score history) and .log per seed.
# Needs torch with CUDA, pyarrow, numpy, pillow, pydantic, PyAV, ffmpeg-python and an
# ffmpeg program (system, $AVRSP_FFMPEG or imageio-ffmpeg). Wheels in ./.whl, if any, are
# installed first (benchmarks/gpu_all.sh does that once and sets AVRSP_SITE_READY=1).
set -euo pipefail
out="${1:-${OUT:-gpu-learning}}"
mkdir -p "$out"
work="${WORK:-/tmp/avrsp-gpu}"
if [ "${AVRSP_SITE_READY:-0}" != 1 ] && compgen -G ".whl/*.whl" >/dev/null; then
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

seeds=(${SEEDS:-0})
echo "== 3. V and AV side by side: batch ${BATCH:-32}, seeds ${seeds[*]}, parallel ${PARALLEL:-0}"
learn() {
  # Parallel runs share the CPUs: each decodes the shards with its share of them.
  local seed="$1" workers="$2"
  python3 benchmarks/audio_diagnostics.py train --data "$work/shards" --synth "$work/synthetic" \
    --audio ${AUDIO:-0 1} --device "$device" --batch "${BATCH:-32}" --steps "${STEPS:-20000}" \
    --eval-every "${EVAL_EVERY:-250}" --eval-batch 256 --max-seconds "${TRAIN_SECONDS:-300}" \
    --threads 4 --workers "$workers" --seed "$seed" \
    --json-out "$out/learning-seed$seed.json" > "$out/learning-seed$seed.log" 2>&1
}
if [ "${PARALLEL:-0}" = 1 ]; then
  share=$(( cpus / ${#seeds[@]} > 0 ? cpus / ${#seeds[@]} : 1 ))
  pids=()
  for seed in "${seeds[@]}"; do
    learn "$seed" "$share" &
    pids+=($!)
  done
  failed=0
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "seed ${seeds[$i]} FAILED"; failed=1; }
  done
else
  failed=0
  for seed in "${seeds[@]}"; do
    learn "$seed" "$cpus" || { echo "seed $seed FAILED"; failed=1; }
  done
fi
for seed in "${seeds[@]}"; do
  echo "-- seed $seed (last lines of $out/learning-seed$seed.log)"
  tail -4 "$out/learning-seed$seed.log" || true
done
exit "$failed"
