"""The RSSM's observe loop chains (s, h) across time, restarts at is_init, and equals stepwise filtering."""
import pytest
import torch

from dreamer_trl.rssm import RSSM

S, D, A, E = 4, 8, 2, 6


def rssm_and_inputs(B=3, T=6, seed=0):
    torch.manual_seed(seed)
    rssm = RSSM(A, E, S, D, hidden_dim=8)
    embed, prev_action = torch.randn(B, T, E), torch.rand(B, T, A) * 2 - 1
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    return rssm, embed, prev_action, is_init


def observe(rssm, embed, prev_action, is_init, seed=1):
    torch.manual_seed(seed)
    return rssm.observe(embed, prev_action, is_init)


def test_shapes_and_std_floor():
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    out = observe(rssm, embed, prev_action, is_init)
    for k in ("state", "prior_mean", "prior_std", "posterior_mean", "posterior_std"):
        assert out[k].shape == (3, 6, S), k
    assert out["belief"].shape == (3, 6, D)
    assert (out["prior_std"] > 0.1).all() and (out["posterior_std"] > 0.1).all()


def test_observe_equals_chained_single_steps():
    """A loop that reused the initial state at every step would not match this explicit chain."""
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    out = observe(rssm, embed, prev_action, is_init)
    torch.manual_seed(1)
    state, belief = rssm.initial((3,))
    for t in range(embed.shape[1]):
        state, belief = rssm.observe_step(state, belief, prev_action[:, t], embed[:, t], is_init[:, t])
        torch.testing.assert_close(belief, out["belief"][:, t])
        torch.testing.assert_close(state, out["state"][:, t])


def test_information_flows_forward_in_time():
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    base = observe(rssm, embed, prev_action, is_init)
    embed2 = embed.clone()
    embed2[:, 0] += 1.0
    changed = observe(rssm, embed2, prev_action, is_init)
    for t in range(1, embed.shape[1]):
        assert not torch.allclose(base["belief"][:, t], changed["belief"][:, t]), t


def test_restart_at_is_init():
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    is_init[:, 3] = True
    base = observe(rssm, embed, prev_action, is_init)
    embed2, action2 = embed.clone(), prev_action.clone()
    embed2[:, :3] += 1.0
    action2[:, :4] = 0.5  # includes prev_action at the restart row: it is ignored there
    changed = observe(rssm, embed2, action2, is_init)
    torch.testing.assert_close(base["belief"][:, 3:], changed["belief"][:, 3:])
    assert not torch.allclose(base["belief"][:, 2], changed["belief"][:, 2])
    # the restarted row equals the first row of a fresh sequence with the same embedding
    torch.manual_seed(0)
    fresh = rssm.observe(embed[:, 3:4], torch.zeros(3, 1, A), torch.ones(3, 1, 1, dtype=torch.bool))
    torch.testing.assert_close(fresh["belief"][:, 0], base["belief"][:, 3])


@pytest.mark.parametrize("horizon", [1, 5])
def test_imagine_shapes_and_gradient_to_actions(horizon):
    rssm, *_ = rssm_and_inputs()
    state, belief = torch.randn(7, S), torch.randn(7, D)
    w = torch.zeros(S + D, A, requires_grad=True)
    roll = rssm.imagine(state, belief, lambda s, h: torch.tanh(torch.cat([s, h], -1) @ w), horizon)
    assert roll["state"].shape == (7, horizon, S) and roll["belief"].shape == (7, horizon, D)
    assert roll["action"].shape == (7, horizon, A)
    roll["state"][:, -1].sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_prior_step_with_given_noise_is_deterministic():
    rssm, *_ = rssm_and_inputs()
    state, belief, action = torch.randn(5, S), torch.randn(5, D), torch.rand(5, A)
    noise = torch.randn(5, S)
    a = rssm.prior_step(state, belief, action, noise)
    b = rssm.prior_step(state, belief, action, noise)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    mean, std, sample, _ = a
    torch.testing.assert_close(sample, mean + std * noise)
