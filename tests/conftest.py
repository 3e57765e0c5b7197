"""Small factories shared by the tests: a tiny model config and synthetic ``[B, T]`` batches."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
import torch
from tensordict import TensorDict

from dreamer_trl.config import ModelConfig

TINY = ModelConfig(state_dim=4, belief_dim=8, rssm_hidden=8, cnn_depth=2, mlp_hidden=16)


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return ModelConfig(**vars(TINY))


def make_batch(B=2, T=5, A=2, obs_key="pixels", obs_dim=3, seed=0) -> TensorDict:
    """A synthetic sequence batch in the replay layout (see dreamer_trl.keys)."""
    g = torch.Generator().manual_seed(seed)
    obs = (torch.randint(0, 256, (B, T, 3, 64, 64), generator=g, dtype=torch.uint8) if obs_key == "pixels"
           else torch.randn(B, T, obs_dim, generator=g))
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    action = torch.rand(B, T, A, generator=g) * 2 - 1
    prev_action = torch.cat([torch.zeros(B, 1, A), action[:, :-1]], 1)
    return TensorDict({obs_key: obs, "action": action, "prev_action": prev_action, "is_init": is_init,
                       ("next", "reward"): torch.randn(B, T, 1, generator=g)}, [B, T])
