# Sourced by the other scripts: creates .venv on first use and installs the
# given requirements file into it (pip skips what is already there).
# Usage: source scripts/venv.sh requirements.txt
set -euo pipefail
requirements="${1:?requirements file}"
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
stamp=".venv/.installed-$(sha1sum "$requirements" requirements.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$requirements"
    touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
