#!/usr/bin/env bash
# GPU smoke test of the training + serving path (bench/gpu_smoke.py says what it checks and prints).
#   bench/gpu_smoke.sh [--steps N] [--json FILE]   on a machine with a CUDA GPU (<= 10 min on one GPU)
#   bench/gpu_smoke.sh --cpu                       CPU fallback with the tests' tiny model (CI runs it, < 60 s)
# PYTHON picks the interpreter (default: the project's .venv when there is one, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
# Quiet progress bars; caches in /tmp so a read-only checkout works.
export HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1 MPLCONFIGDIR=${MPLCONFIGDIR:-/tmp/matplotlib}
exec "$PYTHON" bench/gpu_smoke.py "$@"
