"""The package as a user installs it: a wheel built from the source tree, installed non-editable into a fresh
virtual environment, imports every module and runs one update from there (not from this checkout)."""
from __future__ import annotations

import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMOKE = """
import importlib, pkgutil, sys
from pathlib import Path
import dreamer_trl
where = Path(dreamer_trl.__file__).resolve()
assert where.is_relative_to(Path(sys.argv[1]).resolve()), f"imported from {where}, not the fresh venv"
for info in pkgutil.walk_packages(dreamer_trl.__path__, "dreamer_trl."):
    importlib.import_module(info.name)
import torch
from tensordict import TensorDict
from dreamer_trl.builders.agent import make_agent, make_update
from dreamer_trl.config import make_preset
cfg = make_preset("debug")
cfg.env.from_pixels = False
torch.manual_seed(0)
agent = make_agent("observation", (5,), 1, cfg)
update = make_update(agent, cfg.optim)
B, T = 2, 6
is_init = torch.zeros(B, T, 1, dtype=torch.bool)
is_init[:, 0] = True
batch = TensorDict({"observation": torch.randn(B, T, 5), "action": torch.rand(B, T, 1) * 2 - 1,
                    "prev_action": torch.zeros(B, T, 1), "is_init": is_init,
                    ("next", "reward"): torch.randn(B, T, 1)}, [B, T])
metrics = update.update(batch)
assert all(torch.isfinite(v).all() for v in metrics.values()), metrics
print("ok", where)
"""


@pytest.mark.slow
def test_wheel_installs_non_editable_and_runs_an_update(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dreamer_trl", src / "dreamer_trl", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(src)], check=True, capture_output=True)
    (wheel,) = wheels.glob("dreamer_trl-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    fresh_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies (torch, torchrl, ...) come from this interpreter's site-packages as a plain path entry: the
    # .pth files there (this checkout's editable install among them) are not processed for it.
    (fresh_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                    str(fresh_site), str(wheel)], check=True, capture_output=True)
    installed = sorted(p.relative_to(fresh_site).as_posix() for p in (fresh_site / "dreamer_trl").rglob("__init__.py"))
    expected = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "dreamer_trl").rglob("__init__.py"))
    assert installed == expected

    run = subprocess.run([str(python), "-c", SMOKE, str(env_dir)], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok")
