"""Optimisers of DreamerV2 and DreamerV3: LaProp with adaptive gradient clipping and warmup, V2's Adam.

DreamerV3, current official code (danijar/dreamerv3 at e3f0224: ``dreamerv3/agent.py`` ``_make_opt`` and
``embodied/jax/opt.py``), one optimiser over all networks, an optax chain applied to the gradient g_t
of every parameter tensor p at update t = 1, 2, ...:

    1. adaptive gradient clipping (Brock et al. 2021, arXiv:2102.06171):
           g <- g / max(1, ||g|| / (clip * max(pmin, ||p||)))        clip 0.3, pmin 1e-3, Frobenius norms
    2. RMS scaling:      v_t = b2 v_{t-1} + (1 - b2) g^2,   u = g / (sqrt(v_t / (1 - b2^t)) + eps)
    3. momentum:         m_t = b1 m_{t-1} + (1 - b1) u,     d = m_t / (1 - b1^t)
    4. learning rate:    p <- p - lr_t d,    lr_t = lr * min(t - 1, warmup) / warmup  (lr_t = lr without warmup)

with lr 4e-5, b1 0.9, b2 0.999, eps 1e-20, warmup 1000. Normalising by the second moment before the
momentum, not after, is LaProp (Ziyin et al. 2020, arXiv:2002.04839). The warmup ramp is optax's
``linear_schedule(0, lr, warmup)`` read at the update count before it is incremented, so the first update
has lr 0 and the ramp reaches lr at update warmup + 1.

DreamerV2 (danijar/dreamerv2 ``common/tfutils.py`` ``Optimizer``; configs.yaml): Adam, eps 1e-5, global
norm clip 100 (the update's phase clip), weight decay 1e-6 applied as ``var <- (1 - wd) var`` to every
variable of the module (``wd_pattern`` ``.*``: weights, biases and norm parameters) right before the Adam
step, independent of the learning rate: decoupled decay, which is AdamW with ``weight_decay = wd / lr``
(:func:`adam` with ``weight_decay``). The 2023 V3 settings (Adam: model 1e-4 / eps 1e-8 / clip 1000, actor and critic
3e-5 / eps 1e-5 / clip 100, no decay) are plain ``torch.optim.Adam`` and a phase clip.
"""
from __future__ import annotations

from typing import Iterable

import torch


def warmup_lr(lr: float, step: int, warmup: int) -> float:
    """The learning rate of update ``step`` (1-based): ``lr * min(step - 1, warmup) / warmup``; ``lr`` if warmup is 0."""
    if warmup <= 0:
        return lr
    return lr * min(step - 1, warmup) / warmup


@torch.no_grad()
def adaptive_clip_grad_(params: Iterable[torch.nn.Parameter], clip: float = 0.3, pmin: float = 1e-3) -> None:
    """Adaptive gradient clipping in place, per parameter tensor (official ``clip_by_agc``).

    ``g <- g / max(1, ||g|| / (clip * max(pmin, ||p||)))``: a gradient whose norm exceeds ``clip`` times the
    parameter's norm (at least ``pmin``) is scaled down to that bound. ``clip`` 0 leaves gradients alone.
    """
    if not clip:
        return
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    grads = [p.grad for p in params]
    gnorm = torch.stack(torch._foreach_norm(grads))
    pnorm = torch.stack(torch._foreach_norm([p.detach() for p in params]))
    upper = clip * pnorm.clamp(min=pmin)
    scale = 1.0 / torch.clamp(gnorm / upper, min=1.0)
    torch._foreach_mul_(grads, list(scale.unbind()))


class AdaptiveGradClip:
    """An update hook: :func:`adaptive_clip_grad_` on each phase's parameters at ``before_clip``.

    For an optimiser without its own ``agc``; list it after any gradient all-reduce hook, so it clips the
    averaged gradient as the official code does.
    """

    def __init__(self, clip: float = 0.3, pmin: float = 1e-3):
        self.clip, self.pmin = clip, pmin

    def before_clip(self, phase) -> None:
        adaptive_clip_grad_(phase.params, self.clip, self.pmin)


class LaProp(torch.optim.Optimizer):
    """The current DreamerV3 optimiser (see the module docstring for the equations and sources).

    Args:
        params: parameters or parameter groups.
        lr: peak learning rate (official 4e-5).
        betas: (b1, b2): momentum and RMS decay (official 0.9, 0.999).
        eps: added to the RMS (official 1e-20).
        warmup: updates of the linear ramp from 0 (official 1000; 0: none).
        agc: adaptive clipping factor applied to the gradients first (official 0.3; 0: none).
        agc_pmin: the smallest parameter norm of the clipping bound (official 1e-3).
        momentum: False skips step 3 (official ``momentum: True``).

    State per parameter: ``step``, ``exp_avg_sq`` (v), ``exp_avg`` (m), all restored by ``load_state_dict``.
    """

    def __init__(self, params, lr: float = 4e-5, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-20,
                 warmup: int = 1000, agc: float = 0.3, agc_pmin: float = 1e-3, momentum: bool = True):
        if lr < 0 or eps < 0 or warmup < 0 or agc < 0:
            raise ValueError(f"lr, eps, warmup and agc must be >= 0, got {lr}, {eps}, {warmup}, {agc}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, warmup=warmup, agc=agc, agc_pmin=agc_pmin, momentum=momentum)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            adaptive_clip_grad_(params, group["agc"], group["agc_pmin"])
            b1, b2 = group["betas"]
            by_step: dict[int, list[torch.Tensor]] = {}
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("LaProp does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)  # on the CPU: reading it never syncs
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                by_step.setdefault(int(state["step"].item()), []).append(p)
            for t, ps in by_step.items():  # one entry unless parameters joined at different updates
                grads = [p.grad for p in ps]
                v = [self.state[p]["exp_avg_sq"] for p in ps]
                torch._foreach_mul_(v, b2)
                torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
                denom = torch._foreach_div(v, 1 - b2**t)
                torch._foreach_sqrt_(denom)
                torch._foreach_add_(denom, group["eps"])
                u = torch._foreach_div(grads, denom)
                if group["momentum"]:
                    m = [self.state[p]["exp_avg"] for p in ps]
                    torch._foreach_mul_(m, b1)
                    torch._foreach_add_(m, u, alpha=1 - b1)
                    u = torch._foreach_div(m, 1 - b1**t)
                torch._foreach_add_(ps, u, alpha=-warmup_lr(group["lr"], t, group["warmup"]))
        return loss


def adam(params, lr: float, eps: float = 1e-7, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam (Dreamer V1, V3 2023), or with ``weight_decay`` > 0 DreamerV2's Adam with decoupled decay
    ``p <- (1 - weight_decay) p`` before each step.

    ``torch.optim.AdamW`` multiplies by ``1 - lr * wd'``, so ``wd' = weight_decay / lr`` gives the V2 factor
    at V2's constant learning rates. Clip with the phase's global-norm clip (V2: 100).
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if weight_decay == 0:
        return torch.optim.Adam(params, lr=lr, eps=eps)
    return torch.optim.AdamW(params, lr=lr, eps=eps, weight_decay=weight_decay / lr)

