"""The actor's objective on imagined trajectories for the whole family: Dreamer V1, DreamerV2 and DreamerV3.

From every posterior state s_0 of the batch (stop-gradient) the actor imagines s_1..s_H with the world model's
prior. A value estimate of :mod:`dreamer_trl.objectives.value_estimates` turns the imagined rewards r and values
v into targets R_t, and each step is weighted by w_t:

- Dreamer V1 (arXiv:1912.01603, Eq. 5-7): V_lambda (Eq. 6; or V_N^k, Eq. 5; or V_R, Eq. 4, no value model)
  on s_1..s_{H-1} with R_t = r(s_t) + gamma ((1 - lambda) v(s_{t+1}) + lambda R_{t+1}); w_t = gamma^t;
  the actor maximises sum_t w_t R_t by backpropagating through the dynamics (Eq. 7):
  L = -mean_t w_t R_t.
- DreamerV2 (arXiv:2010.02193, Eq. 5-7) and DreamerV3 (arXiv:2301.04104, Eq. 7-11): targets for
  s_0..s_{H-1} (``start_targets``), R_t = r_{t+1} + gamma c_{t+1} ((1 - lambda) v(s_{t+1}) + lambda R_{t+1}),
  R_H = v(s_H) (V3 Eq. 7), with c_t the continue head's probability (or its mode, ``continue_mode``; times
  gamma unless the head learned c * gamma, ``continue_has_discount``); w_t = prod_{k<=t} c_k, the
  probability the episode still runs; the objective mixes REINFORCE and dynamics backprop (V2 Eq. 6,
  V3 Eq. 11) with an entropy bonus and a return scale S (:class:`~dreamer_trl.objectives.return_norm.ReturnNormalizer`):

      L = -mean_t w_t [ rho sg(R_t - v_t) / S log pi(a_t|s_t) + (1 - rho) (R_t - b_t) / S + eta H[pi(.|s_t)] ]

  with the backprop baseline b_t none (V1: b = 0), sg(v_t) (V2, V3 current) or v_t differentiated (V3 2023).

One loss covers them all through its options; the builders choose the options of each preset
(:func:`dreamer_trl.builders.behavior.make_behavior_losses`).

Gradients reach the actor's parameters only: the world model's heads and dynamics, the value and the
target value are held out (gradients pass through them into the actions, never into them, TorchRL's
``hold_out_net`` idea), so ``loss.backward()`` per loss and one optimizer per module train each network on
its own objective, in any order. The shared value predictions (``share_value``) reach the value's
parameters only (:func:`split_value`).

Shapes: B batch, T time, N = B*T starts, H horizon, K target rows (H - 1, or H with ``start_targets``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import LossModule

from dreamer_trl import keys
from dreamer_trl.model.latent import LatentState
from dreamer_trl.objectives.value_estimates import LambdaReturn

IMAGINED, START_RETURN, REPLAY, WEIGHT = "imagined", "start_return", "replay", "weight"
BASELINES = ("none", "stop_gradient", "differentiated")


@contextlib.contextmanager
def held_out(*modules):
    """Parameters of ``modules`` do not require grad inside the block (restored after): computations through
    them still pass gradients to their inputs, but none reaches the parameters."""
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class _InnerGraph:
    """A value pass on leaf copies of the states: ``value``, ``inputs`` (those leaves), ``params``."""

    def __init__(self, value, inputs, params):
        self.value, self.inputs, self.params = value, inputs, params


class _ToInputs(torch.autograd.Function):
    """The inner graph's value; its gradient goes to the states only."""

    @staticmethod
    def forward(ctx, inner: _InnerGraph, *inputs):
        ctx.inner = inner
        return inner.value.detach()

    @staticmethod
    def backward(ctx, grad):
        leaves = ctx.inner.inputs
        return (None, *torch.autograd.grad(ctx.inner.value, leaves, grad, retain_graph=True))


class _ToParams(torch.autograd.Function):
    """The inner graph's value; its gradient goes to the value's parameters only."""

    @staticmethod
    def forward(ctx, inner: _InnerGraph, *params):
        ctx.inner = inner
        return inner.value.detach()

    @staticmethod
    def backward(ctx, grad):
        return (None, *torch.autograd.grad(ctx.inner.value, ctx.inner.params, grad, retain_graph=True,
                                           allow_unused=True))


