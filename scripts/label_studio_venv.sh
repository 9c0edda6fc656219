#!/usr/bin/env bash
# Creates .venv-label-studio with the Label Studio server that the end-to-end tests run.
# Idempotent: a stamp file named after the pinned version makes a second run instant.
# Prints one line when it installs; pip's output goes to .venv-label-studio/pip.log
# and is shown only if the install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
version="1.23.2"
venv=".venv-label-studio"
stamp="$venv/.installed-label-studio-$version"
if [ -f "$stamp" ] && [ -x "$venv/bin/label-studio" ]; then
    exit 0
fi
echo "installing label-studio==$version into $venv (about a minute)" >&2
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
log="$venv/pip.log"
if ! { "$venv/bin/python" -m pip install --upgrade pip \
        && "$venv/bin/python" -m pip install "label-studio==$version"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "pip install label-studio==$version failed; full log in $log" >&2
    exit 1
fi
touch "$stamp"
