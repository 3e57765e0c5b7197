"""Every combination of parts the builders allow trains: each variant's latents and heads with each representation
objective of the Dreamer paper (reconstruction, contrastive, reward only), the CEM planner over each world model,
and V1 with V2/V3's latents and KL terms. Each is built from a preset through the config's validation (nothing is
silently dropped) and runs a few updates at tiny sizes; the docs' table of combinations is this list."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded

from dreamer_trl import keys
from dreamer_trl.behavior.policy import make_policy
from dreamer_trl.builders.agent import make_agent, make_update
from dreamer_trl.builders.networks import latent_dims
from dreamer_trl.config import make_preset, reads, set_field, validate
from dreamer_trl.config.sizes import apply_size

A, O, B, T = 2, 5, 2, 6


def tiny(preset: str, **fields):
    cfg = make_preset(preset, from_pixels=False)
    wm = cfg.world_model
    if cfg.nets.size != "custom":
        cfg = apply_size(cfg, "size1m")
    elif cfg.nets.style != "v1":
        wm.rssm.belief_dim = wm.rssm.hidden = wm.units = wm.vector_units = 16
        cfg.behavior.actor.units = cfg.behavior.critic.units = 16
        wm.latent.state_dim, wm.latent.classes = 4, 4
        if cfg.nets.style == "v3_2023":
            wm.vector_layers = 2
    cfg.behavior.horizon = 4
    for name, value in fields.items():
        set_field(cfg, name, value)
    if cfg.behavior.kind == "planner":
        cfg.behavior.planner.candidates, cfg.behavior.planner.top_k, cfg.behavior.planner.iterations, cfg.behavior.planner.horizon = 16, 4, 2, 3
    reads.reset_unread(cfg, given=set(fields))  # as the command line does: preset values the changes made unread
    validate(cfg)
    return cfg


def batch(S: int, D: int):
    """A replay batch; "state" / "belief" stand for the stored posteriors a replay context starts from."""
    g = torch.Generator().manual_seed(0)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    terminated = torch.zeros(B, T, 1, dtype=torch.bool)
    terminated[-1, -1] = True
    return TensorDict({keys.OBSERVATION: torch.randn(B, T, O, generator=g), keys.ACTION: torch.rand(B, T, A) * 2 - 1,
                       keys.PREV_ACTION: torch.rand(B, T, A) * 2 - 1, keys.IS_INIT: is_init,
                       ("next", keys.REWARD): torch.randn(B, T, 1, generator=g),
                       ("next", keys.TERMINATED): terminated, keys.STATE: torch.rand(B, T, S, generator=g),
                       keys.BELIEF: torch.rand(B, T, D, generator=g) * 2 - 1}, [B, T])


def trains(cfg, updates=2):
    torch.manual_seed(0)
    spec = Bounded(-1.0, 1.0, (A,))
    agent = make_agent(keys.OBSERVATION, (O,), A, cfg, action_spec=spec)
    update = make_update(agent, cfg.optim)
    before = [p.detach().clone() for p in agent.world_model.parameters()]
    S, D = latent_dims(cfg)
    for _ in range(updates):
        metrics = update.update(batch(S, D))
    assert update.skipped == 0
    assert all(torch.isfinite(v).all() for v in metrics.values()), metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.world_model.parameters()))
    policy = make_policy(agent.world_model, agent.behavior, spec, cfg.behavior.exploration.noise)
    td = TensorDict({keys.OBSERVATION: torch.randn(3, O), keys.STATE: torch.zeros(3, S), keys.BELIEF: torch.zeros(3, D),
                     keys.PREV_ACTION: torch.zeros(3, A), keys.IS_INIT: torch.ones(3, 1, dtype=torch.bool)}, [3])
    action = policy(td)[keys.ACTION]
    assert action.shape == (3, A) and torch.isfinite(action).all()
    return metrics


@pytest.mark.parametrize("representation", ["reconstruction", "contrastive", "reward"])
@pytest.mark.parametrize("preset", ["state", "dreamer_v2", "dreamer_v3", "dreamer_v3_current"])
def test_each_representation_trains_with_each_variant(preset, representation):
    metrics = trains(tiny(preset, **{"world_model.loss.representation": representation}))
    term = {"reconstruction": "loss/model_reco", "contrastive": "loss/model_contrast", "reward": None}[representation]
    if term:
        assert term in metrics
    assert "loss/model_reco" not in metrics or representation == "reconstruction"


def test_a_decoder_free_contrastive_dreamer_v3_has_no_decoder_and_learns_its_state_model():
    cfg = tiny("dreamer_v3", **{"world_model.loss.representation": "contrastive"})
    torch.manual_seed(0)
    agent = make_agent(keys.OBSERVATION, (O,), A, cfg)
    assert agent.world_model.decoder is None and agent.world_model.state_model is not None
    update = make_update(agent, cfg.optim)
    first = [p.detach().clone() for p in agent.world_model.state_model.parameters()]
    losses = [float(update.update(batch(*latent_dims(cfg)))["loss/model_contrast"]) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(first, agent.world_model.state_model.parameters()))


@pytest.mark.parametrize("preset", ["planet_state", "dreamer_v2", "dreamer_v3", "dreamer_v3_current"])
def test_the_cem_planner_plans_over_each_world_model(preset):
    fields = {"behavior.kind": "planner"}
    if make_preset(preset).optim.step_model_first:
        fields["optim.step_model_first"] = False  # one world-model phase: no step to order
    cfg = tiny(preset, **fields)
    metrics = trains(cfg)
    assert not any(k.startswith("loss/actor") for k in metrics)


@pytest.mark.parametrize("fields", [{"world_model.latent.kind": "categorical", "world_model.latent.classes": 4},
                                    {"world_model.loss.kl": "balance"}, {"world_model.loss.kl": "dyn_rep"}])
def test_dreamer_v1_takes_the_later_latents_and_kl_terms(fields):
    trains(tiny("state", **fields))


@pytest.mark.parametrize("estimate", ["nstep", "reward"])
@pytest.mark.parametrize("preset", ["state", "dreamer_v2", "dreamer_v3", "dreamer_v3_current"])
def test_each_value_estimate_trains_with_each_variant(preset, estimate):
    fields = {"behavior.value_estimate": estimate, **({"behavior.value_steps": 2} if estimate == "nstep" else {})}
    metrics = trains(tiny(preset, **fields))
    assert ("loss/value" in metrics) == (estimate != "reward")  # V_R: no critic


def test_a_field_the_chosen_parts_do_not_read_is_refused_by_name():
    cfg = make_preset("dreamer_v3")
    cfg.behavior.start_state_targets = True  # V2/V3 always align targets from s_0; V1's TorchRL option
    with pytest.raises(ValueError, match="behavior.start_state_targets"):
        validate(cfg)


# Parts named one at a time on top of a preset: each assignment either trains or is refused by validate.
SWAPS = {
    "v1_with_a_bounded_normal_actor": ("state", {"behavior.actor.dist": "bounded_normal"}),
    "v1_with_a_trunc_normal_actor": ("state", {"behavior.actor.dist": "trunc_normal"}),
    "v1_with_v3_style_networks": ("state", {"nets.style": "v3"}),
    "v1_with_the_block_gru": ("state", {"world_model.rssm.core": "block_gru", "world_model.rssm.blocks": 4}),
    "v1_world_model_with_v2_v3_losses": ("state", {"behavior.losses": "v2_v3"}),
    "v1_with_twohot_heads": ("state", {"world_model.reward_head": "twohot", "behavior.critic.head": "twohot"}),
    "v3_with_the_tanh_normal_actor": ("dreamer_v3", {"behavior.actor.dist": "tanh_normal"}),
    "v3_with_v1_style_networks": ("dreamer_v3_current", {"nets.style": "v1"}),
    "v3_with_the_gru_cell": ("dreamer_v3_current", {"world_model.rssm.core": "gru_cell"}),
    "v3_with_gaussian_latents": ("dreamer_v3", {"world_model.latent.kind": "gaussian"}),
    "v2_with_v1_losses": ("dreamer_v2", {"behavior.losses": "v1"}),
}


@pytest.mark.parametrize("preset, fields", SWAPS.values(), ids=SWAPS.keys())
def test_a_part_swapped_by_name_trains(preset, fields):
    trains(tiny(preset, **fields))
