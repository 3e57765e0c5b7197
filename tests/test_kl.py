"""KL terms (objectives/kl.py): where each gradient goes, the free-nats clamp on both sides, and the V2
balance against its plain formula, for the Gaussian and the categorical latent families."""
import pytest
import torch

from dreamer_trl.model.latent import CategoricalLatent, GaussianLatent
from dreamer_trl.objectives.kl import (
    BalancedKL,
    DynRepKL,
    FreeNatsKL,
    balanced_kl,
    dyn_rep_kl,
    stop_gradient,
)

LATENTS = {"gaussian": GaussianLatent(4), "categorical": CategoricalLatent(3, 4)}


def raw_params(latent, seed, scale=1.0, shape=(2, 5)):
    """(posterior raw, prior raw) leaf tensors and their parameter dicts."""
    g = torch.Generator().manual_seed(seed)
    q_raw = (torch.randn(*shape, latent.param_dim, generator=g) * scale).requires_grad_()
    p_raw = (torch.randn(*shape, latent.param_dim, generator=g) * scale).requires_grad_()
    return q_raw, p_raw, latent.params(q_raw), latent.params(p_raw)


def grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True, retain_graph=True)


@pytest.mark.parametrize("name", LATENTS)
def test_dyn_term_trains_only_the_prior_and_rep_term_only_the_posterior(name):
    latent = LATENTS[name]
    q_raw, p_raw, q, p = raw_params(latent, 0, scale=3.0)
    terms = dyn_rep_kl(latent, q, p, free=0.0)
    assert set(terms) == {"dyn", "rep"}
    dq, dp = grads(terms["dyn"], q_raw, p_raw)
    assert dq is None and dp.abs().sum() > 0
    dq, dp = grads(terms["rep"], q_raw, p_raw)
    assert dp is None and dq.abs().sum() > 0
    # same value, and together the gradient of the plain KL
    torch.testing.assert_close(terms["dyn"], terms["rep"])
    plain = latent.kl(q, p).mean()
    for a, b in zip(grads(terms["dyn"] + terms["rep"], q_raw, p_raw), grads(plain, q_raw, p_raw)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", LATENTS)
def test_dyn_rep_free_bits_clamp_each_row_before_the_mean(name):
    latent = LATENTS[name]
    q_raw, p_raw, q, p = raw_params(latent, 1, scale=2.0)
    kl = latent.kl(q, p).detach()
    free = kl.median().item()  # about half the rows below the threshold
    terms = dyn_rep_kl(latent, q, p, free=free)
    ref = sum(max(free, v) for v in kl.flatten().tolist()) / kl.numel()
    assert terms["dyn"].item() == pytest.approx(ref, rel=1e-5)
    assert terms["rep"].item() == pytest.approx(ref, rel=1e-5)
    # rows below the threshold get no gradient, rows above get that of KL / (B T)
    (dp,) = grads(terms["dyn"], p_raw)
    (dq,) = grads(terms["rep"], q_raw)
    per_row_p = dp.abs().sum(-1)
    per_row_q = dq.abs().sum(-1)
    below, above = kl < free, kl > free
    assert below.any() and above.any()
    assert (per_row_p[below] == 0).all() and (per_row_q[below] == 0).all()
    assert (per_row_p[above] > 0).all() and (per_row_q[above] > 0).all()


@pytest.mark.parametrize("name", LATENTS)
def test_dyn_rep_fully_clamped_is_free_with_zero_gradient_and_unclamped_is_the_mean_kl(name):
    latent = LATENTS[name]
    q_raw, p_raw, q, p = raw_params(latent, 2)
    kl = latent.kl(q, p).detach()
    high = dyn_rep_kl(latent, q, p, free=kl.max().item() + 1.0)
    assert high["dyn"].item() == pytest.approx(kl.max().item() + 1.0)
    for term in high.values():
        for g in grads(term, q_raw, p_raw):
            assert g is None or g.abs().sum() == 0
    low = dyn_rep_kl(latent, q, p, free=kl.min().item() - 1.0)
    assert low["dyn"].item() == pytest.approx(kl.mean().item(), rel=1e-6)


def balance_by_hand(kl_values, balance, free, free_avg):
    vals = kl_values.flatten().tolist()
    if free_avg:
        side = max(free, sum(vals) / len(vals))
    else:
        side = sum(max(free, v) for v in vals) / len(vals)
    return balance * side + (1 - balance) * side


@pytest.mark.parametrize("name", LATENTS)
@pytest.mark.parametrize("free_avg", [True, False])
@pytest.mark.parametrize("free_rank", ["below", "middle", "above"])
def test_balanced_kl_value_and_gradient_split_match_the_formula(name, free_avg, free_rank):
    latent = LATENTS[name]
    q_raw, p_raw, q, p = raw_params(latent, 3, scale=2.0)
    kl = latent.kl(q, p).detach()
    free = {"below": kl.min().item() - 0.5, "middle": kl.median().item(), "above": kl.max().item() + 0.5}[free_rank]
    balance = 0.8
    loss = balanced_kl(latent, q, p, balance, free, free_avg)
    assert loss.item() == pytest.approx(balance_by_hand(kl, balance, free, free_avg), rel=1e-5)
    # gradient: balance * d(prior side)/d prior and (1 - balance) * d(posterior side)/d posterior
    dq, dp = grads(loss, q_raw, p_raw)
    terms = dyn_rep_kl(latent, q, p, free=free) if not free_avg else None
    if free_avg:
        clamped = kl.mean().item() < free
        ref_dp, = grads(latent.kl(stop_gradient(q), p).mean(), p_raw)
        ref_dq, = grads(latent.kl(q, stop_gradient(p)).mean(), q_raw)
        scale = 0.0 if clamped else 1.0
        torch.testing.assert_close(dp, balance * scale * ref_dp)
        torch.testing.assert_close(dq, (1 - balance) * scale * ref_dq)
    else:
        ref_dp, = grads(terms["dyn"], p_raw)
        ref_dq, = grads(terms["rep"], q_raw)
        torch.testing.assert_close(dp, balance * ref_dp)
        torch.testing.assert_close(dq, (1 - balance) * ref_dq)


@pytest.mark.parametrize("free_avg", [True, False])
def test_balanced_kl_at_one_half_is_the_plain_kl_clamped_per_row_as_in_the_official_special_case(free_avg):
    latent = LATENTS["gaussian"]
    q_raw, p_raw, q, p = raw_params(latent, 4, scale=2.0)
    kl = latent.kl(q, p)
    free = kl.detach().median().item()
    a = balanced_kl(latent, q, p, 0.5, free, free_avg)
    b = kl.clamp_min(free).mean()
    assert a.item() == pytest.approx(sum(max(free, v) for v in kl.flatten().tolist()) / kl.numel(), rel=1e-5)
    for ga, gb in zip(grads(a, q_raw, p_raw), grads(b, q_raw, p_raw)):
        torch.testing.assert_close(ga, gb)


def test_term_objects_name_their_terms_and_match_the_functions():
    latent = LATENTS["categorical"]
    _, _, q, p = raw_params(latent, 5)
    kl = latent.kl(q, p)
    for obj, ref in [(FreeNatsKL(3.0), {"kl": torch.maximum(kl.mean(), torch.tensor(3.0))}),
                     (BalancedKL(0.8, 1.0), {"kl": balanced_kl(latent, q, p, 0.8, 1.0)}),
                     (DynRepKL(1.0), dyn_rep_kl(latent, q, p, 1.0))]:
        out = obj(latent, q, p)
        assert tuple(out) == obj.terms
        for k in out:
            torch.testing.assert_close(out[k], ref[k])
    with pytest.raises(ValueError, match="balance"):
        BalancedKL(1.5)
