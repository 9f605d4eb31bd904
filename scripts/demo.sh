#!/usr/bin/env bash
# Set up the environment and run the main job: `cooper-lib demo` on CPU with its embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/cooper-lib demo "$@"
