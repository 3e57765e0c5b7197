"""ActorLoss with DreamerV2/V3's options against plain loops written from the equations (V3 Eq. 7, 11).

V1's options have their reference tests in the second half of this file.
"""
import copy
import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from dreamer_trl import keys
from dreamer_trl.behavior.actors import BoundedNormal, BoundedNormalActor
from dreamer_trl.model.heads import NormalHead
from dreamer_trl.model.latent import LatentState
from dreamer_trl.model.rssm import gru_cell_rssm
from dreamer_trl.objectives.actor_loss import ActorLoss, continue_weights

S, D, A, H = 3, 4, 2, 5


class Linear(nn.Module):
    """A head on the features whose prediction is its raw output (pred = raw), with NormalHead's nll."""

    def __init__(self, out=1, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.head = NormalHead(nn.Linear(S + D, out))

    def forward(self, state, belief):
        return self.head(state, belief)

    def pred(self, raw):
        return raw

    def nll(self, raw, target):
        return self.head.nll(raw, target)


class Sigmoid(Linear):
    def pred(self, raw):
        return torch.sigmoid(raw)


def actor_module():
    torch.manual_seed(1)
    return TensorDictModule(BoundedNormalActor(nn.Linear(S + D, 2 * A)), [keys.STATE, keys.BELIEF], [keys.ACTION])


def value_module(seed=2):
    return TensorDictModule(Linear(seed=seed), [keys.STATE, keys.BELIEF], [keys.STATE_VALUE])


def family_options(discount=1 - 1 / 333, lmbda=0.95, reinforce=1.0, entropy=3e-4, continue_has_discount=True,
                   backprop_baseline=False, share_value=True, **kw):
    """ActorLoss's options for V2/V3 (the old ImaginedActorLoss's defaults): continue weights, targets from s_0."""
    return dict(gamma=discount, lmbda=lmbda, reinforce=reinforce, entropy=entropy, weights="continue",
                continue_has_discount=continue_has_discount, start_targets=True, share_value=share_value,
                backprop_baseline="differentiated" if backprop_baseline else "stop_gradient", **kw)


def family_loss(actor, value, rssm, reward_head, continue_head=None, **kw):
    return ActorLoss(actor, value, None, rssm=rssm, reward_head=reward_head, continue_head=continue_head,
                     **family_options(**kw))


class FixedRollout(ActorLoss):
    """Imagination replaced by a given trajectory, so the loss's math is checked alone."""

    def __init__(self, traj, actions, *, actor, value, rssm, reward_head, continue_head=None, **kw):
        super().__init__(actor, value, None, rssm=rssm, reward_head=reward_head, continue_head=continue_head,
                         **family_options(**kw))
        self.traj, self.actions = traj, actions

    def imagine(self, start):
        return self.traj, self.actions


def test_continue_weights_are_the_cumulative_product():
    c = torch.tensor([[0.9], [0.5], [1.0], [0.2]])
    assert continue_weights(c).squeeze(-1).tolist() == pytest.approx([0.9, 0.45, 0.45, 0.09])


@pytest.mark.parametrize("reinforce", [1.0, 0.0, 0.3])
def test_actor_loss_matches_plain_loop(reinforce):
    torch.manual_seed(0)
    N, gamma, lam, eta, scale = 3, 0.97, 0.95, 3e-3, 2.0
    traj = LatentState(torch.randn(N, H + 1, S), torch.randn(N, H + 1, D))
    actions = torch.randn(N, H, A)
    reward, value, cont = Linear(seed=3), value_module(), Sigmoid(seed=4)
    loss_fn = FixedRollout(traj, actions, actor=actor_module(), value=value, rssm=None, reward_head=reward,
                           continue_head=cont, return_norm=lambda x, update: (0.0, scale), horizon=H,
                           discount=gamma, lmbda=lam, reinforce=reinforce, entropy=eta,
                           continue_has_discount=False)
    start = TensorDict({keys.STATE: traj.state[:, 0], keys.BELIEF: traj.belief[:, 0]}, [N])
    loss, data = loss_fn(start)
    with torch.no_grad():
        r = reward(*traj).squeeze(-1)
        v = value.module(*traj).squeeze(-1)
        c = torch.sigmoid(cont(*traj)).squeeze(-1)
        dist = loss_fn.actor.module.dist(traj.state[:, :-1], traj.belief[:, :-1])
        logp, ent = dist.log_prob(actions), dist.entropy()
    total = 0.0
    for n in range(N):
        ret = [0.0] * (H + 1)
        ret[H] = v[n, H].item()
        for t in reversed(range(H)):  # V3 Eq. 7 with gamma * c
            g = gamma * c[n, t + 1].item()
            ret[t] = r[n, t + 1].item() + g * ((1 - lam) * v[n, t + 1].item() + lam * ret[t + 1])
        for t in range(H):
            w = math.prod(gamma * c[n, k].item() for k in range(t + 1)) / gamma
            adv = (ret[t] - v[n, t].item()) / scale
            obj = reinforce * logp[n, t].item() * adv + (1 - reinforce) * adv + eta * ent[n, t].item()
            total += -w * obj
        assert data["imagined", keys.LAMBDA_TARGET][n, :, 0].tolist() == pytest.approx(ret[:-1], abs=1e-5)
    assert loss["loss_actor"].item() == pytest.approx(total / (N * H), rel=1e-5)


def test_reinforce_and_backprop_reach_only_the_actor_backprop_through_the_dynamics():
    """Both reach the actor's parameters and nothing else (a plain backward per loss trains each module on its own
    objective); without the REINFORCE and entropy terms the actor's gradient can only have come through the prior."""
    torch.manual_seed(0)
    rssm = gru_cell_rssm(A, 5, S, D, 8)
    reward, value = Linear(seed=3), value_module()
    start = TensorDict({keys.STATE: torch.randn(2, 3, S), keys.BELIEF: torch.randn(2, 3, D)}, [2, 3])
    for rho, eta in ((1.0, 3e-4), (0.0, 0.0)):
        actor = actor_module()
        loss_fn = family_loss(actor, value, rssm, reward, None, horizon=H, reinforce=rho, entropy=eta)
        loss, _ = loss_fn(start)
        loss["loss_actor"].backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
        for other in (rssm, reward, value):
            assert all(p.grad is None for p in other.parameters())
        assert all(p.requires_grad for m in (rssm, reward, value) for p in m.parameters())  # nothing left frozen


def test_reinforce_prefers_the_better_arm():
    """A one-step bandit: reward +1 for a positive action, -1 otherwise; REINFORCE moves the mean up."""
    torch.manual_seed(0)

    class Bandit(nn.Module):  # the imagined next state carries the action's sign as the reward
        def prior_step(self, state, belief, action):
            return {}, torch.sign(action[..., :1]).expand(-1, S), belief

    class ArmReward(Linear):
        def forward(self, state, belief):
            return state[..., :1]

    actor = actor_module()
    value = value_module()
    nn.init.zeros_(value.module.head.net.weight), nn.init.zeros_(value.module.head.net.bias)
    loss_fn = family_loss(actor, value, Bandit(), ArmReward(), None, horizon=1, discount=0.9, reinforce=1.0,
                                entropy=0.0)
    opt = torch.optim.Adam(actor.parameters(), lr=3e-2)
    start = TensorDict({keys.STATE: torch.zeros(256, S), keys.BELIEF: torch.zeros(256, D)}, [256])
    for _ in range(60):
        opt.zero_grad()
        loss_fn(start)[0]["loss_actor"].backward()
        opt.step()
    mean = actor.module.dist(torch.zeros(1, S), torch.zeros(1, D)).mean[0, 0]
    assert mean > 0.5


def test_bounded_normal_std_range_and_entropy():
    actor = BoundedNormalActor(nn.Linear(S + D, 2 * A), min_std=0.1, max_std=1.0)
    dist = actor.dist(torch.randn(100, S) * 50, torch.randn(100, D) * 50)
    assert dist.std.min() >= 0.1 and dist.std.max() <= 1.0 and dist.mean.abs().max() <= 1
    ref = torch.distributions.Normal(dist.mean, dist.std)
    assert torch.allclose(dist.entropy(), ref.entropy().sum(-1), atol=1e-5)
    a = dist.rsample()
    assert torch.allclose(dist.log_prob(a), ref.log_prob(a).sum(-1), atol=1e-5)
    assert isinstance(dist, BoundedNormal)


def test_reinforce_keeps_the_rollouts_log_probs_the_same_as_a_second_actor_pass():
    rssm = gru_cell_rssm(A, 5, S, D, 8)
    start = TensorDict({keys.STATE: torch.randn(4, S), keys.BELIEF: torch.randn(4, D)}, [4])
    losses, grads = [], []
    for reuse in (True, False):
        actor = actor_module()
        loss_fn = family_loss(actor, value_module(), rssm, Linear(seed=3), Sigmoid(seed=4), horizon=H, entropy=0.1)
        loss_fn.reuse_rollout_terms = reuse
        torch.manual_seed(7)
        loss = loss_fn(start)[0]["loss_actor"]
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in actor.parameters()]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("baseline", [True, False])
def test_backprop_objective_differentiates_the_baseline_as_the_2023_code(baseline):
    """backprop_baseline=True: the 2023 code's -(R_t - v(s_t)) / S, both differentiated; False: sg(v(s_t))."""
    torch.manual_seed(0)
    N, gamma, lam, scale = 3, 0.97, 0.95, 2.0
    state = torch.randn(N, H + 1, S, requires_grad=True)  # stands for states that depend on the actor
    belief = torch.randn(N, H + 1, D)
    traj = LatentState(state, belief)
    reward, value = Linear(seed=3), value_module()
    loss_fn = FixedRollout(traj, torch.randn(N, H, A), actor=actor_module(), value=value, rssm=None,
                           reward_head=reward, continue_head=None, return_norm=lambda x, update: (0.0, scale),
                           horizon=H, discount=gamma, lmbda=lam, reinforce=0.0, entropy=0.0,
                           backprop_baseline=baseline)
    start = TensorDict({keys.STATE: state[:, 0].detach(), keys.BELIEF: belief[:, 0]}, [N])
    (got,) = torch.autograd.grad(loss_fn(start)[0]["loss_actor"], state)
    r, v = reward(*traj)[..., 0], value.module(*traj)[..., 0]
    total = 0.0
    for n in range(N):  # 2023 VFunction.score and ImagActorCritic.loss, written as a loop
        ret = [None] * (H + 1)
        ret[H] = v[n, H]
        for t in reversed(range(H)):
            ret[t] = r[n, t + 1] + gamma * ((1 - lam) * v[n, t + 1] + lam * ret[t + 1])
        for t in range(H):
            base = v[n, t] if baseline else v[n, t].detach()
            total = total - gamma**t * (ret[t] - base) / scale
    (want,) = torch.autograd.grad(total / (N * H), state)
    torch.testing.assert_close(got, want)


