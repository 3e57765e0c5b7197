"""dreamer_trl.report.curves and recipes/plot_runs.py on fake run directories in the CSVLogger layout."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from dreamer_trl.report import curves

PLOT_RUNS = Path(__file__).resolve().parents[1] / "recipes" / "plot_runs.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOSSES = ["loss/model_kl", "loss/kl", "loss/model_reco", "loss/model_reward", "loss/actor", "loss/value"]


def fake_run(root: Path, name: str, task="cartpole_swingup", seed=0, steps=(10_000, 20_000, 30_000),
             preset="state", **fields) -> Path:
    """A run directory as recipes/dreamer_dmc.py writes it: config.json, logs/scalars/<group>/<name>.csv.
    ``fields``: extra config fields as group__field=value (e.g. behavior__kind="planner")."""
    run = root / name
    (run / "logs" / "scalars").mkdir(parents=True)
    config = {"preset": preset, "env": {"task": task, "from_pixels": False},
              "run": {"seed": seed, "run_dir": str(root), "run_name": name}, "schedule": {"total_env_steps": steps[-1]}}
    for key, value in fields.items():
        group, leaf = key.split("__")
        config.setdefault(group, {})[leaf] = value
    (run / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(seed)
    series = {"eval/return": [(s, s / 100 + rng.normal()) for s in steps],
              **{k: [(s, rng.random()) for s in range(5000, steps[-1] + 1, 1000)] for k in LOSSES}}
    for key, rows in series.items():
        path = run / "logs" / "scalars" / f"{key}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{s},{v}\n" for s, v in rows))
    return run


def test_read_run(tmp_path):
    run = fake_run(tmp_path, "a")
    with open(run / "logs" / "scalars" / "eval" / "return.csv", "a") as f:
        f.write("20000,7.0\n")  # a resumed run wrote step 20000 again: the last row wins
    out = curves.read_run(run)
    assert out["task"] == "cartpole_swingup" and out["name"] == "a"
    assert set(out["scalars"]) == {"eval/return", *LOSSES}
    np.testing.assert_array_equal(out["scalars"]["eval/return"][:, 0], [10_000, 20_000, 30_000])
    assert out["scalars"]["eval/return"][1, 1] == 7.0
    with pytest.raises(FileNotFoundError, match="run directory"):
        curves.read_run(tmp_path / "missing")


def test_aggregate_over_seeds_with_different_steps():
    a = np.array([[0, 0.0], [10, 10.0], [20, 20.0]])
    b = np.array([[0, 2.0], [20, 4.0]])
    steps, mean, low, high = curves.aggregate([a, b])
    np.testing.assert_array_equal(steps, [0, 10, 20])
    np.testing.assert_allclose(mean, [1, 6.5, 12])   # b interpolated to 3.0 at step 10
    np.testing.assert_allclose(low, [0, 3, 4])
    np.testing.assert_allclose(high, [2, 10, 20])


def test_returns_figure_has_published_points_for_known_task(tmp_path):
    runs = [curves.read_run(fake_run(tmp_path, f"s{i}", seed=i)) for i in range(2)]
    ax = curves.returns_figure(runs).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["ours, state, state (2 seeds)", "DreamerV1 from pixels, official", "DreamerV1 from pixels, CURL"]
    assert ax.get_title() == "cartpole_swingup"
    assert ax.get_xlabel() == "env steps (frames after action repeat)"
    assert ax.get_ylabel() == "noise-free evaluation return"
    official = ax.collections[1].get_offsets()   # [0] is the min-max band over seeds
    np.testing.assert_array_equal(official, [[100_000, 139]])   # only up to the first point past our runs


def test_returns_figure_unknown_task_has_no_reference(tmp_path):
    ax = curves.returns_figure([curves.read_run(fake_run(tmp_path, "a", task="hopper_hop"))]).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ours, state, state (1 seed)"]


def _legend(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts() if t.get_text().startswith("ours")]


def test_two_algorithms_on_one_task_are_two_lines_not_one_average(tmp_path):
    """Issue 21, item 8: a Dreamer `state` run and a `planet_state` run were one line "ours, state (2 seeds)"."""
    runs = [curves.read_run(fake_run(tmp_path, "dreamer", seed=0)),
            curves.read_run(fake_run(tmp_path, "planet", seed=0, preset="planet_state", behavior__kind="planner"))]
    fig = curves.returns_figure(runs)
    assert _legend(fig) == ["ours, planet_state, state, behavior.kind=planner (1 seed)",
                            "ours, state, state, behavior.kind=- (1 seed)"]
    assert len(fig.axes[0].lines) == 2
    losses = curves.losses_figure(runs)
    assert any("planet_state" in t.get_text() for ax in losses.axes if ax.get_legend()
               for t in ax.get_legend().get_texts())


def test_seeds_are_counted_as_seeds_and_stopping_early_is_no_variant(tmp_path):
    runs = [curves.read_run(fake_run(tmp_path, "s0", seed=0)),
            curves.read_run(fake_run(tmp_path, "s0-again", seed=0, steps=(10_000, 20_000))),
            curves.read_run(fake_run(tmp_path, "s1", seed=1))]
    assert curves.variant_labels(runs) == ["state, state"] * 3
    assert _legend(curves.returns_figure(runs)) == ["ours, state, state (3 runs, 2 seeds)"]


def test_a_changed_field_makes_its_own_variant(tmp_path):
    runs = [curves.read_run(fake_run(tmp_path, f"h{h}-s{seed}", seed=seed, behavior__horizon=h))
            for h in (5, 15) for seed in (0, 1)]
    assert _legend(curves.returns_figure(runs)) == ["ours, state, state, behavior.horizon=15 (2 seeds)",
                                                    "ours, state, state, behavior.horizon=5 (2 seeds)"]


def test_plot_runs_writes_pngs(tmp_path, capsys):
    runs = [fake_run(tmp_path, "s0", seed=0), fake_run(tmp_path, "s1", seed=1, steps=(10_000, 20_000))]
    spec = importlib.util.spec_from_file_location("plot_runs", PLOT_RUNS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = module.main([str(r) for r in runs] + ["--out", str(tmp_path / "plots")])
    assert [p.name for p in paths] == ["returns.png", "losses.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG_SIGNATURE and p.stat().st_size > 10_000
    assert capsys.readouterr().out.split() == [str(p) for p in paths]
