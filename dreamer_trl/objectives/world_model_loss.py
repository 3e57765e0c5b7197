"""The world-model loss as named terms times configured scales (Dreamer Eq. 10; PlaNet Eq. 3).

    L = sum_k scale_k * term_k,  terms = representation terms (reco | contrast | none) + reward + KL terms
                                         [+ continue, when the world model has a continue head]

The KL terms come from a callable (``kl_terms``): V1's one "kl" term with free nats on the batch mean by
default; DreamerV2's balanced KL or DreamerV3's "dyn" and "rep" terms (:mod:`dreamer_trl.objectives.kl`).

The set of terms must equal the set of configured scales (checked on the first forward), so a missing or
misnamed term fails at once instead of silently training without it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from dreamer_trl import keys
from dreamer_trl.model.pixels import pixels_as_uint8, preprocess_pixels
from dreamer_trl.objectives.kl import free_nats_kl
from dreamer_trl.objectives.representation import Reconstruction


class _Retained(torch.autograd.Function):
    """The world model's loss terms and posterior states, detached, whose backward takes one
    ``torch.autograd.grad`` over the inner graph into the world model's parameters, keeping that graph: each
    backward (of the terms, of a loss that read the states, or of their sum) reaches the parameters once,
    and a later one still finds the graph."""

    @staticmethod
    def forward(ctx, inner, *params):
        ctx.inner, ctx.params = inner, params
        ctx.set_materialize_grads(False)
        return tuple(t.detach() for t in inner)

    @staticmethod
    def backward(ctx, *grads):
        pairs = [(t, g) for t, g in zip(ctx.inner, grads) if g is not None and t.requires_grad]
        if not pairs:
            return (None, *(None for _ in ctx.params))
        outputs, grad_outputs = zip(*pairs)
        return (None, *torch.autograd.grad(outputs, ctx.params, grad_outputs, retain_graph=True, allow_unused=True))


def retained(tensors: list[torch.Tensor], params: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """``tensors`` as outputs of one :class:`_Retained` node over ``params``."""
    return _Retained.apply(tuple(tensors), *params)


WINDOW_STARTS = ("carry_action", "episode_start", "replay_context")


def _targets(next_values: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """Row t's target is row t-1's ``("next", .)`` value: rows 1..T-1 of a window's ``[..., T, 1]`` values, or,
    with the context row's value ``[..., 1]`` (replay context), the context's as row 0's followed by rows
    0..T-2 (``[..., T, 1]``)."""
    if context is None:
        return next_values[..., :-1, :]
    return torch.cat([context.unsqueeze(-2), next_values[..., :-1, :]], -2)


class WorldModelLoss(LossModule):
    """Representation terms + -log p(r|s) + kl_scale * max(mean KL(q || p), free_nats), each scaled.

    Args:
        world_model: a :class:`~dreamer_trl.model.world_model.DreamerWorldModel`.
        representation: an objective of :mod:`dreamer_trl.objectives.representation` (default reconstruction).
        scales: {term: scale}; its keys must equal the terms produced (default: 1 for each, with
            ``kl_scale`` for "kl").
        kl_scale: the KL term's scale when ``scales`` is not given (V1: 1).
        free_nats: the KL threshold (V1: 3) of the default KL term.
        kl_terms: ``kl_terms(latent, posterior_params, prior_params) -> {name: scalar}`` replacing V1's
            ``{"kl": max(mean KL(q || p), free_nats)}``.
        continue_discount: the continue head's target is (1 - terminated) times this (DreamerV3's current
            code trains it on c * (1 - 1/333), "contdisc"; 1: the plain flag).
        keep_graph: hand on the posterior states with their graph to the world model's parameters (DreamerV3's
            replay critic term trains the world model too, ``repval_grad``); default detached. The graph is
            retained (:class:`_Retained`), so the world-model loss and the losses that read these states can be
            back-propagated one by one, in any order (a TorchRL loop), or summed (one phase), with the same
            gradients.
        window_start: row 0 of each window: "carry_action" (Dreamer V1: the state starts at zero, the real
            previous action is kept; official ``observe(embed, data['action'])``) or "episode_start" (DreamerV2
            and V3: the row is read as an episode start, zero state and zero previous action, as the official
            replays mark ``is_first`` at row 0 of every sampled window: dreamerv3 e3f0224
            ``embodied/core/replay.py`` ``_annotate_batch``). Only the world model's input changes: the data
            handed on keeps the flags as given. "replay_context" (DreamerV3 current, ``replay_context: 1``,
            e3f0224 ``agent.py`` ``_apply_replay_context``): the batch has one row more, row 0 the context: its
            stored "state" / "belief" (the posterior after its observation) start the filter on rows 1..T, its
            action is row 1's previous action as stored, its reward and flags are row 1's targets; the losses and
            the data handed on cover rows 1..T only, and ``context_sink(index, state, belief)`` (set by the
            trainer: :meth:`~dreamer_trl.data.replay.SequenceReplayBuffer.write_latents`) receives those rows'
            detached posteriors with their storage "index", so the next window starting there starts from them.

    The reward of row t (the one that came with o_t) is ``("next", "reward")`` of row t-1, so the
    reward term uses rows 1..T-1 of each sequence (never across an ``is_init``); the continue target of row t is
    1 - ``("next", "terminated")`` of row t-1 likewise. An episode's final observation is a stored row of its own
    (:mod:`dreamer_trl.data.replay`), so the final reward and a termination are targets like any other. The reward and continue terms
    are means over those valid rows; under data parallelism their count is the mean over the ranks
    (``count_mean``, set by :func:`~dreamer_trl.training.distributed.make_data_parallel`), so that the ranks'
    averaged gradients are those of the mean over all ranks' valid rows, (S_0 + S_1) / (n_0 + n_1), not of the
    mean of S_0 / n_0 and S_1 / n_1.

    The batch needs the observation, "prev_action", "is_init" and ``("next", "reward")``; a missing key is
    named with what provides it. Pixels may be uint8 or float in [0, 1] (TorchRL's ``ToTensorImage``).
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by the loss.

        Attributes:
            observation: the observation ("pixels" or "observation"; default: the world model's).
            reco_observation: its reconstruction ("reco_pixels" or "reco_observation").
            reward: the real reward ``("next", "reward")``.
            reward_pred: the reward head's output at each row.
            is_init: episode-start flags.
            terminated: the real terminal flags (continue head target; missing: never terminal).
            prior, posterior: prefixes of the latent distributions' parameter keys ("prior_mean", ...).
        """

        observation: NestedKey = keys.PIXELS
        reco_observation: NestedKey = keys.RECO_PIXELS
        reward: NestedKey = keys.NEXT_REWARD
        reward_pred: NestedKey = keys.REWARD
        is_init: NestedKey = keys.IS_INIT
        terminated: NestedKey = ("next", keys.TERMINATED)
        prior: str = "prior"
        posterior: str = "posterior"

    default_keys = _AcceptedKeys

    def __init__(self, world_model, *, representation=None, scales: dict[str, float] | None = None,
                 kl_scale: float | None = None, free_nats: float = 3.0, kl_terms=None, continue_discount: float = 1.0,
                 keep_graph: bool = False, window_start: str = "carry_action"):
        super().__init__()
        if window_start not in WINDOW_STARTS:
            raise ValueError(f"window_start must be one of {', '.join(WINDOW_STARTS)}, got {window_start!r}")
        self.window_start = window_start
        self.context_sink = None  # (index, state, belief) -> None: where replay_context posteriors go
        # n -> the mean of n over data-parallel ranks (training.distributed.share_counts); None: this process's own
        self.count_mean = None
        if scales is not None and kl_scale is not None:
            raise ValueError("give the KL scale either as kl_scale or in scales['kl'], not both")
        kl_scale = 1.0 if kl_scale is None else kl_scale
        self.world_model = world_model
        self.representation = representation or Reconstruction()
        self.scales = dict(scales) if scales is not None else {
            **{t: 1.0 for t in self.representation.terms}, "reward": 1.0, "kl": kl_scale}
        self.free_nats, self.kl_terms, self.continue_discount, self.keep_graph = free_nats, kl_terms, continue_discount, keep_graph
        self.set_keys(observation=world_model.obs_key, reco_observation=world_model.reco_key)

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def _check_keys(self, tensordict: TensorDictBase) -> None:
        k = self.tensor_keys
        known = {k.observation: "the world model's observation; set_keys(observation=...) renames it",
                 keys.PREV_ACTION: "dreamer_trl.policy_carry_transform on the env",
                 k.is_init: "torchrl.envs.InitTracker on the env",
                 k.reward: "the env's step"}
        needed = [k.observation, *getattr(self.world_model, "in_keys", []), k.is_init, k.reward]
        if self.window_start == "replay_context":
            needed += [keys.STATE, keys.BELIEF]
            known.update({key: "the replay context: the stored posterior of row 0 (a SequenceReplayBuffer built "
                               "with keep_latents)" for key in (keys.STATE, keys.BELIEF)})
        sources = {key: known.get(key, "the world model's input") for key in needed}
        present = set(tensordict.keys(include_nested=True))
        missing = [key for key in sources if key not in present]
        if missing:
            named = "; ".join(f"{key!r} (from {sources[key]})" for key in missing)
            raise keys.MissingKeysError(f"WorldModelLoss: the batch lacks {named}; it has {sorted(map(str, present))}")

    def _latent_params(self, tensordict: TensorDictBase, prefix: str) -> dict[str, torch.Tensor]:
        return {n: tensordict.get(f"{prefix}_{n}") for n in self.world_model.rssm.latent.names}

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDict, TensorDictBase]:
        k = self.tensor_keys
        self._check_keys(tensordict)
        obs = tensordict.get(k.observation)
        if self.world_model.obs_key == keys.PIXELS:
            obs = pixels_as_uint8(obs, k.observation)
        target = preprocess_pixels(obs)  # once, for the encoder and the reconstruction target
        context = self.window_start == "replay_context"
        if context:  # row 0 is the context: its reward / flags are row 1's targets, its posterior the start
            time_dim, rows = tensordict.batch_dims - 1, tensordict.batch_size[-1] - 1
            lead, tensordict = tensordict[..., 0], tensordict[..., 1:]
            obs, target = obs.narrow(time_dim, 1, rows), target.narrow(time_dim, 1, rows)
        given = tensordict.copy().set(k.observation, target)
        is_init = tensordict.get(k.is_init)
        if self.window_start == "episode_start":
            first = torch.zeros_like(is_init, dtype=torch.bool)
            first[..., 0, :] = True
            given.set(k.is_init, is_init.bool() | first)
        if context:
            T = given.batch_size[-1]
            for key, name in ((keys.CONTEXT_STATE, keys.STATE), (keys.CONTEXT_BELIEF, keys.BELIEF)):
                start = lead.get(name)
                given.set(key, start.detach().unsqueeze(-2).expand(*start.shape[:-1], T, start.shape[-1]))
        tensordict = self.world_model(given)
        if context:
            tensordict = tensordict.exclude("context")
        tensordict.set(k.observation, obs).set(k.is_init, is_init)
        latent = self.world_model.rssm.latent
        post, prior = self._latent_params(tensordict, k.posterior), self._latent_params(tensordict, k.prior)
        kl = latent.kl(post, prior)                                                                 # (B, T)
        terms = dict(self.representation(self.world_model, tensordict, target, k.reco_observation))
        reward_head = self.world_model.reward_head
        # row t's reward and flags are row t-1's ("next", .): the first row's come from the context row, if any
        cut = 0 if context else 1
        reward = _targets(tensordict.get(k.reward), lead.get(k.reward) if context else None)
        reward_nll = reward_head.nll(tensordict.get(k.reward_pred)[..., cut:, :], reward)
        valid = (~tensordict.get(k.is_init)[..., cut:, :].bool()).squeeze(-1).to(reward_nll.dtype)
        count = valid.sum() if self.count_mean is None else self.count_mean(valid.sum())
        terms["reward"] = (reward_nll * valid).sum() / count.clamp_min(1)
        terms.update(self.kl_terms(latent, post, prior) if self.kl_terms is not None
                     else {"kl": free_nats_kl(kl, self.free_nats)})
        continue_head = getattr(self.world_model, "continue_head", None)
        if continue_head is not None:
            raw = continue_head(tensordict.get(keys.STATE), tensordict.get(keys.BELIEF))[..., cut:, :]
            term = tensordict.get(k.terminated, None)
            if term is not None:
                term = _targets(term, lead.get(k.terminated) if context else None)
            alive = torch.ones_like(raw) if term is None else (~term.bool()).to(raw.dtype)
            nll = continue_head.nll(raw, alive * self.continue_discount)
            terms["continue"] = (nll * valid).sum() / count.clamp_min(1)
        if terms.keys() != self.scales.keys():
            raise KeyError(f"world-model loss terms {sorted(terms)} do not match the configured scales "
                           f"{sorted(self.scales)}")
        loss = TensorDict({f"loss_model_{name}": self.scales[name] * value for name, value in terms.items()})
        data = tensordict.detach()
        if context and self.context_sink is not None and "index" in data.keys():
            self.context_sink(data.get("index"), data.get(keys.STATE), data.get(keys.BELIEF))
        if self.keep_graph:  # the posterior states with their graph, retained for one backward per loss
            params = [p for p in self.world_model.parameters() if p.requires_grad]
            names = list(loss.keys())
            *values, state, belief = retained([*loss.values(), tensordict.get(keys.STATE),
                                               tensordict.get(keys.BELIEF)], params)
            loss = TensorDict(dict(zip(names, values)))
            data.set(keys.STATE, state)
            data.set(keys.BELIEF, belief)
        loss.set("kl", kl.mean().detach())
        if self.kl_terms is None:  # 1 when the clamp is active: the prior, trained only by this term, gets no gradient
            loss.set("kl_clamped", (kl.mean() < self.free_nats).to(kl.dtype).detach())
        return loss, data
