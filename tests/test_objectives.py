"""Reference tests for the hand-written math of dreamer_trl.objectives, and the loss modules' contracts."""
import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase

from conftest import TINY, make_batch
from dreamer_trl import keys
from dreamer_trl.imagination import make_imagination_env
from dreamer_trl.objectives import (
    ActorLoss, ValueLoss, WorldModelLoss, discount_weights, free_nats_kl, gaussian_kl, lambda_return,
)
from dreamer_trl.policy import make_actor, make_value
from dreamer_trl.world_model import make_world_model


def lambda_return_by_definition(reward, value, bootstrap, gamma, lmbda):
    """Dreamer Eq. 4-6 literally: V_lambda as the lambda-weighted mix of k-step returns V_N^k."""
    T = len(reward)
    v = list(value[1:]) + [bootstrap]  # v[n-1] is the value of state n, n = 1..T

    def v_n(tau, k):
        h = min(tau + k, T)
        return sum(gamma ** (n - tau) * reward[n] for n in range(tau, h)) + gamma ** (h - tau) * v[h - 1]

    out = []
    for tau in range(T):
        steps = T - tau
        mix = (1 - lmbda) * sum(lmbda ** (n - 1) * v_n(tau, n) for n in range(1, steps))
        out.append(mix + lmbda ** (steps - 1) * v_n(tau, steps))
    return out


@pytest.mark.parametrize("gamma,lmbda", [(0.99, 0.95), (0.9, 0.0), (0.5, 1.0)])
def test_lambda_return_matches_definition(gamma, lmbda):
    torch.manual_seed(0)
    reward, value, bootstrap = torch.randn(6), torch.randn(6), torch.randn(())
    ours = lambda_return(reward[None, :, None], value[None, :, None], bootstrap[None, None], gamma, lmbda)
    ref = lambda_return_by_definition(reward.tolist(), value.tolist(), bootstrap.item(), gamma, lmbda)
    torch.testing.assert_close(ours.flatten(), torch.tensor(ref), rtol=1e-5, atol=1e-5)


def test_lambda_return_batched_over_leading_dims():
    torch.manual_seed(0)
    r, v, b = torch.randn(3, 4, 7, 1), torch.randn(3, 4, 7, 1), torch.randn(3, 4, 1)
    out = lambda_return(r, v, b, 0.99, 0.95)
    assert out.shape == (3, 4, 7, 1)
    torch.testing.assert_close(out[1, 2], lambda_return(r[1, 2], v[1, 2], b[1, 2], 0.99, 0.95))


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mq, mp = torch.randn(5, 3), torch.randn(5, 3)
    sq, sp = torch.rand(5, 3) + 0.1, torch.rand(5, 3) + 0.1
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, sq), torch.distributions.Normal(mp, sp))
    torch.testing.assert_close(gaussian_kl(mq, sq, mp, sp), ref.sum(-1))


def test_free_nats_below_the_clamp_gives_constant_and_no_gradient():
    kl = torch.tensor([1.0, 2.0, 2.5], requires_grad=True)
    loss = free_nats_kl(kl, 3.0)
    loss.backward()
    assert loss.item() == 3.0 and kl.grad.abs().sum() == 0


def test_free_nats_above_the_clamp_passes_the_batch_mean_gradient_to_every_element():
    """Mean 4 > 3: every element, including the ones below 3, gets gradient 1/n (a per-element clamp would not)."""
    kl = torch.tensor([1.0, 2.0, 9.0], requires_grad=True)
    loss = free_nats_kl(kl, 3.0)
    loss.backward()
    assert loss.item() == pytest.approx(4.0)
    torch.testing.assert_close(kl.grad, torch.full((3,), 1 / 3))


def test_discount_weights():
    torch.testing.assert_close(discount_weights(4, 0.5).flatten(), torch.tensor([1.0, 0.5, 0.25, 0.125]))


class FixedWorldModel(TensorDictModuleBase):
    """Writes given tensors: isolates WorldModelLoss's arithmetic from the networks."""

    def __init__(self, values):
        super().__init__()
        self.values, self.in_keys, self.out_keys = values, [], list(values)

    def forward(self, td):
        td.update(self.values)
        return td


def fixed_model_batch(B=2, T=4, S=3):
    td = TensorDict({"observation": torch.randn(B, T, 5), ("next", "reward"): torch.randn(B, T, 1),
                     "is_init": torch.zeros(B, T, 1, dtype=torch.bool)}, [B, T])
    values = {"prior_mean": torch.randn(B, T, S), "prior_std": torch.rand(B, T, S) + 0.1,
              "posterior_mean": torch.randn(B, T, S), "posterior_std": torch.rand(B, T, S) + 0.1,
              "reco_observation": td["observation"].clone(),
              "reward": torch.cat([torch.zeros(B, 1, 1), td["next", "reward"][:, :-1]], 1)}
    return td, values


@pytest.mark.parametrize("kl_scale,free_nats", [(1.0, 3.0), (0.5, 0.0), (2.0, 100.0)])
def test_world_model_loss_terms(kl_scale, free_nats):
    td, values = fixed_model_batch()
    loss = WorldModelLoss(FixedWorldModel(values), kl_scale=kl_scale, free_nats=free_nats)
    loss.set_keys(observation="observation", reco_observation="reco_observation")
    out, _ = loss(td)
    kl = gaussian_kl(values["posterior_mean"], values["posterior_std"], values["prior_mean"], values["prior_std"])
    assert out["loss_model_kl"].item() == pytest.approx(kl_scale * max(kl.mean().item(), free_nats), rel=1e-5)
    # perfect predictions: only the Gaussian normaliser remains, 0.5 log(2 pi) per dimension
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    assert out["loss_model_reco"].item() == pytest.approx(5 * half_log_2pi, rel=1e-5)
    # the reward that came with o_t is ("next", "reward") of row t-1
    assert out["loss_model_reward"].item() == pytest.approx(half_log_2pi, rel=1e-5)


