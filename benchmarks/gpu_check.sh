#!/usr/bin/env bash
# One prepared check of the CUDA paths at the paper's shapes (the `activitynet` preset: MobileNet-V2 f_G on
# 224x224 frames, ResNet-50 f_L on P = 128 patches, T = 16, 200 classes), random weights, in under 5 minutes
# on one GPU. Run from the repository root:
#
#     bash benchmarks/gpu_check.sh                  # on the GPU machine ($OUT set: everything goes to $OUT/gpu_check.log)
#     DEVICE=cpu STAGE2_STEPS=64 N_ENVS=4 VIDEOS_PER_UPDATE=4 TRAIN_VIDEOS=8 VAL_VIDEOS=8 EVAL_BATCH=4 \
#       INFER_ARGS="--videos 4 --batch-size 2 --repeats 1" ENV_ARGS="--n-envs 1 4 --videos 8 --repeats 1 --min-time 0" \
#       bash benchmarks/gpu_check.sh                # a CPU dry run of the same parts (checks the script, not speed)
#
# Parts, each under its own `timeout` so one slow part cannot eat the budget (a failed or timed-out part is
# reported and the next one runs; the script exits non-zero at the end if any part failed):
#   0. setup: `pip install -e .` when adafocus or its dependencies are missing (quiet; see below), nvidia-smi
#   1. data: ~TRAIN_VIDEOS + VAL_VIDEOS short H.264 videos of moving textured tiles at 224x224 (the synthetic
#      generator at the preset's frame size; no dataset exists on that machine) as `path label` lists, and
#      the preset's networks with random weights (weights None) saved as the checkpoint stage II starts from
#   2. stage II (benchmarks/gpu_stage2.py --part stage2): run_policy, STAGE2_STEPS PPO timesteps at N = N_ENVS
#      slots (default 20480 = 320 steps of N = 64), videos streamed by DataLoader workers with the training
#      transform. fp32: the env step has no autocast option (only the supervised stages in
#      adafocus/training.py use bf16 autocast on CUDA), so the check runs what the pipeline runs.
#   3. evaluation (--part eval): evaluate_run on the validation list with the stage II policy, streamed
#   4. python benchmarks/inference.py --preset activitynet --device cuda   (bf16 autocast on CUDA, _common.py)
#   5. python benchmarks/env_throughput.py --device cuda                   (the synthetic preset's shapes)
#   6. python benchmarks/env_throughput.py --preset activitynet --device cuda  (the paper's shapes)
# Each Python part prints its peak CUDA memory; nvidia-smi is printed at the start and at the end.
#
# Dependencies: the GPU image has torch/torchvision but not gymnasium, stable-baselines3, sb3-contrib, decord2
# or av, and nothing can be downloaded there. Bring them as wheels in .whl/ (ignored by git, named in the
# device tool's `carry`), downloaded here for the machine's Python 3.12, e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl gymnasium farama-notifications stable-baselines3 sb3-contrib decord2 av
# (add any other missing requirement the install names). The setup step installs .whl/*.whl with --no-index
# when the folder exists, then the project itself in editable mode without build isolation (setuptools is in
# the image; build isolation would try to download it).
set -euo pipefail
export PYTHONUNBUFFERED=1

PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-activitynet}
STAGE2_STEPS=${STAGE2_STEPS:-20480}
N_ENVS=${N_ENVS:-64}
VIDEOS_PER_UPDATE=${VIDEOS_PER_UPDATE:-64}
TRAIN_VIDEOS=${TRAIN_VIDEOS:-128}
VAL_VIDEOS=${VAL_VIDEOS:-64}
EVAL_BATCH=${EVAL_BATCH:-64}
WORKERS=${WORKERS:-4}
INFER_ARGS=${INFER_ARGS:-}
ENV_ARGS=${ENV_ARGS:---repeats 3}
# seconds per part: 540 together at most, inside a 10-minute device command (run it with timeout_s 600 and
# carry [".whl"]); the parts' typical total is under 5 minutes
T_SETUP=${T_SETUP:-90} T_DATA=${T_DATA:-60} T_STAGE2=${T_STAGE2:-120} T_EVAL=${T_EVAL:-60}
T_INFER=${T_INFER:-60} T_ENV=${T_ENV:-60} T_ENV_PAPER=${T_ENV_PAPER:-90}

WORK=${WORK:-$(mktemp -d /tmp/adafocus_gpu_check.XXXXXX)}
export ADAFOCUS_CACHE=${ADAFOCUS_CACHE:-$WORK/cache}  # the generated videos
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  exec > >(tee -a "$OUT/gpu_check.log") 2>&1
  TEE_PID=$!
