#!/usr/bin/env bash
# Set up tritonrl on a fresh machine. Keeps an existing torch (a CUDA build stays a CUDA build): torch and triton
# are installed only when they are missing. TORCH_SPEC / TRITON_SPEC override what gets installed then.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  # On the project's CPU machines this resolves to a local CPU wheel. Elsewhere, for a CPU-only box, point pip at
  # PyTorch's CPU wheel index first, or the default index pulls the CUDA build.
  "$PY" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
if ! "$PY" -c "import triton" 2>/dev/null; then
  "$PY" -m pip install -q "${TRITON_SPEC:-triton==3.6.0}"  # the version tested here and on the H100 image
fi
"$PY" -m pip install -q -e ".[dev]"
