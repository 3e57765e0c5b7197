#!/usr/bin/env bash
# Update time of this checkout beside an older one (a git worktree at BEFORE), alternating runs so both see the
# same machine: V1 state (8 x 32), V1 pixels (16 x 50), V3 size1m (16 x 64), one thread each, ours only.
#   git worktree add --detach /tmp/before 081e1e8 && bash benchmarks/before_after.sh /tmp/before [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=$(cd "$1" && pwd); ROUNDS=${2:-2}; AFTER=$(pwd); PY=${PYTHON:-$AFTER/.venv/bin/python}
export MUJOCO_GL=${MUJOCO_GL:-egl} OMP_NUM_THREADS=1
run() {  # TREE LABEL ARGS...: one benchmark in TREE, its JSON line tagged
  local tree=$1 label=$2; shift 2
  (cd "$tree" && PYTHONPATH="$tree" "$PY" "$@" | grep '^{' | sed "s|^|$label |")
}
for r in $(seq "$ROUNDS"); do
  for side in before after; do
    tree=$([ $side = before ] && echo "$BEFORE" || echo "$AFTER")
    run "$tree" "$side v1_state" benchmarks/bench_update.py --impl ours --preset state --obs observation --batch 8 \
      --seq 32 --action_dim 1 --updates 20 --split_updates 0 --threads 1 --json
    run "$tree" "$side v1_pixels" benchmarks/bench_update.py --impl ours --obs pixels --batch 16 --seq 50 \
      --updates 3 --warmup 2 --split_updates 0 --threads 1 --json
    run "$tree" "$side v3_size1m" benchmarks/bench_v3_update.py --impl ours --size size1m --obs state --threads 1 \
      --steps 5 --warmup 2 --rounds 1
  done
done
