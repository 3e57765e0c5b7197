"""Golden test: the Dreamer V1 update pinned by its numbers.

Builds the agent from a fixed seed, runs 3 full updates (world model, actor, value) on fixed synthetic
batches on the CPU with 1 thread, and compares every loss term of every update and two checksums of
every parameter (float64 sum and sum of absolute values) with ``tests/golden/v1_update.json``.
Initialisation is part of what is pinned, so the construction order of the networks matters.

A refactor keeps this green. A deliberate change of numerics regenerates the file in its own commit
that says why:

    python tests/test_golden.py --regenerate
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_batch
from dreamer_trl.builders import make_agent
from dreamer_trl.config import LossConfig, ModelConfig, OptimConfig
from dreamer_trl.training import DreamerUpdate

GOLDEN = Path(__file__).parent / "golden" / "v1_update.json"
UPDATES = 3

CASES = {
    # obs_key, obs_shape, action dim, model config, loss config, batch B x T
    "pixels": ("pixels", (3, 64, 64), 2,
               ModelConfig(state_dim=8, belief_dim=32, rssm_hidden=32, cnn_depth=4, mlp_hidden=32),
               LossConfig(), (3, 8)),
    "state": ("observation", (5,), 1,
              ModelConfig(state_dim=16, belief_dim=128, rssm_hidden=128, mlp_hidden=200),
              LossConfig(free_nats=0.0), (4, 10)),
}


def run_case(name: str) -> dict:
    obs_key, obs_shape, action_dim, model_cfg, loss_cfg, (B, T) = CASES[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        agent = make_agent(obs_key, obs_shape, action_dim, model_cfg, loss_cfg)
        updater = DreamerUpdate(agent.model_loss, agent.actor_loss, agent.value_loss, OptimConfig())
        losses = []
        for i in range(UPDATES):
            batch = make_batch(B, T, action_dim, obs_key, obs_shape[0], seed=100 + i)
            metrics = updater.update(batch)
            losses.append({k: float(v) for k, v in sorted(metrics.items()) if k.startswith("loss/")})
        params = {}
        for part, module in (("world_model", agent.world_model), ("actor", agent.actor), ("value", agent.value)):
            for pname, p in module.named_parameters():
                p64 = p.detach().double()
                params[f"{part}.{pname}"] = [float(p64.sum()), float(p64.abs().sum())]
    finally:
        torch.set_num_threads(threads)
    return {"losses": losses, "params": params}


@pytest.mark.parametrize("name", sorted(CASES))
def test_v1_update_matches_golden(name):
    golden = json.loads(GOLDEN.read_text())[name]
    got = run_case(name)
    assert len(got["losses"]) == len(golden["losses"]) == UPDATES
    for i, (g, e) in enumerate(zip(got["losses"], golden["losses"])):
        assert g.keys() == e.keys(), f"update {i}: loss terms {sorted(g)} != {sorted(e)}"
        for k in e:
            assert g[k] == pytest.approx(e[k], rel=1e-5, abs=1e-6), f"update {i}: {k}"
    assert got["params"].keys() == golden["params"].keys()
    for k, (s, a) in golden["params"].items():
        assert got["params"][k][0] == pytest.approx(s, rel=1e-5, abs=1e-5), f"{k}: sum"
        assert got["params"][k][1] == pytest.approx(a, rel=1e-5, abs=1e-5), f"{k}: abs sum"


if __name__ == "__main__":
    if "--regenerate" not in sys.argv:
        raise SystemExit("usage: python tests/test_golden.py --regenerate")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({name: run_case(name) for name in sorted(CASES)}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