def test_one_hot_actor_mixes_samples_one_hot_and_trains_by_reinforce():
    from dreamer_trl.behavior.actors import OneHotActor

    torch.manual_seed(0)
    actor = OneHotActor(nn.Linear(S + D, 3), unimix=0.01)
    with torch.no_grad():
        actor.net.weight.mul_(100)
    dist = actor.dist(torch.randn(512, S), torch.randn(512, D))
    assert dist.probs.min() >= 0.01 / 3 - 1e-7 and torch.allclose(dist.probs.sum(-1), torch.ones(512))
    sample = dist.rsample()
    assert torch.equal(sample.detach().sum(-1), torch.ones(512)) and set(sample.detach().unique().tolist()) == {0.0, 1.0}
    ref = torch.distributions.Categorical(probs=dist.probs)
    assert torch.allclose(dist.entropy(), ref.entropy(), atol=1e-5)
    assert torch.allclose(dist.log_prob(sample.detach()), ref.log_prob(sample.detach().argmax(-1)), atol=1e-5)
    actor = OneHotActor(nn.Linear(S + D, 2), unimix=0.01)  # two arms: the second pays 1, the first 0
    opt = torch.optim.Adam(actor.parameters(), lr=0.05)
    state, belief = torch.zeros(256, S), torch.zeros(256, D)
    for _ in range(100):
        d = actor.dist(state, belief)
        a = d.rsample().detach()
        advantage = a[:, 1] - a[:, 1].mean()
        opt.zero_grad()
        (-(d.log_prob(a) * advantage).mean()).backward()
        opt.step()
    assert actor.dist(state[:1], belief[:1]).probs[0, 1] > 0.9


