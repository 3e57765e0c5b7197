"""dreamer_trl.model.layers against plain formulas: init, norms, MLP, block-linear, conv encoder and decoders."""
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dreamer_trl.model.layers import (
    MLP,
    OFFICIAL_STYLE,
    STYLE_2023,
    BlockLinear,
    ConvEncoder,
    NetStyle,
    TransposedConvDecoder,
    UpsampleConvDecoder,
    dense,
    encoder_depths,
    fans,
    linear,
    symlog,
    trunc_normal_init_,
    vector_encoder,
)
from dreamer_trl.model.pixels import preprocess_pixels


def rms_norm_ref(x, scale, eps):
    return x / torch.sqrt((x**2).mean(-1, keepdim=True) + eps) * scale


def layer_norm_ref(x, scale, shift, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * scale + shift


def norm_ref(norm, x):
    if isinstance(norm, nn.RMSNorm):
        return rms_norm_ref(x, norm.weight, norm.eps)
    if isinstance(norm, nn.LayerNorm):
        return layer_norm_ref(x, norm.weight, norm.bias, norm.eps)
    return x


def silu(x):
    return x / (1 + torch.exp(-x))


@pytest.mark.parametrize("style,fan", [(OFFICIAL_STYLE, 300), (STYLE_2023, (300 + 500) / 2)])
def test_trunc_normal_init_has_variance_one_over_fan_and_is_truncated(style, fan):
    torch.manual_seed(0)
    layer = linear(300, 500, style)
    w = layer.weight
    bound = 2 * 1.1368 / math.sqrt(fan)
    assert w.abs().max() <= bound + 1e-7
    assert w.abs().max() > 0.9 * bound
    assert abs(w.var().item() * fan - 1.0) < 0.03
    assert torch.count_nonzero(layer.bias) == 0


def test_outscale_multiplies_the_weights_and_zero_gives_zeros():
    torch.manual_seed(0)
    a = linear(64, 32, outscale=1.0).weight
    torch.manual_seed(0)
    b = linear(64, 32, outscale=0.01).weight
    torch.testing.assert_close(b, 0.01 * a)
    assert torch.count_nonzero(linear(64, 32, outscale=0.0).weight) == 0


def test_fans_follow_the_official_layouts():
    # official kernels: linear (in, out); conv (k, k, in, out); block (G, in/G, out/G) counted as (in, out)
    assert fans(torch.empty(7, 3), "linear") == (3, 7)
    assert fans(torch.empty(8, 3, 5, 5), "conv") == (75, 200)
    assert fans(torch.empty(8, 3, 4, 4), "conv_transpose") == (48, 128)
    assert fans(torch.empty(4, 6, 2), "block") == (24, 8)
    w = torch.empty(4, 6, 2)
    torch.manual_seed(0)
    trunc_normal_init_(w, *fans(w, "block"))
    assert w.abs().max() <= 2 * 1.1368 / math.sqrt(24) + 1e-7


def test_dense_layer_bias_and_norm_by_style():
    off, old = dense(4, 6, OFFICIAL_STYLE), dense(4, 6, STYLE_2023)
    assert off[0].bias is not None and isinstance(off[1], nn.RMSNorm) and off[1].eps == 1e-4
    assert old[0].bias is None and isinstance(old[1], nn.LayerNorm) and old[1].eps == 1e-3
    assert isinstance(off[2], nn.SiLU)
    assert dense(4, 6, NetStyle(norm="none"))[0].bias is not None  # no norm: always a bias


@pytest.mark.parametrize("style", [OFFICIAL_STYLE, STYLE_2023])
def test_mlp_matches_linear_norm_silu_by_formula(style):
    torch.manual_seed(0)
    mlp = MLP(5, 8, 2, out_dim=3, style=style)
    with torch.no_grad():  # non-trivial norm parameters, so scale and shift are exercised
        for m in mlp.modules():
            if isinstance(m, (nn.RMSNorm, nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 5)
    h = x
    for block in mlp.net[:2]:
        lin, norm = block[0], block[1]
        z = h @ lin.weight.T + (lin.bias if lin.bias is not None else 0)
        h = silu(norm_ref(norm, z))
    ref = h @ mlp.net[2].weight.T + mlp.net[2].bias
    torch.testing.assert_close(mlp(x), ref)
    assert mlp.out_dim == 3


def test_vector_encoder_applies_symlog_first():
    torch.manual_seed(0)
    enc = vector_encoder(4, 8, layers=3)
    x = torch.tensor([[-100.0, -0.5, 0.0, 1000.0]])
    torch.testing.assert_close(symlog(x), torch.sign(x) * torch.log(1 + x.abs()))
    torch.testing.assert_close(enc(x), enc.net(torch.sign(x) * torch.log(1 + x.abs())))
    assert enc.out_dim == 8


def test_block_linear_matches_a_loop_over_blocks_and_its_jacobian_is_block_diagonal():
    torch.manual_seed(0)
    G, I, O = 3, 6, 9
    layer = BlockLinear(I, O, G)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 4, I)
    ref = torch.cat([x[..., g * 2:(g + 1) * 2] @ layer.weight[g] for g in range(G)], -1) + layer.bias
    torch.testing.assert_close(layer(x), ref)
    jac = torch.autograd.functional.jacobian(layer, torch.randn(I))        # (O, I)
    for go in range(G):
        for gi in range(G):
            block = jac[go * 3:(go + 1) * 3, gi * 2:(gi + 1) * 2]
            assert (block.abs().sum() > 0) == (go == gi)


def conv_encoder_ref(enc, pixels, downsample):
    """The encoder written with functional convs and the norm on NHWC, from its own parameters."""
    x = preprocess_pixels(pixels).reshape(-1, 3, 64, 64)
    convs = [m for m in enc.net if isinstance(m, nn.Conv2d)]
    norms = [m.norm for m in enc.net if m.__class__.__name__ == "ChannelNorm"]
    for conv, norm in zip(convs, norms):
        x = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
        if downsample == "maxpool":
            x = F.max_pool2d(x, 2)
        x = silu(norm_ref(norm, x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
    return x.permute(0, 2, 3, 1).reshape(*pixels.shape[:-3], -1)


@pytest.mark.parametrize("downsample,style", [("maxpool", OFFICIAL_STYLE), ("stride", STYLE_2023)])
def test_conv_encoder_matches_functional_reference(downsample, style):
    torch.manual_seed(0)
    depths = encoder_depths(2, downsample)
    enc = ConvEncoder(depths, downsample=downsample, style=style)
    pixels = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)
    out = enc(pixels)
    assert out.shape == (2, 3, depths[-1] * 16) and enc.out_dim == depths[-1] * 16
    torch.testing.assert_close(out, conv_encoder_ref(enc, pixels, downsample), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(enc(preprocess_pixels(pixels)), out)


def test_encoder_depths_official_and_2023():
    assert encoder_depths(16) == (32, 48, 64, 64)
    assert encoder_depths(32, "stride") == (32, 64, 128, 256)


def test_conv_decoder_v3_shape_range_and_block_layout_of_its_first_map():
    torch.manual_seed(0)
    S, D, G = 6, 16, 4
    dec = UpsampleConvDecoder(S, D, encoder_depths(2), units=8, blocks=G)
    feat = torch.randn(2, 3, S + D)
    out = dec(feat)
    assert out.shape == (2, 3, 3, 64, 64)
    assert out.min() > -0.5 and out.max() < 0.5
    # block g of the belief writes channel group g of the 4x4 map, at every position (official "(g h w c)")
    belief = torch.randn(D)
    x0 = dec.space_belief(belief).view(G, 4, 4, dec.channels // G)
    w = dec.space_belief.weight                                            # (G, D/G, 16 C/G)
    for g in range(G):
        ref = belief[g * 4:(g + 1) * 4] @ w[g] + dec.space_belief.bias[g * 32:(g + 1) * 32]
        torch.testing.assert_close(x0[g], ref.view(4, 4, 2))


def test_conv_decoder_v3_output_layer_outscale_zero_gives_a_grey_image():
    dec = UpsampleConvDecoder(4, 8, encoder_depths(2), units=8, blocks=2, outscale=0.0)
    out = dec(torch.randn(5, 12))
    torch.testing.assert_close(out, torch.zeros_like(out))                 # sigmoid(0) - 0.5


def test_transposed_conv_decoder_shape_and_no_norm_on_the_last_layer():
    torch.manual_seed(0)
    dec = TransposedConvDecoder(12, depth=2)
    assert dec(torch.randn(2, 3, 12)).shape == (2, 3, 3, 64, 64)
    assert dec(torch.randn(12)).shape == (3, 64, 64)
    last = dec.net[-1]
    assert isinstance(last, nn.ConvTranspose2d) and last.bias is not None and last.out_channels == 3
    hidden = [m for m in dec.net if isinstance(m, nn.ConvTranspose2d)][:-1]
    assert [m.out_channels for m in hidden] == [8, 4, 2] and all(m.bias is None for m in hidden)


def test_dreamer_v2_image_networks_are_dreamerv2s():
    """danijar/dreamerv2 07d906e common/nets.py: Encoder._cnn is Conv2D(48 * 2^i, 4, 2) with Keras's "valid"
    padding (64 -> 31 -> 14 -> 6 -> 2: a 1536-wide embedding); Decoder._cnn is Dense(32 * 48) viewed as a 1x1
    map, then Conv2DTranspose(2^(2 - i) * 48, k, 2) for k in 5, 5, 6 and a last one to 3 channels (k 6): the
    parameter counts of those layers, written from the official shapes, and a plain valid-conv chain."""
    from torch.nn import functional as F

    from dreamer_trl.builders.networks import make_world_model
    from dreamer_trl.config import make_preset

    cfg = make_preset("dreamer_v2", from_pixels=True)
    wm = make_world_model("pixels", (3, 64, 64), 6, cfg)
    d, feat = 48, 32 * 32 + 200
    enc = sum(cin * cout * 16 + cout for cin, cout in [(3, d), (d, 2 * d), (2 * d, 4 * d), (4 * d, 8 * d)])
    dec = feat * 32 * d + 32 * d + sum(cin * cout * k * k + cout for cin, cout, k in
                                       [(32 * d, 4 * d, 5), (4 * d, 2 * d, 5), (2 * d, d, 6), (d, 3, 6)])
    assert sum(p.numel() for p in wm.encoder.parameters()) == enc
    assert sum(p.numel() for p in wm.decoder.parameters()) == dec
    assert wm.encoder.out_dim == 1536
    px = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    x = px.float() / 255 - 0.5
    sizes = []
    for conv in [m for m in wm.encoder.modules() if isinstance(m, nn.Conv2d)]:
        x = F.elu(F.conv2d(x, conv.weight, conv.bias, stride=2))
        sizes.append(x.shape[-1])
    assert sizes == [31, 14, 6, 2]
    torch.testing.assert_close(wm.encoder(px), x.flatten(1), rtol=1e-5, atol=1e-5)  # ELU, no norm
    out = wm.decoder.net(torch.randn(2, feat))
    assert out.shape == (2, 3, 64, 64)
