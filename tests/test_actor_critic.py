"""DreamerV2/V3 behaviour losses against plain loops written from the equations (V3 Eq. 7, 10, 11)."""
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
from dreamer_trl.objectives.actor_critic import (
    ImaginedActorLoss,
    ImaginedCriticLoss,
    continue_weights,
    replay_lambda_return,
)

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


class FixedRollout(ImaginedActorLoss):
    """Imagination replaced by a given trajectory, so the loss's math is checked alone."""

    def __init__(self, traj, actions, **kw):
        super().__init__(**kw)
        self.traj, self.actions = traj, actions

    def imagine(self, start):
        return self.traj, self.actions


def test_replay_lambda_return_matches_loop():
    torch.manual_seed(0)
    T, lam = 7, 0.9
    rew, boot, live = torch.randn(2, T, 1), torch.randn(2, T, 1), torch.rand(2, T, 1)
    got = replay_lambda_return(rew, boot, live, lam)
    for b in range(2):
        ret = [None] * T
        ret[T - 1] = boot[b, T - 1, 0].item()
        for t in reversed(range(T - 1)):  # official repl_loss recursion
            ret[t] = rew[b, t + 1, 0].item() + live[b, t + 1, 0].item() * (
                (1 - lam) * boot[b, t + 1, 0].item() + lam * ret[t + 1])
        assert got[b, :, 0].tolist() == pytest.approx(ret[:-1], abs=1e-5)


