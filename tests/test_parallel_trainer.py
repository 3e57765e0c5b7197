"""The recipe on two data-parallel ranks (gloo, localhost): end to end with torchrun's two-node rendezvous, exact
resume against an uninterrupted run, another world size refused, SIGTERM to one rank saves and stops both, a
killed rank stops the other and leaves the last checkpoint usable; --run.compile compiles on every rank."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dreamer_trl as dt
from dreamer_trl.run.checkpoint import checkpoint_dirs, verify_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "dreamer_dmc.py"
TORCHRUN = Path(sys.executable).with_name("torchrun")
SMALL = ["--preset", "debug", "--env.no-from-pixels", "--run.no-progress", "--run.threads", "1", "--run.device",
         "cpu", "--schedule.total-env-steps", "600", "--schedule.prefill-env-steps", "200",
         "--schedule.train-every", "200", "--run.checkpoint-every", "200", "--run.check-every", "1"]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def start_ranks(run_dir: Path, *args: str, world: int = 2, base=SMALL) -> list[subprocess.Popen]:
    """The ranks as torchrun would start them (its environment variables), without the launcher."""
    port = free_port()
    return [subprocess.Popen([sys.executable, str(RECIPE), *base, "--run.run-dir", str(run_dir), *args],
                             env=environment(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                                             LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                                             MASTER_PORT=str(port)),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(world)]


def finish(procs, timeout=240) -> list[tuple[int, str]]:
    return [(p.wait(timeout=timeout), p.stdout.read()) for p in procs]


def flat(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}{key}/").items()}
    return {prefix: tree}


def same_checkpoint(a: Path, b: Path) -> None:
    (sa, ma), (sb, mb) = dt.load_checkpoint(a), dt.load_checkpoint(b)
    fa, fb = flat(sa), flat(sb)
    assert fa.keys() == fb.keys()
    for key in fa:
        if isinstance(fa[key], torch.Tensor):
            assert torch.equal(fa[key], fb[key]), key
        else:
            assert fa[key] == fb[key], key
    assert ma["counters"] == mb["counters"] and ma["rng"] == mb["rng"] and ma["env_rng"] == mb["env_rng"]
    for file in sorted(p.relative_to(a) for p in (a / "replay").rglob("*") if p.is_file()):
        assert (a / file).read_bytes() == (b / file).read_bytes(), file


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory):
    """Two torchrun "nodes" on localhost, one rank each, through the c10d rendezvous."""
    run_dir = tmp_path_factory.mktemp("nodes")
    port = free_port()
    procs = [subprocess.Popen([str(TORCHRUN), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "nodes", str(RECIPE), *SMALL,
                               "--run.run-dir", str(run_dir), "--run.run-name", "run"],
                              env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    results = finish(procs)
    for code, out in results:
        assert code == 0, out[-3000:]
    return run_dir / "run", results


def test_two_torchrun_nodes_train_the_debug_preset_end_to_end(two_node_run):
    run, results = two_node_run
    assert any("done: 600 env steps, 6 updates" in out for _, out in results)
    for root in ("checkpoints", "checkpoints_rank1"):
        assert [d.name for d in checkpoint_dirs(run / root)][-1] == "0000000600"
    _, meta = dt.load_checkpoint(run / "checkpoints" / "0000000600")
    assert meta["config"]["run"]["world_size"] == 2 and meta["counters"]["updates"] == 6
    assert (run / "logs").is_dir() and not list(run.glob("logs_rank*"))


def test_a_resumed_two_rank_run_reproduces_the_uninterrupted_one(two_node_run, tmp_path):
    run, _ = two_node_run
    for code, out in finish(start_ranks(tmp_path, "--run.run-name", "run", "--run.stop-at-env-steps", "400")):
        assert code == 0, out[-3000:]
    resume = ["--resume", str(tmp_path / "run"), "--run.no-progress", "--run.threads", "1"]
    for code, out in finish(start_ranks(tmp_path, base=resume)):
        assert code == 0, out[-3000:]
    for root in ("checkpoints", "checkpoints_rank1"):
        same_checkpoint(run / root / "0000000600", tmp_path / "run" / root / "0000000600")


def test_another_world_size_is_refused_naming_both(two_node_run):
    run, _ = two_node_run
    single = subprocess.run([sys.executable, str(RECIPE), "--resume", str(run)], env=environment(),
                            capture_output=True, check=False, text=True, timeout=120)
    assert single.returncode == 2 and "written by 2 rank(s), this run has 1" in single.stderr, single.stderr[-2000:]


def test_sigterm_to_one_rank_saves_and_stops_both(tmp_path):
    procs = start_ranks(tmp_path, "--run.run-name", "run", "--schedule.total-env-steps", "100000")
    first = tmp_path / "run" / "checkpoints" / "0000000200"
    deadline = time.time() + 180
    while not first.is_dir() and time.time() < deadline and procs[0].poll() is None:
        time.sleep(0.5)
    procs[1].send_signal(signal.SIGTERM)
    results = finish(procs)
    assert [code for code, _ in results] == [143, 143], results[0][1][-2000:]
    steps = [checkpoint_dirs(tmp_path / "run" / root)[-1].name for root in ("checkpoints", "checkpoints_rank1")]
    assert steps[0] == steps[1] and int(steps[0]) >= 200
    verify_checkpoint(tmp_path / "run" / "checkpoints" / steps[0])


def test_a_killed_rank_stops_the_other_and_the_last_checkpoint_resumes(tmp_path):
    procs = start_ranks(tmp_path, "--run.run-name", "run", "--schedule.total-env-steps", "100000",
                        "--run.checkpoint-every", "200")
    first = tmp_path / "run" / "checkpoints" / "0000000200"
    deadline = time.time() + 180
    while not first.is_dir() and time.time() < deadline and procs[0].poll() is None:
        time.sleep(0.5)
    procs[1].kill()
    code, out = procs[0].wait(timeout=120), procs[0].stdout.read()
    assert code not in (0, 143), out[-2000:]
    assert "Connection" in out or "connection" in out or "Gloo" in out or "gloo" in out, out[-2000:]
    last = checkpoint_dirs(tmp_path / "run" / "checkpoints")[-1]
    verify_checkpoint(last)
    assert (tmp_path / "run" / "checkpoints_rank1" / last.name).is_dir()


# The recipe's main on one rank, with torch.compile watched: (what was compiled, backend) is printed at the end.
COMPILE_PROBE = """
import importlib.util, json, sys
import torch