def split_value(value_fn, state: torch.Tensor, belief: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of the value head, v(s, h), as two tensors equal in value that route gradients apart: the first
    to the states only (the actor's objective), the second to the value's parameters only (the value
    regression on stop-gradient states). Saves the second forward pass that detaching would cost, and
    keeps a plain ``backward()`` of each loss on its own parameters, in either order.

    ``value_fn`` is an ``nn.Module`` taking (state, belief); the states must require grad.
    """
    params = [p for p in value_fn.parameters() if p.requires_grad]
    with torch.enable_grad():
        leaves = [state.detach().requires_grad_(), belief.detach().requires_grad_()]
        inner = _InnerGraph(value_fn(*leaves), leaves, params)
    return _ToInputs.apply(inner, state, belief), _ToParams.apply(inner, *params)


def discount_weights(length: int, gamma: float, device=None) -> torch.Tensor:
    """Cumulative discount [1, gamma, gamma^2, ...] as ``[length, 1]``, weighting imagined steps (V1)."""
    return (gamma ** torch.arange(length, device=device, dtype=torch.float32)).unsqueeze(-1)


def continue_weights(cont: torch.Tensor) -> torch.Tensor:
    """prod_{k<=t} c_k along dim -2 (c_0, the start's own flag, included): ``[..., L, 1]``.

    With c_k = gamma * continue_k this is gamma^(t+1) times the survival probability; the loss divides by
    gamma once so that w_0 is the start's own continue probability (official ``weight``).
    """
    return torch.cumprod(cont, -2)


class ActorLoss(LossModule):
    """The actor's objective on imagined rollouts for V1, V2 and V3 (module docstring), a TorchRL LossModule.

    Args:
        actor: TensorDictModule "state", "belief" -> "action" that samples when called (V1's
            :func:`~dreamer_trl.behavior.actors.make_actor`); with ``reinforce`` > 0 or ``entropy`` > 0 its
            module also has ``dist(state, belief)`` (``rsample``, ``log_prob``, ``entropy``).
        value: the value model / critic (a head TensorDictModule: raw output, ``module.pred(raw)``), or None with
            an estimate that needs none (V_R).
        imagination_env: the :class:`~dreamer_trl.behavior.imagination.ImaginationEnv` whose RSSM imagines and
            whose reward head scores; ``rssm`` and ``reward_head`` (a head with ``pred``) override it.
        continue_head: a head whose ``pred`` is the continue probability (``mode``: 0 or 1), or None.
        horizon: imagined steps H (V1 15, V2 15, V3 15). gamma: the discount (V1 0.99, V2 0.99, V3 1 - 1/333).
        lmbda: lambda of the default estimate V_lambda (ignored when ``value_estimate`` is given).
        value_estimate: an estimate of :mod:`~dreamer_trl.objectives.value_estimates` (V_lambda, V_N^k, V_R);
            one with ``uses_discount`` False (V_R, Eq. 4) is given no discount (gamma then weights the steps only).
        weights: "discount": w_t = gamma^t and a constant gamma in the estimate (V1, Eq. 7); "continue":
            per-step discounts gamma c_t from the continue head (1 without one) and w_t = prod_{k<=t} gamma c_k
            / gamma (V2, V3). Needs ``start_targets``.
        continue_mode: "prob": c_t = the continue head's probability at every state s_0..s_H (V3 current,
            ``con.prob(1)``), with gradient into the states under dynamics backprop; "mode": its mode (0 or 1,
            no gradient) for s_1..s_H and c_0 = 1 (V3 2023, 423291a ``WorldModel.imagine``).
        continue_has_discount: the continue head was trained on c * gamma (V3 current ``contdisc``), so gamma
            is not applied again.
        reinforce: rho, the weight of the REINFORCE gradient (V1 0, V2 on DMC 0, V3 2023 0, V3 current 1).
            rho = 1 imagines without a graph and keeps the rollout's log-probabilities.
        backprop_baseline: b_t of the dynamics-backprop term (R_t - b_t) / S: "none" (V1, the return alone),
            "stop_gradient" (sg(v_t): V2, V3 current) or "differentiated" (v_t with its gradient through the
            states, 84ecf19 ``ImagActorCritic.loss``: ``-(normed_ret - normed_base)``).
        entropy: eta, the entropy bonus (V1 0, V2 1e-4, V3 3e-4).
        return_norm: a :class:`~dreamer_trl.objectives.return_norm.ReturnNormalizer` (V3), or None (S = 1). Its
            statistics move in this forward pass while training (``self.training`` and grad enabled).
        target_value: the critic whose values make the returns and the baseline (V2's target critic); default
            ``value``.
        share_value: put the value pass over the imagined states, with its graph to the value's parameters
            only, into the returned data ("state_value"), so :class:`~dreamer_trl.objectives.critic_loss.CriticLoss`
            reuses it instead of a second pass (same numbers; the official V1 code evaluates the value head
            once on ``imag_feat``). Not with ``target_value``.
        sample_heads: score with imagined rewards and values drawn from N(mean, 1) instead of the heads'
            point predictions (TorchRL 0.14.1's choice; off: the official code's).
        start_targets: targets for s_0..s_{H-1}, each from the NEXT state's reward, R_t = r(s_{t+1}) + ...
            (V2, V3, TorchRL); off: targets for s_1..s_{H-1}, R_t = r(s_t) + gamma (...) (official V1).
        own_reward: with ``start_targets``, DreamerV2's alignment instead (danijar/dreamerv2 07d906e
            ``agent.py`` ``ActorCritic.target`` / ``actor_loss`` / ``critic_loss``): the target of s_t starts
            with the reward predicted at s_t itself, R_t = r(s_t) + gamma c_t ((1 - lambda) v(s_{t+1}) +
            lambda R_{t+1}) for s_0..s_{H-1} (the critic's rows), and the action taken at s_t is scored by
            R_{t+1}, the first target it changes (actor rows s_0..s_{H-2}, their weights, entropies and
            baselines v(s_t)).

    Returns ``(loss, data)``. ``loss``: "loss_actor"; diagnostics "imagined_reward" (the mean imagined reward
    r(s_1..s_H)) and, when the actor's distribution enters the objective (rho > 0 or eta > 0),
    "imagined_return", "return_scale" and "actor_entropy".

    ``data``, the same keys for every variant (the contract :class:`~dreamer_trl.objectives.critic_loss.CriticLoss`
    reads), a TensorDict of batch size ``[]``:

    - "imagined" ``[N, K]``: ``state``, ``belief`` (the target rows' states, detached), ``action`` (the action
      taken there, or, without ``start_targets``, the one that follows it), ``reward`` (the reward term r of
      each target), ``lambda_target`` (R_t, whatever the estimate), "weight" (w_t ``[N, K, 1]``) and, with
      ``share_value``, ``state_value`` (the value head's raw output on those states, with its graph to the
      value's parameters only);
    - "start_return" ``[N, 1]``: the target of each start's first row (R_0 with ``start_targets``; the replay
      critic's bootstrap);
    - "replay" ``[B, T]``: the posterior rows as given (``state``, ``belief`` and, where present,
      ``("next", "reward")``, ``("next", "terminated")``, ``is_init``), for the replay critic term.
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by the loss.

        Attributes:
            state, belief: the posterior (start) states.
            action: the imagined actions in the returned data.
            reward: the imagined reward in the returned data.
            value: the value head's output key (shared predictions).
            lambda_target: where the targets R_t are written.
            weight: where the step weights w_t are written.
            next_reward: the real reward ``("next", "reward")`` (handed on for the replay critic term).
            terminated: the real terminal flags ``("next", "terminated")`` (handed on; missing: never).
            is_init: episode-start flags (handed on).
        """

        state: NestedKey = keys.STATE
        belief: NestedKey = keys.BELIEF
        action: NestedKey = keys.ACTION
        reward: NestedKey = keys.REWARD
        value: NestedKey = keys.STATE_VALUE
        lambda_target: NestedKey = keys.LAMBDA_TARGET
        weight: NestedKey = WEIGHT
        next_reward: NestedKey = keys.NEXT_REWARD
        terminated: NestedKey = ("next", keys.TERMINATED)
        is_init: NestedKey = keys.IS_INIT

    default_keys = _AcceptedKeys

    def __init__(self, actor: TensorDictModule, value: TensorDictModule | None, imagination_env=None, *,
                 rssm=None, reward_head=None, continue_head=None, horizon: int = 15, gamma: float = 0.99,
                 lmbda: float = 0.95, value_estimate=None, weights: str = "discount", continue_mode: str = "prob",
                 continue_has_discount: bool = False, reinforce: float = 0.0, backprop_baseline: str = "none",
                 entropy: float = 0.0, return_norm=None, target_value: TensorDictModule | None = None,
                 share_value: bool = False, sample_heads: bool = False, start_targets: bool = False,
                 own_reward: bool = False):
        super().__init__()
        if own_reward and (not start_targets or horizon < 2):
            raise ValueError(f"own_reward (DreamerV2's alignment) needs start_targets and a horizon >= 2 (the actor is "
                             f"scored by R_1..R_{{H-1}}), got start_targets={start_targets}, horizon={horizon}")
        if horizon < (1 if start_targets else 2):  # at least one target row (K >= 1)
            why = "" if start_targets else " without start_targets (targets for s_1..s_{H-1}: none at H = 1)"
            raise ValueError(f"horizon must be >= {1 if start_targets else 2}{why}, got {horizon}")
        if not 0.0 <= reinforce <= 1.0:
            raise ValueError(f"reinforce (rho) must be in [0, 1], got {reinforce}")
        if continue_mode not in ("prob", "mode"):
            raise ValueError(f"continue_mode must be prob or mode, got {continue_mode!r}")
        if weights not in ("discount", "continue"):
            raise ValueError(f"weights must be discount or continue, got {weights!r}")
        if backprop_baseline not in BASELINES:
            raise ValueError(f"backprop_baseline must be one of {BASELINES}, got {backprop_baseline!r}")
        if not start_targets and (weights == "continue" or reinforce > 0 or entropy > 0):
            raise ValueError("start_targets=False (V1's alignment: targets for s_1..s_{H-1}) works with "
                             "weights='discount', reinforce=0 and entropy=0 only; the continue weights, REINFORCE "
                             "and the entropy bonus pair each target with the action taken at its state")
        self.estimate = value_estimate or LambdaReturn(lmbda)
        if self.estimate.needs_value and value is None:
            raise ValueError(f"the value estimate {type(self.estimate).__name__} needs a value model")
        if share_value and target_value is not None:
            raise ValueError("share_value hands the value's own pass to its loss; with a target_value the "
                             "returns come from the target critic")
        self.actor, self.value, self.return_norm = actor, value, return_norm
        if imagination_env is not None:
            self.__dict__["imagination_env"] = imagination_env
            model = imagination_env.world_model
            rssm = rssm or model.get_transition_model_operator().module.rssm
            reward_head = reward_head or model.get_reward_operator().module.head
        # not owned: the world model's parts and the slow critic (updated by a hook)
        self.__dict__.update(rssm=rssm, reward_head=reward_head, continue_head=continue_head,
                             target_value=target_value)
        self.horizon, self.gamma, self.lmbda = horizon, gamma, lmbda
        self.weights, self.continue_mode, self.continue_has_discount = weights, continue_mode, continue_has_discount
        self.reinforce, self.backprop_baseline, self.entropy_scale = reinforce, backprop_baseline, entropy
        self.share_value = share_value and value is not None and self.estimate.needs_value
        self.sample_heads, self.start_targets, self.own_reward = sample_heads, start_targets, own_reward
        self.reuse_rollout_terms = True  # False: a second actor pass under REINFORCE (same numbers; for tests)

    @property
    def discount(self) -> float:
        """gamma (the V2/V3 losses' name for it)."""
        return self.gamma

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def imagine(self, start: LatentState) -> tuple[LatentState, torch.Tensor]:
        """s_0..s_H ``[N, L]`` (or s_1..s_H without ``start_targets``) and the actions a_0..a_{H-1} ``[N, H, A]``.

        Dynamics backprop (rho < 1): the fast rollout over the prior with the world model held out, gradients
        through the states into the actions. Pure REINFORCE (rho = 1): the dynamics run without a graph, and the
        actor's log-probabilities and entropies at s_0..s_{H-1} are kept from the rollout itself
        (``self.rollout_terms``, with the actor's graph) instead of a second actor pass over the N x H states.
        """
        self.rollout_terms = None
        if self.reinforce < 1.0 or not self.reuse_rollout_terms:
            # LossModule.forward runs under DETERMINISTIC exploration; imagination samples actions (rsample).
            with set_exploration_type(ExplorationType.RANDOM), held_out(self.rssm):
                roll = self.rssm.imagine(start.state, start.belief, self.actor.module, self.horizon)
            states, beliefs = roll[keys.STATE], roll[keys.BELIEF]                                     # s_1..s_H
            if self.start_targets:                                                                     # s_0..s_H
                states = torch.cat([start.state[:, None], states], 1)
                beliefs = torch.cat([start.belief[:, None], beliefs], 1)
            return LatentState(states, beliefs), roll[keys.ACTION]
        state, belief = start
        states, beliefs, actions, log_probs, entropies = [state], [belief], [], [], []
        for _ in range(self.horizon):
            dist = self.actor.module.dist(state, belief)
            with torch.no_grad():
                action = dist.rsample()
                _, state, belief = self.rssm.prior_step(state, belief, action)
            log_probs.append(dist.log_prob(action))
            entropies.append(dist.entropy())
            states.append(state)
            beliefs.append(belief)
            actions.append(action)
        self.rollout_terms = (torch.stack(log_probs, 1).unsqueeze(-1), torch.stack(entropies, 1).unsqueeze(-1))
        traj = LatentState(torch.stack(states, 1), torch.stack(beliefs, 1))
        if not self.start_targets:
            traj = LatentState(traj.state[:, 1:], traj.belief[:, 1:])
        return traj, torch.stack(actions, 1)

    def continues(self, traj: LatentState) -> torch.Tensor:
        """gamma * c_t for t = 0..H ``[N, L, 1]``, c_t the continue head's probability (1 without one; V3's
        current code predicts c_0 too), or with ``continue_mode="mode"`` its mode and c_0 = 1 (2023 code)."""
        head = self.continue_head
        if head is None:
            cont = torch.ones_like(traj.state[..., :1])
        elif self.continue_mode == "mode":
            with torch.no_grad():
                cont = head.mode(head(*traj))
            cont = torch.cat([torch.ones_like(cont[..., :1, :]), cont[..., 1:, :]], -2)
        else:
            cont = head.pred(head(*traj))
        return cont if self.continue_has_discount and head is not None else cont * self.gamma

    def _values(self, traj: LatentState, backprop: bool):
        """(v for the returns ``[N, L, 1]`` or None, the value's raw output to share with its graph or None)."""
        critic = self.value if self.target_value is None else self.target_value
        if critic is None or (not self.estimate.needs_value and self.reinforce == 0
                              and self.backprop_baseline == "none"):
            return None, None
        module = critic.module
        share = self.share_value and torch.is_grad_enabled()
        if share and backprop:  # one pass: the actor's gradient to the states, the critic's to its parameters
            to_states, shared = split_value(module, *traj)
            return module.pred(to_states), shared
        if share:  # the states carry no graph: the critic's own pass with its graph, the actor reads it detached
            raw = module(*traj)
            return module.pred(raw.detach()), raw
        with torch.set_grad_enabled(backprop), held_out(critic):
            return module.pred(module(*traj)), None

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        k = self.tensor_keys
        start = LatentState.from_tensordict(tensordict, k.state, k.belief).detach().flatten()      # (N, S|D)
        backprop = self.reinforce < 1 and torch.is_grad_enabled()  # REINFORCE alone: the heads need no graph
        traj, actions = self.imagine(start)                                                         # (N, L, .)
        with torch.set_grad_enabled(backprop), held_out(self.reward_head, self.continue_head):
            reward = self.reward_head.pred(self.reward_head(*traj))                                # (N, L, 1)
            live = self.continues(traj) if self.weights == "continue" else None                    # (N, L, 1)
        value, shared = self._values(traj, backprop)                                                # (N, L, 1)
        if self.start_targets and not self.own_reward:  # step t's reward is the next state's; the last never used
            reward = torch.cat([reward[:, 1:], torch.zeros_like(reward[:, :1])], 1)
        scored_reward, scored_value = reward, value
        if self.sample_heads:
            scored_reward = reward + torch.randn_like(reward)
            scored_value = None if value is None else value + torch.randn_like(value)
        discount = None
        if getattr(self.estimate, "uses_discount", True):  # V_R is undiscounted (Eq. 4): gamma only weights steps
            discount = self.gamma if live is None else live[:, :-1] if self.own_reward else live[:, 1:]
        returns = self.estimate(scored_reward, scored_value, discount)                            # (N, K, 1)
        n, steps = start.state.shape[0], returns.shape[-2]
        if live is None:
            weight = discount_weights(steps, self.gamma, returns.device)                           # (K, 1)
        elif self.own_reward:  # DreamerV2: w_t = prod_{k<t} gamma c_k, w_0 = 1 (agent.py WorldModel.imagine)
            cumulative = continue_weights(live.detach())                                            # (N, H + 1, 1)
            weight = torch.cat([torch.ones_like(cumulative[:, :1]), cumulative[:, :-2]], 1)         # (N, K, 1)
        else:
            divisor = 1.0 if self.continue_has_discount and self.continue_head is not None else self.gamma
            weight = (continue_weights(live.detach()) / divisor)[:, :-1]                            # (N, K, 1)
        # the actor's rows: the action taken at row t scored by R_t, or (own_reward) by R_{t+1}
        scored = returns[:, 1:] if self.own_reward else returns                                    # (N, K', 1)
        rows = scored.shape[-2]
        scale = 1.0
        if self.return_norm is not None:
            _, scale = self.return_norm(scored.detach(), update=self.training and torch.is_grad_enabled())
        objective, entropy = self._objective(traj, actions, scored, value, scale, rows)           # (N, K', 1)
        actor_weight = weight[..., :rows, :]
        loss = TensorDict(loss_actor=-(actor_weight * objective).mean(),
                          imagined_reward=reward[:, :-1].mean().detach() if self.start_targets
                          else reward.mean().detach())
        if self.reinforce > 0 or self.entropy_scale > 0:
            loss.update(imagined_return=scored.mean().detach(),
                        return_scale=torch.as_tensor(scale, dtype=returns.dtype).detach(),
                        actor_entropy=entropy.mean().detach())
        imagined = TensorDict(
            {k.state: traj.state[:, :-1], k.belief: traj.belief[:, :-1],
             k.action: actions if self.start_targets else actions[:, :-1], k.reward: reward[:, :-1],
             k.lambda_target: returns, k.weight: weight.expand(n, steps, 1)},
            batch_size=[n, steps]).detach()
        if shared is not None:  # with its graph to the value's parameters, for CriticLoss
            imagined.set(k.value, shared[:, :-1])
        replay = [key for key in (k.next_reward, k.terminated, k.is_init) if key in tensordict.keys(include_nested=True)]
        data = TensorDict({IMAGINED: imagined, START_RETURN: returns[:, 0].detach(),
                           REPLAY: tensordict.select(k.state, k.belief, *replay)}, batch_size=[])
        return loss, data

    def _objective(self, traj, actions, returns, value, scale, rows):
        """(the per-step objective ``[N, rows, 1]`` whose weighted mean the actor maximises, the entropies or None)
        for the actions taken at the first ``rows`` states of ``traj``, scored by ``returns``."""
        objective = entropy = None
        if self.reinforce > 0 or self.entropy_scale > 0:
            if getattr(self, "rollout_terms", None) is not None:
                log_prob, entropy = (term[:, :rows] for term in self.rollout_terms)                # (N, rows, 1)
            else:
                dist = self.actor.module.dist(traj.state[:, :rows], traj.belief[:, :rows])
                log_prob = dist.log_prob(actions[:, :rows].detach()).unsqueeze(-1)                 # (N, rows, 1)
                entropy = dist.entropy().unsqueeze(-1)
            objective = self.entropy_scale * entropy
            if self.reinforce > 0:
                baseline = 0.0 if value is None else value[:, :rows]
                advantage = (returns - baseline) / scale
                objective = objective + self.reinforce * log_prob * advantage.detach()
        self.rollout_terms = None
        if self.reinforce < 1:  # the return's gradient through the dynamics (V1 Eq. 7); the baseline's in 2023
            if self.backprop_baseline == "none" or value is None:
                term = (1 - self.reinforce) * returns / scale
            else:
                baseline = value[:, :rows] if self.backprop_baseline == "differentiated" else value[:, :rows].detach()
                term = (1 - self.reinforce) * (returns - baseline) / scale
            objective = term if objective is None else objective + term
        return objective, entropy