def test_replay_lambda_return_stops_before_an_episode_start():
    """Windows along an env's stream: a row whose next row starts an episode takes its imagined return (R_t = b_t,
    as a window's last row), so no return reaches across the reset; without a mid-window start nothing changes."""
    torch.manual_seed(0)
    T, lam = 8, 0.9
    rew, boot, live = torch.randn(2, T, 1), torch.randn(2, T, 1), torch.rand(2, T, 1)
    is_init = torch.zeros(2, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    assert torch.equal(replay_lambda_return(rew, boot, live, lam, is_init), replay_lambda_return(rew, boot, live, lam))
    is_init[0, 3] = is_init[1, 6] = True
    got = replay_lambda_return(rew, boot, live, lam, is_init)
    for b in range(2):
        ret = [None] * T
        ret[T - 1] = boot[b, T - 1, 0].item()
        for t in reversed(range(T - 1)):
            if is_init[b, t + 1]:
                ret[t] = boot[b, t, 0].item()
            else:
                ret[t] = rew[b, t + 1, 0].item() + live[b, t + 1, 0].item() * (
                    (1 - lam) * boot[b, t + 1, 0].item() + lam * ret[t + 1])
        assert got[b, :, 0].tolist() == pytest.approx(ret[:-1], abs=1e-5)


def test_replay_critic_loss_of_a_window_across_an_episode_end_is_that_of_its_two_parts():
    """A window of rows 0..2 of one episode and 0..4 of the next (is_init at row 3) trains the critic on the rows
    its two parts, replayed as windows of their own, train: rows 0, 1 and 3..6 (row 2 as the first part's last)."""
    torch.manual_seed(0)
    T, cut = 8, 3
    value = value_module()
    loss_fn = ImaginedCriticLoss(value, None, replay_scale=1.0, discount=0.97, lmbda=0.9)

    def batch(rows):
        n = rows.stop - rows.start
        is_init = torch.zeros(1, n, 1, dtype=torch.bool)
        is_init[0, 0] = True
        if rows.start < cut < rows.stop:
            is_init[0, cut - rows.start] = True
        replay = TensorDict({keys.STATE: state[:, rows], keys.BELIEF: belief[:, rows],
                             keys.NEXT_REWARD: reward[:, rows], keys.IS_INIT: is_init,
                             ("next", keys.TERMINATED): torch.zeros(1, n, 1, dtype=torch.bool)}, [1, n])
        return TensorDict({"replay": replay, "start_return": boot[:, rows]}, [])

    state, belief, reward, boot = torch.randn(1, T, S), torch.randn(1, T, D), torch.randn(1, T, 1), torch.randn(1, T)
    whole = loss_fn._replay_loss(batch(slice(0, T))) * (T - 1)
    first, second = loss_fn._replay_loss(batch(slice(0, cut))), loss_fn._replay_loss(batch(slice(cut, T)))
    parts = first * (cut - 1) + second * (T - cut - 1)
    assert whole.item() == pytest.approx(parts.item(), rel=1e-5)


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


def test_reinforce_reaches_only_the_actor_and_backprop_reaches_it_through_the_dynamics():
    torch.manual_seed(0)
    rssm = gru_cell_rssm(A, 5, S, D, 8)
    reward, value = Linear(seed=3), value_module()
    start = TensorDict({keys.STATE: torch.randn(2, 3, S), keys.BELIEF: torch.randn(2, 3, D)}, [2, 3])
    for rho in (1.0, 0.0):
        actor = actor_module()
        loss_fn = ImaginedActorLoss(actor, value, rssm, reward, None, horizon=H, reinforce=rho)
        loss, _ = loss_fn(start)
        loss["loss_actor"].backward()
        assert all(p.grad is not None for p in actor.parameters())
        reached = any(p.grad is not None and p.grad.abs().sum() > 0 for p in rssm.parameters())
        assert reached == (rho < 1)  # REINFORCE imagines without a graph; backprop goes through the prior
        rssm.zero_grad(set_to_none=True)


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
    loss_fn = ImaginedActorLoss(actor, value, Bandit(), ArmReward(), None, horizon=1, discount=0.9, reinforce=1.0,
                                entropy=0.0)
    opt = torch.optim.Adam(actor.parameters(), lr=3e-2)
    start = TensorDict({keys.STATE: torch.zeros(256, S), keys.BELIEF: torch.zeros(256, D)}, [256])
    for _ in range(60):
        opt.zero_grad()
        loss_fn(start)[0]["loss_actor"].backward()
        opt.step()
    mean = actor.module.dist(torch.zeros(1, S), torch.zeros(1, D)).mean[0, 0]
    assert mean > 0.5


def test_critic_loss_weights_nll_and_slow_regulariser():
    torch.manual_seed(0)
    N = 4
    value, slow = value_module(2), value_module(5)
    state, belief, target = torch.randn(N, H, S), torch.randn(N, H, D), torch.randn(N, H, 1)
    weight = torch.rand(N, H, 1)
    data = TensorDict({"imagined": TensorDict({keys.STATE: state, keys.BELIEF: belief, keys.LAMBDA_TARGET: target,
                                               "weight": weight}, [N, H])}, [])
    loss, _ = ImaginedCriticLoss(value, slow, slow_reg=0.7)(data)
    with torch.no_grad():
        v, vs = value.module(state, belief), slow.module(state, belief)
    expected = (weight * (0.5 * (v - target) ** 2 + 0.5 * math.log(2 * math.pi)
                          + 0.7 * (0.5 * (v - vs) ** 2 + 0.5 * math.log(2 * math.pi)))).mean()
    assert loss["loss_value"].item() == pytest.approx(expected.item(), rel=1e-5)
    loss["loss_value"].backward()
    assert all(p.grad is None for p in slow.parameters())


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
        loss_fn = ImaginedActorLoss(actor, value_module(), rssm, Linear(seed=3), Sigmoid(seed=4), horizon=H, entropy=0.1)
        loss_fn.reuse_rollout_terms = reuse
        torch.manual_seed(7)
        loss = loss_fn(start)[0]["loss_actor"]
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in actor.parameters()]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_shared_critic_output_gives_the_same_critic_loss_and_gradients():
    rssm = gru_cell_rssm(A, 5, S, D, 8)
    start = TensorDict({keys.STATE: torch.randn(4, S), keys.BELIEF: torch.randn(4, D)}, [4])
    out = []
    for share in (True, False):
        value, slow = value_module(2), value_module(5)
        actor_loss = ImaginedActorLoss(actor_module(), value, rssm, Linear(seed=3), None, horizon=H, share_value=share)
        torch.manual_seed(3)
        _, data = actor_loss(start)
        assert ("value_raw" in data["imagined"].keys()) == share
        loss = ImaginedCriticLoss(value, slow, slow_reg=0.5)(data)[0]["loss_value"]
        loss.backward()
        out.append((loss.item(), torch.cat([p.grad.flatten() for p in value.parameters()])))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-6) and torch.allclose(out[0][1], out[1][1], atol=1e-6)


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
        ImaginedActorLoss(actor_module(), value, None, reward, cont, continue_mode="sample")


def test_v3_presets_read_the_continue_head_as_their_code_does():
    from dreamer_trl.config import PRESETS

    assert PRESETS["dreamer_v3_proprio"]().loss.continue_mode == "mode"  # 2023: cont_head(traj).mode()
    assert PRESETS["dreamer_v3"]().loss.continue_mode == "mode"
    assert PRESETS["dreamer_v3_current"]().loss.continue_mode == "prob"  # current: con.prob(1)
    assert PRESETS["dreamer_v3_proprio_current"]().loss.continue_mode == "prob"
