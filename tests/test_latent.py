"""GaussianLatent against torch.distributions and its definition std = softplus(raw) + min_std; CategoricalLatent
(unimix, straight-through one-hot samples, KL/entropy/log_prob) against plain loops."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from dreamer_trl.model.latent import CategoricalLatent, GaussianLatent, features, param_keys

S = 3


def random_params(seed=0, shape=(5,)):
    g = torch.Generator().manual_seed(seed)
    return {"mean": torch.randn(*shape, S, generator=g), "std": torch.rand(*shape, S, generator=g) + 0.1}


@pytest.mark.parametrize("min_std", [0.1, 0.5])
def test_params_are_mean_and_softplus_plus_min_std(min_std):
    raw = torch.randn(4, 2 * S, generator=torch.Generator().manual_seed(1)) * 3
    params = GaussianLatent(S, min_std).params(raw)
    torch.testing.assert_close(params["mean"], raw[:, :S])
    softplus = torch.log(1 + torch.exp(raw[:, S:]))
    torch.testing.assert_close(params["std"], softplus + min_std)


def test_dimensions():
    latent = GaussianLatent(S)
    assert (latent.param_dim, latent.sample_dim, latent.names) == (2 * S, S, ("mean", "std"))


def test_sample_with_given_noise_is_mean_plus_std_times_noise_and_mode_is_mean():
    latent, params = GaussianLatent(S), random_params()
    noise = torch.randn(5, S)
    torch.testing.assert_close(latent.sample(params, noise), params["mean"] + params["std"] * noise)
    torch.testing.assert_close(latent.mode(params), params["mean"])


def test_sample_without_noise_draws_standard_normal_from_the_global_stream():
    latent, params = GaussianLatent(S), random_params()
    torch.manual_seed(5)
    sample = latent.sample(params)
    torch.manual_seed(5)
    torch.testing.assert_close(sample, params["mean"] + params["std"] * torch.randn(5, S))
    assert not torch.allclose(sample, params["mean"])


def test_kl_matches_torch_distributions():
    latent, q, p = GaussianLatent(S), random_params(0, (2, 4)), random_params(1, (2, 4))
    ref = kl_divergence(Normal(q["mean"], q["std"]), Normal(p["mean"], p["std"])).sum(-1)
    out = latent.kl(q, p)
    assert out.shape == (2, 4)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(latent.kl(q, q), torch.zeros(2, 4))


def test_entropy_matches_torch_distributions():
    params = random_params()
    torch.testing.assert_close(GaussianLatent(S).entropy(params),
                               Normal(params["mean"], params["std"]).entropy().sum(-1))


def test_log_prob_matches_torch_distributions():
    params = random_params()
    value = torch.randn(5, S)
    torch.testing.assert_close(GaussianLatent(S).log_prob(params, value),
                               Normal(params["mean"], params["std"]).log_prob(value).sum(-1))
    # at the mean with unit std: S * -1/2 log(2 pi)
    unit = {"mean": torch.zeros(1, S), "std": torch.ones(1, S)}
    assert GaussianLatent(S).log_prob(unit, torch.zeros(1, S)).item() == pytest.approx(-S * 0.5 * math.log(2 * math.pi))


def test_features_concatenate_state_then_belief():
    state, belief = torch.randn(2, 3, S), torch.randn(2, 3, 5)
    out = features(state, belief)
    assert out.shape == (2, 3, S + 5)
    torch.testing.assert_close(out[..., :S], state)
    torch.testing.assert_close(out[..., S:], belief)


def test_param_keys():
    assert param_keys("prior", ("mean", "std")) == ["prior_mean", "prior_std"]


def test_latent_state_holds_both_parts_and_forms_the_features():
    from tensordict import TensorDict

    from dreamer_trl.model.latent import LatentState

    td = TensorDict({"state": torch.randn(2, 3, 4, requires_grad=True), "belief": torch.randn(2, 3, 6)}, [2, 3])
    latent = LatentState.from_tensordict(td)
    assert torch.equal(latent.features(), torch.cat([td["state"], td["belief"]], -1))
    flat = latent.detach().flatten()
    assert flat.state.shape == (6, 4) and flat.belief.shape == (6, 6) and not flat.state.requires_grad
    state, belief = flat  # still a pair where a pair is expected
    assert torch.equal(state, td["state"].detach().reshape(6, 4))


# --- CategoricalLatent -------------------------------------------------------------------------------------

G, C = 3, 5


def categorical_params(seed=0, shape=(4,), unimix=0.01, scale=3.0):
    raw = torch.randn(*shape, G * C, generator=torch.Generator().manual_seed(seed)) * scale
    return CategoricalLatent(G, C, unimix).params(raw), raw


def test_categorical_dimensions():
    latent = CategoricalLatent(G, C)
    assert (latent.param_dim, latent.sample_dim, latent.names) == (G * C, G * C, ("logits",))


def test_unimix_probs_are_the_mixture_and_keep_every_class_at_least_unimix_over_classes():
    params, raw = categorical_params(scale=50.0)  # very peaked softmax: most classes near 0 before mixing
    probs = params["logits"].exp().view(4, G, C)
    for n in range(4):
        for g in range(G):
            row = raw[n, g * C:(g + 1) * C].tolist()
            z = max(row)
            e = [math.exp(v - z) for v in row]
            ref = [0.99 * ei / sum(e) + 0.01 / C for ei in e]
            assert probs[n, g].tolist() == pytest.approx(ref, abs=1e-6)
    assert (probs >= 0.01 / C * (1 - 1e-5)).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, G))


def test_without_unimix_the_logits_are_log_softmax_per_group():
    params, raw = categorical_params(unimix=0.0)
    torch.testing.assert_close(params["logits"].view(4, G, C), torch.log_softmax(raw.view(4, G, C), -1))


@pytest.mark.parametrize("method", ["sample", "mode"])
def test_straight_through_forward_is_exactly_one_hot_and_the_gradient_reaches_the_logits(method):
    latent = CategoricalLatent(G, C)
    raw = torch.randn(4, G * C, generator=torch.Generator().manual_seed(2)).requires_grad_()
    params = latent.params(raw)
    torch.manual_seed(0)
    out = getattr(latent, method)(params)
    grouped = out.detach().view(4, G, C)
    assert set(grouped.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(grouped.sum(-1), torch.ones(4, G))
    if method == "mode":
        assert torch.equal(grouped.argmax(-1), params["logits"].detach().view(4, G, C).argmax(-1))
    w = torch.randn(4, G * C)
    (out * w).sum().backward()
    # straight-through: d out / d raw = d probs / d raw, so the gradient equals that of sum(w * probs)
    raw2 = raw.detach().clone().requires_grad_()
    (latent.params(raw2)["logits"].exp() * w).sum().backward()
    torch.testing.assert_close(raw.grad, raw2.grad)
    assert raw.grad.abs().sum() > 0


def test_sample_frequencies_match_the_probabilities():
    latent = CategoricalLatent(2, 4, unimix=0.01)
    raw = torch.tensor([[2.0, 0.0, -1.0, 0.5, -3.0, 1.0, 1.0, 0.0]])
    params = {"logits": latent.params(raw)["logits"].expand(20000, -1)}
    torch.manual_seed(0)
    freq = latent.sample(params).view(20000, 2, 4).mean(0)
    probs = params["logits"][0].exp().view(2, 4)
    # binomial standard error at n = 20000 is <= 0.0036; 5 sigma
    torch.testing.assert_close(freq, probs, atol=0.018, rtol=0)


def test_sample_with_given_standard_normal_noise_is_deterministic_and_follows_the_probabilities():
    latent = CategoricalLatent(2, 4)
    raw = torch.tensor([[2.0, 0.0, -1.0, 0.5, -3.0, 1.0, 1.0, 0.0]])
    params = {"logits": latent.params(raw)["logits"].expand(20000, -1)}
    noise = torch.randn(20000, 8, generator=torch.Generator().manual_seed(1))
    a, b = latent.sample(params, noise), latent.sample(params, noise)
    assert torch.equal(a, b)
    torch.testing.assert_close(a.view(20000, 2, 4).mean(0), params["logits"][0].exp().view(2, 4), atol=0.018, rtol=0)


def test_categorical_kl_entropy_and_log_prob_match_loops_summed_over_groups():
    latent = CategoricalLatent(G, C)
    q, _ = categorical_params(0)
    p, _ = categorical_params(1)
    kl, ent = latent.kl(q, p), latent.entropy(q)
    assert kl.shape == ent.shape == (4,)
    for n in range(4):
        kl_ref = ent_ref = 0.0
        for g in range(G):
            for c in range(C):
                qi = math.exp(q["logits"][n, g * C + c].item())
                pi = math.exp(p["logits"][n, g * C + c].item())
                kl_ref += qi * math.log(qi / pi)
                ent_ref -= qi * math.log(qi)
        assert kl[n].item() == pytest.approx(kl_ref, rel=1e-5)
        assert ent[n].item() == pytest.approx(ent_ref, rel=1e-5)
    torch.testing.assert_close(latent.kl(q, q), torch.zeros(4))
    sample = latent.sample(q).detach()
    ref = torch.tensor([sum(q["logits"][n, i].item() for i in range(G * C) if sample[n, i] == 1) for n in range(4)])
    torch.testing.assert_close(latent.log_prob(q, sample), ref)


def test_categorical_kl_matches_torch_distributions():
    from torch.distributions import Categorical
    latent = CategoricalLatent(G, C)
    q, _ = categorical_params(2, (2, 3))
    p, _ = categorical_params(3, (2, 3))
    ref = kl_divergence(Categorical(logits=q["logits"].view(2, 3, G, C)),
                        Categorical(logits=p["logits"].view(2, 3, G, C))).sum(-1)
    torch.testing.assert_close(latent.kl(q, p), ref)


def test_bad_unimix_is_refused():
    with pytest.raises(ValueError, match="unimix"):
        CategoricalLatent(2, 2, unimix=1.0)
