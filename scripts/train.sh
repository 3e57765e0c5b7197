#!/usr/bin/env bash
# Set up and train. Default: the CPU "state" preset (proprioceptive cartpole_balance; durations measured in
# docs/performance.md). Flags apply on top of it: bash scripts/train.sh --env.task cartpole_swingup
# Another preset: bash scripts/train.sh --preset paper --env.task walker_walk (GPU work). --help shows the values
# this command would run with.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
for arg in "$@"; do
  case "$arg" in --preset|--preset=*|--resume|--resume=*|--run.resume|--run.resume=*) exec .venv/bin/python recipes/dreamer_dmc.py "$@";; esac
done
exec .venv/bin/python recipes/dreamer_dmc.py --preset state "$@"
