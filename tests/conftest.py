"""Small factories shared by the tests: a tiny model config and synthetic ``[B, T]`` batches."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
import torch
from tensordict import TensorDict

from dreamer_trl.config import DreamerConfig


def tiny(**changes) -> DreamerConfig:
    """Dreamer V1's config at tiny widths (S 4, D 8, hidden 8, conv depth 2, MLPs 16); ``changes`` by dotted name
    (``tiny(**{"behavior.horizon": 4})``)."""
    from dreamer_trl.config import set_field

    cfg = DreamerConfig()
    wm = cfg.world_model
    wm.latent.state_dim, wm.rssm.belief_dim, wm.rssm.hidden, wm.cnn_depth = 4, 8, 8, 2
    wm.units = wm.vector_units = cfg.behavior.actor.units = cfg.behavior.critic.units = 16
    for name, value in changes.items():
        set_field(cfg, name, value)
    return cfg


TINY = tiny()


@pytest.fixture
def tiny_cfg() -> DreamerConfig:
    return tiny()


def make_batch(B=2, T=5, A=2, obs_key="pixels", obs_dim=3, seed=0, latents=None) -> TensorDict:
    """A synthetic sequence batch in the replay layout (see dreamer_trl.keys); ``latents=(S, D)`` adds stored
    posteriors "state" / "belief" (what a replay context starts from), drawn after the other fields."""
    g = torch.Generator().manual_seed(seed)
    obs = (torch.randint(0, 256, (B, T, 3, 64, 64), generator=g, dtype=torch.uint8) if obs_key == "pixels"
           else torch.randn(B, T, obs_dim, generator=g))
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    action = torch.rand(B, T, A, generator=g) * 2 - 1
    prev_action = torch.cat([torch.zeros(B, 1, A), action[:, :-1]], 1)
    td = TensorDict({obs_key: obs, "action": action, "prev_action": prev_action, "is_init": is_init,
                     ("next", "reward"): torch.randn(B, T, 1, generator=g)}, [B, T])
    if latents is not None:
        td["state"] = torch.rand(B, T, latents[0], generator=g)
        td["belief"] = torch.rand(B, T, latents[1], generator=g) * 2 - 1
    return td
