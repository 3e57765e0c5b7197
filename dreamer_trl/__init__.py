"""dreamer_trl: Dreamer (Hafner et al., ICLR 2020) as TorchRL components."""
from dreamer_trl.behavior import make_actor, make_value
from dreamer_trl.builders import Agent, make_agent, make_env, make_update
from dreamer_trl.checkpoint import load_checkpoint, prune_checkpoints, save_checkpoint
from dreamer_trl.config import DreamerConfig, EnvConfig, LossConfig, ModelConfig, OptimConfig, ScheduleConfig
from dreamer_trl.data import make_replay_buffer
from dreamer_trl.envs import DMCEnv, make_dmc_env, split_task
from dreamer_trl.imagination import ImaginationEnv, make_imagination_env
from dreamer_trl.heads import NormalHead
from dreamer_trl.latent import GaussianLatent
from dreamer_trl.objectives import (
    ActorLoss, LambdaReturn, NStepReturn, RewardSum, ValueLoss, WorldModelLoss, lambda_return, make_value_estimate,
)
from dreamer_trl.preemption import Preemption
from dreamer_trl.policy import Filter, make_policy, policy_carry_transform
from dreamer_trl.rssm import RSSM
from dreamer_trl.run_state import restore_run, save_run
from dreamer_trl.training import DreamerUpdate, Phase
from dreamer_trl.world_model import DreamerWorldModel, make_world_model

__all__ = [
    "ActorLoss", "DMCEnv", "DreamerConfig", "DreamerUpdate", "EnvConfig", "ImaginationEnv", "LossConfig",
    "ModelConfig", "OptimConfig", "RSSM", "ScheduleConfig", "ValueLoss", "WorldModelLoss", "lambda_return",
    "load_checkpoint", "make_actor", "make_dmc_env", "make_imagination_env", "make_policy", "make_replay_buffer",
    "make_value", "make_world_model", "policy_carry_transform", "save_checkpoint", "split_task",
    "Agent", "make_agent", "make_env", "Preemption", "prune_checkpoints", "restore_run", "save_run",
    "DreamerWorldModel", "Filter", "GaussianLatent", "LambdaReturn", "NStepReturn", "NormalHead", "Phase",
    "RewardSum", "make_update", "make_value_estimate",
]
