"""ReturnNormalizer against numpy.percentile and a hand-written EMA loop; SlowTarget against its EMA formula
and V2's copy every N updates, as a DreamerUpdate hook with its state in the update's state_dict."""
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torch import nn

from dreamer_trl.objectives.return_norm import ReturnNormalizer, SlowTarget, percentile
from dreamer_trl.training.update import DreamerUpdate, Phase


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
@pytest.mark.parametrize("q", [0.0, 5.0, 50.0, 95.0, 100.0])
def test_percentile_matches_numpy(n, q):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n)) * 10
    assert percentile(x, q).item() == pytest.approx(float(np.percentile(x.numpy(), q)), rel=1e-5, abs=1e-5)


def ema_loop(batches, rate=0.01, low=5, high=95, limit=1.0, debias=False):
    lo = hi = weight = 0.0
    out = []
    for b in batches:
        lo = (1 - rate) * lo + rate * float(np.percentile(b, low))
        hi = (1 - rate) * hi + rate * float(np.percentile(b, high))
        weight = (1 - rate) * weight + rate
        c = 1 / max(rate, weight) if debias else 1.0
        out.append((lo * c, max(limit, (hi - lo) * c)))
    return out


@pytest.mark.parametrize("debias", [False, True])
def test_return_normalizer_matches_numpy_percentiles_and_an_ema_loop(debias):
    g = torch.Generator().manual_seed(0)
    # returns of growing size, so the scale crosses the limit of 1 partway
    batches = [torch.randn(16, 15, generator=g) * (0.1 + 20 * k) + 3 * k for k in range(60)]
    norm = ReturnNormalizer(debias=debias)
    ref = ema_loop([b.numpy() for b in batches], debias=debias)
    for b, (lo, scale) in zip(batches, ref):
        offset, s = norm(b)
        assert offset.item() == pytest.approx(lo, rel=1e-4, abs=1e-6)
        assert s.item() == pytest.approx(scale, rel=1e-4)
    assert ref[0][1] == 1.0 and ref[-1][1] > 1.0  # both sides of max(1, S) were exercised


def test_return_normalizer_without_update_reads_only_and_a_non_finite_batch_changes_nothing():
    norm = ReturnNormalizer()
    norm(torch.arange(100.0) * 10)
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    norm(torch.arange(100.0) * 1e3, update=False)
    bad = torch.arange(100.0)
    bad[3] = float("nan")
    norm(bad)
    norm(torch.full((10,), float("inf")))
    for k, v in norm.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_return_normalizer_state_dict_round_trip_continues_identically():
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(50, generator=g) * 100 for _ in range(6)]
    a = ReturnNormalizer()
    for b in batches[:3]:
        a(b)
    b_norm = ReturnNormalizer()
    b_norm.load_state_dict(a.state_dict())
    for b in batches[3:]:
        assert all(torch.equal(x, y) for x, y in zip(a(b), b_norm(b)))
    assert set(a.state_dict()) == {"lo", "hi", "weight"}


def test_return_normalizer_refuses_bad_arguments():
    with pytest.raises(ValueError, match="rate"):
        ReturnNormalizer(rate=0.0)
    with pytest.raises(ValueError, match="low < high"):
        ReturnNormalizer(low=95, high=5)


def make_critic(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1))


def perturb(module, step):
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            p.add_(torch.full_like(p, 0.1 * (step + 1) + 0.01 * i))


def test_slow_target_starts_as_a_copy_and_follows_its_ema_formula_over_several_steps():
    fast = make_critic()
    slow = SlowTarget(fast, fraction=0.02)
    ref = [p.detach().clone() for p in fast.parameters()]
    for p, r in zip(slow.target.parameters(), ref):
        assert torch.equal(p, r) and not p.requires_grad
    for step in range(5):
        perturb(fast, step)
        slow.update()
        ref = [0.98 * r + 0.02 * p.detach() for r, p in zip(ref, fast.parameters())]
    for p, r in zip(slow.target.parameters(), ref):
        torch.testing.assert_close(p, r)
    assert slow.count == 5


def test_v2_target_is_a_hard_copy_after_every_hundredth_update_starting_with_the_first():
    fast = make_critic()
    slow = SlowTarget(fast, fraction=1.0, every=100)
    copies = []
    for step in range(250):
        perturb(fast, step)
        before = [p.clone() for p in slow.target.parameters()]
        slow.update()
        if any(not torch.equal(b, p) for b, p in zip(before, slow.target.parameters())):
            copies.append(step)
            assert all(torch.equal(p, f) for p, f in zip(slow.target.parameters(), fast.parameters()))
    assert copies == [0, 100, 200]


def test_slow_target_as_an_update_hook_acts_after_the_value_phase_step_and_checkpoints():
    critic = make_critic()
    x, y = torch.randn(8, 3), torch.randn(8, 1)

    class Regression(nn.Module):
        def forward(self, data):
            return TensorDict({"loss_value": ((critic(x) - y) ** 2).mean()}), data

    def build():
        phase = Phase("value", Regression(), list(critic.parameters()), torch.optim.SGD(critic.parameters(), lr=0.1))
        return DreamerUpdate(phases=[phase], hooks=[SlowTarget(critic, fraction=0.5)])

    update = build()
    slow = update.hooks[0]
    ref = [p.detach().clone() for p in critic.parameters()]
    for _ in range(3):
        update.update(TensorDict({}, []))
        ref = [0.5 * r + 0.5 * p.detach() for r, p in zip(ref, critic.parameters())]
    for p, r in zip(slow.target.parameters(), ref):
        torch.testing.assert_close(p, r)
    state = update.state_dict()
    assert int(state["hooks"]["0"]["count"]) == 3
    other = SlowTarget(make_critic(seed=5), fraction=0.5)
    other.load_state_dict(state["hooks"]["0"])
    assert other.count == 3
    for p, q in zip(other.target.parameters(), slow.target.parameters()):
        assert torch.equal(p, q)
    ignored = SlowTarget(critic, phase="model")
    before = [p.clone() for p in ignored.target.parameters()]
    ignored.after_step(update.phases[0])
    assert ignored.count == 0 and all(torch.equal(a, b) for a, b in zip(before, ignored.target.parameters()))


def test_return_normalizer_rides_in_the_update_hooks_for_checkpoints():
    critic = make_critic()
    norm = ReturnNormalizer()

    class Regression(nn.Module):
        def forward(self, data):
            returns = critic(torch.randn(16, 3)).detach() * 50
            _, scale = norm(returns)
            return TensorDict({"loss_value": (critic(torch.randn(4, 3)) ** 2).mean() / scale}), data

    phase = Phase("value", Regression(), list(critic.parameters()), torch.optim.SGD(critic.parameters(), lr=0.1))
    update = DreamerUpdate(phases=[phase], hooks=[norm])
    update.update(TensorDict({}, []))
    state = update.state_dict()
    assert torch.equal(state["hooks"]["0"]["hi"], norm.hi) and norm.hi != 0
    fresh = DreamerUpdate(phases=[phase], hooks=[ReturnNormalizer()])
    fresh.load_state_dict(state)
    assert torch.equal(fresh.hooks[0].hi, norm.hi) and torch.equal(fresh.hooks[0].lo, norm.lo)
