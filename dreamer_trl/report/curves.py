"""Learning curves from run directories: evaluation return and training losses against env steps.

A run directory (written by ``recipes/dreamer_dmc.py``) holds ``config.json`` and TorchRL ``CSVLogger``
scalars at ``logs/scalars/<group>/<name>.csv``, one ``step,value`` row per call, no header. Runs of the
same task and the same variant (the preset, the observation and every config field that differs between the
task's runs, outside ``run`` and the schedule's length) are grouped: mean line and min-max band over their seeds.
Two algorithms are never averaged into one line. Env steps are frames after action repeat.

Shapes: a curve is float ``[N, 2]`` rows of (env step, value), sorted by step.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# DreamerV1 evaluation return from pixels at (env steps): docs/sources.md, "Score anchors".
# "official": the official DreamerV1 curves (5 seeds), Hafner et al. 2020, at 1e5 / 5e5 / 1e6.
# "CURL": Dreamer as reported in the CURL paper (Laskin et al. 2020) at 1e5 / 5e5.
PUBLISHED_RETURNS = {
    "walker_walk": {"official": {100_000: 137, 500_000: 886, 1_000_000: 956}, "CURL": {100_000: 277, 500_000: 897}},
    "cheetah_run": {"official": {100_000: 128, 500_000: 630, 1_000_000: 713}, "CURL": {100_000: 235, 500_000: 570}},
    "cartpole_swingup": {"official": {100_000: 139, 500_000: 678, 1_000_000: 855},
                         "CURL": {100_000: 326, 500_000: 762}},
    "reacher_easy": {"official": {100_000: 125, 500_000: 430, 1_000_000: 603}, "CURL": {100_000: 314, 500_000: 793}},
    # "cup_catch" in the papers is the suite's ball_in_cup catch.
    "ball_in_cup_catch": {"official": {100_000: 73, 500_000: 962, 1_000_000: 967},
                          "CURL": {100_000: 246, 500_000: 879}},
    "finger_spin": {"official": {100_000: 8, 500_000: 339, 1_000_000: 515}, "CURL": {100_000: 341, 500_000: 796}},
}
RETURN_KEY = "eval/return"
# Panels of the loss figure: (title, [(scalar name, label)]).
LOSS_PANELS = [
    ("model KL", [("loss/model_kl", "loss (after free nats)"), ("loss/kl", "raw KL")]),
    ("reconstruction", [("loss/model_reco", "-log p(o|s)")]),
    ("reward", [("loss/model_reward", "-log p(r|s)")]),
    ("actor", [("loss/actor", "-V_lambda")]),
    ("value", [("loss/value", "value loss")]),
    ("imagined reward", [("loss/imagined_reward", "mean imagined reward")]),
]


def _read_csv(path: Path) -> np.ndarray:
    """``step,value`` rows sorted by step; for a step written twice (a resumed run) the last row wins."""
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            step, value = line.split(",")[:2]
            rows[float(step)] = float(value)
    return np.array(sorted(rows.items()), dtype=np.float64).reshape(-1, 2)


def read_run(run_dir: str | Path) -> dict:
    """{"name", "task", "config", "scalars": {scalar name: curve [N, 2]}} for one run directory."""
    run_dir = Path(run_dir)
    config_path, scalar_dir = run_dir / "config.json", run_dir / "logs" / "scalars"
    if not config_path.is_file() or not scalar_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run directory (needs config.json and logs/scalars/)")
    config = json.loads(config_path.read_text())
    scalars = {p.relative_to(scalar_dir).with_suffix("").as_posix(): _read_csv(p)
               for p in sorted(scalar_dir.rglob("*.csv"))}
    return {"name": run_dir.name, "task": config["env"]["task"], "config": config, "scalars": scalars}


def aggregate(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, min, max) over runs, each run interpolated onto the union of steps within its range."""
    steps = np.unique(np.concatenate([c[:, 0] for c in curves]))
    values = np.full((len(curves), len(steps)), np.nan)
    for i, c in enumerate(curves):
        inside = (steps >= c[0, 0]) & (steps <= c[-1, 0])
        values[i, inside] = np.interp(steps[inside], c[:, 0], c[:, 1])
    return steps, np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)


# Fields that tell runs of one variant apart without making another variant: the run's own keeping (seed,
# directories, threads, device) and how long it was scheduled to go.
_NOT_VARIANT = ("run.", "env.task", "schedule.total_env_steps")


