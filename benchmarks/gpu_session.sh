#!/usr/bin/env bash
# GPU work of issue 5, for a session that has the device tool (an H100 or H200). Not run yet: pending.
#
# Here, once:   bash ../shared/tools/gpu_wheels.sh imageio imageio-ffmpeg tqdm tensorboard gymnasium ale-py pillow
# Then each device `run` carries [".whl"] and executes:   bash benchmarks/gpu_session.sh STEP
#   check    - the wheels import against the GPU's torch; one compiled bf16 update on CUDA (tests marked gpu)
#   bench    - update ms for ours and TorchRL at 50x50 and 200x50, eager and compiled+bf16
#   learn T  - pixels, paper preset, task T, resuming from $OUT-carried runs/ in 9-minute chunks
#   bench_v3 - DreamerV3 update ms, ours beside TorchRL's V3 (issue 11): size1m state and size12m pixels, 16x64
#   bench_v3_2023 - update ms of the presets behind the official score files (dreamer_v3_proprio, dreamer_v3)
#   learn_v3 T S - dreamer_v3_proprio on task T, seed S, 100k env steps, resuming in 9-minute chunks
#   atari100k G S - dreamer_v3_atari100k on game G (ale-py's name), seed S, resuming in 9-minute chunks; the 26 games:
#       for g in $(python3 -c "from dreamer_trl.config.presets import ATARI100K_GAMES as G; print(*G)"); do
#         for s in 0 1 2 3 4; do bash benchmarks/gpu_session.sh atari100k $g $s; done; done   # repeat until done
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD MUJOCO_GL=egl
OUT=${OUT:-/tmp/out}
case "${1:-check}" in
  check)
    python3 -c "import torch, tensordict, torchrl, dm_control, mujoco; print(torch.__version__, torch.cuda.get_device_name())"
    python3 -m pytest -q -m gpu tests/test_acceleration.py ;;
  bench)
    for b in "50 50" "200 50"; do set -- $b
      python3 benchmarks/bench_update.py --device cuda --obs pixels --batch "$1" --seq "$2" --updates 20 --markdown
      python3 benchmarks/bench_update.py --device cuda --obs pixels --batch "$1" --seq "$2" --updates 20 --impl ours \
        --compile --precision bf16 --markdown || true
    done | tee "$OUT/bench.md" ;;
  bench_v3)
    for args in "--size size1m --obs state" "--size size12m --obs pixels --action_dim 6"; do
      python3 benchmarks/bench_v3_update.py --device cuda $args --steps 20 --warmup 3 --rounds 2 --markdown
    done | tee "$OUT/bench_v3.md" ;;
  bench_v3_2023)
    for args in "--preset dreamer_v3_proprio --obs state" "--preset dreamer_v3 --obs pixels --action_dim 6"; do
      python3 benchmarks/bench_v3_update.py --device cuda --impl ours --size preset $args --steps 20 --warmup 3
    done | tee "$OUT/bench_v3_2023.jsonl" ;;
  learn_v3)
    task=${2:?task}; seed=${3:-0}; name="v3-$task-s$seed"
    timeout 540 python3 recipes/dreamer_dmc.py --preset dreamer_v3_proprio --env.task "$task" --run.seed "$seed" \
      --run.run-dir runs --run.run-name "$name" --schedule.total-env-steps 100000 --schedule.eval-every 10000 \
      --run.checkpoint-every 5000 --run.no-progress $( [ -d "runs/$name/checkpoints" ] && echo --resume "runs/$name" ) || true
    tar czf "$OUT/$name.tgz" "runs/$name/checkpoints" "runs/$name/logs" ;;
  atari100k)
    game=${2:?game}; seed=${3:-0}; name="atari100k-$game-s$seed"
    timeout 540 python3 recipes/dreamer_atari.py --env.task "$game" --run.seed "$seed" --run.run-dir runs \
      --run.run-name "$name" --run.checkpoint-every 20000 --run.compile --run.no-progress \
      $( [ -d "runs/$name/checkpoints" ] && echo --resume "runs/$name" ) || true
    tar czf "$OUT/$name.tgz" "runs/$name/checkpoints" "runs/$name/logs" ;;
  learn)
    task=${2:?task}
    timeout 540 python3 recipes/dreamer_dmc.py --preset paper --env.task "$task" --run.run-dir runs \
      --run.run-name "$task" --schedule.total-env-steps 100000 --run.checkpoint-every 10000 --run.compile \
      --run.no-progress $( [ -d "runs/$task/checkpoints" ] && echo --resume "runs/$task" ) || true
    tar czf "$OUT/$task.tgz" "runs/$task/checkpoints" "runs/$task/logs" ;;
esac
