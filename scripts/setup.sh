#!/usr/bin/env bash
# Create ./.venv if needed and install dreamer_trl with its test dependencies (sourced by train.sh / test.sh).
# Installs once; again only when pyproject.toml changes (its hash and the checkout's path are kept in .venv/.installed), quietly: pip's
# output goes to .venv/install.log and is shown only if the install fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv (once; a few minutes)" >&2
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip > .venv/install.log 2>&1 || { cat .venv/install.log >&2; exit 1; }
fi
stamp="$(pwd) $(sha256sum pyproject.toml | cut -d' ' -f1)"  # this checkout, this pyproject
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
  # torch is pinned to 2.13.0 in pyproject.toml: on CPU machines that is the CPU wheel, not GBs of CUDA packages.
  .venv/bin/python -m pip install -q -e ".[test]" > .venv/install.log 2>&1 || { cat .venv/install.log >&2; exit 1; }
  echo "$stamp" > .venv/.installed
fi
export MUJOCO_GL=${MUJOCO_GL:-egl}
