#!/usr/bin/env bash
# The GPU suite in one command: the base config in bf16 with torch.compile and the flex-attention soft-cap kernel,
# training tokens/s and MFU, peak memory, rollout frames/s (K = 1/4, batch 1 and 300), chunked candidate scoring's
# memory and one DINO-WM-size plan (300 x 30 x 30, H = 5). Within 5 minutes on one H100/H200; downloads nothing.
#   bash benchmarks/run_gpu_suite.sh                       # CUDA, hub_configs/argos-wm-base
#   bash benchmarks/run_gpu_suite.sh --device cpu --tiny   # the same path on a CPU with the tiny config
# Further arguments go to benchmarks/gpu_suite.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" benchmarks/gpu_suite.py "$@"
