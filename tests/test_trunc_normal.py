"""DreamerV2's truncated-normal actor distribution against scipy.stats.truncnorm: density, entropy, mean,
inverse-CDF draws and their gradients, the straight-through clip, and the actor built on it."""
import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type

from dreamer_trl.behavior.actors import TruncNormalActor
from dreamer_trl.model.trunc_normal import TruncatedNormal

F64 = torch.float64
# (loc, scale): the actor's range (loc = tanh(.) in (-1, 1), scale in (0.1, 2.1)) with bounds far in one tail
# (loc +-0.99, scale 0.1: the near bound at 0.1 std, the far one at 19.9), and intervals wholly in a tail.
GRID = [(mu, s) for mu in (-0.99, -0.5, 0.0, 0.5, 0.99) for s in (0.1, 0.5, 1.1, 2.1)]
TAILS = [(5.0, 0.1), (-5.0, 0.1), (3.0, 0.05), (-1.5, 0.02)]


def reference(mu, s, low=-1.0, high=1.0):
    return stats.truncnorm((low - mu) / s, (high - mu) / s, loc=mu, scale=s)


def dist(mu, s, dtype=F64, **kwargs):
    kwargs.setdefault("event_dims", 0)
    return TruncatedNormal(torch.tensor(mu, dtype=dtype), torch.tensor(s, dtype=dtype), -1.0, 1.0, **kwargs)


def quad_entropy(ref):
    lo, hi = ref.support()
    return integrate.quad(lambda x: -np.exp(ref.logpdf(x)) * ref.logpdf(x), lo, hi, limit=400, epsabs=1e-12,
                          points=[lo + 1e-3, hi - 1e-3])[0]


