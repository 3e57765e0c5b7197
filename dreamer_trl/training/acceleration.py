"""Speed switches for the update: ``torch.compile`` of the networks and RSSM steps, bf16 autocast.

Each switch is off by default and falls back safely: compilation errors fall back to eager execution
(``torch._dynamo.config.suppress_errors``); CUDA graphs (``mode="reduce-overhead"``) are used on CUDA only;
bf16 autocast is used only where the device supports it. The time loops themselves stay in Python: only
the per-step functions are compiled, so graphs are small and shared by every step of every update.
"""
from __future__ import annotations

import contextlib
import warnings

import torch


def compile_networks(world_model, actor, value, *, backend: str = "inductor", device="cpu") -> None:
    """Compile encoder, decoder, heads, actor and the RSSM step functions in place."""
    import torch._dynamo
    import torch._functorch.config

    torch._dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly
    # The update keeps graphs for a second backward (retain_graph: phases sharing predictions, the actor's
    # gradient through the value); AOTAutograd's donated buffers refuse that at the first update.
    torch._functorch.config.donated_buffer = False
    cuda = torch.device(device).type == "cuda"
    mode = "reduce-overhead" if cuda and backend == "inductor" else None  # CUDA graphs on GPU only
    modules = [world_model.encoder, world_model.decoder, world_model.reward_head,
               actor.module.net if actor is not None else None,  # None: a planning agent (PlaNet)
               value.module if value is not None else None]
    for module in modules:
        if module is not None:
            module.compile(backend=backend, mode=mode)
    rssm = world_model.rssm
    rssm.core.compile(backend=backend, mode=mode)  # the recurrent step of observe
    for name in ("posterior_step", "prior_step"):
        setattr(rssm, name, torch.compile(getattr(rssm, name), backend=backend, mode=mode))


def autocast_context(precision: str, device) -> contextlib.AbstractContextManager:
    """A context for the loss forward passes: bf16 autocast, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_bf16_supported():
        warnings.warn("bf16 is not supported on this GPU; running in fp32")
        return contextlib.nullcontext()
    return torch.autocast(device_type=kind, dtype=torch.bfloat16)
