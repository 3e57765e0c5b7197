"""Representation objectives: the contrastive bound against plain loops, and each objective's terms."""
import math
from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torch.distributions import Normal

from dreamer_trl.model.heads import NormalHead
from dreamer_trl.model.latent import GaussianLatent
from dreamer_trl.objectives.representation import (
    Contrastive,
    Reconstruction,
    RewardOnly,
    contrastive_log_scores,
    info_nce,
    make_representation,
)

S = 3


def log_scores_by_loop(state, mean, std):
    n = state.shape[0]
    out = torch.empty(n, n, dtype=state.dtype)
    for i in range(n):
        for j in range(n):
            out[i, j] = Normal(mean[j], std[j]).log_prob(state[i]).sum()
    return out


def info_nce_by_loop(scores):
    n = scores.shape[0]
    total = 0.0
    for i in range(n):
        log_norm = math.log(sum(math.exp(scores[i, j].item()) for j in range(n)))
        total += -(scores[i, i].item() - log_norm)
    return total / n


def test_contrastive_log_scores_match_a_double_loop():
    g = torch.Generator().manual_seed(0)
    state, mean = torch.randn(5, S, generator=g, dtype=torch.float64), torch.randn(5, S, generator=g, dtype=torch.float64)
    std = torch.rand(5, S, generator=g, dtype=torch.float64) + 0.1
    out = contrastive_log_scores(state, mean, std)
    assert out.shape == (5, 5)
    torch.testing.assert_close(out, log_scores_by_loop(state, mean, std))


def test_info_nce_matches_a_loop():
    scores = torch.randn(6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    assert info_nce(scores).item() == pytest.approx(info_nce_by_loop(scores), rel=1e-12)
    # scores[i, i] is the positive pair: transposing the matrix changes the rows' normalisers
    assert info_nce(scores.T).item() != pytest.approx(info_nce(scores).item())


def contrastive_world_model():
    """The state model is the identity: the embedding is the raw (mean, std) of q(s_t | o_t)."""
    return SimpleNamespace(rssm=SimpleNamespace(latent=GaussianLatent(S)), state_model=nn.Identity())


def contrastive_batch(state, raw_q, B, T):
    return TensorDict({"encoded_latents": raw_q.reshape(B, T, -1), "state": state.reshape(B, T, -1)}, [B, T])


def test_contrastive_term_scores_every_state_against_every_observation_of_the_batch():
    B, T = 2, 3
    g = torch.Generator().manual_seed(2)
    raw_q, state = torch.randn(B * T, 2 * S, generator=g), torch.randn(B * T, S, generator=g)
    terms = Contrastive()(contrastive_world_model(), contrastive_batch(state, raw_q, B, T), None)
    assert set(terms) == {"contrast"}
    q = GaussianLatent(S).params(raw_q)
    expected = info_nce_by_loop(log_scores_by_loop(state.double(), q["mean"].double(), q["std"].double()))
    assert terms["contrast"].item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_term_is_lower_when_states_match_their_own_observation():
    """q(s | o_j) concentrated at distinct means: states at their own means score near 0, shuffled ones high."""
    B, T = 2, 2
    means = 3.0 * torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]])
    raw_q = torch.cat([means, torch.full((4, S), -5.0)], -1)  # std ~ softplus(-5) + 0.1
    wm = contrastive_world_model()
    matched = Contrastive()(wm, contrastive_batch(means, raw_q, B, T), None)["contrast"].item()
    shuffled = Contrastive()(wm, contrastive_batch(means.roll(1, 0), raw_q, B, T), None)["contrast"].item()
    assert matched < 1e-3 < math.log(4) < shuffled


def test_contrastive_requires_a_state_model():
    wm = SimpleNamespace(rssm=SimpleNamespace(latent=GaussianLatent(S)), state_model=None)
    with pytest.raises(ValueError, match="state model"):
        Contrastive()(wm, contrastive_batch(torch.zeros(4, S), torch.zeros(4, 2 * S), 2, 2), None)


def test_reconstruction_is_the_decoder_mean_nll_of_the_reco_key():
    wm = SimpleNamespace(decoder=NormalHead(nn.Identity()), reco_key="reco_observation")
    target = torch.randn(2, 3, 4)
    td = TensorDict({"reco_observation": target + 0.5}, [2, 3])
    terms = Reconstruction()(wm, td, target)
    assert set(terms) == {"reco"} and Reconstruction.terms == ("reco",)
    assert terms["reco"].item() == pytest.approx(4 * (0.5 * 0.25 + 0.5 * math.log(2 * math.pi)), rel=1e-5)


def test_reconstruction_raises_without_decoder():
    wm = SimpleNamespace(decoder=None, reco_key="reco_observation")
    with pytest.raises(ValueError, match="decoder"):
        Reconstruction()(wm, TensorDict({}, []), torch.zeros(1))


def test_reward_only_has_no_terms():
    assert RewardOnly.terms == ()
    assert RewardOnly()(None, TensorDict({}, []), torch.zeros(1)) == {}


@pytest.mark.parametrize("name,cls", [("reconstruction", Reconstruction), ("contrastive", Contrastive),
                                      ("reward", RewardOnly)])
def test_make_representation(name, cls):
    assert type(make_representation(name)) is cls


def test_make_representation_rejects_unknown_name():
    with pytest.raises(ValueError, match="representation must be one of"):
        make_representation("pixels")
