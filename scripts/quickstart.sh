#!/usr/bin/env bash
# The main job on the embedded default: sets up .venv if needed, then runs
# `earthvlm quickstart`. Extra arguments go to the command (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${EARTHVLM_VENV:-.venv}/bin/earthvlm" quickstart "$@"
