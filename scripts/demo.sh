#!/usr/bin/env bash
# One command for newcomers: a local Label Studio with an MNIST project, connected to this backend.
# Installs what it needs on first use; Ctrl-C stops everything; running it again reuses .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements-dev.txt
exec python -m demo "$@"
