"""dreamer_trl.run.checkpoint: round trips, atomic overwrite, and refusing pickled code."""
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from dreamer_trl.run import checkpoint
from dreamer_trl.run.checkpoint import load_checkpoint, save_checkpoint


def _adam_state(seed: int = 0) -> tuple[nn.Module, dict]:
    """A small model and its Adam state dict after one step (so it holds exp_avg tensors)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.ELU(), nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    model(torch.randn(5, 3)).pow(2).mean().backward()
    opt.step()
    return model, opt.state_dict()


def _state(seed: int = 0) -> dict:
    model, opt_state = _adam_state(seed)
    return {
        "world_model": model.state_dict(),
        "nested": {"a": torch.arange(4), "b": {"c": torch.ones(2, 3, dtype=torch.uint8)}},
        "optimizers": {"model": opt_state},
        "step": 7 + seed,
    }


def _meta(seed: int = 0) -> dict:
    return {"env_steps": 800 + seed, "updates": 4, "evaluations": [[400, 1.5]], "preset": "debug",
            "config": {"schedule": {"batch_size": 4}}}


def _assert_same(a, b):
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def _leftovers(parent) -> list[str]:
    """Hidden staging / backup directories save_checkpoint may have left beside the target."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_round_trip(tmp_path):
    state, meta = _state(), _meta()
    out = save_checkpoint(tmp_path / "ckpt", state, meta)
    assert out == tmp_path / "ckpt"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "meta.json", "state.pt"]
    loaded, loaded_meta = load_checkpoint(out)
    _assert_same(state, loaded)
    assert loaded_meta == meta
    assert _leftovers(tmp_path) == []


def test_optimizer_state_loads_back_into_adam(tmp_path):
    model, opt_state = _adam_state()
    save_checkpoint(tmp_path / "ckpt", {"opt": opt_state, "model": model.state_dict()}, {})
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    opt.load_state_dict(loaded["opt"])
    assert opt.state_dict()["state"][0]["step"] == 1
    _assert_same(opt_state, opt.state_dict())


def test_creates_parent_directories(tmp_path):
    target = tmp_path / "a" / "b" / "ckpt"
    save_checkpoint(target, {"x": torch.zeros(1)}, {"k": 1})
    assert load_checkpoint(target)[1] == {"k": 1}


def test_overwrite_keeps_the_new_checkpoint_complete(tmp_path):
    target = tmp_path / "ckpt"
    save_checkpoint(target, _state(0), _meta(0))
    save_checkpoint(target, _state(1), _meta(1))
    loaded, meta = load_checkpoint(target)
    _assert_same(_state(1), loaded)
    assert meta == _meta(1)
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "meta.json", "state.pt"]
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fail_in", ["torch.save", "json.dumps"])
def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch, fail_in):
    target = tmp_path / "ckpt"
    save_checkpoint(target, _state(0), _meta(0))

    real_save = torch.save

    def save_then_crash(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # a partial new state.pt is on disk when the crash comes
        raise KeyboardInterrupt("crash during save")

    def dumps_crash(*args, **kwargs):
        raise RuntimeError("crash during save")

    if fail_in == "torch.save":
        monkeypatch.setattr(checkpoint.torch, "save", save_then_crash)
    else:
        monkeypatch.setattr(checkpoint.json, "dumps", dumps_crash)
    with pytest.raises((KeyboardInterrupt, RuntimeError), match="crash during save"):
        save_checkpoint(target, _state(1), _meta(1))
    monkeypatch.undo()

    loaded, meta = load_checkpoint(target)
    _assert_same(_state(0), loaded)
    assert meta == _meta(0)
    assert _leftovers(tmp_path) == []


def test_crash_during_swap_keeps_previous_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    save_checkpoint(target, _state(0), _meta(0))
    real_rename = Path.rename

    def rename(self, new):
        if Path(new) == target:  # the staging -> target move, after target was moved aside
            raise KeyboardInterrupt("crash during swap")
        return real_rename(self, new)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, _state(1), _meta(1))
    monkeypatch.undo()
    loaded, meta = load_checkpoint(target)
    assert meta in (_meta(0), _meta(1))


def test_killed_between_renames_loads_the_previous_checkpoint(tmp_path):
    """SIGKILL after the old checkpoint was moved aside and before the new one moved in."""
    target = tmp_path / "ckpt"
    save_checkpoint(target, _state(0), _meta(0))
    target.rename(tmp_path / ".ckpt.old")
    loaded, meta = load_checkpoint(target)
    assert meta == _meta(0)
    save_checkpoint(target, _state(1), _meta(1))
    assert load_checkpoint(target)[1] == _meta(1) and not (tmp_path / ".ckpt.old").exists()


