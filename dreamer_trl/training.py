"""One update as a list of phases, each a loss with its own parameters, optimizer and clip, plus hooks.

Dreamer V1 has three phases, world model -> actor -> value (Algorithm 1): each phase's loss reads the
previous phase's output data (posterior states, then imagined states and targets), each loss's gradient
reaches only its own parameters (``backward(inputs=...)``), and once every gradient is computed each
group is clipped (global norm 100) and every optimizer steps (Adam eps 1e-7). With V_R there is no value
phase. A phase keeps its graph for the next one only when the data it hands on carries gradients (the
shared value predictions), so ``retain_graph`` follows from the phases, not from a flag.

Hooks see every phase: ``before_clip(phase)`` (e.g. an all-reduce of the gradients across ranks) and
``after_step(phase)`` (e.g. an EMA or target critic, running statistics). A hook with ``state_dict`` /
``load_state_dict`` is checkpointed with the optimizers.

Finite or loud (RELIABILITY.md P4): if any loss term or gradient norm is not finite, no optimizer steps
(weights and Adam moments stay as they were), the update is counted as skipped, and after
``max_nonfinite`` skips in a row :class:`NonFiniteError` names the offending terms.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from tensordict import TensorDictBase
from torch import nn

from dreamer_trl.config import OptimConfig


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


class NonFiniteError(RuntimeError):
    """Raised after too many consecutive non-finite updates."""


@dataclass
class Phase:
    """One objective of the update: ``loss(data) -> (loss TensorDict, data for the next phase)``.

    The phase's loss is the sum of the ``loss_*`` entries; its gradient goes to ``params`` only.
    """

    name: str
    loss: nn.Module
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    clip: float = 100.0


class Hook(Protocol):
    def before_clip(self, phase: Phase) -> None: ...
    def after_step(self, phase: Phase) -> None: ...


def adam_phase(name: str, loss: nn.Module, module: nn.Module, lr: float, cfg: OptimConfig) -> Phase:
    """A phase training ``module``'s parameters with Adam (eps and clip from ``cfg``)."""
    params = trainable(module)
    return Phase(name, loss, params, torch.optim.Adam(params, lr=lr, eps=cfg.adam_eps), cfg.grad_clip)


class ChainedLoss(nn.Module):
    """Several losses run in sequence, each on the previous one's output data, as one loss for one phase.

    DreamerV3's current code trains everything with one optimizer on the sum of all terms (world model,
    actor, critic, replay critic); with this, that is a single :class:`Phase`. The ``loss_*`` entries of every
    part are merged (names must not collide); the data returned is the last part's.
    """

    def __init__(self, *losses: nn.Module):
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, data: TensorDictBase):
        merged = None
        for loss in self.losses:
            loss_td, data = loss(data)
            if merged is None:
                merged = loss_td
            else:
                clash = set(merged.keys()) & set(loss_td.keys())
                if clash:
                    raise KeyError(f"ChainedLoss: terms {sorted(clash)} come from more than one loss")
                merged.update(loss_td)
        return merged, data


def carries_graph(data: TensorDictBase) -> bool:
    """Whether any tensor of ``data`` requires grad (a phase handing it on must keep its graph)."""
    return any(t.requires_grad for t in data.values(include_nested=True, leaves_only=True))


