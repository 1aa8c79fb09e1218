#!/usr/bin/env bash
# GPU readiness check (scripts/gpu_check.py): batched == reference on CUDA, bf16 against fp32, host-device
# syncs per forward pass, the device tests, `bench engine` for gpt2-tiny, gpt2-124m and llama-1b (fp32 and
# bf16) and `bench warehouse`, in under 8 minutes; reports under results/gpu_check/<time>/.
#
#   scripts/gpu_check.sh                   # on a CUDA machine
#   scripts/gpu_check.sh --device cpu      # the script itself, on CPU at tiny sizes
#
# PYTHON picks the interpreter (default: python3 of the active environment).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
