"""The imagination env: TorchRL specs, same trajectory as the fast rollout, and TorchRL's losses on top."""
import torch
from conftest import TINY, make_batch
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type
from torchrl.objectives.dreamer import DreamerActorLoss, DreamerValueLoss

from dreamer_trl.behavior.imagination import ImaginationEnv, make_imagination_env
from dreamer_trl.builders.networks import make_actor, make_value, make_world_model
from dreamer_trl.objectives import WorldModelLoss

A, FEAT = 2, TINY.world_model.latent.state_dim + TINY.world_model.rssm.belief_dim


def build():
    torch.manual_seed(0)
    wm = make_world_model("pixels", (3, 64, 64), A, TINY)
    return wm, make_imagination_env(wm), make_actor(FEAT, A, TINY), make_value(FEAT, TINY)


def starts(wm, n_seq=2):
    _, post = WorldModelLoss(wm)(make_batch(B=n_seq))
    return post.reshape(-1).select("state", "belief")


def test_is_a_model_based_env_and_specs_check():
    wm, env, _, _ = build()
    from torchrl.envs.model_based import ModelBasedEnvBase

    assert isinstance(env, ModelBasedEnvBase) and isinstance(env, ImaginationEnv)
    check_env_specs(env)


def test_reset_takes_start_states():
    wm, env, _, _ = build()
    td = starts(wm)
    out = env.reset(td.clone())
    torch.testing.assert_close(out["state"], td["state"])
    torch.testing.assert_close(out["belief"], td["belief"])


def test_env_rollout_equals_fast_rollout_for_the_same_noise():
    wm, env, actor, _ = build()
    td = starts(wm)
    rssm = env.world_model.get_transition_model_operator().module.rssm
    reward_head = wm.get_reward_operator().module
    H = 6
    with set_exploration_type(ExplorationType.RANDOM):
        torch.manual_seed(11)
        env_roll = env.rollout(H, policy=actor, auto_reset=False, tensordict=env.reset(td.clone()))
        torch.manual_seed(11)
        fast = rssm.imagine(td["state"], td["belief"], actor.module, H)
    torch.testing.assert_close(env_roll["next", "state"], fast["state"])
    torch.testing.assert_close(env_roll["next", "belief"], fast["belief"])
    torch.testing.assert_close(env_roll["action"], fast["action"])
    torch.testing.assert_close(env_roll["next", "reward"], reward_head(fast["state"], fast["belief"]))
    assert not env_roll["next", "done"].any()


def test_step_reward_is_the_head_mean_of_the_next_state():
    wm, env, actor, _ = build()
    td = env.reset(starts(wm))
    td["action"] = torch.rand(td.shape[0], A) * 2 - 1
    nxt = env.step(td)["next"]
    torch.testing.assert_close(nxt["reward"], wm.get_reward_operator().module(nxt["state"], nxt["belief"]))


def test_drives_torchrl_dreamer_actor_and_value_losses():
    """Interoperability: TorchRL's own DreamerActorLoss / DreamerValueLoss run one update on our pieces."""
    wm, env, actor, value = build()
    actor_loss = DreamerActorLoss(actor, value, env, imagination_horizon=4)
    actor_loss.make_value_estimator(gamma=0.99, lmbda=0.95)
    value_loss = DreamerValueLoss(value)
    opt_a = torch.optim.Adam(actor.parameters(), lr=1e-3)
    opt_v = torch.optim.Adam(value.parameters(), lr=1e-3)
    before_a = [p.detach().clone() for p in actor.parameters()]
    before_v = [p.detach().clone() for p in value.parameters()]
    a_td, fake = actor_loss(starts(wm))
    opt_a.zero_grad()
    a_td["loss_actor"].backward()
    opt_a.step()
    v_td, _ = value_loss(fake)
    opt_v.zero_grad()
    v_td["loss_value"].backward()
    opt_v.step()
    assert torch.isfinite(a_td["loss_actor"]) and torch.isfinite(v_td["loss_value"])
    assert any(not torch.equal(b, p) for b, p in zip(before_a, actor.parameters()))
    assert any(not torch.equal(b, p) for b, p in zip(before_v, value.parameters()))
