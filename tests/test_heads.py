"""NormalHead against torch.distributions; the DreamerV3 heads (symlog MSE, two-hot, Bernoulli) against loops."""
import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

from dreamer_trl.model.heads import BernoulliHead, NormalHead, SymlogMSEHead, TwoHotHead, zero_init_last_linear
from dreamer_trl.model.symlog import TwoHotCodec

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


# --- DreamerV3 heads: symlog MSE, two-hot, Bernoulli ------------------------------------------------------

def test_symlog_mse_head_loss_is_squared_error_in_symlog_space_and_pred_is_symexp():
    g = torch.Generator().manual_seed(3)
    raw, target = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g) * 50
    head = SymlogMSEHead(nn.Identity())
    out = head.nll(raw, target)
    assert out.shape == (2, 3)
    for idx in [(0, 0), (1, 2)]:
        ref = sum((r - math.copysign(math.log(abs(t) + 1), t)) ** 2
                  for r, t in zip(raw[idx].tolist(), target[idx].tolist()))
        assert out[idx].item() == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(head.mean_nll(raw, target), out.mean())
    torch.testing.assert_close(head.pred(raw),
                               torch.sign(raw) * (torch.exp(raw.abs()) - 1))
    perfect = torch.sign(target) * torch.log(target.abs() + 1)
    torch.testing.assert_close(head.nll(perfect, target), torch.zeros(2, 3))
    torch.testing.assert_close(head.pred(perfect), target, rtol=1e-5, atol=1e-4)


def test_symlog_mse_mean_nll_gradient_equals_the_plain_one():
    g = torch.Generator().manual_seed(4)
    raw, target = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g) * 10
    head = SymlogMSEHead(nn.Identity())
    a, b = raw.clone().requires_grad_(), raw.clone().requires_grad_()
    head.mean_nll(a, target).backward()
    head.nll(b, target).mean().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_zero_init_last_linear_zeroes_only_the_output_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(S + D, 8), nn.SiLU(), nn.Linear(8, 255))
    zero_init_last_linear(net)
    assert net[2].weight.abs().sum() == 0 and net[2].bias.abs().sum() == 0
    assert net[0].weight.abs().sum() > 0
    with pytest.raises(ValueError, match="no nn.Linear"):
        zero_init_last_linear(nn.SiLU())


def test_two_hot_head_with_a_zeroed_output_predicts_exactly_zero_and_its_loss_is_the_codec_cross_entropy():
    torch.manual_seed(0)
    net = zero_init_last_linear(nn.Sequential(nn.Linear(S + D, 8), nn.SiLU(), nn.Linear(8, 255)))
    head = TwoHotHead(net)
    raw = head(torch.randn(2, 5, S), torch.randn(2, 5, D))
    assert raw.shape == (2, 5, 255)
    assert torch.equal(head.pred(raw), torch.zeros(2, 5, 1))
    target = torch.randn(2, 5, 1) * 100
    nll = head.nll(raw, target)
    assert nll.shape == (2, 5)
    torch.testing.assert_close(nll, torch.full((2, 5), math.log(255)))  # uniform softmax: log K whatever y
    logits = torch.randn(2, 5, 255)
    ref = -(TwoHotCodec().encode(target.squeeze(-1)) * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(head.nll(logits, target), ref)
    torch.testing.assert_close(head.mean_nll(logits, target), ref.mean())
    with pytest.raises(ValueError, match=r"\[\*N, 1\]"):
        head.nll(logits, target.squeeze(-1))


def test_two_hot_head_learns_a_large_target_scale():
    """A few hundred Adam steps on one logit vector move the decoded value to targets of very different size."""
    torch.manual_seed(0)
    head = TwoHotHead(nn.Identity())
    target = torch.tensor([[-300.0], [0.5], [2000.0]])
    logits = torch.zeros(3, 255, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        head.mean_nll(logits, target).backward()
        opt.step()
    torch.testing.assert_close(head.pred(logits.detach()), target, rtol=0.02, atol=0.02)


def test_bernoulli_head_pred_is_the_probability_and_nll_is_bce_summed_over_the_event():
    g = torch.Generator().manual_seed(5)
    raw = torch.randn(4, 3, 1, generator=g) * 3
    target = (torch.rand(4, 3, 1, generator=g) > 0.5).float()
    head = BernoulliHead(nn.Identity())
    torch.testing.assert_close(head.pred(raw), 1 / (1 + torch.exp(-raw)))
    assert torch.equal(head.mode(raw), (raw > 0).float())
    out = head.nll(raw, target)
    assert out.shape == (4, 3)
    for r, t, o in zip(raw.flatten().tolist(), target.flatten().tolist(), out.flatten().tolist()):
        p = 1 / (1 + math.exp(-r))
        assert o == pytest.approx(-(t * math.log(p) + (1 - t) * math.log(1 - p)), rel=1e-5)
    torch.testing.assert_close(head.mean_nll(raw, target), out.mean())
    soft = torch.full_like(raw, 0.997)  # V3's contdisc target (1 - 1/333) for a non-terminal step
    torch.testing.assert_close(head.nll(raw, soft), torch.nn.functional.binary_cross_entropy_with_logits(
        raw, soft, reduction="none").squeeze(-1))


@pytest.mark.parametrize("head_cls", [SymlogMSEHead, BernoulliHead, TwoHotHead])
def test_new_heads_run_the_net_on_state_then_belief(head_cls):
    torch.manual_seed(0)
    net = nn.Linear(S + D, 255 if head_cls is TwoHotHead else 2)
    head = head_cls(net)
    state, belief = torch.randn(5, S), torch.randn(5, D)
    torch.testing.assert_close(head(state, belief), net(torch.cat([state, belief], -1)))