class Bernoulli(Sigmoid):
    """A continue head with BernoulliHead's mode (the logit's sign)."""

    def mode(self, raw):
        return (raw > 0).to(raw.dtype)


def test_mode_continue_matches_the_2023_imagination_and_carries_no_gradient():
    """continue_mode="mode": 423291a ``WorldModel.imagine`` (``cont = cont_head(traj).mode()``, c_0 = 1 - is_terminal
    of the start, 1 here; ``weight = cumprod(discount * cont) / discount``), ``VFunction.score`` and
    ``ImagActorCritic.loss`` (backprop, differentiated baseline), written as a loop; the continue head gives
    the states no gradient."""
    torch.manual_seed(0)
    N, gamma, lam, eta, scale = 4, 0.97, 0.95, 3e-3, 2.0
    state = torch.randn(N, H + 1, S, requires_grad=True)  # stands for states that depend on the actor
    belief = torch.randn(N, H + 1, D)
    traj, actions = LatentState(state, belief), torch.randn(N, H, A)
    reward, value, cont = Linear(seed=3), value_module(), Bernoulli(seed=4)
    with torch.no_grad():
        raw = cont(*traj)[..., 0]
    assert (raw[:, 1:] > 0).any() and (raw[:, 1:] < 0).any()  # both modes occur
    loss_fn = FixedRollout(traj, actions, actor=actor_module(), value=value, rssm=None, reward_head=reward,
                           continue_head=cont, return_norm=lambda x, update: (0.0, scale), horizon=H,
                           discount=gamma, lmbda=lam, reinforce=0.0, entropy=eta, continue_has_discount=False,
                           backprop_baseline=True, continue_mode="mode")
    start = TensorDict({keys.STATE: state[:, 0].detach(), keys.BELIEF: belief[:, 0]}, [N])
    loss, data = loss_fn(start)
    (got,) = torch.autograd.grad(loss["loss_actor"], state)
    r, v = reward(*traj)[..., 0], value.module(*traj)[..., 0]
    ent = loss_fn.actor.module.dist(state[:, :-1], belief[:, :-1]).entropy()
    c = (raw > 0).float()
    c[:, 0] = 1.0  # first_cont: the start is not terminal
    total = 0.0
    for n in range(N):
        ret = [None] * (H + 1)
        ret[H] = v[n, H]
        for t in reversed(range(H)):
            disc = gamma * c[n, t + 1]
            ret[t] = r[n, t + 1] + disc * ((1 - lam) * v[n, t + 1] + lam * ret[t + 1])
        for t in range(H):
            w = math.prod(gamma * c[n, k].item() for k in range(t + 1)) / gamma
            total = total - w * ((ret[t] - v[n, t]) / scale + eta * ent[n, t])
            assert data["imagined", "weight"][n, t, 0].item() == pytest.approx(w, rel=1e-6)
        assert data["imagined", keys.LAMBDA_TARGET][n, :, 0].tolist() == pytest.approx(
            [x.item() for x in ret[:-1]], abs=1e-5)
    want_loss = total / (N * H)
    (want,) = torch.autograd.grad(want_loss, state)
    assert loss["loss_actor"].item() == pytest.approx(want_loss.item(), rel=1e-5)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="continue_mode"):
        family_loss(actor_module(), value, None, reward, cont, continue_mode="sample")