class DreamerUpdate:
    """Runs the phases on a batch; ``update(batch)`` returns detached metrics.

    Args:
        model_loss, actor_loss, value_loss: the V1 losses (``value_loss`` None: no value phase, as with
            V_R); they become the phases "model", "actor", "value" with Adam at ``cfg``'s rates.
        cfg: learning rates, Adam epsilon and clip norm.
        max_nonfinite: consecutive skipped updates tolerated before raising (0: never raise).
        autocast: a callable returning the context for the forward passes (bf16 autocast); default none.
        phases: instead of the three losses, any list of :class:`Phase` (the losses must be None then).
        hooks: objects with ``before_clip(phase)`` and/or ``after_step(phase)``.
    """

    def __init__(self, model_loss=None, actor_loss=None, value_loss=None, cfg: OptimConfig | None = None,
                 max_nonfinite: int = 10, autocast=None, *, phases: list[Phase] | None = None, hooks=()):
        cfg = cfg or OptimConfig()
        if phases is None:
            phases = [adam_phase("model", model_loss, model_loss.world_model, cfg.model_lr, cfg),
                      adam_phase("actor", actor_loss, actor_loss.actor, cfg.actor_lr, cfg)]
            if value_loss is not None:
                phases.append(adam_phase("value", value_loss, value_loss.value, cfg.value_lr, cfg))
        elif model_loss is not None or actor_loss is not None or value_loss is not None:
            raise ValueError("pass either the three losses or phases, not both")
        names = [p.name for p in phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        self.phases = phases
        self.hooks = list(hooks)
        self.autocast = autocast or contextlib.nullcontext  # e.g. acceleration.autocast_context
        self.max_nonfinite = max_nonfinite
        self.skipped = 0  # total skipped updates
        self.skip_streak = 0

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {p.name: p.optimizer for p in self.phases}

    @property
    def groups(self) -> dict[str, list[nn.Parameter]]:
        return {p.name: p.params for p in self.phases}

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    @property
    def clip(self) -> float:
        return self.phases[0].clip

    def losses(self, batch: TensorDictBase, backward: bool = False,
               after_phase: Callable[[str], None] | None = None) -> dict:
        """Every phase on one ``[B, T]`` batch: {"total": {phase: loss}, "metrics": {"loss/<term>": value}}.

        With ``backward``, each loss is back-propagated into its own parameters right after its forward
        pass, so a phase's graph is freed before the next one runs unless the data it hands on needs it.
        ``after_phase(name)`` is called after each phase, e.g. for timing.
        """
        after_phase = after_phase or (lambda name: None)
        data, total, metrics = batch, {}, {}
        for i, phase in enumerate(self.phases):
            with self.autocast():
                loss_td, data = phase.loss(data)
            loss = sum(v.float() for k, v in loss_td.items() if k.startswith("loss_"))
            if backward:
                phase.optimizer.zero_grad(set_to_none=True)
                retain = i + 1 < len(self.phases) and carries_graph(data)
                loss.backward(inputs=phase.params, retain_graph=retain)
            total[phase.name] = loss
            metrics.update({f"loss/{k.removeprefix('loss_')}": v.detach() for k, v in loss_td.items()})
            after_phase(phase.name)
        return {"total": total, "metrics": metrics}

    def update(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        metrics = self.losses(batch, backward=True)["metrics"]
        for phase in self.phases:
            for hook in self.hooks:
                getattr(hook, "before_clip", lambda p: None)(phase)
            metrics[f"train/grad_norm_{phase.name}"] = nn.utils.clip_grad_norm_(phase.params, phase.clip).detach()
        bad = [k for k, v in metrics.items() if not torch.isfinite(v).all()]
        if bad:
            for phase in self.phases:
                phase.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            self.skip_streak += 1
            if self.max_nonfinite and self.skip_streak >= self.max_nonfinite:
                raise NonFiniteError(f"{self.skip_streak} consecutive updates with non-finite values "
                                     f"(last: {', '.join(bad)}); the weights were not changed by any of them")
        else:
            self.skip_streak = 0
            for phase in self.phases:
                phase.optimizer.step()
            for phase in self.phases:
                for hook in self.hooks:
                    getattr(hook, "after_step", lambda p: None)(phase)
        metrics["train/skipped_updates"] = torch.tensor(float(self.skipped))
        return metrics

    def state_dict(self) -> dict:
        """The optimizers by phase name, and the state of every hook that has one (under "hooks")."""
        state = {p.name: p.optimizer.state_dict() for p in self.phases}
        hooks = {str(i): h.state_dict() for i, h in enumerate(self.hooks) if hasattr(h, "state_dict")}
        if hooks:
            state["hooks"] = hooks
        return state

    def load_state_dict(self, state: dict) -> None:
        for p in self.phases:
            p.optimizer.load_state_dict(state[p.name])
        for i, h in enumerate(self.hooks):
            if hasattr(h, "load_state_dict"):
                h.load_state_dict(state["hooks"][str(i)])