@pytest.mark.parametrize("mu, s", GRID + TAILS)
def test_log_prob_entropy_and_mean_match_scipy(mu, s):
    d, ref = dist(mu, s), reference(mu, s)
    xs = np.linspace(-1.0, 1.0, 41)
    np.testing.assert_allclose(d.log_prob(torch.tensor(xs)).numpy(), ref.logpdf(xs), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(float(d.mean), ref.mean(), rtol=1e-9, atol=1e-12)
    # scipy's closed-form entropy divides by Z and fails where Z underflows: integrate there
    expected = ref.entropy() if (mu, s) in GRID else quad_entropy(ref)
    np.testing.assert_allclose(float(d.entropy()), expected, rtol=1e-7, atol=1e-7)
    assert d.mode() == pytest.approx(min(max(mu, -1.0), 1.0))


def test_log_prob_is_minus_inf_outside_and_sums_the_action_dims():
    loc, scale = torch.tensor([[0.3, -0.9], [0.0, 0.99]], dtype=F64), torch.tensor([[0.2, 1.1], [0.5, 0.1]], dtype=F64)
    x = torch.tensor([[0.1, -0.5], [0.7, 1.0]], dtype=F64)
    d1, d0 = TruncatedNormal(loc, scale), TruncatedNormal(loc, scale, event_dims=0)
    torch.testing.assert_close(d1.log_prob(x), d0.log_prob(x).sum(-1))
    torch.testing.assert_close(d1.entropy(), d0.entropy().sum(-1))
    out = d0.log_prob(torch.tensor([[-1.001, 0.0], [1.0001, 0.0]], dtype=F64))
    assert out[0, 0] == -np.inf and out[1, 0] == -np.inf and torch.isfinite(out[:, 1]).all()


@pytest.mark.parametrize("mu, s", [(0.99, 0.1), (-0.99, 0.1), (0.99, 1.1), (-0.99, 1.1), (0.0, 0.5), (5.0, 0.1)])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_samples_lie_in_the_clipped_box_and_follow_the_truncnorm_cdf(mu, s, dtype):
    torch.manual_seed(0)
    n = 20_000
    x = dist(mu, s, dtype).rsample((n,))
    assert x.dtype == dtype and x.shape == (n,)
    assert float(x.min()) >= -1 + 1e-6 - 1e-7 and float(x.max()) <= 1 - 1e-6 + 1e-7  # float32 rounding of the margin
    ks = stats.kstest(x.double().numpy(), reference(mu, s).cdf).statistic
    assert ks < 0.015  # the 1% critical value at n = 20000 is 0.0115


@pytest.mark.parametrize("mu, s", GRID + [(5.0, 0.1), (-3.0, 0.05)])
def test_icdf_is_scipys_ppf_with_its_gradients_to_loc_and_scale(mu, s):
    u = np.array([1e-6, 0.01, 0.2, 0.5, 0.8, 0.99, 1 - 1e-6])
    loc = torch.full((len(u),), mu, dtype=F64, requires_grad=True)
    scale = torch.full((len(u),), s, dtype=F64, requires_grad=True)
    x = TruncatedNormal(loc, scale, event_dims=0).icdf(torch.tensor(u))
    ref = reference(mu, s).ppf(u)
    np.testing.assert_allclose(x.detach().numpy(), ref, rtol=1e-9, atol=1e-9)
    g_loc, g_scale = torch.autograd.grad(x.sum(), [loc, scale])
    h = 1e-6  # central differences of the inverse-CDF map at fixed u
    fd_loc = (reference(mu + h, s).ppf(u) - reference(mu - h, s).ppf(u)) / (2 * h)
    fd_scale = (reference(mu, s + h).ppf(u) - reference(mu, s - h).ppf(u)) / (2 * h)
    np.testing.assert_allclose(g_loc.numpy(), fd_loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_scale.numpy(), fd_scale, rtol=1e-5, atol=1e-6)


def test_rsample_clips_straight_through_with_the_unclipped_gradient():
    # loc at the bound with a tiny scale: every draw is within 1e-6 of 1, so every draw is clipped
    loc = torch.tensor([1.0, 0.2], dtype=F64, requires_grad=True)
    scale = torch.tensor([1e-7, 0.3], dtype=F64, requires_grad=True)
    d = TruncatedNormal(loc, scale)
    torch.manual_seed(3)
    x = d.rsample((64,))
    torch.manual_seed(3)
    raw = d.icdf(torch.rand((64, 2), dtype=F64))
    assert (raw[:, 0] > 1 - 1e-6).all() and (x[:, 0] == 1 - 1e-6).all()
    torch.testing.assert_close(x.detach(), raw.detach().clamp(-1 + 1e-6, 1 - 1e-6), rtol=0, atol=0)
    grads = torch.autograd.grad(x.sum(), [loc, scale])
    raw_grads = torch.autograd.grad(raw.sum(), [loc, scale])
    for g, r in zip(grads, raw_grads):
        torch.testing.assert_close(g, r)
    assert grads[0][0] != 0 and grads[1][0] != 0  # the clipped draws still pass a gradient


def test_actor_is_v2s_dist_layer_and_acts_with_the_mode():
    S, D, A = 3, 4, 2
    net = nn.Linear(S + D, 2 * A)
    actor = TruncNormalActor(net, min_std=0.1)
    state, belief = torch.randn(5, S), torch.randn(5, D)
    out = net(torch.cat([state, belief], -1))
    d = actor.dist(state, belief)
    assert isinstance(d, TruncatedNormal) and (d.low, d.high, d.clip) == (-1.0, 1.0, 1e-6)
    torch.testing.assert_close(d.loc, torch.tanh(out[:, :A]))
    torch.testing.assert_close(d.scale, 2 * torch.sigmoid(out[:, A:] / 2) + 0.1)
    assert d.log_prob(d.rsample()).shape == (5,) and d.entropy().shape == (5,)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        torch.testing.assert_close(actor(state, belief), torch.tanh(out[:, :A]))
    with set_exploration_type(ExplorationType.RANDOM):
        action = actor(state, belief)
    assert action.abs().max() <= 1 - 1e-6 + 1e-7
    (action.sum() + d.entropy().sum()).backward()
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all()