def test_v3_presets_read_the_continue_head_as_their_code_does():
    from dreamer_trl.config import PRESETS

    assert PRESETS["dreamer_v3_proprio"]().behavior.continue_mode == "mode"  # 2023: cont_head(traj).mode()
    assert PRESETS["dreamer_v3"]().behavior.continue_mode == "mode"
    assert PRESETS["dreamer_v3_current"]().behavior.continue_mode == "prob"  # current: con.prob(1)
    assert PRESETS["dreamer_v3_proprio_current"]().behavior.continue_mode == "prob"


# V1: the world model and networks of Dreamer, at tiny sizes
from conftest import TINY, make_batch
from test_value_estimates import (
    lambda_return_by_definition,
    nstep_by_definition,
    reward_sum_by_definition,
)
from torchrl.envs.utils import ExplorationType, set_exploration_type

from dreamer_trl.behavior.imagination import make_imagination_env
from dreamer_trl.builders.networks import make_actor, make_value, make_world_model
from dreamer_trl.objectives import (
    LambdaReturn,
    NStepReturn,
    RewardSum,
    WorldModelLoss,
    discount_weights,
)

FEAT = TINY.world_model.latent.state_dim + TINY.world_model.rssm.belief_dim


def test_discount_weights():
    torch.testing.assert_close(discount_weights(4, 0.5).flatten(), torch.tensor([1.0, 0.5, 0.25, 0.125]))


def tiny_world_model(representation="reconstruction", obs_key="observation"):
    torch.manual_seed(0)
    cfg = copy.deepcopy(TINY)
    cfg.world_model.loss.representation = representation
    return make_world_model(obs_key, (3, 64, 64) if obs_key == "pixels" else (3,), A, cfg)


# ------------------------------------------------------------------------------------- V1's options (Dreamer Eq. 5-7)


def build(horizon=4, gamma=0.99, lmbda=0.95, value_estimate=None, with_value=True, share_value=False):
    wm = tiny_world_model()
    actor, value = make_actor(FEAT, A, TINY), make_value(FEAT, TINY)
    env = make_imagination_env(wm)
    loss = ActorLoss(actor, value if with_value else None, env, horizon=horizon, gamma=gamma, lmbda=lmbda,
                     value_estimate=value_estimate, share_value=share_value)
    _, post = WorldModelLoss(wm)(make_batch(B=2, T=3, obs_key="observation"))
    return wm, actor, value, loss, post


