#!/usr/bin/env bash
# Creates .venv if missing and installs earthvlm with what the tests and the quickstart
# need. torch is pinned to the CPU wheel on this machine's disk and installed first and
# explicitly, so that no later requirement can pull a multi-GB CUDA build; torchvision is
# never installed (its registry wheel is a CUDA build that fails beside the CPU torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.venv/.earthvlm-setup
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
echo "setting up .venv (first run: about a minute)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[train,dev,wordnet,serve]"
# WordNet 3.0 for the LRS-VQA answer rule, from a package (never downloaded when scoring)
.venv/bin/earthvlm wordnet >/dev/null
# QLoRA (NF4) on CPU: bitsandbytes ships a CPU library; --no-deps, or it pulls CUDA torch
.venv/bin/python -m pip install -q --no-deps "bitsandbytes==0.50.2"
if .venv/bin/python -c "import torchvision" 2>/dev/null; then
  echo "error: torchvision is installed in .venv; remove it (pip uninstall torchvision)" >&2
  exit 1
fi
echo "$WANT" > "$STAMP"
