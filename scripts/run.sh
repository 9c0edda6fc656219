#!/usr/bin/env bash
# Start the ML backend with the embedded default (jobs in a thread of the server, no Redis).
# Settings come from the environment: LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY at least
# (see README.md); PORT defaults to 9090 and state goes to MODEL_DIR (default ./data).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements.txt
exec python -m backend