def rollout_by_hand(wm, actor, post, horizon, seed):
    """s_0 = the posterior states; a_t ~ pi(s_t, h_t), (s_{t+1}, h_{t+1}) from the prior, t = 0..H-1."""
    s, h = post["state"].reshape(-1, TINY.world_model.latent.state_dim), post["belief"].reshape(-1, TINY.world_model.rssm.belief_dim)
    states, beliefs, actions = [], [], []
    torch.manual_seed(seed)
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        for _ in range(horizon):
            a = actor.module(s, h)
            _, s, h = wm.rssm.prior_step(s, h, a)
            states.append(s), beliefs.append(h), actions.append(a)
    return torch.stack(states, 1), torch.stack(beliefs, 1), torch.stack(actions, 1)      # (N, H, .)


@pytest.mark.parametrize("estimate", ["lambda", "nstep"])
def test_actor_loss_is_discounted_target_over_its_imagined_states_by_hand(estimate):
    H, gamma, lmbda = 5, 0.9, 0.8
    value_estimate = NStepReturn(2) if estimate == "nstep" else LambdaReturn(lmbda)
    wm, actor, value, actor_loss, post = build(H, gamma, lmbda, value_estimate)
    torch.manual_seed(7)
    out, data = actor_loss(post)
    states, beliefs, actions = rollout_by_hand(wm, actor, post, H, seed=7)
    N = states.shape[0]
    assert N == 6 and data["imagined"].batch_size == (N, H - 1)
    # the returned states are the imagined s_1..s_{H-1}: not the starts, not s_H
    torch.testing.assert_close(data["imagined", "state"], states[:, :-1])
    torch.testing.assert_close(data["imagined", "belief"], beliefs[:, :-1])
    torch.testing.assert_close(data["imagined", "action"], actions[:, :-1])
    with torch.no_grad():
        r = wm.reward_head(states, beliefs)[..., 0]                                       # (N, H)
        v = value.module(states, beliefs)[..., 0]
    loss, targets = 0.0, []
    for n in range(N):
        rn, vn = r[n].tolist(), v[n].tolist()
        target = (lambda_return_by_definition(rn[:-1], vn[:-1], vn[-1], gamma, lmbda) if estimate == "lambda"
                  else nstep_by_definition(rn[:-1], vn[:-1], vn[-1], gamma, 2))
        targets.append(target)
        for t in range(H - 1):  # weight 1 on s_1, gamma on s_2, ...
            loss += gamma**t * target[t]
    loss = -loss / (N * (H - 1))
    torch.testing.assert_close(data["imagined", "lambda_target"][..., 0], torch.tensor(targets))
    assert out["loss_actor"].item() == pytest.approx(loss, rel=1e-5)
    torch.testing.assert_close(data["imagined", "weight"][..., 0], torch.tensor([[gamma**t for t in range(H - 1)]] * N))


def test_actor_loss_rewards_are_the_reward_head_mean_at_the_imagined_states():
    """Not sampled: N(mean, 1) noise on the rewards would be far outside the tolerance."""
    wm, actor, value, actor_loss, post = build()
    torch.manual_seed(1)
    _, data1 = actor_loss(post)
    torch.manual_seed(2)
    _, data2 = actor_loss(post)
    assert not torch.allclose(data1["imagined", "action"], data2["imagined", "action"])  # actions are sampled in imagination
    for seed, data in ((11, data1), (12, data2)):
        torch.manual_seed(seed)
        with torch.no_grad():
            mean = wm.reward_head.pred(wm.reward_head(data["imagined", "state"], data["imagined", "belief"]))
        torch.testing.assert_close(data["imagined", "reward"], mean)


def test_actor_loss_with_reward_sum_needs_and_trains_no_value():
    H, gamma = 4, 0.9
    wm, actor, _, actor_loss, post = build(H, gamma, value_estimate=RewardSum(), with_value=False)
    torch.manual_seed(5)
    out, data = actor_loss(post)
    assert actor_loss.value is None and keys.STATE_VALUE not in data["imagined"].keys()
    states, beliefs, _ = rollout_by_hand(wm, actor, post, H, seed=5)
    with torch.no_grad():
        r = wm.reward_head(states, beliefs)[..., 0]
    N = states.shape[0]
    expected = -sum(gamma**t * reward_sum_by_definition(r[n].tolist())[t]
                    for n in range(N) for t in range(H - 1)) / (N * (H - 1))
    assert out["loss_actor"].item() == pytest.approx(expected, rel=1e-5)
    out["loss_actor"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())


@pytest.mark.parametrize("estimate", [None, LambdaReturn(0.5), NStepReturn(3)])
def test_actor_loss_with_a_value_needing_estimate_and_no_value_raises(estimate):
    wm = tiny_world_model()
    with pytest.raises(ValueError, match="needs a value model"):
        ActorLoss(make_actor(FEAT, A, TINY), None, make_imagination_env(wm), horizon=3, value_estimate=estimate)


