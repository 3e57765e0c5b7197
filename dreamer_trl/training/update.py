"""One update as a list of phases, each a loss with its own parameters, optimizer and clip, plus hooks.

Dreamer V1 has three phases, world model -> actor -> value (Algorithm 1): each phase's loss reads the
previous phase's output data (posterior states, then imagined states and targets), each loss's gradient
reaches only its own parameters (``backward(inputs=...)``), and once every gradient is computed each
group is clipped (global norm 100) and every optimizer steps (Adam eps 1e-7). With V_R there is no value
phase. A phase keeps its graph for the next one only when the data it hands on carries gradients (the
shared value predictions), so ``retain_graph`` follows from the phases, not from a flag.

Hooks see every phase: ``before_clip(phase)`` (e.g. an all-reduce of the gradients across ranks) and
``after_step(phase)`` (e.g. an EMA or target critic, running statistics). A hook with ``state_dict`` /
``load_state_dict`` is checkpointed with the optimizers. ``phase.terms`` holds the detached entries of the phase's
latest loss TensorDict, for a hook to read at ``before_clip``.

Finite or loud (docs/reliability.md P4): if any loss term or gradient norm is not finite, no optimizer steps
(weights and Adam moments stay as they were), the running statistics a loss moves during its forward pass
are put back (the buffers of every hook that is an ``nn.Module``, e.g. DreamerV3's return percentiles, are
saved at the start of each update: a few scalars), the update is counted as skipped, and after
``max_nonfinite`` skips in a row :class:`NonFiniteError` names the offending terms. The decision is taken from
the loss terms and the clipped gradient norms, so a hook that makes the norms non-finite at ``before_clip``
makes the update skip: data-parallel ranks share their loss terms' finiteness that way in their gradient
all-reduce (:class:`~dreamer_trl.training.distributed.DataParallelHook`), so all of them skip, undo or step together.

Step order (``OptimConfig.step_model_first``). Off (V1, danijar/dreamer ``Dreamer._train``): every phase's
loss is computed with the weights of before the update, then every optimizer steps. On (DreamerV2,
danijar/dreamerv2 07d906e ``agent.py`` ``Agent.train``; DreamerV3 2023, danijar/dreamerv3 423291a
``dreamerv3/agent.py`` ``Agent.train``: the world model's optimizer steps, then the behaviour imagines): the
first phase (the world model) computes its loss, runs its ``before_clip`` hooks, is clipped and steps; then
the other phases compute their losses from the data it handed on (the posterior start states of before its
step, detached) and so imagine with the stepped world model, and step. The non-finite rule keeps its
guarantee as a whole: the first phase steps only when its terms and gradient norm are finite, and its
parameters and optimizer state are saved just before; if any later term or norm is not finite, that step is
undone from the copy, so a skipped update still leaves every weight and moment as it was. The later phases
run even when the first did not step, so every rank makes the same collective calls (``before_clip``
all-reduces) in the same order. ``after_step`` hooks run only once the whole update has stepped, in phase
order, as without the option. It needs at least two phases (not V3 current's single LaProp phase).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
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
    # the detached entries of the latest loss TensorDict (set by DreamerUpdate, read by hooks at before_clip)
    terms: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)


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


class StepUndo:
    """Undoes one phase's optimizer step: ``save()`` copies its parameters and optimizer state (into buffers
    kept between updates), ``restore()`` writes them back (state entries the step created are removed)."""

    def __init__(self, phase: Phase):
        self.phase = phase
        self.buffers: list[torch.Tensor] = []

    @torch.no_grad()
    def save(self) -> None:
        state = self.phase.optimizer.state
        self.saved_keys = {p: list(state[p]) for p in self.phase.params if state.get(p)}
        self.entries, tensors, self.plain = [], [], {}
        for p in self.phase.params:
            self.entries.append((p, None))
            tensors.append(p)
            for k, v in (state[p].items() if p in self.saved_keys else ()):
                if torch.is_tensor(v):
                    self.entries.append((p, k))
                    tensors.append(v)
                else:
                    self.plain[(p, k)] = copy.deepcopy(v)
        same = len(self.buffers) == len(tensors) and all(
            b.shape == t.shape and b.dtype == t.dtype and b.device == t.device for b, t in zip(self.buffers, tensors))
        if not same:
            self.buffers = [torch.empty_like(t, memory_format=torch.preserve_format) for t in tensors]
        for b, t in zip(self.buffers, tensors):
            b.copy_(t)

    @torch.no_grad()
    def restore(self) -> None:
        state = self.phase.optimizer.state
        for p in self.phase.params:
            if p not in self.saved_keys:
                state.pop(p, None)
            else:
                for k in [k for k in state[p] if k not in self.saved_keys[p]]:
                    del state[p][k]
        for (p, k), b in zip(self.entries, self.buffers):
            (p if k is None else state[p][k]).copy_(b)
        for (p, k), v in self.plain.items():
            state[p][k] = copy.deepcopy(v)


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
        step_model_first: the first phase steps before the others compute their losses (module docstring,
            "Step order"); None: ``cfg.step_model_first``. Needs at least two phases.
    """

    def __init__(self, model_loss=None, actor_loss=None, value_loss=None, cfg: OptimConfig | None = None,
                 max_nonfinite: int = 10, autocast=None, *, phases: list[Phase] | None = None, hooks=(),
                 step_model_first: bool | None = None):
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
        self.step_model_first = cfg.step_model_first if step_model_first is None else bool(step_model_first)
        if self.step_model_first and len(phases) < 2:
            raise ValueError(f"optim.step_model_first needs a world-model phase followed by behaviour phases, but "
                             f"this update has the single phase {names}; set optim.step_model_first false (with one "
                             f"optimizer over everything, as optim.kind laprop, there is no step to order)")
        self.phases = phases
        self.undo = StepUndo(phases[0]) if self.step_model_first else None
        self.hooks = list(hooks)
        self.autocast = autocast or contextlib.nullcontext  # e.g. acceleration.autocast_context
        self.max_nonfinite = max_nonfinite
        self.skipped = 0  # total skipped updates
        self.hook_buffers: list[tuple[torch.Tensor, torch.Tensor]] = []  # (buffer, copy) saved by update()
        self.skip_streak = 0

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {p.name: p.optimizer for p in self.phases}

    @property
    def groups(self) -> dict[str, list[nn.Parameter]]:
        return {p.name: p.params for p in self.phases}

    def phase(self, name: str) -> Phase:
        """The phase called ``name``; a KeyError naming the phases there are otherwise."""
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(f"no phase {name!r} in this update; its phases are {[p.name for p in self.phases]}")

    @property
    def clip(self) -> float:
        return self.phases[0].clip

    def losses(self, batch: TensorDictBase, backward: bool = False,
               after_phase: Callable[[str], None] | None = None) -> dict:
        """Every phase on one ``[B, T]`` batch: {"total": {phase: loss}, "metrics": {"loss/<term>": value}}.

        With ``backward``, each loss is back-propagated into its own parameters right after its forward
        pass, so a phase's graph is freed before the next one runs unless the data it hands on needs it.
        ``after_phase(name)`` is called after each phase, e.g. for timing. No optimizer steps here, so with
        ``step_model_first`` the later phases' losses are those of the world model of before the update.
        """
        total, metrics = {}, {}
        self._run(self.phases, batch, backward, after_phase, total, metrics)
        return {"total": total, "metrics": metrics}

    def _run(self, phases: list[Phase], data, backward: bool, after_phase, total: dict, metrics: dict):
        """The forward (and backward) passes of ``phases`` in turn from ``data``; returns the last one's data."""
        after_phase = after_phase or (lambda name: None)
        for phase in phases:
            with self.autocast():
                loss_td, data = phase.loss(data)
            loss = sum(v.float() for k, v in loss_td.items() if k.startswith("loss_"))
            if backward:
                phase.optimizer.zero_grad(set_to_none=True)
                retain = phase is not self.phases[-1] and carries_graph(data)
                loss.backward(inputs=phase.params, retain_graph=retain)
            total[phase.name] = loss
            phase.terms = {k: v.detach() for k, v in loss_td.items()}
            metrics.update({f"loss/{k.removeprefix('loss_')}": v for k, v in phase.terms.items()})
            after_phase(phase.name)
        return data

    def _clip(self, phases: list[Phase], metrics: dict) -> None:
        for phase in phases:
            for hook in self.hooks:
                getattr(hook, "before_clip", lambda p: None)(phase)
            metrics[f"train/grad_norm_{phase.name}"] = nn.utils.clip_grad_norm_(phase.params, phase.clip).detach()

    def _save_hook_buffers(self) -> None:
        """Copies the buffers of the hooks that are modules (running statistics a loss updates in its forward)."""
        with torch.no_grad():
            self.hook_buffers = [(b, b.clone()) for h in self.hooks if isinstance(h, nn.Module) for b in h.buffers()]

    def _skip(self, bad: list[str]) -> None:
        with torch.no_grad():
            for buffer, saved in self.hook_buffers:
                buffer.copy_(saved)
        for phase in self.phases:
            phase.optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        self.skip_streak += 1
        if self.max_nonfinite and self.skip_streak >= self.max_nonfinite:
            raise NonFiniteError(f"{self.skip_streak} consecutive updates with non-finite values "
                                 f"(last: {', '.join(bad)}); the weights were not changed by any of them")

    def _after_steps(self) -> None:
        for phase in self.phases:
            for hook in self.hooks:
                getattr(hook, "after_step", lambda p: None)(phase)

    def update(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        self._save_hook_buffers()
        if self.step_model_first:
            return self._update_model_first(batch)
        metrics = self.losses(batch, backward=True)["metrics"]
        self._clip(self.phases, metrics)
        bad = [k for k, v in metrics.items() if not torch.isfinite(v).all()]
        if bad:
            self._skip(bad)
        else:
            self.skip_streak = 0
            for phase in self.phases:
                phase.optimizer.step()
            self._after_steps()
        metrics["train/skipped_updates"] = torch.tensor(float(self.skipped))
        return metrics

    def _update_model_first(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """The first phase steps, then the others imagine with it (module docstring, "Step order")."""
        first, rest = self.phases[0], self.phases[1:]
        total, metrics = {}, {}
        data = self._run([first], batch, True, None, total, metrics)
        if carries_graph(data):
            raise RuntimeError(f"optim.step_model_first: phase {first.name!r} hands on data that carries its graph; "
                               "the start states must be detached to step it before the next phases")
        self._clip([first], metrics)
        stepped = all(torch.isfinite(v).all() for v in metrics.values())
        if stepped:
            self.undo.save()
            first.optimizer.step()
        self._run(rest, data, True, None, total, metrics)
        self._clip(rest, metrics)
        bad = [k for k, v in metrics.items() if not torch.isfinite(v).all()]
        if bad:
            if stepped:
                self.undo.restore()
            self._skip(bad)
        else:
            self.skip_streak = 0
            for phase in rest:
                phase.optimizer.step()
            self._after_steps()
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
