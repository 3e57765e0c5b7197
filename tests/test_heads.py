"""NormalHead: the raw output is the mean of N(., 1); nll and the fused mean_nll against torch.distributions."""
import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

from dreamer_trl.heads import NormalHead

S, D = 3, 4


def test_forward_runs_the_net_on_state_then_belief_and_pred_is_the_raw_mean():
    torch.manual_seed(0)
    net = nn.Linear(S + D, 2)
    head = NormalHead(net)
    state, belief = torch.randn(5, S), torch.randn(5, D)
    raw = head(state, belief)
    torch.testing.assert_close(raw, state @ net.weight[:, :S].T + belief @ net.weight[:, S:].T + net.bias)
    assert head.pred(raw) is raw


EVENT_SHAPES = {1: (6,), 3: (3, 4, 5)}


def raw_and_target(event_dims, batch=(2, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, *EVENT_SHAPES[event_dims])
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("event_dims", [1, 3])
def test_nll_is_unit_normal_negative_log_prob_summed_over_event_dims(event_dims):
    raw, target = raw_and_target(event_dims)
    out = NormalHead(nn.Identity(), event_dims).nll(raw, target)
    assert out.shape == (2, 3)
    ref = -Normal(raw, 1.0).log_prob(target).flatten(2).sum(-1)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("event_dims", [1, 3])
def test_mean_nll_equals_nll_averaged_over_rows_with_its_gradient(event_dims):
    raw, target = raw_and_target(event_dims, seed=1)
    head = NormalHead(nn.Identity(), event_dims)
    raw_a, raw_b = raw.clone().requires_grad_(), raw.clone().requires_grad_()
    fused, plain = head.mean_nll(raw_a, target), head.nll(raw_b, target).mean()
    torch.testing.assert_close(fused, plain)
    fused.backward()
    plain.backward()
    torch.testing.assert_close(raw_a.grad, raw_b.grad)


@pytest.mark.parametrize("event_dims", [1, 3])
def test_mean_nll_by_hand_with_a_constant_error(event_dims):
    """Error c everywhere: per row, sum over the event of 1/2 c^2 + 1/2 log 2 pi, the same for every row."""
    _, target = raw_and_target(event_dims)
    c = 0.7
    event = math.prod(EVENT_SHAPES[event_dims])
    out = NormalHead(nn.Identity(), event_dims).mean_nll(target + c, target)
    assert out.item() == pytest.approx(event * (0.5 * c**2 + 0.5 * math.log(2 * math.pi)), rel=1e-5)
