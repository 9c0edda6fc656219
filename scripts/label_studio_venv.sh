#!/usr/bin/env bash
# Creates .venv-label-studio with the Label Studio server that the end-to-end tests run,
# and psycopg2-binary for running it on PostgreSQL (DJANGO_DB=default, see README.md).
# Idempotent: a stamp file named after both pins makes a second run instant, and a venv
# stamped before a pin changed gets the missing package on the next run.
# Prints one line when it installs; pip's output goes to .venv-label-studio/pip.log
# and is shown only if the install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
version="1.23.2"
psycopg2_version="2.9.13"
venv=".venv-label-studio"
stamp="$venv/.installed-label-studio-$version-psycopg2-binary-$psycopg2_version"
if [ -f "$stamp" ] && [ -x "$venv/bin/label-studio" ]; then
    exit 0
fi
packages=("label-studio==$version" "psycopg2-binary==$psycopg2_version")
echo "installing ${packages[*]} into $venv (about a minute)" >&2
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
log="$venv/pip.log"
if ! { "$venv/bin/python" -m pip install --upgrade pip \
        && "$venv/bin/python" -m pip install "${packages[@]}"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "pip install ${packages[*]} failed; full log in $log" >&2
    exit 1
fi
rm -f "$venv"/.installed-label-studio-*
touch "$stamp"
