#!/usr/bin/env bash
# Every test of the project, as CI runs it. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/vllm-venv.sh  # vLLM's CPU build, its own venv: the real engine behind ENGINE=vllm

# The vLLM tests fail here, rather than skip, if its venv is missing.
HEALER_REQUIRE_VLLM=1 .venv/bin/python -m pytest "$@"
scripts/test-frontend.sh