def test_actor_input_features_are_stop_gradient():
    actor = make_actor(FEAT, A, TINY)
    state = torch.randn(3, TINY.world_model.latent.state_dim, requires_grad=True)
    belief = torch.randn(3, TINY.world_model.rssm.belief_dim, requires_grad=True)
    action = actor.module(state, belief)
    action.sum().backward()
    assert state.grad is None and belief.grad is None


def test_actor_loss_rejects_short_horizon():
    wm = tiny_world_model()
    with pytest.raises(ValueError, match="horizon"):
        ActorLoss(make_actor(FEAT, A, TINY), make_value(FEAT, TINY), make_imagination_env(wm), horizon=1)


def test_actor_loss_horizon_message_says_what_works():
    wm = tiny_world_model()
    with pytest.raises(ValueError, match=r"horizon must be >= 2 without start_targets .*got 1"):
        ActorLoss(make_actor(FEAT, A, TINY), make_value(FEAT, TINY), make_imagination_env(wm), horizon=1)
    with pytest.raises(ValueError, match=r"horizon must be >= 1, got 0"):
        ActorLoss(make_actor(FEAT, A, TINY), make_value(FEAT, TINY), make_imagination_env(wm), horizon=0,
                  start_targets=True)


@pytest.mark.parametrize("estimate", ["lambda", "nstep", "reward"])
def test_horizon_1_with_start_targets_is_the_one_step_target_of_the_equations(estimate):
    """H = 1 with targets from s_0: one imagined step, R_0 = r(s_1) + gamma c_1 v(s_1) for V_lambda and V_N^k
    (Eq. 5/6 at H = 1; V2 Eq. 4, V3 Eq. 7), R_0 = r(s_1) for V_R (Eq. 4); by hand from the rollout."""
    from dreamer_trl.objectives.value_estimates import make_value_estimate

    torch.manual_seed(0)
    N, gamma = 4, 0.9
    traj = LatentState(torch.randn(N, 2, S), torch.randn(N, 2, D))                     # s_0, s_1
    reward, cont = Linear(seed=3), Sigmoid(seed=4)
    est = make_value_estimate(estimate, lmbda=0.7, k=3)
    value = value_module() if est.needs_value else None
    loss_fn = FixedRollout(traj, torch.randn(N, 1, A), actor=actor_module(), value=value, rssm=None,
                           reward_head=reward, continue_head=cont, horizon=1, discount=gamma, reinforce=0.0,
                           entropy=0.0, continue_has_discount=False, value_estimate=est, share_value=False)
    start = TensorDict({keys.STATE: traj.state[:, 0], keys.BELIEF: traj.belief[:, 0]}, [N])
    with torch.no_grad():
        _, data = loss_fn(start)
        r, c = reward(*traj)[..., 0], torch.sigmoid(cont(*traj))[..., 0]
        v = value.module(*traj)[..., 0] if value is not None else None
    got = data["imagined"][keys.LAMBDA_TARGET]
    assert got.shape == (N, 1, 1)
    for n in range(N):
        want = r[n, 1] + gamma * c[n, 1] * v[n, 1] if v is not None else r[n, 1]
        assert got[n, 0, 0].item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)


def test_reward_sum_gets_no_discount_from_the_loss_and_gamma_still_weights_the_steps():
    """V_R refuses a discount; the loss hands it none, with per-step continue discounts too. gamma still
    enters the loss through w_t (so behavior.gamma is read with value_estimate reward)."""
    from dreamer_trl.objectives.value_estimates import RewardSum, reward_sum

    torch.manual_seed(0)
    N = 3
    traj = LatentState(torch.randn(N, H + 1, S), torch.randn(N, H + 1, D))
    reward, cont = Linear(seed=3), Sigmoid(seed=4)
    losses = []
    for gamma in (0.9, 0.5):
        loss_fn = FixedRollout(traj, torch.randn(N, H, A), actor=actor_module(), value=None, rssm=None,
                               reward_head=reward, continue_head=cont, horizon=H, discount=gamma, reinforce=0.0,
                               entropy=0.0, continue_has_discount=False, value_estimate=RewardSum())
        start = TensorDict({keys.STATE: traj.state[:, 0], keys.BELIEF: traj.belief[:, 0]}, [N])
        with torch.no_grad():
            loss, data = loss_fn(start)
            r = reward(*traj)
        nxt = torch.cat([r[:, 1:], torch.zeros_like(r[:, :1])], 1)
        torch.testing.assert_close(data["imagined"][keys.LAMBDA_TARGET], reward_sum(nxt))
        losses.append(loss["loss_actor"].item())
    assert losses[0] != pytest.approx(losses[1])


