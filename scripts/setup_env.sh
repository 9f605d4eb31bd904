#!/usr/bin/env bash
# Create (or reuse) .venv with the pinned CPU-capable torch pair and cooper-lib in editable mode.
# Idempotent: a second run finds everything installed and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
# torch first, pinned: a looser spec (or timm's own requirement) would pull another multi-GB build.
if ! "$PY" -c "import torch, torchvision, sys; sys.exit(torch.__version__.split('+')[0] != '2.14.1')" 2>/dev/null; then
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
extras=${COOPER_EXTRAS:-dev,train,triton,anchors,hf,trl}
stamp=.venv/.cooper-lib-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$PY" -m pip install -q -e ".[${extras}]" "torch==2.14.1" "torchvision==0.29.1"
  touch "$stamp"
fi
