"""docs/own_env.md, run as written: its ```python blocks in order in one namespace (a temporary working
directory, one torch thread), training a tiny agent on the page's gymnasium corridor and on its TorchRL
``EnvBase`` (``env.suite torchrl``); and a factory env without ``"terminated"`` is refused naming it."""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "own_env.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    return [m.group(2) for m in FENCE.finditer(PAGE.read_text()) if m.group(1) == "python"]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """The page's working directory: tmp_path, importable (``my_envs``), one torch thread; leaves no module."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)
    for name in ("my_envs", "my_envs_broken"):
        sys.modules.pop(name, None)


def run_page(namespace: dict) -> None:
    for i, code in enumerate(python_blocks()):
        exec(compile(code, f"{PAGE.name} block {i + 1}", "exec"), namespace)


@pytest.mark.slow
def test_the_page_trains_on_its_gymnasium_env_and_on_its_torchrl_env(in_tmp):
    import gymnasium

    assert len(python_blocks()) == 3
    ns: dict = {"__name__": "own_env_page"}
    try:
        run_page(ns)
    finally:
        gymnasium.envs.registry.pop("Corridor-v0", None)  # the page registers it; leave the registry as it was
    runs = {}
    for name in ("corridor", "corridor_torchrl"):
        run_dir = in_tmp / "runs" / name
        assert run_dir.is_dir()
        runs[name] = run_dir
        assert (run_dir / "logs").is_dir() and (run_dir / "summary.json").is_file()
        assert any((run_dir / "checkpoints").iterdir())
    summary = ns["summary"]  # the page's last run: the TorchRL env
    assert Path(summary["run_dir"]).resolve() == runs["corridor_torchrl"].resolve()
    assert summary["env_steps"] == 512 and summary["updates"] > 0
    assert [step for step, _ in summary["evaluations"]] == [512]
    assert Path(summary["checkpoint"]).exists()
    first = json.loads((runs["corridor"] / "summary.json").read_text())
    assert first["env_steps"] == 512 and [step for step, _ in first["evaluations"]] == [512]
    assert Path(first["checkpoint"]).exists()
    # the page's TorchRL env offers its random stream for an exact resume, through make_user_env's wrapper
    state = ns["env"].task_random_state()
    assert isinstance(state, dict) and "rng" in state


def test_a_factory_env_without_terminated_is_refused_naming_it(in_tmp):
    from dreamer_trl.data.user_env import make_user_env

    source = re.search(r"write_text\('{3}\n(.*?)'{3}\)", python_blocks()[2], re.S).group(1)
    (in_tmp / "my_envs.py").write_text(source)  # the page's module, as the page writes it
    (in_tmp / "my_envs_broken.py").write_text(
        "from torchrl.envs import ExcludeTransform, TransformedEnv\n"
        "from my_envs import make_env as page_env\n\n\n"
        "def make_env(seed=0):  # the page's env with its 'terminated' key dropped\n"
        "    return TransformedEnv(page_env(seed=seed), ExcludeTransform('terminated'))\n")
    make_user_env("my_envs:make_env")  # the page's env passes
    with pytest.raises(ValueError, match=r"config field 'env.task'.*lacks the done keys \['terminated'\]"):
        make_user_env("my_envs_broken:make_env")