def test_start_state_targets_follow_torchrl_alignment_by_hand():
    """start_targets: targets for s_0..s_{H-1}, V(s_t) = r(s_{t+1}) + gamma((1-l) v(s_{t+1}) + l V(s_{t+1})),
    V(s_H) = v(s_H); the value trains on the start state too. Checked with a plain loop."""
    wm, actor, value, base, post = build(horizon=4)
    env = base.imagination_env
    loss = ActorLoss(actor, value, env, horizon=4, start_targets=True, share_value=True)
    torch.manual_seed(3)
    out, data = loss(post)
    H, gamma, lmbda = 4, 0.99, 0.95
    n = post["state"].reshape(-1, TINY.world_model.latent.state_dim).shape[0]
    assert data["imagined"].batch_size == (n, H)
    torch.testing.assert_close(data["imagined", "state"][:, 0], post["state"].reshape(-1, TINY.world_model.latent.state_dim))  # s_0 first
    torch.manual_seed(3)
    s0, h0 = post["state"].reshape(n, -1), post["belief"].reshape(n, -1)
    roll = wm.rssm.imagine(s0, h0, actor.module, H)
    states = torch.cat([s0[:, None], roll["state"]], 1)
    beliefs = torch.cat([h0[:, None], roll["belief"]], 1)
    r = wm.reward_head(states, beliefs)[..., 0]
    v = value.module(states, beliefs)[..., 0]
    expected_loss = 0.0
    for i in range(n):
        agg = v[i, H]
        targets = [None] * H
        for t in reversed(range(H)):
            agg = r[i, t + 1] + gamma * ((1 - lmbda) * v[i, t + 1] + lmbda * agg)
            targets[t] = agg
        for t in range(H):
            assert data["imagined", "lambda_target"][i, t, 0].item() == pytest.approx(targets[t].item(), rel=1e-4, abs=1e-5)
            expected_loss -= gamma**t * targets[t].item() / (n * H)
    assert out["loss_actor"].item() == pytest.approx(expected_loss, rel=1e-4, abs=1e-6)
    torch.testing.assert_close(data["imagined", "state_value"][..., 0], v[:, :H])


def test_sampled_heads_score_with_noisy_rewards_and_values_but_keep_the_means_in_the_data():
    wm, actor, value, base, post = build(horizon=4)
    env = base.imagination_env
    plain = ActorLoss(actor, value, env, horizon=4)
    sampled = ActorLoss(actor, value, env, horizon=4, sample_heads=True)
    torch.manual_seed(5)
    out_plain, data_plain = plain(post)
    torch.manual_seed(5)
    out_sampled, data_sampled = sampled(post)
    torch.testing.assert_close(data_sampled["imagined", "state"], data_plain["imagined", "state"])    # same imagination
    torch.testing.assert_close(data_sampled["imagined", "reward"], data_plain["imagined", "reward"])  # means in the data
    diff = (data_sampled["imagined", "lambda_target"] - data_plain["imagined", "lambda_target"]).abs()
    assert diff.min() > 0 and 0.3 < diff.mean() < 3  # unit-variance noise in every target


# ----------------------------------------------------------------- a plain backward per loss (TorchRL loops)


def agent_and_losses(estimate="lambda", share_value=True):
    from conftest import tiny

    from dreamer_trl.builders.agent import make_agent

    torch.manual_seed(0)
    agent = make_agent("observation", (3,), A, tiny(**{"behavior.horizon": 4, "behavior.value_estimate": estimate}))
    agent.actor_loss.share_value = share_value and agent.actor_loss.share_value
    return agent


def grads(module):
    return [p.grad for p in module.parameters()]


def reached(module) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads(module))


@pytest.mark.parametrize("share_value", [True, False])
@pytest.mark.parametrize("estimate", ["lambda", "reward"])
def test_a_plain_backward_of_each_loss_reaches_only_its_own_parameters(estimate, share_value):
    """TorchRL-style: loss.backward() per loss, no ``inputs=`` and no ``retain_graph``; then each module's
    gradient must be exactly its own loss's."""
    agent = agent_and_losses(estimate, share_value)
    modules = {"model": agent.world_model, "actor": agent.actor, "value": agent.value}
    model_out, post = agent.model_loss(make_batch(B=2, T=3, obs_key="observation"))
    actor_out, imagined = agent.actor_loss(post)
    losses = {"model": sum(v for k, v in model_out.items() if k.startswith("loss_")),
              "actor": actor_out["loss_actor"]}
    if agent.value_loss is not None:
        losses["value"] = agent.value_loss(imagined)[0]["loss_value"]
    for name, loss in losses.items():
        for m in modules.values():
            m.zero_grad(set_to_none=True)
        loss.backward()
        assert reached(modules[name]), name
        for other, m in modules.items():
            if other != name:
                assert all(g is None for g in grads(m)), f"{name} loss reached the {other} parameters"
    assert all(p.requires_grad for m in modules.values() for p in m.parameters())  # nothing left frozen


