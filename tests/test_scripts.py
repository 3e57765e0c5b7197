"""The README's two commands: scripts/train.sh applies extra flags on top of the state preset it runs by default
(and --help shows those values), and the setup it sources installs once, not at every call (issue 21, 5-6)."""
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def train_sh(*args):
    return subprocess.run(["bash", str(ROOT / "scripts" / "train.sh"), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="needs the project's .venv")
def test_train_sh_flags_apply_on_top_of_the_state_preset_and_setup_is_quiet():
    train_sh("--help")  # installs if pyproject.toml changed since the last install
    start = time.monotonic()
    out = train_sh("--env.task", "cartpole_swingup", "--help")
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stderr[-2000:]
    text = " ".join(out.stdout.split())
    assert "cartpole_swingup" in text and "60000" in text.replace("_", "")  # the state preset's budget, not 1M
    assert "(default: state)" in text
    assert "setuptools" not in out.stderr and "pip" not in out.stderr
    assert elapsed < 15, elapsed  # no reinstall (pip install -e took 4-7 s each call)


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="needs the project's .venv")
def test_train_sh_keeps_an_explicit_preset(tmp_path):
    out = train_sh("--preset", "paper", "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "1000000" in " ".join(out.stdout.split()).replace("_", "")
