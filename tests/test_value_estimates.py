"""Reference tests for dreamer_trl.objectives.value_estimates against plain loops of Dreamer Eq. 4-6.

Indexing of the loops: states 0..T; ``reward[n]`` is r_n (the reward of state n), ``value[n]`` is v(s_n) for
n < T and ``bootstrap`` is v(s_T). ``gamma`` is a float or a list of per-step discounts, ``gamma[m]`` applied
between step m and m + 1.
"""
import math

import pytest
import torch

from dreamer_trl.objectives.value_estimates import (
    LambdaReturn,
    NStepReturn,
    RewardSum,
    lambda_return,
    make_value_estimate,
    nstep_return,
    reward_sum,
)

F64 = torch.float64


def discount(gamma, tau, n):
    """gamma^(n - tau), or the product of the per-step discounts gamma_tau .. gamma_{n-1}."""
    if isinstance(gamma, (list, tuple)):
        return math.prod(gamma[tau:n])
    return gamma ** (n - tau)


def nstep_by_definition(reward, value, bootstrap, gamma, k):
    """Dreamer Eq. 5: sum_{n=tau}^{h-1} gamma^(n-tau) r_n + gamma^(h-tau) v_h, h = min(tau + k, T)."""
    T = len(reward)
    v = list(value) + [bootstrap]
    out = []
    for tau in range(T):
        h = min(tau + k, T)
        out.append(sum(discount(gamma, tau, n) * reward[n] for n in range(tau, h)) + discount(gamma, tau, h) * v[h])
    return out


def lambda_return_by_definition(reward, value, bootstrap, gamma, lmbda):
    """Dreamer Eq. 6 literally: (1 - lambda) sum_{n=1}^{H-1} lambda^(n-1) V_N^n + lambda^(H-1) V_N^H."""
    T = len(reward)
    out = []
    for tau in range(T):
        steps = T - tau
        v_n = lambda n: nstep_by_definition(reward, value, bootstrap, gamma, n)[tau]  # noqa: E731
        mix = (1 - lmbda) * sum(lmbda ** (n - 1) * v_n(n) for n in range(1, steps))
        out.append(mix + lmbda ** (steps - 1) * v_n(steps))
    return out


def reward_sum_by_definition(reward):
    """Dreamer Eq. 4: V_R(s_tau) = sum_{n=tau}^{H} r_n, undiscounted, for the first H - 1 states."""
    H = len(reward)
    out = []
    for tau in range(H - 1):
        total = 0.0
        for n in range(tau, H):
            total += reward[n]
        out.append(total)
    return out


def random_trajectory(T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(T, generator=g, dtype=F64), torch.randn(T, generator=g, dtype=F64),
            torch.randn((), generator=g, dtype=F64))


def column(x):
    """[T] -> [1, T, 1] (one trajectory in the library's layout)."""
    return x[None, :, None]


def per_step_discounts(T, seed=1):
    return (0.3 + 0.7 * torch.rand(T, generator=torch.Generator().manual_seed(seed), dtype=F64))


@pytest.mark.parametrize("gamma,lmbda", [(0.99, 0.95), (0.9, 0.0), (0.5, 1.0), (1.0, 0.5), (0.7, 0.3)])
def test_lambda_return_matches_definition(gamma, lmbda):
    reward, value, bootstrap = random_trajectory()
    ours = lambda_return(column(reward), column(value), bootstrap[None, None], gamma, lmbda)
    ref = lambda_return_by_definition(reward.tolist(), value.tolist(), bootstrap.item(), gamma, lmbda)
    torch.testing.assert_close(ours.flatten(), torch.tensor(ref, dtype=F64))


@pytest.mark.parametrize("lmbda", [0.0, 0.6, 0.95, 1.0])
def test_lambda_return_with_per_step_discounts_matches_definition(lmbda):
    reward, value, bootstrap = random_trajectory(T=5)
    gammas = per_step_discounts(5)
    ours = lambda_return(column(reward), column(value), bootstrap[None, None], column(gammas), lmbda)
    ref = lambda_return_by_definition(reward.tolist(), value.tolist(), bootstrap.item(), gammas.tolist(), lmbda)
    torch.testing.assert_close(ours.flatten(), torch.tensor(ref, dtype=F64))


@pytest.mark.parametrize("k", [1, 2, 3, 5, 6, 9])
def test_nstep_return_matches_definition(k):
    reward, value, bootstrap = random_trajectory(T=6)
    ours = nstep_return(column(reward), column(value), bootstrap[None, None], 0.9, k)
    ref = nstep_by_definition(reward.tolist(), value.tolist(), bootstrap.item(), 0.9, k)
    torch.testing.assert_close(ours.flatten(), torch.tensor(ref, dtype=F64))


