"""dreamer_trl.config.sizes: the official numbers, every size builds, parameter counts near the names.

The counts are of the networks the official optimiser trains (encoder, RSSM, decoder, reward, continue,
policy, value; not the slow value), for 64x64x3 pixels and a 6-dim action (DMC walker). Large sizes are
built on the meta device (no memory, no init cost). This implementation gives (pixels / 24-dim proprio):

    size1m 0.69M / 0.64M   size12m 10.5M / 9.7M   size25m 23.5M / 21.8M   size50m 41.7M / 38.6M
    size100m 93.5M / 86.6M   size200m 166M / 154M   size400m 373M / 345M

The names are rounded up: the official Atari setting (96x96 images: a 6x6 map after the encoder)
has larger posterior and decoder entry layers, e.g. about +21M at size200m.
"""
import pytest
import torch

from dreamer_trl.config.sizes import V3_2023_SIZES, V3_SIZES, v3_size
from dreamer_trl.model.cores import BlockGRU
from dreamer_trl.model.latent import GaussianLatent
from dreamer_trl.model.layers import MLP, ConvEncoder, UpsampleConvDecoder, vector_encoder
from dreamer_trl.model.rssm import RSSM

OFFICIAL = {  # configs.yaml at e3f0224: (deter, hidden, classes, depth, units)
    "size1m": (512, 64, 4, 4, 64), "size12m": (2048, 256, 16, 16, 256), "size25m": (3072, 384, 24, 24, 384),
    "size50m": (4096, 512, 32, 32, 512), "size100m": (6144, 768, 48, 48, 768),
    "size200m": (8192, 1024, 64, 64, 1024), "size400m": (12288, 1536, 96, 96, 1536),
}
NOMINAL = {"size1m": 1e6, "size12m": 12e6, "size25m": 25e6, "size50m": 50e6, "size100m": 100e6,
           "size200m": 200e6, "size400m": 400e6}


class LatentShape:
    """Stands in for the categorical latent: stoch * classes logits and one-hot sample width."""

    names = ("logits",)

    def __init__(self, width):
        self.param_dim = self.sample_dim = width


def build(size, pixels=True, obs_dim=24, action_dim=6, latent=None):
    S = size.state_dim
    enc = ConvEncoder(size.cnn_depths, size.kernel) if pixels else vector_encoder(obs_dim, size.units, size.enc_layers)
    core = BlockGRU(size.deter, S, action_dim, size.hidden, size.blocks, size.dyn_layers)
    rssm = RSSM(core, latent or LatentShape(S), enc.out_dim, size.hidden, size.img_layers, size.obs_layers)
    feat = S + size.deter
    dec = (UpsampleConvDecoder(S, size.deter, size.cnn_depths, size.units, size.kernel, size.blocks) if pixels
           else MLP(feat, size.units, size.dec_layers, obs_dim))
    return {"enc": enc, "dyn": rssm, "dec": dec,
            "rew": MLP(feat, size.units, size.reward_layers, size.bins, outscale=0.0),
            "con": MLP(feat, size.units, size.cont_layers, 1),
            "pol": MLP(feat, size.units, size.policy_layers, 2 * action_dim, outscale=0.01),
            "val": MLP(feat, size.units, size.value_layers, size.bins, outscale=0.0)}


def count(nets):
    return sum(p.numel() for m in nets.values() for p in m.parameters())


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_sizes_carry_the_official_numbers(name):
    s = v3_size(name)
    assert (s.deter, s.hidden, s.classes, s.depth, s.units) == OFFICIAL[name]
    assert (s.stoch, s.blocks, s.mults, s.kernel, s.bins) == (32, 8, (2, 3, 4, 4), 5, 255)
    assert (s.enc_layers, s.dec_layers, s.reward_layers, s.cont_layers, s.policy_layers, s.value_layers) == (3, 3, 1, 1, 3, 3)


def test_unknown_size_names_the_choices():
    with pytest.raises(ValueError, match="size12m"):
        v3_size("size13m")


def test_2023_small_is_the_dmc_configuration():
    s = V3_2023_SIZES["small"]
    assert (s.deter, s.units, s.cnn_depth, s.layers, s.stoch, s.classes) == (512, 512, 32, 2, 32, 32)
    assert (s.mlp_layers, s.mlp_units) == (5, 1024)


@pytest.mark.parametrize("name", list(V3_SIZES))
def test_every_size_builds_and_its_pixel_count_is_near_its_name(name):
    with torch.device("meta"):
        pixels, proprio = count(build(V3_SIZES[name])), count(build(V3_SIZES[name], pixels=False))
    ratio = pixels / NOMINAL[name]
    assert (0.6 if name == "size1m" else 0.8) < ratio < 1.0, (name, pixels)
    assert proprio < pixels


def test_size1m_runs_one_observe_and_decodes():
    torch.manual_seed(0)
    size = V3_SIZES["size1m"]
    nets = build(size, latent=GaussianLatent(size.state_dim))
    pixels = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)
    is_init = torch.zeros(2, 3, 1, dtype=torch.bool)
    is_init[:, 0] = True
    out = nets["dyn"].observe(nets["enc"](pixels), torch.randn(2, 3, 6), is_init)
    feat = torch.cat([out["state"], out["belief"]], -1)
    assert nets["dec"](feat).shape == (2, 3, 3, 64, 64)
    assert torch.count_nonzero(nets["rew"](feat)) == 0                    # outscale 0: zero at init
