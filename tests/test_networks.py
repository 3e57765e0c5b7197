"""dreamer_trl.builders.networks (make_world_model, make_actor, make_value) and Dreamer V1's networks as its
builders make them from the shared layers (style v1), plus dreamer_trl.model.pixels."""
import math

import pytest
import torch
from conftest import TINY, make_batch
from tensordict import TensorDict
from torch import nn
from torch.nn import functional as F
from torchrl.envs.utils import ExplorationType, set_exploration_type

from dreamer_trl import keys
from dreamer_trl.behavior.actors import TanhNormalActor
from dreamer_trl.builders.networks import make_actor, make_value, make_world_model
from dreamer_trl.model.layers import MLP, STYLE_V1, ConvEncoder, TransposedConvDecoder, encoder_depths
from dreamer_trl.model.pixels import preprocess_pixels

FEAT = 230  # S + D at paper size


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _pixels(*batch, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (*batch, 3, 64, 64), generator=g, dtype=torch.uint8)


def _features(*shape, seed=0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def ConvDecoder(feature_dim: int, depth: int = 32) -> TransposedConvDecoder:
    """V1's decoder as the builders make it ("deconv")."""
    return TransposedConvDecoder(feature_dim, depth, style=STYLE_V1, kernels=(5, 5, 6, 6), padding="valid")


def V1Encoder(depth: int = 32) -> ConvEncoder:
    """V1's encoder as the builders make it ("conv")."""
    return ConvEncoder(encoder_depths(depth, "valid"), kernel=4, downsample="valid", style=STYLE_V1)


def MLPEncoder(obs_dim: int, hidden: int, layers: int) -> MLP:
    """V1's vector encoder ("mlp_out"): ``layers`` hidden layers and an activated output layer."""
    return MLP(obs_dim, hidden, layers + 1, style=STYLE_V1)


def Head(feature_dim: int, out_dim: int, hidden: int, layers: int) -> MLP:
    return MLP(feature_dim, hidden, layers, out_dim=out_dim, style=STYLE_V1)


def Actor(feature_dim: int, action_dim: int, hidden: int = 400, layers: int = 4, **kw) -> TanhNormalActor:
    return TanhNormalActor(Head(feature_dim, 2 * action_dim, hidden, layers), **kw)


def _act(actor: TanhNormalActor, x: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
    """The actor on features ``x``, split as (state, belief) at an arbitrary point."""
    with set_exploration_type(ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM):
        return actor(x[..., :2], x[..., 2:])


def _dist_params(actor: TanhNormalActor, x: torch.Tensor):
    return actor.squash(actor.net(x))


def _zero_last_layer(actor: TanhNormalActor) -> None:
    last = actor.net.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()


# --- preprocessing -----------------------------------------------------------------------------------


def test_preprocess_pixels_range():
    px = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    out = preprocess_pixels(px)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, px.float() / 255 - 0.5)
    assert out[0].item() == -0.5 and out[-1].item() == 0.5


def test_preprocess_pixels_images_come_out_channels_last():
    px = torch.randint(0, 256, (2, 3, 3, 8, 8), dtype=torch.uint8)  # [B, T, C, H, W]
    out = preprocess_pixels(px)
    torch.testing.assert_close(out, px.float() / 255 - 0.5, rtol=0, atol=0)
    assert out.stride(-3) == 1  # channel stride 1: NHWC memory for the convolutions
    assert out.reshape(-1, 3, 8, 8).is_contiguous(memory_format=torch.channels_last)


def test_preprocess_pixels_leaves_input_and_floats_alone():
    px = _pixels(2)
    before = px.clone()
    preprocess_pixels(px)
    assert torch.equal(px, before)
    x = torch.rand(2, 3, 64, 64) - 0.5
    assert preprocess_pixels(x) is x  # already preprocessed


# --- shapes and dtypes -------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [(4,), (2, 3), (1, 2, 2)])
@pytest.mark.parametrize("depth", [32, 4])
def test_conv_encoder_shape(batch, depth):
    enc = V1Encoder(depth)
    out = enc(_pixels(*batch))
    assert out.shape == (*batch, 32 * depth) and enc.out_dim == 32 * depth
    assert out.dtype == torch.float32
    assert (out >= 0).all()  # ends in ReLU


def test_conv_encoder_paper_size():
    out = V1Encoder()(_pixels(2, 3))  # [B, T, 3, 64, 64]
    assert out.shape == (2, 3, 1024)


def test_conv_encoder_uint8_equals_preprocessed_float():
    enc, px = V1Encoder(4), _pixels(2)
    torch.testing.assert_close(enc(px), enc(px.float() / 255 - 0.5))


@pytest.mark.parametrize("batch", [(4,), (2, 3)])
@pytest.mark.parametrize("depth, feat", [(32, FEAT), (4, 40)])
def test_conv_decoder_shape(batch, depth, feat):
    out = ConvDecoder(feat, depth)(_features(*batch, feat))
    assert out.shape == (*batch, 3, 64, 64) and out.dtype == torch.float32


def test_conv_decoder_first_layer_gemm_equals_the_transposed_conv():
    """Reference: the decoder's GEMM form of its first layer gives the transposed conv's output and gradients."""
    torch.manual_seed(0)
    dec = ConvDecoder(40, 4)
    feats = _features(6, 40)

    def by_conv(features):
        return dec.net(dec.fc(features)[:, :, None, None].contiguous(memory_format=torch.channels_last))

    y, y_ref = dec(feats), by_conv(feats)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    first = dec.net[0]
    g = torch.autograd.grad(y.square().sum(), [first.weight, first.bias, dec.fc.weight])
    g_ref = torch.autograd.grad(y_ref.square().sum(), [first.weight, first.bias, dec.fc.weight])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert isinstance(first, nn.ConvTranspose2d)  # same parameters and state_dict keys as the conv form


@pytest.mark.parametrize("batch", [(4,), (2, 3)])
def test_mlp_encoder_decoder_shapes(batch):
    obs_dim, feat = 5, 12
    enc = MLPEncoder(obs_dim, hidden=20, layers=2)
    emb = enc(_features(*batch, obs_dim))
    assert emb.shape == (*batch, 20) and enc.out_dim == 20
    assert (emb >= -1).all()  # ELU output
    assert sum(isinstance(m, nn.Linear) for m in enc.modules()) == 3  # 2 hidden layers and the activated output
    dec = Head(feat, obs_dim, hidden=16, layers=2)
    assert dec(_features(*batch, feat)).shape == (*batch, obs_dim)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("batch", [(4,), (2, 3)])
def test_scalar_head_shape(batch, layers):
    head = Head(FEAT, 1, hidden=16, layers=layers)
    assert head(_features(*batch, FEAT)).shape == (*batch, 1)
    assert sum(isinstance(m, nn.Linear) for m in head.modules()) == layers + 1


@pytest.mark.parametrize("layers", [0, 1, 4])
def test_v1_mlp_structure(layers):
    """V1's ``tools.mlp``: Dense + ELU per hidden layer, no norm, a linear output."""
    net = Head(3, 2, hidden=8, layers=layers)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == layers + 1
    assert sum(isinstance(m, nn.ELU) for m in net.modules()) == layers
    assert not any(isinstance(m, (nn.LayerNorm, nn.RMSNorm)) for m in net.modules())
    assert isinstance(net.net[-1], nn.Linear) and net.net[-1].out_features == 2


# --- actor -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [(16,), (3, 5)])
def test_actor_actions_within_bounds(batch):
    torch.manual_seed(0)
    actor = Actor(FEAT, 6, hidden=32, layers=2)
    x = _features(*batch, FEAT)
    a = _act(actor, x)
    assert a.shape == (*batch, 6) and a.dtype == torch.float32
    # Samples: with std 5 at init, mean + std * eps often passes |9|, where float32 tanh rounds to exactly 1.
    assert (a.abs() <= 1).all() and not a.isnan().any()
    # Deterministic actions are tanh of a mean bounded by 5: strictly inside (-1, 1).
    assert (_act(actor, x, deterministic=True).abs() < 1).all()


def test_actor_deterministic_is_tanh_mean():
    actor = Actor(FEAT, 6, hidden=32, layers=2)
    x = _features(8, FEAT)
    mean, _ = _dist_params(actor, x)
    torch.testing.assert_close(_act(actor, x, deterministic=True), torch.tanh(mean))
    torch.testing.assert_close(_act(actor, x, deterministic=True), _act(actor, x, deterministic=True))


def test_actor_samples_are_reparameterised():
    actor = Actor(FEAT, 2, hidden=16, layers=1)
    x = _features(4, FEAT)
    actions = _act(actor, x)
    assert actions.requires_grad  # features are detached: the gradient reaches the parameters through the sample
    actions.sum().backward()
    assert all(p.grad is not None for p in actor.parameters())


def test_actor_mean_bounded_by_mean_scale():
    actor = Actor(4, 3, hidden=8, layers=1, mean_scale=5.0)
    with torch.no_grad():
        actor.net.net[-1].weight.zero_()
        actor.net.net[-1].bias.fill_(1e4)  # raw outputs far beyond the scale
    mean, _ = _dist_params(actor, _features(5, 4))
    assert (mean.abs() <= 5.0).all()
    torch.testing.assert_close(mean, torch.full_like(mean, 5.0))
    with torch.no_grad():
        actor.net.net[-1].bias.fill_(1.0)  # small raw values pass almost unchanged: 5 tanh(1/5)
    mean, _ = _dist_params(actor, _features(5, 4))
    torch.testing.assert_close(mean, torch.full_like(mean, 5 * math.tanh(0.2)))


def test_actor_init_std_is_five():
    actor = Actor(FEAT, 6)
    _zero_last_layer(actor)
    mean, std = _dist_params(actor, _features(10, FEAT))
    expected = F.softplus(torch.tensor(actor.raw_init_std)).item() + 1e-4
    assert expected == pytest.approx(5.0001, abs=1e-5)
    torch.testing.assert_close(std, torch.full_like(std, expected))
    assert torch.equal(mean, torch.zeros_like(mean))


def test_actor_std_has_min_std_floor():
    actor = Actor(4, 3, hidden=8, layers=1)
    with torch.no_grad():
        actor.net.net[-1].weight.zero_()
        actor.net.net[-1].bias.fill_(-1e4)
    _, std = _dist_params(actor, _features(5, 4))
    assert (std >= 1e-4).all() and (std < 2e-4).all()


# --- builders ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_world_model():
    return make_world_model("pixels", (3, 64, 64), action_dim=6)


# Measured; they match the paper's 0.69M / 0.56M / 3.79M / 0.25M (DREAMER.md "size").
PAPER_WORLD_MODEL_PARAMS = {"encoder": 690144, "rssm": 557920, "decoder": 3795555, "reward_head": 253201}


@pytest.mark.parametrize("part, count", PAPER_WORLD_MODEL_PARAMS.items())
def test_paper_world_model_parameter_counts(paper_world_model, part, count):
    assert _n_params(getattr(paper_world_model, part)) == count


def test_paper_world_model_has_no_other_parameters(paper_world_model):
    assert _n_params(paper_world_model) == sum(PAPER_WORLD_MODEL_PARAMS.values())
    assert paper_world_model.obs_key == "pixels" and paper_world_model.reco_key == "reco_pixels"


@pytest.mark.parametrize("build, count", [(lambda: make_actor(FEAT, 6), 578412), (lambda: make_value(FEAT), 413601)],
                         ids=["actor", "value"])
def test_paper_behavior_parameter_counts(build, count):
    assert _n_params(build()) == count


@pytest.mark.parametrize("obs_key, obs_shape, action_dim", [
    ("pixels", (3, 64, 64), 2),
    ("observation", (5,), 3),
])
def test_world_model_forward_shapes(tiny_cfg, obs_key, obs_shape, action_dim):
    B, T, S, D = 2, 4, tiny_cfg.world_model.latent.state_dim, tiny_cfg.world_model.rssm.belief_dim
    wm = make_world_model(obs_key, obs_shape, action_dim, tiny_cfg)
    td = make_batch(B=B, T=T, A=action_dim, obs_key=obs_key, obs_dim=obs_shape[0])
    out = wm(td)
    for key in (keys.STATE, keys.PRIOR_MEAN, keys.PRIOR_STD, keys.POSTERIOR_MEAN, keys.POSTERIOR_STD):
        assert out[key].shape == (B, T, S), key
    assert out[keys.BELIEF].shape == (B, T, D)
    assert out[keys.ENCODED_LATENTS].shape[:2] == (B, T)
    assert out[keys.RECO_KEYS[obs_key]].shape == (B, T, *obs_shape)
    assert out[keys.REWARD].shape == (B, T, 1)
    assert (out[keys.PRIOR_STD] >= tiny_cfg.world_model.latent.min_std).all() and (out[keys.POSTERIOR_STD] >= tiny_cfg.world_model.latent.min_std).all()


@pytest.mark.parametrize("obs_key, obs_shape, fragment", [
    ("pixels", (3, 32, 32), "pixels"),
    ("pixels", (64, 64, 3), "pixels"),
    ("pixels", (64 * 64 * 3,), "pixels"),
    ("observation", (3, 4), "observation"),
    ("observation", (), "observation"),
    ("rgb", (3, 64, 64), "rgb"),
    ("reco_pixels", (3, 64, 64), "reco_pixels"),
])
def test_make_world_model_rejects(obs_key, obs_shape, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_world_model(obs_key, obs_shape, 2, TINY)


def _features_td(N=5, S=TINY.world_model.latent.state_dim, D=TINY.world_model.rssm.belief_dim, requires_grad=False) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    return TensorDict({keys.STATE: torch.randn(N, S, generator=g).requires_grad_(requires_grad),
                       keys.BELIEF: torch.randn(N, D, generator=g).requires_grad_(requires_grad)}, [N])


def test_make_value_writes_state_value(tiny_cfg):
    value = make_value(tiny_cfg.world_model.latent.state_dim + tiny_cfg.world_model.rssm.belief_dim, tiny_cfg)
    assert value(_features_td())[keys.STATE_VALUE].shape == (5, 1)


@pytest.mark.parametrize("exploration, deterministic", [
    (ExplorationType.RANDOM, False), (ExplorationType.DETERMINISTIC, True), (ExplorationType.MODE, True),
])
def test_make_actor_exploration_modes(tiny_cfg, exploration, deterministic):
    torch.manual_seed(0)
    actor = make_actor(tiny_cfg.world_model.latent.state_dim + tiny_cfg.world_model.rssm.belief_dim, 3, tiny_cfg)
    td = _features_td()
    with set_exploration_type(exploration):
        a1 = actor(td.clone())[keys.ACTION]
        a2 = actor(td.clone())[keys.ACTION]
    assert a1.shape == (5, 3) and (a1.abs() <= 1).all()  # tanh of a wide Gaussian rounds to +-1 in float32
    assert torch.equal(a1, a2) == deterministic


def test_make_actor_detaches_its_features(tiny_cfg):
    actor = make_actor(tiny_cfg.world_model.latent.state_dim + tiny_cfg.world_model.rssm.belief_dim, 3, tiny_cfg)
    td = _features_td(requires_grad=True)
    actor(td)[keys.ACTION].sum().backward()
    assert td[keys.STATE].grad is None and td[keys.BELIEF].grad is None
    assert all(p.grad is not None for p in actor.parameters())


def _glorot_bound(fan_in, fan_out):
    return math.sqrt(6.0 / (fan_in + fan_out))


@pytest.mark.parametrize("build", [
    lambda: V1Encoder(4), lambda: ConvDecoder(12, 4), lambda: MLPEncoder(5, 16, 2),
    lambda: Head(12, 5, 16, 2), lambda: Head(12, 1, 16, 3), lambda: Actor(12, 2, 16, 4),
])
def test_networks_use_the_official_keras_initialisation(build):
    """Glorot-uniform kernels (checked against the bound and the uniform variance b^2/3), zero biases."""
    torch.manual_seed(0)
    net = build()
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    assert layers
    for m in layers:
        w = m.weight
        k = w[0, 0].numel() if w.dim() == 4 else 1
        b = _glorot_bound(w.shape[1] * k, w.shape[0] * k)  # symmetric in the fans: any layout
        assert w.abs().max() <= b
        if w.numel() >= 500:
            assert w.var().item() == pytest.approx(b * b / 3, rel=0.2)
        assert m.bias is None or torch.count_nonzero(m.bias) == 0


def test_rssm_initialisation_gru_orthogonal_and_joint_posterior_bound():
    from dreamer_trl.model.rssm import gru_cell_rssm

    torch.manual_seed(0)
    rssm = gru_cell_rssm(action_dim=3, embed_dim=40, state_dim=6, belief_dim=20, hidden_dim=24)
    w_hh = rssm.core.gru.weight_hh                                             # (3D, D): Keras kernel transposed
    assert torch.allclose(w_hh.T @ w_hh, torch.eye(20), atol=1e-5)       # orthonormal columns
    assert torch.count_nonzero(rssm.core.gru.bias_ih) == 0 and torch.count_nonzero(rssm.core.gru.bias_hh) == 0
    assert rssm.core.gru.weight_ih.abs().max() <= _glorot_bound(24, 60)
    # posterior first layer: one Dense on concat(h, e) in the official code, fan_in = D + E
    joint = torch.cat([rssm.obs_belief.weight, rssm.obs_embed.weight], 1)
    assert joint.abs().max() <= _glorot_bound(20 + 40, 24)
    assert joint.var().item() == pytest.approx(_glorot_bound(60, 24) ** 2 / 3, rel=0.2)
    assert torch.count_nonzero(rssm.obs_embed.bias) == 0


def test_tanh_normal_log_prob_matches_torch_transformed_distribution():
    from torch.distributions import Normal, TransformedDistribution
    from torch.distributions.transforms import TanhTransform

    from dreamer_trl.behavior.actors import TanhNormal

    torch.manual_seed(0)
    mean, std = torch.randn(7, 3), torch.rand(7, 3) + 0.2
    ours = TanhNormal(mean, std)
    ref = TransformedDistribution(Normal(mean, std), [TanhTransform()])
    action = torch.tanh(torch.randn(7, 3))
    torch.testing.assert_close(ours.log_prob(action), ref.log_prob(action).sum(-1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.mode(), torch.tanh(mean))
    # entropy: the sample estimate -E[log p(a)] against H[N(mean, std)] + E[log(1 - tanh(u)^2)] (change of
    # variables), the expectation over pre-tanh draws u; both Monte-Carlo, 20k draws: noise about 0.02
    torch.manual_seed(1)
    u = mean + std * torch.randn(20000, 7, 3)
    log_det = torch.log1p(-torch.tanh(u) ** 2).clamp_min(-30)
    expected = (Normal(mean, std).entropy() + log_det.mean(0)).sum(-1)
    torch.manual_seed(2)
    torch.testing.assert_close(ours.entropy(samples=20000), expected, rtol=0, atol=0.1)


def test_actor_mean_scale_zero_leaves_the_mean_unsquashed():
    torch.manual_seed(0)
    actor = Actor(4, 3, hidden=8, layers=1, mean_scale=0.0)
    x = _features(5, 4) * 50
    mean, _ = _dist_params(actor, x)
    raw_mean = actor.net(x).chunk(2, -1)[0]
    torch.testing.assert_close(mean, raw_mean)
    assert raw_mean.abs().max() > 5  # where the paper's 5 tanh(x/5) would have bounded it
