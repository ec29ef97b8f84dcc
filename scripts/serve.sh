#!/usr/bin/env bash
# Runs the service on :${PORT:-8080}. Serves MODEL_DIR when it holds a model; otherwise
# downloads MedGemma when HF_TOKEN is set; otherwise falls back, loudly, to the demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
py=.venv/bin/python

export MODEL_DIR="${MODEL_DIR:-medgemma-model}"
complete() { "$py" -c 'import sys; from healer.model.model_dir import missing_files; sys.exit(bool(missing_files(sys.argv[1])))' "$1" 2>/dev/null; }

if ! complete "$MODEL_DIR"; then
  if [[ -n ${HF_TOKEN:-}${MY_HF_TOKEN:-} ]]; then
    "$py" download.py
  else
    export MODEL_DIR="${DEMO_MODEL_DIR:-demo-model}"
    complete "$MODEL_DIR" || "$py" download.py --demo
    cat >&2 <<'MSG'
########################################################################
#  No MedGemma weights and no HF_TOKEN: serving the DEMO MODEL.        #
#  Its weights are random and its answers are MEANINGLESS.             #
#  For MedGemma: accept its licence on Hugging Face, then              #
#  HF_TOKEN=hf_... make run                                            #
########################################################################
MSG
  fi
fi
# The upload page at /app/: built once when missing and npm is at hand; the API works without it.
if [[ ! -d frontend/dist ]] && command -v npm >/dev/null; then
  { npm --prefix frontend ci --no-audit --no-fund && npm --prefix frontend run build; } \
    || echo "serve: could not build the page (frontend/); serving the API only" >&2
fi
exec "$py" main.py