compiled = []
module_compile, torch_compile = torch.nn.Module.compile, torch.compile

def watch_module(self, *args, **kwargs):
    compiled.append([type(self).__name__, kwargs.get("backend")])
    return module_compile(self, *args, **kwargs)

def watch(fn, *args, **kwargs):
    compiled.append([getattr(fn, "__name__", type(fn).__name__), kwargs.get("backend")])
    return torch_compile(fn, *args, **kwargs)

torch.nn.Module.compile, torch.compile = watch_module, watch
spec = importlib.util.spec_from_file_location("dreamer_dmc", sys.argv[1])
recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)
summary = recipe.main(sys.argv[2:])
print("COMPILED " + json.dumps(compiled))
print("SUMMARY " + json.dumps(summary))
"""


@pytest.mark.parametrize("world", [1, 2])
def test_run_compile_compiles_the_networks_on_every_rank(tmp_path, world):
    """--run.compile means under torchrun what it means in one process: each rank compiles its networks and the
    RSSM steps with --run.compile-backend (the recipe and torchrun share one make_trainer), and trains."""
    port = free_port()
    small = list(SMALL)
    small[small.index("--schedule.total-env-steps") + 1] = "400"
    procs = [subprocess.Popen([sys.executable, "-c", COMPILE_PROBE, str(RECIPE), *small, "--run.run-dir", str(tmp_path),
                               "--run.run-name", "run", "--run.compile", "--run.compile-backend", "aot_eager"],
                              env=environment(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                                              LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                                              MASTER_PORT=str(port)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(world)]
    for rank, (code, out) in enumerate(finish(procs)):
        assert code == 0, out[-3000:]
        lines = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in out.splitlines()
                 if line.startswith(("COMPILED ", "SUMMARY "))}
        names = {name for name, _ in lines["COMPILED"]}
        assert {"posterior_step", "prior_step", "GRUCellCore"} <= names, (rank, lines["COMPILED"])  # core: observe's step
        modules = [name for name, _ in lines["COMPILED"] if name[0].isupper()]  # encoder, decoder, heads, actor
        assert len(modules) >= 4, (rank, lines["COMPILED"])
        assert {backend for _, backend in lines["COMPILED"]} == {"aot_eager"}, (rank, lines["COMPILED"])
        assert lines["SUMMARY"]["env_steps"] == 400 and lines["SUMMARY"]["updates"] == 4, (rank, lines["SUMMARY"])
