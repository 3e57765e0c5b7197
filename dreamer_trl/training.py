"""One Dreamer update: world model, then actor, then value, each with its own Adam and clip.

As in the official code, the three losses are computed on the same batch with the current weights, each
loss's gradient reaches only its own parameters (``backward(inputs=...)``), and then the three
optimizers step in order (Dreamer Algorithm 1; Adam eps 1e-7, global-norm clip 100).

Finite or loud (RELIABILITY.md P4): if any loss term or gradient norm is not finite, no optimizer steps
(weights and Adam moments stay as they were), the update is counted as skipped, and after
``max_nonfinite`` skips in a row :class:`NonFiniteError` names the offending terms.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from tensordict import TensorDictBase
from torch import nn

from dreamer_trl.config import OptimConfig
from dreamer_trl.objectives import ActorLoss, ValueLoss, WorldModelLoss


def _params(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


class NonFiniteError(RuntimeError):
    """Raised after too many consecutive non-finite updates."""


class DreamerUpdate:
    """Owns the three losses and optimizers; ``update(batch)`` returns detached metrics.

    Args:
        model_loss, actor_loss, value_loss: the three LossModules.
        cfg: learning rates, Adam epsilon and clip norm.
        max_nonfinite: consecutive skipped updates tolerated before raising (0: never raise).
        autocast: a callable returning the context for the forward passes (bf16 autocast); default none.
    """

    def __init__(self, model_loss: WorldModelLoss, actor_loss: ActorLoss, value_loss: ValueLoss,
                 cfg: OptimConfig | None = None, max_nonfinite: int = 10, autocast=None):
        cfg = cfg or OptimConfig()
        self.autocast = autocast or contextlib.nullcontext  # e.g. acceleration.autocast_context
        self.max_nonfinite = max_nonfinite
        self.skipped = 0  # total skipped updates
        self.skip_streak = 0
        self.model_loss, self.actor_loss, self.value_loss = model_loss, actor_loss, value_loss
        self.model_params = _params(model_loss.world_model)
        self.actor_params = _params(actor_loss.actor)
        self.value_params = _params(value_loss.value)
        self.clip = cfg.grad_clip
        adam = lambda params, lr: torch.optim.Adam(params, lr=lr, eps=cfg.adam_eps)
        self.optimizers = {
            "model": adam(self.model_params, cfg.model_lr),
            "actor": adam(self.actor_params, cfg.actor_lr),
            "value": adam(self.value_params, cfg.value_lr),
        }
        self.groups = {"model": self.model_params, "actor": self.actor_params, "value": self.value_params}

    def _backward(self, name: str, loss: torch.Tensor, retain_graph: bool = False) -> None:
        self.optimizers[name].zero_grad(set_to_none=True)
        loss.backward(inputs=self.groups[name], retain_graph=retain_graph)

    def losses(self, batch: TensorDictBase, backward: bool = False,
               after_phase: Callable[[str], None] | None = None) -> dict[str, torch.Tensor]:
        """The three objectives on one ``[B, T]`` batch: {"total": {"model", "actor", "value"}, "metrics"}.

        With ``backward``, each loss is back-propagated into its own parameters right after its forward
        pass, so the world model's graph is freed before imagination (same gradients, less memory).
        ``after_phase(name)`` is called after each phase ("model", "actor", "value"), e.g. for timing.
        """
        after_phase = after_phase or (lambda name: None)
        with self.autocast():
            model_td, posterior = self.model_loss(batch)
        model = sum(v.float() for k, v in model_td.items() if k.startswith("loss_"))
        if backward:
            self._backward("model", model)
        after_phase("model")
        with self.autocast():
            actor_td, imagined = self.actor_loss(posterior)
        if backward:
            # the value loss may reuse the value predictions of this graph (ActorLoss.share_value)
            self._backward("actor", actor_td["loss_actor"], retain_graph=getattr(self.actor_loss, "share_value", False))
        after_phase("actor")
        with self.autocast():
            value_td, _ = self.value_loss(imagined)
        if backward:
            self._backward("value", value_td["loss_value"])
        after_phase("value")
        total = {"model": model, "actor": actor_td["loss_actor"], "value": value_td["loss_value"]}
        metrics = {f"loss/{k.removeprefix('loss_')}": v.detach() for td in (model_td, actor_td, value_td)
                   for k, v in td.items()}
        return {"total": total, "metrics": metrics}

    def update(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        metrics = self.losses(batch, backward=True)["metrics"]
        for name in self.optimizers:
            metrics[f"train/grad_norm_{name}"] = nn.utils.clip_grad_norm_(self.groups[name], self.clip).detach()
        bad = [k for k, v in metrics.items() if not torch.isfinite(v).all()]
        if bad:
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
            self.skipped += 1
            self.skip_streak += 1
            if self.max_nonfinite and self.skip_streak >= self.max_nonfinite:
                raise NonFiniteError(f"{self.skip_streak} consecutive updates with non-finite values "
                                     f"(last: {', '.join(bad)}); the weights were not changed by any of them")
        else:
            self.skip_streak = 0
            for opt in self.optimizers.values():
                opt.step()
        metrics["train/skipped_updates"] = torch.tensor(float(self.skipped))
        return metrics

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])
