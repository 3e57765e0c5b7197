"""The behaviour losses of every agent of the family, built in one place from the behaviour config.

:func:`make_behavior_losses` picks the options of :class:`~dreamer_trl.objectives.actor_loss.ActorLoss` and
:class:`~dreamer_trl.objectives.critic_loss.CriticLoss` (and the V2/V3 hooks: the slow critic and the return
normaliser) for Dreamer V1's losses (``behavior.losses v1``) and DreamerV2/V3's (``v2_v3``).
``behavior.value_estimate`` chooses the estimate for all of them (lambda, nstep, reward; with "reward", V_R, there
is no critic and no critic loss).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tensordict.nn import TensorDictModule

from dreamer_trl.config import BehaviorConfig
from dreamer_trl.objectives.actor_loss import ActorLoss
from dreamer_trl.objectives.critic_loss import CriticLoss
from dreamer_trl.objectives.return_norm import ReturnNormalizer, SlowTarget
from dreamer_trl.objectives.value_estimates import make_value_estimate


@dataclass
class BehaviorLosses:
    """The actor loss, the critic loss (None with V_R) and the hooks they need (V3's slow critic, return norm)."""

    actor_loss: ActorLoss
    value_loss: CriticLoss | None
    hooks: list = field(default_factory=list)


def make_behavior_losses(actor: TensorDictModule, value: TensorDictModule, imagination_env, cfg: BehaviorConfig, *,
                         continue_head=None, continue_has_discount: bool = False, slow_phase: str = "value",
                         device="cpu") -> BehaviorLosses:
    """The behaviour losses ``cfg.losses`` names ("v1", "v2_v3"), with ``cfg``'s estimate, actor and critic options.

    V1: V_lambda / V_N^k / V_R on s_1..s_{H-1} (or TorchRL's alignment, ``loss.start_state_targets``), gamma^t
    weights, dynamics backprop, the value's pass shared with the Gaussian-mean regression (Eq. 8).
    V2/V3: targets for s_0..s_{H-1}, continue weights (``continue_head``; ``continue_has_discount`` when the head
    learned c * gamma), the rho mix of REINFORCE and backprop, entropy, return normalisation, the slow critic
    (V3: a regulariser; V2, ``slow_value_reg`` 0: the target critic makes the returns; it moves after the step of
    the phase ``slow_phase``) and the replay term.
    """
    l, a, c = cfg, cfg.actor, cfg.critic
    estimate = make_value_estimate(l.value_estimate, l.lmbda, l.value_steps)
    critic = value if estimate.needs_value else None
    if l.losses == "v1":
        actor_loss = ActorLoss(actor, critic, imagination_env, horizon=l.horizon, gamma=l.gamma,
                               value_estimate=estimate, share_value=True, sample_heads=l.sample_imagined_heads,
                               start_targets=l.start_state_targets)
        value_loss = None if critic is None else CriticLoss(value, regression="squared", gamma=l.gamma)
        return BehaviorLosses(actor_loss, value_loss)
    slow = None if critic is None else SlowTarget(value, fraction=c.slow_rate, every=c.slow_every, phase=slow_phase)
    return_norm = ReturnNormalizer().to(device) if a.return_norm else None
    target_value = slow.target if slow is not None and c.slow_reg == 0 else None  # V2's target critic
    actor_loss = ActorLoss(
        actor, critic, imagination_env, continue_head=continue_head, horizon=l.horizon, gamma=l.gamma,
        value_estimate=estimate, weights="continue", continue_mode=l.continue_mode,
        continue_has_discount=continue_has_discount, reinforce=a.reinforce,
        backprop_baseline="differentiated" if a.backprop_baseline else "stop_gradient",
        entropy=a.entropy, return_norm=return_norm, target_value=target_value,
        # the critic's pass is shared where the rollout has no graph (REINFORCE); under backprop it runs again
        share_value=target_value is None and a.reinforce == 1.0, sample_heads=l.sample_imagined_heads,
        start_targets=True, own_reward=l.target_reward == "same")
    value_loss = None
    if critic is not None:
        value_loss = CriticLoss(value, slow.target if c.slow_reg else None, regression="nll",
                                slow_reg=c.slow_reg, replay_scale=c.replay_scale, gamma=l.gamma, lmbda=l.lmbda)
    hooks = ([] if slow is None else [slow]) + ([] if return_norm is None else [return_norm])
    return BehaviorLosses(actor_loss, value_loss, hooks)
