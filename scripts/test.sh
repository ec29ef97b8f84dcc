#!/usr/bin/env bash
# Every test of the project, as CI runs it. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

.venv/bin/python -m pytest "$@"
scripts/test-frontend.sh
