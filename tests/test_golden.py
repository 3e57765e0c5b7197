"""Golden tests: the update of every variant pinned by its numbers.

For each case the agent is built from a fixed seed through the public builders (``make_agent`` and
``make_update`` with the preset's optimiser config), then 3 full updates run on fixed synthetic batches on
the CPU with 1 thread. Every loss term of every update is compared with ``tests/golden/updates.json``, and
so is a fingerprint of the parameters: for each parameter tensor its element count, float64 sum and sum of
absolute values, sorted. The fingerprint does not depend on parameter names or on the order in which modules
are registered, so a refactor that renames or moves parts stays green as long as it computes the same
numbers; initialisation is part of what is pinned, so the order in which the networks draw from the RNG
still matters.

The cases run in one child process with ``MKL_CBWR=AVX2,STRICT`` (MKL's conditional numerical
reproducibility, which must be set before MKL starts): without it MKL picks its kernels by the CPU's
instruction set, and the V1 pixel case, the most sensitive, moved by 3e-4 in its losses between an AVX-512
machine and the machine that pinned it; with it the two agree to 6e-7.

A refactor keeps this green. A deliberate change of numerics regenerates the file in its own commit
that says why:

    python tests/test_golden.py --regenerate
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_batch  # noqa: E402

from dreamer_trl.builders.agent import make_agent, make_update  # noqa: E402
from dreamer_trl.config import DreamerConfig, apply_size, make_preset, set_field  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "updates.json"
UPDATES = 3
REPRODUCIBLE = {"MKL_CBWR": "AVX2,STRICT"}


def _config(preset: str | None, changes: dict, size: str | None = None) -> DreamerConfig:
    cfg = make_preset(preset) if preset else DreamerConfig()
    if size:
        cfg = apply_size(cfg, size)
    for name, value in changes.items():
        set_field(cfg, name, value)
    return cfg


def _widths(state_dim: int, belief: int, hidden: int, units: int, **more) -> dict:
    """The fields that V1's ``model.state_dim/belief_dim/rssm_hidden/mlp_hidden`` were (format 2's flat names)."""
    return {"world_model.latent.state_dim": state_dim, "world_model.rssm.belief_dim": belief,
            "world_model.rssm.hidden": hidden, "world_model.units": units, "behavior.actor.units": units,
            "behavior.critic.units": units, **more}


SMALL = _widths(4, 16, 16, 16, **{"world_model.cnn_depth": 4, "world_model.latent.classes": 4,
                                  "behavior.horizon": 4})

# name: (obs_key, obs_shape, action dim, config, batch B x T)
CASES = {
    "paper_pixels": ("pixels", (3, 64, 64), 2, _config(None, _widths(8, 32, 32, 32, **{"world_model.cnn_depth": 4})),
                     (3, 8)),
    "state": ("observation", (5,), 1,
              _config(None, _widths(16, 128, 128, 200, **{"world_model.vector_units": 200,
                                                           "world_model.loss.free_nats": 0.0})), (4, 10)),
    "planet_state": ("observation", (5,), 1, _config("planet_state", {}), (4, 10)),
    "dreamer_v2": ("pixels", (3, 64, 64), 2, _config("dreamer_v2", SMALL), (2, 6)),
    "dreamer_v3": ("pixels", (3, 64, 64), 2, _config("dreamer_v3", SMALL), (2, 6)),
    "dreamer_v3_proprio": ("observation", (5,), 2,
                           _config("dreamer_v3_proprio", {**SMALL, "world_model.vector_layers": 2,
                                                          "world_model.vector_units": 16}), (2, 6)),
    "dreamer_v3_current": ("pixels", (3, 64, 64), 2,
                           _config("dreamer_v3_current", {"behavior.horizon": 4}, size="size1m"), (2, 6)),
    "dreamer_v3_proprio_current": ("observation", (5,), 2,
                                   _config("dreamer_v3_proprio_current", {"behavior.horizon": 4}), (2, 6)),
}


def golden_batch(B, T, A, obs_key, obs_dim, seed, latents=None):
    """conftest's synthetic batch with a terminal step in the last sequence (the continue heads see both);
    ``latents=(S, D)``: with stored posteriors "state" / "belief" (what a replay context starts from)."""
    data = make_batch(B, T, A, obs_key, obs_dim, seed=seed)
    terminated = torch.zeros(B, T, 1, dtype=torch.bool)
    terminated[-1, -1] = True
    data["next", "terminated"] = terminated
    if latents is not None:
        g = torch.Generator().manual_seed(seed + 100)
        data["state"] = torch.rand(B, T, latents[0], generator=g)
        data["belief"] = torch.rand(B, T, latents[1], generator=g) * 2 - 1
    return data


def stored_latents(agent, cfg):
    """(S, D) when the preset's windows start from stored posteriors (replay context), else None."""
    if cfg.world_model.loss.window_start != "replay_context":
        return None
    return agent.world_model.rssm.state_dim, agent.world_model.rssm.belief_dim