def test_crash_on_first_save_leaves_nothing(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ckpt", _state(), _meta())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["state.pt", "meta.json", None])
def test_missing_file_is_named(tmp_path, missing):
    target = tmp_path / "ckpt"
    if missing is None:  # no checkpoint directory at all
        with pytest.raises(FileNotFoundError, match="ckpt does not exist"):
            load_checkpoint(target)
        return
    save_checkpoint(target, _state(), _meta())
    (target / missing).unlink()
    with pytest.raises(FileNotFoundError) as exc:
        load_checkpoint(target)
    assert missing in str(exc.value) and str(target) in str(exc.value)


class _Payload:
    """Unpickling this calls ``os.system`` to create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.parametrize("wrap", [lambda p: p, lambda p: {"world_model": {"weight": torch.zeros(1), "evil": p}}],
                         ids=["top_level", "nested"])
def test_refuses_pickled_code(tmp_path, wrap):
    target, marker = tmp_path / "ckpt", tmp_path / "pwned"
    save_checkpoint(target, {"x": torch.zeros(1)}, {"ok": True})
    torch.save(wrap(_Payload(marker)), target / "state.pt")
    # a crafted checkpoint comes with a matching manifest
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"]["state.pt"] = (target / "state.pt").stat().st_size
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception) as exc:
        load_checkpoint(target)
    assert not isinstance(exc.value, FileNotFoundError)
    assert not marker.exists()
    # Control: the payload is live, an unrestricted unpickler runs it.
    torch.load(target / "state.pt", weights_only=False)
    assert marker.exists()


_CHILD = r"""
import resource, signal, sys, torch
from dreamer_trl.run.checkpoint import save_checkpoint
target, mode = sys.argv[1], sys.argv[2]
if mode == "fsize":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
print("saving", flush=True)
save_checkpoint(target, {"big": torch.ones(64 << 20, dtype=torch.uint8)}, {"n": 1})
print("saved", flush=True)
"""


def _run_child(target, mode):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", _CHILD, str(target), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_during_save_leaves_the_last_good_checkpoint(tmp_path):
    import signal

    target = tmp_path / "ckpt"
    save_checkpoint(target, _state(0), _meta(0))
    child = _run_child(target, "kill")
    assert child.stdout.readline().strip() == "saving"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    loaded, meta = load_checkpoint(target)
    assert meta in (_meta(0), {"n": 1})
    if meta == _meta(0):
        _assert_same(_state(0), loaded)


def test_file_size_limit_makes_the_save_fail_cleanly(tmp_path):
    target = tmp_path / "ckpt"
    save_checkpoint(target, _state(0), _meta(0))
    child = _run_child(target, "fsize")
    out, err = child.communicate(timeout=120)
    assert child.returncode != 0 and "saved" not in out
    assert "File too large" in err or "EFBIG" in err or "error" in err.lower()
    loaded, meta = load_checkpoint(target)
    assert meta == _meta(0)
    _assert_same(_state(0), loaded)
    assert _leftovers(tmp_path) == []


def test_a_truncated_file_is_detected_by_the_manifest(tmp_path):
    target = save_checkpoint(tmp_path / "ckpt", _state(0), _meta(0))
    data = (target / "state.pt").read_bytes()
    (target / "state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="state.pt has .* the manifest says"):
        load_checkpoint(target)


def test_the_manifest_holds_each_files_size_and_crc32(tmp_path):
    import zlib

    target = save_checkpoint(tmp_path / "ckpt", _state(0), _meta(0))
    files = json.loads((target / "manifest.json").read_text())["files"]
    assert sorted(files) == ["meta.json", "state.pt"]
    for name, entry in files.items():
        data = (target / name).read_bytes()
        assert entry == {"bytes": len(data), "crc32": f"{zlib.crc32(data):08x}"}


@pytest.mark.parametrize("name", ["state.pt", "meta.json"])
def test_same_size_garbage_is_detected_by_the_checksum(tmp_path, name):
    target = save_checkpoint(tmp_path / "ckpt", _state(0), _meta(0))
    data = bytearray((target / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    (target / name).write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match=f"{name} has CRC-32 .* the manifest says"):
        load_checkpoint(target)


def test_no_unsafe_load_in_the_sources():
    """P7: every torch.load uses weights_only=True; nothing unpickles."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in [*root.glob("dreamer_trl/*.py"), *root.glob("recipes/*.py")]:
        text = path.read_text()
        assert not re.search(r"\bpickle\.loads?\(|\bdill\b|cloudpickle\.loads?", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
        assert "allow_pickle=True" not in text, path