fi

began=$(date +%s)
failed=()
part() {  # part NAME SECONDS COMMAND...: run under a time limit, report its time and status, go on
  local name=$1 limit=$2 rc=0 start
  shift 2
  start=$(date +%s)
  echo
  echo "=== $name (limit ${limit} s) ==="
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  if (( rc == 0 )); then
    echo "=== $name: ok in $(( $(date +%s) - start )) s ==="
  else
    (( rc == 124 || rc == 137 )) && what="TIMED OUT" || what="FAILED (exit $rc)"
    echo "=== $name: $what after $(( $(date +%s) - start )) s ==="
    failed+=("$name")
  fi
}

# A script run with the peak CUDA memory printed after it (benchmarks/*.py import _common from their folder).
PEAK=$WORK/with_peak.py
cat > "$PEAK" <<'PY'
import runpy, sys
from pathlib import Path
import torch
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, str(Path(script).resolve().parent))
try:
    runpy.run_path(script, run_name="__main__")
finally:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        print(f"peak CUDA memory allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
PY

setup() {
  local check="import adafocus.pipeline, stable_baselines3, sb3_contrib, gymnasium, decord, av"
  if "$PYTHON" -c "$check" 2>/dev/null; then
    echo "adafocus and its dependencies import: no install needed"
  else
    if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
      "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl
    fi
    "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . \
      || "$PYTHON" -m pip install -q -e .
    "$PYTHON" -c "$check"
  fi
  "$PYTHON" - <<'PY'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name()} (capability {torch.cuda.get_device_capability()}), "
         f"bf16 supported: {torch.cuda.is_bf16_supported()}" if torch.cuda.is_available() else ""))
PY
}

echo "AdaFocus GPU check: $(date -u +%FT%TZ), device $DEVICE, preset $PRESET, work folder $WORK"
echo "--- nvidia-smi ---"
if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "(no nvidia-smi on this machine)"; fi
part "setup" "$T_SETUP" bash -c "set -euo pipefail; $(declare -f setup); PYTHON='$PYTHON'; setup"
if [[ " ${failed[*]} " == *" setup "* ]]; then
  echo "setup failed: adafocus or one of its dependencies cannot be imported (bring the missing ones as wheels"
  echo "in .whl/, see the top of this script); nothing else can run"
  exit 1
fi

STAGE2=(benchmarks/gpu_stage2.py --out "$WORK/run" --preset "$PRESET" --device "$DEVICE"
        --train-videos "$TRAIN_VIDEOS" --val-videos "$VAL_VIDEOS" --workers "$WORKERS")
part "1 data (videos at the preset's frame size, random-weight checkpoint)" "$T_DATA" \
  "$PYTHON" "${STAGE2[@]}" --part data
part "2 stage II (PPO, N = $N_ENVS, $STAGE2_STEPS timesteps, streamed, fp32)" "$T_STAGE2" \
  "$PYTHON" "${STAGE2[@]}" --part stage2 --steps "$STAGE2_STEPS" --n-envs "$N_ENVS" \
  --videos-per-update "$VIDEOS_PER_UPDATE"
part "3 evaluation (streamed)" "$T_EVAL" \
  "$PYTHON" "${STAGE2[@]}" --part eval --eval-batch "$EVAL_BATCH"
# shellcheck disable=SC2086  # the *_ARGS are word lists
part "4 inference.py --preset $PRESET" "$T_INFER" \
  "$PYTHON" "$PEAK" benchmarks/inference.py --preset "$PRESET" --device "$DEVICE" $INFER_ARGS
# shellcheck disable=SC2086
part "5 env_throughput.py (synthetic shapes)" "$T_ENV" \
  "$PYTHON" "$PEAK" benchmarks/env_throughput.py --device "$DEVICE" $ENV_ARGS
# shellcheck disable=SC2086
part "6 env_throughput.py --preset $PRESET" "$T_ENV_PAPER" \
  "$PYTHON" "$PEAK" benchmarks/env_throughput.py --preset "$PRESET" --device "$DEVICE" $ENV_ARGS

echo
echo "--- nvidia-smi (end) ---"
if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "(no nvidia-smi on this machine)"; fi
echo "total $(( $(date +%s) - began )) s; ${#failed[@]} part(s) failed${failed[*]:+: ${failed[*]}}"
status=$(( ${#failed[@]} > 0 ))
if [[ -n "${TEE_PID:-}" ]]; then  # let tee write the log's last lines before the command returns
  exec >&- 2>&-
  wait "$TEE_PID" 2>/dev/null || true
fi
exit "$status"