def test_nstep_return_with_k_1_is_one_step_td_target():
    reward, value, bootstrap = random_trajectory(T=4)
    ours = nstep_return(column(reward), column(value), bootstrap[None, None], 0.8, 1).flatten()
    nxt = value.tolist()[1:] + [bootstrap.item()]
    torch.testing.assert_close(ours, torch.tensor([reward[t].item() + 0.8 * nxt[t] for t in range(4)], dtype=F64))


@pytest.mark.parametrize("k", [6, 7, 50])
def test_nstep_return_beyond_the_horizon_is_the_monte_carlo_return_bootstrapped_at_the_horizon(k):
    T, gamma = 6, 0.9
    reward, value, bootstrap = random_trajectory(T=T)
    ours = nstep_return(column(reward), column(value), bootstrap[None, None], gamma, k).flatten()
    for tau in range(T):
        mc = sum(gamma ** (n - tau) * reward[n].item() for n in range(tau, T)) + gamma ** (T - tau) * bootstrap.item()
        assert ours[tau].item() == pytest.approx(mc, rel=1e-12, abs=1e-12), tau


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_nstep_return_with_per_step_discounts_matches_definition(k):
    reward, value, bootstrap = random_trajectory(T=5)
    gammas = per_step_discounts(5)
    ours = nstep_return(column(reward), column(value), bootstrap[None, None], column(gammas), k)
    ref = nstep_by_definition(reward.tolist(), value.tolist(), bootstrap.item(), gammas.tolist(), k)
    torch.testing.assert_close(ours.flatten(), torch.tensor(ref, dtype=F64))


def test_nstep_return_rejects_k_below_1():
    reward, value, bootstrap = random_trajectory()
    with pytest.raises(ValueError, match="k must be >= 1"):
        nstep_return(column(reward), column(value), bootstrap[None, None], 0.9, 0)


@pytest.mark.parametrize("gamma", [0.9, "per_step"])
def test_lambda_one_is_nstep_to_the_horizon_and_lambda_zero_is_one_step(gamma):
    T = 6
    reward, value, bootstrap = random_trajectory(T=T, seed=3)
    g = per_step_discounts(T) if gamma == "per_step" else gamma
    g_lib, g_ref = (column(g), g.tolist()) if gamma == "per_step" else (g, g)
    args = (column(reward), column(value), bootstrap[None, None], g_lib)
    ref_args = (reward.tolist(), value.tolist(), bootstrap.item(), g_ref)
    torch.testing.assert_close(lambda_return(*args, 1.0).flatten(), torch.tensor(nstep_by_definition(*ref_args, T), dtype=F64))
    torch.testing.assert_close(lambda_return(*args, 0.0).flatten(), torch.tensor(nstep_by_definition(*ref_args, 1), dtype=F64))
    # the two ends differ on this trajectory, so each identity can fail on its own
    assert not torch.allclose(lambda_return(*args, 1.0), lambda_return(*args, 0.0))


def test_reward_sum_matches_double_loop():
    reward = torch.randn(7, generator=torch.Generator().manual_seed(4), dtype=F64)
    ours = reward_sum(column(reward)).flatten()
    assert ours.shape == (6,)
    torch.testing.assert_close(ours, torch.tensor(reward_sum_by_definition(reward.tolist()), dtype=F64))


def test_estimates_are_batched_over_leading_dims():
    g = torch.Generator().manual_seed(0)
    r, v, b = (torch.randn(3, 4, 7, 1, generator=g), torch.randn(3, 4, 7, 1, generator=g),
               torch.randn(3, 4, 1, generator=g))
    for fn in (lambda *x: lambda_return(*x, 0.99, 0.95), lambda *x: nstep_return(*x, 0.99, 3)):
        out = fn(r, v, b)
        assert out.shape == (3, 4, 7, 1)
        torch.testing.assert_close(out[1, 2], fn(r[1, 2], v[1, 2], b[1, 2]))
    assert reward_sum(r).shape == (3, 4, 6, 1)


N, H = 3, 5


def imagined(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, H, 1, generator=g, dtype=F64), torch.randn(N, H, 1, generator=g, dtype=F64)


@pytest.mark.parametrize("estimate,reference", [
    (LambdaReturn(0.7), lambda r, v: lambda_return_by_definition(r[:-1], v[:-1], v[-1], 0.9, 0.7)),
    (NStepReturn(2), lambda r, v: nstep_by_definition(r[:-1], v[:-1], v[-1], 0.9, 2)),
    (NStepReturn(1), lambda r, v: nstep_by_definition(r[:-1], v[:-1], v[-1], 0.9, 1)),
])
def test_value_estimate_classes_use_all_h_states_and_return_h_minus_1_targets(estimate, reference):
    """The last imagined state only bootstraps: its reward is unused, its value is v_H."""
    reward, value = imagined()
    out = estimate(reward, value, 0.9)
    assert estimate.needs_value
    assert out.shape == (N, H - 1, 1)
    for n in range(N):
        ref = reference(reward[n, :, 0].tolist(), value[n, :, 0].tolist())
        torch.testing.assert_close(out[n, :, 0], torch.tensor(ref, dtype=F64))