def fingerprint(modules) -> list[list[float]]:
    """[numel, sum, sum of |.|] of every parameter, in float64, sorted: independent of names and order."""
    rows = []
    for module in modules:
        if module is None:
            continue
        for p in module.parameters():
            p64 = p.detach().double()
            rows.append([p.numel(), float(p64.sum()), float(p64.abs().sum())])
    return sorted(rows)


def run_case(name: str) -> dict:
    obs_key, obs_shape, action_dim, cfg, (B, T) = CASES[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        action_spec = None
        if cfg.behavior.kind == "planner":
            from torchrl.data import Bounded

            action_spec = Bounded(-1.0, 1.0, (action_dim,))
        agent = make_agent(obs_key, obs_shape, action_dim, cfg, action_spec=action_spec)
        updater = make_update(agent, cfg.optim)
        losses = []
        for i in range(UPDATES):
            batch = golden_batch(B, T, action_dim, obs_key, obs_shape[0], seed=100 + i,
                                 latents=stored_latents(agent, cfg))
            metrics = updater.update(batch)
            losses.append({k: float(v) for k, v in sorted(metrics.items()) if k.startswith("loss/")})
        params = fingerprint((agent.world_model, agent.actor, agent.value))
    finally:
        torch.set_num_threads(threads)
    return {"losses": losses, "params": params}


def computed_in_child(names) -> dict:
    """{case: run_case(case)} computed in a child process with MKL's reproducible mode."""
    env = {**os.environ, **REPRODUCIBLE}
    out = subprocess.run([sys.executable, __file__, "--print", *names], env=env, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent.parent).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def computed():
    return computed_in_child(sorted(CASES))


@pytest.mark.parametrize("name", sorted(CASES))
def test_update_matches_golden(name, computed):
    golden = json.loads(GOLDEN.read_text())[name]
    got = computed[name]
    assert len(got["losses"]) == len(golden["losses"]) == UPDATES
    for i, (g, e) in enumerate(zip(got["losses"], golden["losses"])):
        assert g.keys() == e.keys(), f"update {i}: loss terms {sorted(g)} != {sorted(e)}"
        for k in e:
            assert g[k] == pytest.approx(e[k], rel=1e-5, abs=1e-6), f"update {i}: {k}"
    assert len(got["params"]) == len(golden["params"]), "number of parameter tensors"
    for i, (g, e) in enumerate(zip(got["params"], golden["params"])):
        assert g[0] == e[0], f"parameter {i}: numel"
        assert g[1] == pytest.approx(e[1], rel=1e-5, abs=1e-5), f"parameter {i} ({e[0]} elements): sum"
        assert g[2] == pytest.approx(e[2], rel=1e-5, abs=1e-5), f"parameter {i} ({e[0]} elements): abs sum"


def test_fingerprint_ignores_names_and_order_but_not_values():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    both = fingerprint([a, b])
    assert both == fingerprint([b, a]) == fingerprint([torch.nn.Sequential(b, a)])
    with torch.no_grad():
        a.weight[0, 0] += 1e-3
    assert fingerprint([a, b]) != both


if __name__ == "__main__":
    flags = {"--regenerate", "--print"} & set(sys.argv)
    if len(flags) != 1:
        raise SystemExit("usage: python tests/test_golden.py --regenerate [CASE ...]")
    only = [a for a in sys.argv[1:] if a not in flags] or sorted(CASES)
    if "--print" in flags:
        print(json.dumps({name: run_case(name) for name in only}))
        raise SystemExit(0)
    data = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    data.update(computed_in_child(only))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
