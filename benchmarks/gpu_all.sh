#!/usr/bin/env bash
# The one command a GPU session runs (docs/PERFORMANCE.md, "GPU throughput"):
#   0. preflight: the wheels of ./.whl installed, what imports, which GPU;
#   1. benchmarks/gpu.py at the paper preset            → OUT/gpu.json, table in OUT/all.log
#   2. the learning check: V and AV side by side at one batch size, two seeds at once on
#      the GPU (benchmarks/gpu_learning.sh)             → OUT/learning-seed{0,1}.{json,log}
# Every step is guarded (a failure is logged and the next step runs) and time-boxed
# (`timeout`); gpu.py rewrites its JSON after every row, so a stopped run keeps its rows.
#
#   bash benchmarks/gpu_all.sh --wheels    here, once: what the GPU machine lacks → ./.whl
#   bash benchmarks/gpu_all.sh "$OUT"      there (the device run: carry .whl), e.g.
#       run(command="bash benchmarks/gpu_all.sh $OUT", carry=[".whl"], timeout_s=600)
#
# Budget on one H200, seconds (a device command may run 600; the session has 900 of
# device time in all, a machine's start included, so there is one full run):
#   preflight, wheel install                                          ≤  20
#   gpu.py: starts no row after GPU_DEADLINE=300, stopped at GPU_TIMEOUT=360  ≤ 360
#     (eager rows ≈ 190: start 15, FLOPs + ingest 15, batch search + largest-batch rows
#      70, inference sweep 30, layouts 26, DDP 10, profile 15, predict 6; then the
#      compiled AV rows, which start only while their measured or estimated compile time
#      fits, then the remaining eager and compiled rows)
#   learning: synth + preprocess ≈ 45, loading ≈ 20, TRAIN_SECONDS=110 of training with
#     its scoring, both seeds at once, stopped at LEARN_TIMEOUT=190           ≤ 190
#   total ≤ 570, about 500 when nothing hits its limit.
# Without what the learning check needs (PyAV, ffmpeg-python and an ffmpeg program),
# gpu.py gets its time: deadline 480 s, stopped at 540 s.
set -uo pipefail

wheels() {
  # pip download for the GPU machine's Python (3.12 there, docs of the device tool): the
  # versions this checkout's .venv has, without dependencies (each one is named).
  local py=".venv/bin/python" pyver="${PYVER:-3.12}" names=(
    pydantic pydantic-core annotated-types typing-inspection typing-extensions  # config
    av ffmpeg-python future                                     # the learning check's data
  )
  mkdir -p .whl
  for name in "${names[@]}"; do
    version=$("$py" -c "from importlib.metadata import version; print(version('$name'))") || {
      echo "$name is not in .venv"; return 1; }
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 -d .whl "$name==$version" || return 1
  done
  du -sh .whl
  echo "done: name .whl in the device run's carry; echo /.whl/ >> .git/info/exclude keeps" \
    "it out of git status"
}
if [ "${1:-}" = --wheels ]; then
  wheels
  exit
fi

out="${1:?usage: bash benchmarks/gpu_all.sh OUT_DIR | --wheels}"
mkdir -p "$out"
log="$out/all.log"
say() { echo "$*" | tee -a "$log"; }
started=$(date +%s)
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | tee -a "$log" || say "wheel install FAILED"
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}" AVRSP_SITE_READY=1
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"

say "== 0. preflight ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
  --format=csv,noheader 2>&1 | tee -a "$log"
python3 - <<'EOF' 2>&1 | tee -a "$log"
import importlib
for name in ("torch", "numpy", "PIL", "pydantic", "pyarrow", "av", "ffmpeg", "yaml", "scipy"):
    try:
        mod = importlib.import_module(name)
        print(f"  {name} {getattr(mod, '__version__', '')}")
    except Exception as exc:
        print(f"  {name}: MISSING ({type(exc).__name__}: {exc})")
import torch
print(f"  CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"GPU {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
EOF
learn_ok=1
python3 -c "import av, ffmpeg, pyarrow; from preprocessing.media import ffmpeg_exe; ffmpeg_exe()" \
  >>"$log" 2>&1 || learn_ok=0
if [ "$learn_ok" = 1 ]; then
  : "${GPU_DEADLINE:=300}" "${GPU_TIMEOUT:=360}"
else
  say "learning check cannot run here (PyAV, ffmpeg-python or an ffmpeg program missing:" \
    "see above); gpu.py gets its time"
  : "${GPU_DEADLINE:=480}" "${GPU_TIMEOUT:=540}"
fi

say "== 1. benchmarks/gpu.py (deadline ${GPU_DEADLINE} s, stopped at ${GPU_TIMEOUT} s)"
timeout -k 10 "$GPU_TIMEOUT" python3 benchmarks/gpu.py --device cuda --json "$out/gpu.json" \
  --deadline-s "$GPU_DEADLINE" ${GPU_ARGS:-} 2>&1 | tee -a "$log"
rc=$?
[ "$rc" = 0 ] || say "gpu.py FAILED or was stopped (exit $rc); $out/gpu.json holds its rows so far"

if [ "$learn_ok" = 1 ]; then
  say "== 2. learning check (stopped at ${LEARN_TIMEOUT:=190} s)"
  SEEDS="${SEEDS:-0 1}" PARALLEL="${PARALLEL:-1}" PAPER=0 BATCH="${BATCH:-64}" \
    TRAIN_SECONDS="${TRAIN_SECONDS:-110}" EVAL_EVERY="${EVAL_EVERY:-125}" \
    timeout -k 10 "$LEARN_TIMEOUT" bash benchmarks/gpu_learning.sh "$out" 2>&1 | tee -a "$log"
  rc=$?
  [ "$rc" = 0 ] || say "learning check FAILED or was stopped (exit $rc)"
fi
say "== done in $(( $(date +%s) - started )) s; files: $(ls "$out" | tr '\n' ' ')"
