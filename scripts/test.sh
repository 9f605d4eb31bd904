#!/usr/bin/env bash
# Set up the environment, check the import layers, run the default test suite (slow tests excluded)
# and the strict docs build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRITON_INTERPRET=1 NO_MKDOCS_2_WARNING=1
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/lint-imports
.venv/bin/python -m pytest -n 2 --dist loadfile -q "$@"
.venv/bin/python -m mkdocs build --strict --site-dir "$(mktemp -d)"
