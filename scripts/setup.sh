#!/usr/bin/env bash
# Create ./.venv if needed and install dreamer_trl with its test dependencies (sourced by train.sh / test.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
# torch is pinned to 2.13.0 in pyproject.toml: on CPU machines that is the CPU wheel, not GBs of CUDA packages.
.venv/bin/python -m pip install -q -e ".[test]"
export MUJOCO_GL=${MUJOCO_GL:-egl}
