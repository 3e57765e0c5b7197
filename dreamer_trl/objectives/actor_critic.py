"""DreamerV2/V3 behaviour objectives: the actor and the critic trained on imagined trajectories, plus the
critic's replay loss (DreamerV3, Hafner et al. 2023, arXiv:2301.04104, Sec. 3 "Critic learning" and "Actor
learning", Eq. 7-11; DreamerV2, arXiv:2010.02193, Eq. 5-7).

From every posterior state s_0 of the batch the actor imagines s_1..s_H. With the continue head's
probabilities c_t (times the discount gamma = 1 - 1/horizon where the continue target does not already
hold it) the lambda-return is

    R_t = r_{t+1} + gamma c_{t+1} ((1 - lambda) v(s_{t+1}) + lambda R_{t+1}),   R_H = v(s_H)       (V3 Eq. 7)

and each step is weighted by w_t = prod_{k<=t} c_k (the probability that the episode is still running).
The 2023 V3 code reads the continue head by its mode instead (c_t in {0, 1}, c_0 = 1; ``continue_mode``).

- Actor (V3 Eq. 11): L = -sum_t w_t [ rho sg(A_t) log pi(a_t|s_t) + (1 - rho) (R_t - sg(v_t)) / S + eta H[pi(.|s_t)] ]
  with the advantage A_t = (R_t - v(s_t)) / max(1, S) and S the return scale of
  :class:`~dreamer_trl.objectives.return_norm.ReturnNormalizer`. rho = 1 is REINFORCE (V3's current code for
  all action spaces), rho = 0 dynamics backprop (V2 on DMC, V3 2023 for continuous actions), in between V2's mix.
- Critic (V3 Eq. 10): -log p_v(sg(R_t) | s_t) (two-hot for V3, Gaussian for V2) on stop-gradient imagined
  states, plus ``slow_reg`` times -log p_v(sg(v_slow(s_t)) | s_t), the regulariser toward the slow critic.
- Replay critic (V3 current code, scale 0.3): the same loss on the replayed posterior states, with
  lambda-returns along the real sequence bootstrapped by the imagined returns R_0 of each start.

Shapes: B batch, T time, N = B*T starts, H horizon, L = H + 1 states (s_0..s_H).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import LossModule

from dreamer_trl import keys
from dreamer_trl.model.latent import LatentState
from dreamer_trl.objectives.value_estimates import lambda_return


def continue_weights(cont: torch.Tensor) -> torch.Tensor:
    """prod_{k<=t} c_k along dim -2 (c_0, the start's own flag, included): ``[..., L, 1]``.

    With c_k = gamma * continue_k this is gamma^(t+1) times the survival probability; the losses divide by
    gamma once so that w_0 is the start's own continue probability (official ``weight``).
    """
    return torch.cumprod(cont, -2)


def replay_lambda_return(reward: torch.Tensor, boot: torch.Tensor, live: torch.Tensor, lmbda: float,
                         is_init: torch.Tensor | None = None) -> torch.Tensor:
    """Lambda-returns along a replayed sequence, bootstrapped by imagined returns (V3 current code, repl_loss).

    R_t = r_{t+1} + live_{t+1} ((1 - lambda) b_{t+1} + lambda R_{t+1}),  R_{T-1} = b_{T-1}

    where b_t is the imagined lambda-return from the replayed state t and live_t the discount into row t
    (gamma, times 0 after a terminal). With ``is_init`` (bool ``[..., T, 1]``), a row whose next row starts a
    new episode (a window along an env's stream) ends its episode's sequence as the last row does:
    R_t = b_t, so no return reaches across the reset. Args ``[..., T, 1]``; returns ``[..., T - 1, 1]`` for
    rows 0..T-2.
    """
    stop = None if is_init is None else is_init[..., 1:, :].bool()
    return lambda_return(reward[..., 1:, :], boot[..., :-1, :], boot[..., -1, :], live[..., 1:, :], lmbda, stop)


@dataclass
class _Keys:
    """Keys read and written by the behaviour losses.

    Attributes:
        state, belief: the posterior (start) states.
        reward: the real reward ``("next", "reward")`` (replay loss).
        terminated: the real terminal flags ``("next", "terminated")`` (replay loss; missing: never).
        lambda_target: where the imagined returns are written for the critic.
        value: the critic's output key.
    """

    state: NestedKey = keys.STATE
    belief: NestedKey = keys.BELIEF
    reward: NestedKey = keys.NEXT_REWARD
    terminated: NestedKey = ("next", keys.TERMINATED)
    lambda_target: NestedKey = keys.LAMBDA_TARGET
    value: NestedKey = keys.STATE_VALUE


class ImaginedActorLoss(LossModule):
    """The V2/V3 actor objective on imagined rollouts (module docstring), as a TorchRL LossModule.

    Args:
        actor: TensorDictModule "state", "belief" -> "action" whose module has ``dist(state, belief)`` (with
            ``rsample``, ``log_prob``, ``entropy``) and samples when called.
        value: the critic (a head TensorDictModule: raw output, ``module.pred(raw)``).
        rssm: the world model's RSSM (``imagine``); reward_head: a head with ``pred``; continue_head: a head
            whose ``pred`` is the continue probability, or None (always continue).
        return_norm: a :class:`~dreamer_trl.objectives.return_norm.ReturnNormalizer` (or None: no scaling).
        horizon: imagined steps H (V3: 15). discount: gamma (V3: 1 - 1/333; V2: 0.99).
        lmbda: lambda (0.95). reinforce: rho, the weight of the REINFORCE gradient (1: V3, 0: backprop).
        entropy: eta (V3: 3e-4; V2: 1e-4). continue_has_discount: the continue head was trained on
            c * gamma (V3 current ``contdisc``), so gamma is not applied again.
        target_value: the critic whose values make the returns and the baseline (V2's target critic); default
            ``value`` (V3, ``slowtar: False``).
        share_value: hand the critic's raw output on s_0..s_{H-1}, with its graph, to :class:`ImaginedCriticLoss`
            ("value_raw"), which then skips its own pass over the same states (same numbers).
        backprop_baseline: the dynamics-backprop part of the objective is -(R_t - v(s_t)) / S with the
            baseline differentiated too, through the states that depend on the actor (the 2023 V3 code,
            84ecf19 ``ImagActorCritic.loss``: ``-(normed_ret - normed_base)``); default False:
            (R_t - sg(v(s_t))) / S, the baseline a constant (V2, whose dynamics objective is the return alone).
        continue_mode: how the continue head's output becomes c_t: "prob", its probability for every state
            s_0..s_H (V3 current code, ``con.prob(1)``), with gradient into the states under dynamics
            backprop; "mode", the 2023 code (423291a ``WorldModel.imagine``: ``cont_head(traj).mode()`` for
            s_1..s_H and c_0 = 1 - is_terminal of the start, ``first_cont``): 1 where the logit is positive,
            else 0, no gradient, and c_0 = 1 (a start row here is never a terminal observation).
    Returns ``loss_actor`` and the data for :class:`ImaginedCriticLoss`: detached s_0..s_{H-1}, the targets
    R_t, the weights w_t, and R_0 of each start (``"start_return"``, the replay loss's bootstrap).
    """

    _AcceptedKeys = _Keys
    default_keys = _Keys

    def __init__(self, actor: TensorDictModule, value: TensorDictModule, rssm, reward_head, continue_head=None, *,
                 return_norm=None, horizon: int = 15, discount: float = 1 - 1 / 333, lmbda: float = 0.95,
                 reinforce: float = 1.0, entropy: float = 3e-4, continue_has_discount: bool = True,
                 target_value: TensorDictModule | None = None, share_value: bool = True,
                 backprop_baseline: bool = False, continue_mode: str = "prob"):
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if not 0.0 <= reinforce <= 1.0:
            raise ValueError(f"reinforce (rho) must be in [0, 1], got {reinforce}")
        if continue_mode not in ("prob", "mode"):
            raise ValueError(f"continue_mode must be prob or mode, got {continue_mode!r}")
        self.actor, self.value, self.return_norm = actor, value, return_norm
        self.__dict__["target_value"] = target_value  # a slow copy, updated by a hook
        self.__dict__.update(rssm=rssm, reward_head=reward_head, continue_head=continue_head)  # not owned
        self.horizon, self.discount, self.lmbda = horizon, discount, lmbda
        self.reinforce, self.entropy_scale, self.continue_has_discount = reinforce, entropy, continue_has_discount
        self.share_value, self.backprop_baseline, self.continue_mode = share_value, backprop_baseline, continue_mode
        self.reuse_rollout_terms = True  # False: a second actor pass (same numbers; for tests)

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def imagine(self, start: LatentState) -> tuple[LatentState, torch.Tensor]:
        """s_0..s_H ``[N, L, .]`` and the actions a_0..a_{H-1} sampled on the way ``[N, H, A]``.

        With pure REINFORCE (rho = 1) the dynamics run without a graph, and the actor's log-probabilities and
        entropies at s_0..s_{H-1} are kept from the rollout itself (``self.rollout_terms``, with the actor's
        graph) instead of a second actor pass over the N x H states.
        """
        self.rollout_terms = None
        if self.reinforce < 1.0 or not self.reuse_rollout_terms:
            with set_exploration_type(ExplorationType.RANDOM):
                roll = self.rssm.imagine(start.state, start.belief, self.actor.module, self.horizon)
            states = torch.cat([start.state[:, None], roll[keys.STATE]], 1)
            beliefs = torch.cat([start.belief[:, None], roll[keys.BELIEF]], 1)
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
        return LatentState(torch.stack(states, 1), torch.stack(beliefs, 1)), torch.stack(actions, 1)

    def continues(self, traj: LatentState) -> torch.Tensor:
        """gamma * c_t for t = 0..H ``[N, L, 1]``, c_t the continue head's probability (1 without one; V3's
        current code predicts c_0 too), or with ``continue_mode="mode"`` its mode and c_0 = 1 (2023 code)."""
        if self.continue_head is None:
            cont = torch.ones_like(traj.state[..., :1])
        elif self.continue_mode == "mode":
            with torch.no_grad():
                cont = self.continue_head.mode(self.continue_head(*traj))
            cont = torch.cat([torch.ones_like(cont[..., :1, :]), cont[..., 1:, :]], -2)
        else:
            cont = self.continue_head.pred(self.continue_head(*traj))
        return cont if self.continue_has_discount and self.continue_head is not None else cont * self.discount

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        k = self.tensor_keys
        start = LatentState.from_tensordict(tensordict, k.state, k.belief).detach().flatten()      # (N, S|D)
        traj, actions = self.imagine(start)                                                         # (N, L, .)
        backprop = self.reinforce < 1 and torch.is_grad_enabled()  # REINFORCE: the heads need no graph here
        share = self.share_value and self.target_value is None and torch.is_grad_enabled() and not backprop
        with torch.set_grad_enabled(backprop):
            reward = self.reward_head.pred(self.reward_head(*traj))                                # (N, L, 1)
            live = self.continues(traj)                                                            # (N, L, 1)
        critic = (self.value if self.target_value is None else self.target_value).module
        with torch.set_grad_enabled(backprop or share):
            value_raw = critic(*traj)
        value = critic.pred(value_raw if backprop else value_raw.detach())                         # (N, L, 1)
        returns = lambda_return(reward[:, 1:], value[:, :-1], value[:, -1], live[:, 1:], self.lmbda)  # (N, H, 1)
        divisor = 1.0 if self.continue_has_discount and self.continue_head is not None else self.discount
        weight = (continue_weights(live.detach()) / divisor)[:, :-1]                                # (N, H, 1)
        scale = 1.0
        if self.return_norm is not None:
            _, scale = self.return_norm(returns.detach(), update=self.training and torch.is_grad_enabled())
        advantage = (returns - value[:, :-1]) / scale                                              # (N, H, 1)
        if getattr(self, "rollout_terms", None) is not None:
            log_prob, entropy = self.rollout_terms                                                  # (N, H, 1)
        else:
            dist = self.actor.module.dist(traj.state[:, :-1], traj.belief[:, :-1])
            log_prob = dist.log_prob(actions.detach()).unsqueeze(-1)                              # (N, H, 1)
            entropy = dist.entropy().unsqueeze(-1)
        self.rollout_terms = None
        objective = self.entropy_scale * entropy
        if self.reinforce > 0:
            objective = objective + self.reinforce * log_prob * advantage.detach()
        if self.reinforce < 1:  # the return's gradient through the dynamics; the baseline's too in the 2023 code
            baseline = value[:, :-1] if self.backprop_baseline else value[:, :-1].detach()
            objective = objective + (1 - self.reinforce) * (returns - baseline) / scale
        loss = TensorDict(
            loss_actor=-(weight * objective).mean(),
            imagined_reward=reward[:, 1:].mean().detach(), imagined_return=returns.mean().detach(),
            return_scale=torch.as_tensor(scale, dtype=returns.dtype).detach(), actor_entropy=entropy.mean().detach(),
        )
        n = start.state.shape[0]
        data = TensorDict({k.state: traj.state[:, :-1], k.belief: traj.belief[:, :-1], k.lambda_target: returns,
                           "weight": weight}, batch_size=[n, self.horizon]).detach()
        if share:  # the critic's raw output on s_0..s_{H-1} with its graph, for ImaginedCriticLoss
            data.set("value_raw", value_raw[:, :-1])
        out = TensorDict({"imagined": data, "start_return": returns[:, 0].detach(),
                          "replay": tensordict.select(k.state, k.belief, *self._replay_keys(tensordict))},
                         batch_size=[])
        return loss, out

    def _replay_keys(self, tensordict: TensorDictBase) -> list:
        k = self.tensor_keys
        return [key for key in (k.reward, k.terminated, keys.IS_INIT) if key in tensordict.keys(include_nested=True)]


class ImaginedCriticLoss(LossModule):
    """The critic on imagined states (V3 Eq. 10) and, with ``replay_scale`` > 0, on the replayed states.

    Args:
        value: the critic head TensorDictModule (raw output; ``module.nll(raw, target)``, ``module.pred``).
        slow_value: the slow critic (an EMA copy, updated by a hook), or None (no regulariser).
        slow_reg: weight of -log p_v(v_slow(s)) (V3: 1).
        replay_scale: weight of the replay loss (V3 current code: 0.3; 0: off).
        discount, lmbda: gamma and lambda of the replay returns.
        replay_grad: the replay loss's gradient also reaches the world model through the posterior states
            (V3 current ``repval_grad``); the phase's parameters decide what is updated.
    """

    _AcceptedKeys = _Keys
    default_keys = _Keys

    def __init__(self, value: TensorDictModule, slow_value: TensorDictModule | None = None, *, slow_reg: float = 1.0,
                 replay_scale: float = 0.0, discount: float = 1 - 1 / 333, lmbda: float = 0.95,
                 replay_grad: bool = True):
        super().__init__()
        self.value = value
        self.__dict__["slow_value"] = slow_value  # updated by a hook, not by this loss's optimizer
        self.slow_reg, self.replay_scale, self.discount, self.lmbda = slow_reg, replay_scale, discount, lmbda
        self.replay_grad = replay_grad

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def _critic_nll(self, state, belief, target, raw=None) -> torch.Tensor:
        head = self.value.module
        raw = head(state, belief) if raw is None else raw
        nll = head.nll(raw, target.detach())
        if self.slow_value is not None and self.slow_reg:
            with torch.no_grad():
                slow = self.slow_value.module.pred(self.slow_value.module(state.detach(), belief.detach()))
            nll = nll + self.slow_reg * head.nll(raw, slow)
        return nll                                                                                   # (*N)

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDict, TensorDictBase]:
        k = self.tensor_keys
        imagined = tensordict.get("imagined")
        nll = self._critic_nll(imagined.get(k.state), imagined.get(k.belief), imagined.get(k.lambda_target),
                               imagined.get("value_raw", None))
        loss = TensorDict(loss_value=(imagined.get("weight").squeeze(-1) * nll).mean())
        if self.replay_scale:
            loss.set("loss_replay_value", self.replay_scale * self._replay_loss(tensordict))
        return loss, imagined

    def _replay_loss(self, tensordict: TensorDictBase) -> torch.Tensor:
        k = self.tensor_keys
        replay = tensordict.get("replay")
        state, belief = replay.get(k.state), replay.get(k.belief)                                   # (B, T, .)
        if not self.replay_grad:
            state, belief = state.detach(), belief.detach()
        batch = state.shape[:-1]
        boot = tensordict.get("start_return").reshape(*batch, 1)                                    # (B, T, 1)
        reward = torch.zeros_like(boot)                                                              # r into row t
        reward[..., 1:, :] = replay.get(k.reward)[..., :-1, :]
        term = replay.get(k.terminated, None)
        live = torch.full_like(boot, self.discount)
        if term is not None:
            live[..., 1:, :] = live[..., 1:, :] * (~term[..., :-1, :].bool()).to(boot.dtype)
        is_init = replay.get(keys.IS_INIT, None)  # mid-window episode starts: windows along an env's stream
        returns = replay_lambda_return(reward, boot, live, self.lmbda, is_init)                    # (B, T-1, 1)
        nll = self._critic_nll(state[..., :-1, :], belief[..., :-1, :], returns)                   # (B, T-1)
        if is_init is not None:  # a row before a reset has no return of its own (R = b), as the last row
            nll = torch.where(is_init[..., 1:, :].bool().squeeze(-1), torch.zeros_like(nll), nll)
        return nll.mean()