def test_world_model_reward_is_aligned_one_row_back():
    td, values = fixed_model_batch()
    values["reward"] = td["next", "reward"].clone()  # misaligned on purpose
    loss = WorldModelLoss(FixedWorldModel(values))
    loss.set_keys(observation="observation", reco_observation="reco_observation")
    out, _ = loss(td)
    assert out["loss_model_reward"].item() > 0.5 * math.log(2 * math.pi) + 1e-3


def test_world_model_loss_renamed_keys():
    td, values = fixed_model_batch()
    values["my_reco"] = values.pop("reco_observation")
    loss = WorldModelLoss(FixedWorldModel(values))
    loss.set_keys(observation="observation", reco_observation="my_reco")
    out, _ = loss(td)
    assert set(out.keys()) >= {"loss_model_kl", "loss_model_reco", "loss_model_reward"}


def build(obs_key="pixels", A=2, horizon=4):
    torch.manual_seed(0)
    obs_shape = (3, 64, 64) if obs_key == "pixels" else (3,)
    wm = make_world_model(obs_key, obs_shape, A, TINY)
    feat = TINY.state_dim + TINY.belief_dim
    actor, value = make_actor(feat, A, TINY), make_value(feat, TINY)
    env = make_imagination_env(wm)
    return wm, actor, value, env, ActorLoss(actor, value, env, horizon=horizon)


def test_world_model_loss_on_real_networks_is_finite_and_differentiable():
    wm, *_ = build()
    out, post = WorldModelLoss(wm)(make_batch())
    total = out["loss_model_kl"] + out["loss_model_reco"] + out["loss_model_reward"]
    total.backward()
    assert torch.isfinite(total)
    assert post["state"].shape == (2, 5, TINY.state_dim) and not post["state"].requires_grad


def test_actor_loss_uses_head_means_and_is_deterministic_given_states():
    wm, actor, value, env, actor_loss = build()
    _, post = WorldModelLoss(wm)(make_batch())
    torch.manual_seed(3)
    out1, data1 = actor_loss(post)
    torch.manual_seed(3)
    out2, data2 = actor_loss(post)
    assert out1["loss_actor"].item() == out2["loss_actor"].item()
    torch.manual_seed(4)
    out3, _ = actor_loss(post)
    assert out3["loss_actor"].item() != out1["loss_actor"].item()  # actions are sampled in imagination
    assert data1.batch_size == (10, 3)  # N = B*T starts, H-1 targets
    reward_head = wm.get_reward_operator().module
    torch.testing.assert_close(data1["reward"], reward_head(data1["state"], data1["belief"]))
    # imagined rewards are a function of the states: no sampling on top of the head's mean
    torch.testing.assert_close(reward_head(data1["state"], data1["belief"]),
                               reward_head(data1["state"], data1["belief"]))


def test_actor_loss_equals_discounted_lambda_return_from_its_rollout():
    wm, actor, value, env, actor_loss = build(horizon=5)
    _, post = WorldModelLoss(wm)(make_batch())
    rssm = env.world_model.get_transition_model_operator().module.rssm
    torch.manual_seed(7)
    out, _ = actor_loss(post)
    torch.manual_seed(7)  # unset exploration type: the actor samples, as inside the loss
    s, h = post["state"].reshape(-1, TINY.state_dim), post["belief"].reshape(-1, TINY.belief_dim)
    roll = rssm.imagine(s, h, actor.module, 5)
    r = wm.get_reward_operator().module(roll["state"], roll["belief"])
    v = value.module(roll["state"], roll["belief"])
    ret = lambda_return(r[:, :-1], v[:, :-1], v[:, -1], 0.99, 0.95)
    expected = -(discount_weights(4, 0.99) * ret).mean()
    torch.testing.assert_close(out["loss_actor"], expected)


def test_actor_input_features_are_stop_gradient():
    _, actor, *_ = build()
    state = torch.randn(3, TINY.state_dim, requires_grad=True)
    belief = torch.randn(3, TINY.belief_dim, requires_grad=True)
    action = actor.module(state, belief)
    action.sum().backward()
    assert state.grad is None and belief.grad is None


def test_value_loss_is_discounted_half_squared_error():
    _, _, value, _, _ = build()
    N, H = 4, 3
    td = TensorDict({"state": torch.randn(N, H, TINY.state_dim), "belief": torch.randn(N, H, TINY.belief_dim),
                     "lambda_target": torch.randn(N, H, 1)}, [N, H])
    out, data = ValueLoss(value, gamma=0.9)(td)
    v = value.module(td["state"], td["belief"])
    expected = (discount_weights(H, 0.9) * 0.5 * (v - td["lambda_target"]) ** 2).mean()
    torch.testing.assert_close(out["loss_value"], expected)
    assert keys.STATE_VALUE in data.keys()


def test_actor_loss_rejects_short_horizon():
    _, actor, value, env, _ = build()
    with pytest.raises(ValueError, match="horizon"):
        ActorLoss(actor, value, env, horizon=1)
