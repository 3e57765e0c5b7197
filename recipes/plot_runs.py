"""Plot learning curves of one or several run directories (the seeds of one variant of a task are averaged;
runs of different presets or settings are separate lines).

    python recipes/plot_runs.py runs/cartpole_balance-state-s0-* runs/cartpole_balance-state-s1-* --out plots/

Writes ``returns.png`` (noise-free evaluation return vs env steps, with published DreamerV1 points for
known tasks) and ``losses.png`` (model KL, reconstruction, reward, actor and value losses).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from dreamer_trl.report.curves import plot_losses, plot_returns


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run directories (each with config.json and logs/)")
    parser.add_argument("--out", default=".", help="output directory (default: the current one)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    paths = [plot_returns(args.run_dirs, out / "returns.png"), plot_losses(args.run_dirs, out / "losses.png")]
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
