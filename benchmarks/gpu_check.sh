#!/usr/bin/env bash
# The whole GPU check in one command (about 8 minutes on one GPU), every result written as a file:
#   bash benchmarks/gpu_check.sh [OUT_DIR]          (make gpu-check; default OUT_DIR build/gpu-check)
# 1. the tests that need CUDA (tests/test_cuda.py), 2. nvidia-smi, 3. the benchmarks on cuda:
# input pipeline, training throughput, bf16 vs fp32, time to accuracy (laptop ResNet-18, the fast
# recipe and its full profile, each capped), and a few epochs of the 200-epoch reference recipe
# (gpu_epoch: seconds per epoch and the projected 200-epoch time).
# GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 runs the same steps on a CPU in seconds (the test suite's dry run).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/gpu-check}"
device="${GPU_CHECK_DEVICE:-cuda}"
quick=(); [ -n "${GPU_CHECK_QUICK:-}" ] && quick=(--quick)
python="${PYTHON:-python}"
mkdir -p "$out"
started=$(date +%s)

{ nvidia-smi || echo "nvidia-smi: not available on this machine"; } > "$out/nvidia-smi.txt" 2>&1
"$python" -m pytest -q -p no:nbval -o addopts="" tests/test_cuda.py 2>&1 | tee "$out/tests-cuda.txt"
"$python" -m benchmarks.run --device "$device" --out "$out" --cap-minutes "${GPU_CHECK_CAP_MINUTES:-1.5}" \
    --only input_pipeline,training,precision,time_to_accuracy,gpu_epoch "${quick[@]}" 2>&1 | tee "$out/bench.txt"
echo "gpu check: $(( $(date +%s) - started )) s; results in $out" | tee "$out/summary.txt"
