"""DreamerV3 model sizes by name, with the official numbers (no torch import: configs may read it).

Current official code (danijar/dreamerv3 at e3f0224, ``dreamerv3/configs.yaml``): the ``size*`` blocks
set the RSSM's ``deter``, ``hidden`` and ``classes``, the conv ``depth`` and the MLP ``units``; every
other number comes from ``defaults`` and is the same at every size: 32 latents, 8 GRU blocks, conv
multipliers (2, 3, 4, 4) with 5x5 kernels, 3 encoder / decoder / policy / value layers, 1 reward and
1 continue layer, 255 two-hot bins, prior 2 layers, posterior 1 layer. ``dmc_proprio`` uses size1m;
``dmc_vision`` keeps the defaults, which are size200m's numbers.

The size's name counts the parameters of the one optimiser (the official ``Optimizer`` prints them):
encoder, RSSM, decoder, reward, continue, policy and value, not the slow value copy. For the pixel
agent these come out near the name (see tests/test_sizes.py for the counts of this implementation).

The 2023 code (commit 84ecf19) named its sizes differently (:data:`V3_2023_SIZES`): ``deter``, the RSSM's
and heads' ``units``, the conv depth and the heads' ``layers``; its GRU had no blocks. Its ``dmc_*``
blocks use ``small``'s numbers. The pattern ``.*\\.layers`` / ``.*\\.units`` there did not reach the
encoder's and decoder's ``mlp_layers`` / ``mlp_units`` (prefix match on the dotted key), so the 2023 DMC
proprio encoder and decoder MLPs kept the default 5 layers x 1024 units.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass


@dataclass(frozen=True)
class V3Size:
    """One named size of the current official code."""

    deter: int
    """D, the GRU state width"""
    hidden: int
    """width of the RSSM's input, prior and posterior layers"""
    classes: int
    """classes of each categorical latent"""
    depth: int
    """conv base depth; the stages have depth * mults channels"""
    units: int
    """width of the encoder / decoder MLPs and of every head"""
    stoch: int = 32
    """number of categorical latents"""
    blocks: int = 8
    """GRU blocks"""
    mults: tuple[int, ...] = (2, 3, 4, 4)
    """conv depth multipliers per stage"""
    kernel: int = 5
    """conv kernel size"""
    enc_layers: int = 3
    """vector encoder layers"""
    dec_layers: int = 3
    """vector decoder layers"""
    reward_layers: int = 1
    """reward head layers"""
    cont_layers: int = 1
    """continue head layers"""
    policy_layers: int = 3
    """policy layers"""
    value_layers: int = 3
    """value layers"""
    img_layers: int = 2
    """prior layers on h_t"""
    obs_layers: int = 1
    """posterior layers on concat(h_t, e_t)"""
    dyn_layers: int = 1
    """block-diagonal layers before the GRU gates"""
    bins: int = 255
    """two-hot bins of the reward and value heads"""

    @property
    def state_dim(self) -> int:
        """Flat width of a latent sample, stoch * classes."""
        return self.stoch * self.classes

    @property
    def cnn_depths(self) -> tuple[int, ...]:
        return tuple(self.depth * m for m in self.mults)


V3_SIZES: dict[str, V3Size] = {
    "size1m": V3Size(deter=512, hidden=64, classes=4, depth=4, units=64),
    "size12m": V3Size(deter=2048, hidden=256, classes=16, depth=16, units=256),
    "size25m": V3Size(deter=3072, hidden=384, classes=24, depth=24, units=384),
    "size50m": V3Size(deter=4096, hidden=512, classes=32, depth=32, units=512),
    "size100m": V3Size(deter=6144, hidden=768, classes=48, depth=48, units=768),
    "size200m": V3Size(deter=8192, hidden=1024, classes=64, depth=64, units=1024),
    "size400m": V3Size(deter=12288, hidden=1536, classes=96, depth=96, units=1536),
}
"""The ``size*`` blocks of the current official configs.yaml."""


@dataclass(frozen=True)
class V3Size2023:
    """One named size of the 2023 official code (GRU without blocks, LayerNorm)."""

    deter: int
    """D"""
    units: int
    """width of the RSSM layers and of the reward, continue, actor and critic MLPs"""
    cnn_depth: int
    """conv base depth, doubled per stage"""
    layers: int
    """layers of the reward, continue, actor and critic MLPs"""
    stoch: int = 32
    """number of categorical latents"""
    classes: int = 32
    """classes of each categorical latent"""
    mlp_layers: int = 5
    """vector encoder / decoder layers (not changed by the size blocks)"""
    mlp_units: int = 1024
    """vector encoder / decoder width (not changed by the size blocks)"""


V3_2023_SIZES: dict[str, V3Size2023] = {
    "small": V3Size2023(deter=512, units=512, cnn_depth=32, layers=2),
    "medium": V3Size2023(deter=1024, units=640, cnn_depth=48, layers=3),
    "large": V3Size2023(deter=2048, units=768, cnn_depth=64, layers=4),
    "xlarge": V3Size2023(deter=4096, units=1024, cnn_depth=96, layers=5),
}
"""The size blocks of configs.yaml at 84ecf19; ``dmc_vision`` and ``dmc_proprio`` there equal ``small``."""


def v3_size(name: str) -> V3Size:
    """The named size; a ValueError lists the names when unknown."""
    try:
        return V3_SIZES[name]
    except KeyError:
        raise ValueError(f"unknown DreamerV3 size {name!r}; choose one of {', '.join(V3_SIZES)}") from None


SIZE_FIELDS: dict[str, str] = {
    "world_model.rssm.belief_dim": "deter", "world_model.rssm.hidden": "hidden",
    "world_model.latent.state_dim": "stoch", "world_model.latent.classes": "classes",
    "world_model.cnn_depth": "depth", "world_model.units": "units", "world_model.vector_units": "units",
    "behavior.actor.units": "units", "behavior.critic.units": "units"}
"""The fields a named size sets, each with the :class:`V3Size` number it takes (the ``.*\\.units`` pattern of
configs.yaml reaches every MLP, the vector encoder and decoder included)."""


def size_widths(name: str) -> dict[str, int]:
    """{field: the named size's number} (``custom``: {}, the fields are given); unknown names are refused."""
    if name == "custom":
        return {}
    size = v3_size(name)
    return {field: getattr(size, attr) for field, attr in SIZE_FIELDS.items()}


def apply_size(cfg, name: str):
    """A copy of ``cfg`` (a ``DreamerConfig``) with ``nets.size`` = ``name`` and the size's widths written into
    the fields of :data:`SIZE_FIELDS` (``custom``: only ``nets.size`` changes). The one place a size becomes
    numbers: the builders read the fields."""
    out = copy.deepcopy(cfg)
    out.nets.size = name
    for path, number in size_widths(name).items():
        *parts, leaf = path.split(".")
        obj = out
        for part in parts:
            obj = getattr(obj, part)
        setattr(obj, leaf, number)
    return out