def _flat(config: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        else:
            out[name] = json.dumps(value, sort_keys=True)
    return out


def variant_labels(runs: list[dict]) -> list[str]:
    """One label per run: "preset, observation" plus each field whose value differs between runs of its task.

    Runs with the same label are seeds of one variant; the run's seed and directories never make a variant."""
    flat = [{k: v for k, v in _flat(r["config"]).items() if not k.startswith(_NOT_VARIANT)} for r in runs]
    labels = []
    for run, fields in zip(runs, flat):
        peers = [f for r, f in zip(runs, flat) if r["task"] == run["task"]]
        differing = sorted(k for k in set().union(*peers) if len({p.get(k) for p in peers}) > 1
                           and k not in ("preset", "env.from_pixels"))
        obs = "pixels" if run["config"].get("env", {}).get("from_pixels", True) else "state"
        parts = [str(run["config"].get("preset", "?")), obs]
        parts += [f"{k}={json.loads(fields[k]) if k in fields else '-'}" for k in differing]
        labels.append(", ".join(parts))
    return labels


def _groups(runs: list[dict], key: str) -> dict[tuple[str, str], list[tuple[int, np.ndarray]]]:
    """{(task, variant label): [(seed, curve), ...]} for the runs that logged ``key``."""
    groups = defaultdict(list)
    for run, label in zip(runs, variant_labels(runs)):
        curve = run["scalars"].get(key)
        if curve is not None and len(curve):
            groups[(run["task"], label)].append((run["config"].get("run", {}).get("seed"), curve))
    return groups


def _seeds(members: list[tuple[int, np.ndarray]]) -> str:
    """"3 seeds", or "3 runs, 2 seeds" when a seed was run twice."""
    seeds = len({seed for seed, _ in members})
    counted = f"{seeds} seed{'s' if seeds != 1 else ''}"
    return counted if seeds == len(members) else f"{len(members)} runs, {counted}"


def _plot_group(ax, members: list[tuple[int, np.ndarray]], label: str, color) -> None:
    curves = [c for _, c in members]
    steps, mean, low, high = aggregate(curves)
    ax.plot(steps, mean, color=color, marker="o" if len(steps) < 30 else None, ms=3,
            label=f"{label} ({_seeds(members)})")
    if len(curves) > 1:
        ax.fill_between(steps, low, high, color=color, alpha=0.2, lw=0)


def _plot_published(ax, task: str, last_step: float) -> None:
    """Published points up to the first reference step at or beyond our runs' last step."""
    published = PUBLISHED_RETURNS.get(task)
    if not published:
        return
    steps = sorted({s for points in published.values() for s in points})
    limit = next((s for s in steps if s >= last_step), steps[-1])
    for (source, points), marker in zip(published.items(), ("*", "D")):
        shown = {s: v for s, v in points.items() if s <= limit}
        ax.scatter(list(shown), list(shown.values()), marker=marker, s=70, color="black", zorder=3,
                   label=f"DreamerV1 from pixels, {source}")


def plot_returns(run_dirs: list[str | Path], out_png: str | Path) -> Path:
    """Noise-free evaluation return vs env steps, one subplot per task, with published DreamerV1 points."""
    return _save(returns_figure([read_run(d) for d in run_dirs]), out_png)


def returns_figure(runs: list[dict]):
    """The figure of :func:`plot_returns` from :func:`read_run` outputs."""
    groups = _groups(runs, RETURN_KEY)
    if not groups:
        raise ValueError(f"no {RETURN_KEY!r} scalars in runs {[r['name'] for r in runs]}")
    tasks = sorted({task for task, _ in groups})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        variants = sorted(label for t, label in groups if t == task)
        for i, label in enumerate(variants):
            _plot_group(ax, groups[(task, label)], f"ours, {label}", f"C{i}")
        _plot_published(ax, task, max(c[-1, 0] for label in variants for _, c in groups[(task, label)]))
        ax.set(title=task, xlabel="env steps (frames after action repeat)", ylabel="noise-free evaluation return")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_losses(run_dirs: list[str | Path], out_png: str | Path) -> Path:
    """Training losses vs env steps (model KL, reconstruction, reward, actor, value), one colour per task and variant."""
    return _save(losses_figure([read_run(d) for d in run_dirs]), out_png)


def losses_figure(runs: list[dict]):
    """The figure of :func:`plot_losses` from :func:`read_run` outputs."""
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for ax, (title, series) in zip(axes.flat, LOSS_PANELS):
        for (key, label), style in zip(series, ("-", "--")):
            for i, ((task, variant), members) in enumerate(sorted(_groups(runs, key).items())):
                curves = [c for _, c in members]
                steps, mean, low, high = aggregate(curves)
                ax.plot(steps, mean, style, color=f"C{i}", label=f"{task}, {variant}: {label}", lw=1.2)
                if len(curves) > 1:
                    ax.fill_between(steps, low, high, color=f"C{i}", alpha=0.15, lw=0)
        ax.set(title=title, xlabel="env steps (frames after action repeat)")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.suptitle("training losses (last update of each training phase; band: min-max over seeds)")
    return fig


def _save(fig, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
