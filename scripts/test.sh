#!/usr/bin/env bash
# Set up and run the test suite (CPU; GPU-only tests skip themselves).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/python -m pytest -q "$@"
