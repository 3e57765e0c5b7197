"""Dreamer-family objectives as TorchRL LossModules (Hafner et al. 2020, arXiv:1912.01603).

Like TorchRL's Dreamer losses, each ``forward`` returns ``(loss TensorDict, data)`` so they chain:
``WorldModelLoss`` -> posterior states -> ``ActorLoss`` -> imagined states and targets -> ``CriticLoss``
(one actor loss and one critic loss for V1, V2 and V3, their options chosen by the builders).
Keys are renamable with ``set_keys``; outputs are ``loss_*`` scalars (plus diagnostics).
"""
from dreamer_trl.objectives.actor_loss import (
    ActorLoss,
    continue_weights,
    discount_weights,
    held_out,
    split_value,
)
from dreamer_trl.objectives.critic_loss import CriticLoss, replay_lambda_return
from dreamer_trl.objectives.kl import (
    BalancedKL,
    DynRepKL,
    FreeNatsKL,
    balanced_kl,
    dyn_rep_kl,
    free_nats_kl,
)
from dreamer_trl.objectives.representation import (
    Contrastive,
    Reconstruction,
    RewardOnly,
    contrastive_log_scores,
    info_nce,
    make_representation,
)
from dreamer_trl.objectives.return_norm import ReturnNormalizer, SlowTarget
from dreamer_trl.objectives.value_estimates import (
    LambdaReturn,
    NStepReturn,
    RewardSum,
    lambda_return,
    make_value_estimate,
    nstep_return,
    reward_sum,
)
from dreamer_trl.objectives.world_model_loss import WorldModelLoss

__all__ = [
    "CriticLoss", "continue_weights", "held_out", "replay_lambda_return", "split_value",
    "ActorLoss", "Contrastive", "LambdaReturn", "NStepReturn", "Reconstruction", "RewardOnly", "RewardSum",
    "WorldModelLoss", "contrastive_log_scores", "discount_weights", "free_nats_kl", "info_nce",
    "lambda_return", "make_representation", "make_value_estimate", "nstep_return", "reward_sum",
    "BalancedKL", "DynRepKL", "FreeNatsKL", "ReturnNormalizer", "SlowTarget", "balanced_kl", "dyn_rep_kl",
]
