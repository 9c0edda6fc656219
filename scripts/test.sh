#!/usr/bin/env bash
# The whole check: installs everything into .venv, then lint, type check and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements-dev.txt
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