def test_plain_backward_gives_the_same_gradients_as_the_updaters_restricted_backward():
    """The held-out parameters and the split value predictions change no number: the gradients equal
    those of backward(inputs=own parameters) on the same forward pass."""
    agent = agent_and_losses()
    modules = {"actor": agent.actor, "value": agent.value}
    batch = make_batch(B=2, T=3, obs_key="observation")
    got = {}
    for restricted in (False, True):
        torch.manual_seed(1)
        _, post = agent.model_loss(batch)
        actor_out, imagined = agent.actor_loss(post)
        value_out, _ = agent.value_loss(imagined)
        for name, loss in (("actor", actor_out["loss_actor"]), ("value", value_out["loss_value"])):
            modules[name].zero_grad(set_to_none=True)
            params = list(modules[name].parameters())
            loss.backward(**({"inputs": params, "retain_graph": True} if restricted else {}))
            got[name, restricted] = [p.grad.clone() for p in params]
    for name in modules:
        for a, b in zip(got[name, False], got[name, True]):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("reinforce", [0.0, 1.0, 0.4])
def test_own_reward_alignment_matches_dreamerv2s_actor_critic(reinforce):
    """A plain loop of danijar/dreamerv2 07d906e agent.py, ActorCritic.target / actor_loss / critic_loss, over
    z_0..z_H (the action a_t taken at z_t leads to z_{t+1}): d_t = gamma c_t; target
    t_t = r(z_t) + d_t ((1 - lam) v(z_{t+1}) + lam t_{t+1}) for t < H with t_H = v(z_H); weights
    w_t = prod_{k<t} d_k; the critic regresses z_0..z_{H-1} on t_0..t_{H-1}; the actor at z_0..z_{H-2}
    maximises rho log pi(a_t | z_t) (t_{t+1} - v(z_t)) + (1 - rho) t_{t+1} + eta H[pi(. | z_t)], weighted
    by w_t; loss -mean."""
    torch.manual_seed(0)
    N, gamma, lam, eta = 3, 0.97, 0.95, 1e-3
    traj = LatentState(torch.randn(N, H + 1, S), torch.randn(N, H + 1, D))
    actions = torch.randn(N, H, A)
    reward, value, cont = Linear(seed=3), value_module(), Sigmoid(seed=4)
    loss_fn = FixedRollout(traj, actions, actor=actor_module(), value=value, rssm=None, reward_head=reward,
                           continue_head=cont, horizon=H, discount=gamma, lmbda=lam, reinforce=reinforce,
                           entropy=eta, continue_has_discount=False, share_value=False, own_reward=True)
    loss_fn.backprop_baseline = "none"  # V2's dynamics objective is the target alone
    start = TensorDict({keys.STATE: traj.state[:, 0], keys.BELIEF: traj.belief[:, 0]}, [N])
    loss, data = loss_fn(start)
    with torch.no_grad():
        r = reward(*traj).squeeze(-1)
        v = value.module(*traj).squeeze(-1)
        d = gamma * torch.sigmoid(cont(*traj)).squeeze(-1)
        dist = loss_fn.actor.module.dist(traj.state[:, :-1], traj.belief[:, :-1])
        logp, ent = dist.log_prob(actions), dist.entropy()
    total = 0.0
    for n in range(N):
        target = [0.0] * (H + 1)
        target[H] = v[n, H].item()
        for t in reversed(range(H)):
            target[t] = r[n, t].item() + d[n, t].item() * ((1 - lam) * v[n, t + 1].item() + lam * target[t + 1])
        weight = [math.prod(d[n, k].item() for k in range(t)) for t in range(H + 1)]
        for t in range(H - 1):
            adv = target[t + 1] - v[n, t].item()
            obj = reinforce * logp[n, t].item() * adv + (1 - reinforce) * target[t + 1] + eta * ent[n, t].item()
            total += -weight[t] * obj
        assert data["imagined", keys.LAMBDA_TARGET][n, :, 0].tolist() == pytest.approx(target[:-1], abs=1e-5)
        assert data["imagined", "weight"][n, :, 0].tolist() == pytest.approx(weight[:-1], abs=1e-6)
        torch.testing.assert_close(data["imagined", keys.STATE][n], traj.state[n, :H])  # critic rows z_0..z_{H-1}
    assert loss["loss_actor"].item() == pytest.approx(total / (N * (H - 1)), rel=1e-5)


def test_own_reward_needs_start_targets_and_two_steps():
    with pytest.raises(ValueError, match="own_reward"):
        ActorLoss(actor_module(), value_module(), None, rssm=None, reward_head=Linear(), own_reward=True, horizon=1,
                  start_targets=True)