def test_reward_sum_class_needs_no_value_and_sums_all_h_rewards():
    reward, value = imagined()
    est = RewardSum()
    assert est.needs_value is False
    out = est(reward, None, None)
    assert out.shape == (N, H - 1, 1)
    for n in range(N):
        torch.testing.assert_close(out[n, :, 0], torch.tensor(reward_sum_by_definition(reward[n, :, 0].tolist()), dtype=F64))
    torch.testing.assert_close(est(reward, value), out)  # the value does not enter V_R
    torch.testing.assert_close(est(reward, None, 1.0), out)  # a discount of 1 is V_R's own
    torch.testing.assert_close(est(reward, None, torch.ones(N, H - 1, 1, dtype=F64)), out)


@pytest.mark.parametrize("discount", [0.9, 0.0, "per_step"])
def test_reward_sum_refuses_a_discount_it_cannot_use(discount):
    """V_R (Eq. 4) is undiscounted: a discount other than 1 is refused, not silently ignored."""
    reward, _ = imagined()
    d = per_step_discounts(H - 1)[None, :, None].expand(N, H - 1, 1) if discount == "per_step" else discount
    with pytest.raises(ValueError, match="RewardSum .*undiscounted.*discount must be None or 1"):
        RewardSum()(reward, None, d)


def test_uses_discount_flags():
    assert LambdaReturn().uses_discount and NStepReturn().uses_discount and not RewardSum().uses_discount


def test_lambda_return_of_no_target_rows_is_empty_like_the_other_functions():
    """T = 0 target rows (only the bootstrap): no targets, not a crash (was: stack expects a non-empty TensorList)."""
    empty, boot = torch.zeros(3, 0, 1, dtype=F64), torch.randn(3, 1, dtype=F64)
    assert lambda_return(empty, empty, boot, 0.9, 0.95).shape == (3, 0, 1)
    assert nstep_return(empty, empty, boot, 0.9, 2).shape == (3, 0, 1)
    assert reward_sum(torch.zeros(3, 1, 1, dtype=F64)).shape == (3, 0, 1)


@pytest.mark.parametrize("estimate", [LambdaReturn(0.7), NStepReturn(2), RewardSum()])
def test_value_estimate_classes_refuse_horizon_1_naming_the_horizon(estimate):
    """One imagined state only bootstraps: no target; a clear error instead of an empty (NaN-mean) result."""
    reward, value = imagined()
    discount = None if not estimate.uses_discount else 0.9
    with pytest.raises(ValueError, match="horizon of at least 2 imagined states.*got horizon 1"):
        estimate(reward[:, :1], value[:, :1], discount)


@pytest.mark.parametrize("estimate,reference", [
    (LambdaReturn(0.7), lambda r, v: [r[0] + 0.9 * v[1]]),
    (NStepReturn(3), lambda r, v: [r[0] + 0.9 * v[1]]),
    (RewardSum(), lambda r, v: [r[0] + r[1]]),
])
def test_value_estimate_classes_at_horizon_2_give_the_equations_single_target(estimate, reference):
    """H = 2, the smallest horizon: Eq. 5/6 reduce to r_0 + gamma v(s_1), Eq. 4 to r_0 + r_1."""
    reward, value = imagined()
    out = estimate(reward[:, :2], value[:, :2], 0.9 if estimate.uses_discount else None)
    assert out.shape == (N, 1, 1)
    for n in range(N):
        torch.testing.assert_close(out[n, :, 0], torch.tensor(reference(reward[n, :2, 0].tolist(),
                                                                        value[n, :2, 0].tolist()), dtype=F64))


@pytest.mark.parametrize("name,cls,attr", [("lambda", LambdaReturn, ("lmbda", 0.8)), ("nstep", NStepReturn, ("k", 3)),
                                           ("reward", RewardSum, None)])
def test_make_value_estimate(name, cls, attr):
    est = make_value_estimate(name, lmbda=0.8, k=3)
    assert type(est) is cls
    if attr is not None:
        assert getattr(est, attr[0]) == attr[1]


def test_make_value_estimate_rejects_unknown_name():
    with pytest.raises(ValueError, match="value_estimate must be one of"):
        make_value_estimate("td0")
