"""Run-keeping: checkpoints, whole-run state, preemption and preflight checks."""
