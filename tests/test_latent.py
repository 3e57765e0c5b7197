"""GaussianLatent against torch.distributions and its definition std = softplus(raw) + min_std."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from dreamer_trl.latent import GaussianLatent, features, param_keys

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

    from dreamer_trl.latent import LatentState

    td = TensorDict({"state": torch.randn(2, 3, 4, requires_grad=True), "belief": torch.randn(2, 3, 6)}, [2, 3])
    latent = LatentState.from_tensordict(td)
    assert torch.equal(latent.features(), torch.cat([td["state"], td["belief"]], -1))
    flat = latent.detach().flatten()
    assert flat.state.shape == (6, 4) and flat.belief.shape == (6, 6) and not flat.state.requires_grad
    state, belief = flat  # still a pair where a pair is expected
    assert torch.equal(state, td["state"].detach().reshape(6, 4))
