#!/usr/bin/env bash
# Set up and train. Default: the CPU "state" preset (about 15 minutes on 2 cores).
# Any recipe flag works: bash scripts/train.sh --preset paper --env.task walker_walk
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ $# -eq 0 ]; then set -- --preset state; fi
exec .venv/bin/python recipes/dreamer_dmc.py "$@"
