"""CriticLoss against plain loops from the equations: V1's Gaussian-mean regression with gamma^t weights (Dreamer
Eq. 8), V2/V3's head NLL with continue weights and the slow-critic regulariser (V3 Eq. 10), the replay term."""
import math

import pytest
import torch
from tensordict import TensorDict
from test_actor_loss import (
    A,
    D,
    H,
    Linear,
    S,
    actor_module,
    build,
    family_loss,
    rollout_by_hand,
    value_module,
)

from dreamer_trl import keys
from dreamer_trl.model.rssm import gru_cell_rssm
from dreamer_trl.objectives.actor_loss import ActorLoss
from dreamer_trl.objectives.critic_loss import CriticLoss, replay_lambda_return

# ------------------------------------------------------------------------------------------ V2/V3 (V3 Eq. 10)


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
    loss_fn = CriticLoss(value, None, replay_scale=1.0, gamma=0.97, lmbda=0.9)

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


def test_critic_loss_weights_nll_and_slow_regulariser():
    torch.manual_seed(0)
    N = 4
    value, slow = value_module(2), value_module(5)
    state, belief, target = torch.randn(N, H, S), torch.randn(N, H, D), torch.randn(N, H, 1)
    weight = torch.rand(N, H, 1)
    data = TensorDict({"imagined": TensorDict({keys.STATE: state, keys.BELIEF: belief, keys.LAMBDA_TARGET: target,
                                               "weight": weight}, [N, H])}, [])
    loss, _ = CriticLoss(value, slow, slow_reg=0.7)(data)
    with torch.no_grad():
        v, vs = value.module(state, belief), slow.module(state, belief)
    expected = (weight * (0.5 * (v - target) ** 2 + 0.5 * math.log(2 * math.pi)
                          + 0.7 * (0.5 * (v - vs) ** 2 + 0.5 * math.log(2 * math.pi)))).mean()
    assert loss["loss_value"].item() == pytest.approx(expected.item(), rel=1e-5)
    loss["loss_value"].backward()
    assert all(p.grad is None for p in slow.parameters())


def test_shared_critic_output_gives_the_same_critic_loss_and_gradients():
    rssm = gru_cell_rssm(A, 5, S, D, 8)
    start = TensorDict({keys.STATE: torch.randn(4, S), keys.BELIEF: torch.randn(4, D)}, [4])
    out = []
    for share in (True, False):
        value, slow = value_module(2), value_module(5)
        actor_loss = family_loss(actor_module(), value, rssm, Linear(seed=3), None, horizon=H, share_value=share)
        torch.manual_seed(3)
        _, data = actor_loss(start)
        assert (keys.STATE_VALUE in data["imagined"].keys()) == share
        loss = CriticLoss(value, slow, slow_reg=0.5)(data)[0]["loss_value"]
        loss.backward()
        out.append((loss.item(), torch.cat([p.grad.flatten() for p in value.parameters()])))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-6) and torch.allclose(out[0][1], out[1][1], atol=1e-6)


# ------------------------------------------------------------------------------------------ V1 (Dreamer Eq. 8)


def test_value_loss_regresses_the_value_of_imagined_s1_to_sH_minus_1_on_the_targets():
    H, gamma = 4, 0.9
    wm, actor, value, actor_loss, post = build(H, gamma)
    torch.manual_seed(3)
    _, data = actor_loss(post)
    out, _ = CriticLoss(value, regression="squared", gamma=gamma)(data)
    states, beliefs, _ = rollout_by_hand(wm, actor, post, H, seed=3)
    with torch.no_grad():
        v = value.module(states, beliefs)[..., 0]
    target = data["imagined", "lambda_target"][..., 0]
    N = states.shape[0]
    expected = sum(gamma**t * 0.5 * (v[n, t].item() - target[n, t].item()) ** 2
                   for n in range(N) for t in range(H - 1)) / (N * (H - 1))
    assert out["loss_value"].item() == pytest.approx(expected, rel=1e-5)


def test_shared_value_predictions_give_the_same_value_loss():
    wm, actor, value, shared_loss, post = build(share_value=True)
    plain_loss = ActorLoss(actor, value, shared_loss.imagination_env, horizon=4)
    torch.manual_seed(4)
    _, shared = shared_loss(post)
    torch.manual_seed(4)
    _, plain = plain_loss(post)
    assert shared["imagined", keys.STATE_VALUE].requires_grad and keys.STATE_VALUE not in plain["imagined"].keys()
    a, _ = CriticLoss(value, regression="squared")(shared)
    b, _ = CriticLoss(value, regression="squared")(plain)
    torch.testing.assert_close(a["loss_value"], b["loss_value"])
