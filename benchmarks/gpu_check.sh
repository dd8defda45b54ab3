#!/usr/bin/env bash
# One command for a machine with a CUDA GPU, under 10 minutes: bash benchmarks/gpu_check.sh [OUT_DIR]
#
#  1. install: nlbkit from this checkout (pip --no-deps -e, or PYTHONPATH where pip cannot install);
#     training needs torch, h5py, numpy, scipy, scikit-learn, pyyaml, click and tqdm, not pynwb/dandi/ray
#  2. the float32-integrator check on real CUDA bfloat16 (tests/test_autocast.py on cuda)
#  3. seconds per epoch of mc_maze at the released size (hidden 280, batch 256) at 20 and 5 ms,
#     AMP off (eager, float32) against AMP on (fast), side by side, with peak GPU memory
#     (benchmarks/epoch_time.py --device cuda), on random Poisson counts of mc_maze's full size
#     (2,151 trials, 1,721 of them fitted; 137 + 45 neurons; 35 + 10 or 140 + 40 bins)
#  4. the fast path against float32 in losses and rates (tests/test_fast_path.py, CPU and CUDA)
# Everything it prints also goes to OUT_DIR/gpu_check.log (default: $OUT, else gpu_check/).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_check}}"
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || echo "pip install skipped: using PYTHONPATH=$PWD"
"$PY" - <<'PY' || exit 1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
assert torch.cuda.is_available(), "no CUDA device"
print(torch.cuda.get_device_name(0), "bf16 supported:", torch.cuda.is_bf16_supported())
PY
echo "== float32 integration under CUDA bfloat16 autocast; fast path against float32"
NLBKIT_TEST_DEVICES=cpu,cuda timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_autocast.py tests/test_fast_path.py
echo "== seconds per epoch, mc_maze released size, AMP off (eager) against on (fast)"
TENSORS="$OUT_DIR/tensors"
mkdir -p "$TENSORS"
"$PY" benchmarks/random_tensors.py "$TENSORS/mc_maze_20ms.h5" 2151 35 10 137 45 0.2
"$PY" benchmarks/random_tensors.py "$TENSORS/mc_maze_5ms.h5" 2151 140 40 137 45 0.05
timeout 420 "$PY" benchmarks/epoch_time.py --device cuda --batches 7 --rounds 2 \
  "$TENSORS/mc_maze_20ms.h5" mc_maze 20 "$TENSORS/mc_maze_5ms.h5" mc_maze 5 | tee "$OUT_DIR/epoch_time_cuda.txt"
rm -rf "$TENSORS"
echo "gpu check done: $OUT_DIR/gpu_check.log"
