"""dreamer_trl: Dreamer (Hafner et al., ICLR 2020) and PlaNet (ICML 2019) as TorchRL components.

Names are imported on first use (PEP 562), so that ``import dreamer_trl.config`` (the command line)
does not pull in torch, TorchRL and MuJoCo: bad arguments are refused in well under a second.
"""
from __future__ import annotations

import importlib
import importlib.util

# public name -> the module defining it
_EXPORTS = {
    "Agent": "builders.agent", "make_agent": "builders.agent", "make_env": "builders.agent", "make_update": "builders.agent",
    "make_actor": "builders.networks", "make_value": "builders.networks",
    "load_checkpoint": "run.checkpoint", "prune_checkpoints": "run.checkpoint", "save_checkpoint": "run.checkpoint",
    "DreamerConfig": "config", "EnvConfig": "config", "NetsConfig": "config", "WorldModelConfig": "config",
    "LatentConfig": "config", "RSSMConfig": "config", "WorldModelLossConfig": "config", "ActorConfig": "config",
    "CriticConfig": "config", "ExplorationConfig": "config", "PlannerConfig": "config",
    "OptimConfig": "config", "ScheduleConfig": "config", "make_preset": "config", "apply_size": "config",
    "make_replay_buffer": "data.replay",
    "DMCEnv": "data.dmc", "make_dmc_env": "data.dmc", "split_task": "data.dmc",
    "GymEnv": "data.gym", "make_gym_env": "data.gym", "make_suite_env": "data.suites",
    "ImaginationEnv": "behavior.imagination", "make_imagination_env": "behavior.imagination",
    "ActorLoss": "objectives", "CriticLoss": "objectives", "WorldModelLoss": "objectives",
    "lambda_return": "objectives", "LambdaReturn": "objectives", "NStepReturn": "objectives",
    "RewardSum": "objectives", "make_value_estimate": "objectives",
    "NormalHead": "model.heads", "GaussianLatent": "model.latent",
    "Preemption": "run.preemption",
    "Filter": "behavior.policy", "make_policy": "behavior.policy", "policy_carry_transform": "behavior.policy",
    "RSSM": "model.rssm", "gru_cell_rssm": "model.rssm", "GRUCellCore": "model.cores",
    "restore_run": "run.state", "save_run": "run.state",
    "DreamerUpdate": "training.update", "Phase": "training.update", "ChainedLoss": "training.update",
    "BoundedNormalActor": "behavior.actors", "BoundedNormal": "behavior.actors", "MSEHead": "model.heads",
    "OneHotActor": "behavior.actors", "OneHotCategorical": "behavior.actors",
    "TruncNormalActor": "behavior.actors", "TruncatedNormal": "model.trunc_normal",
    "DreamerWorldModel": "model.world_model", "make_world_model": "builders.networks",
    "CategoricalLatent": "model.latent",
    "BernoulliHead": "model.heads", "SymlogMSEHead": "model.heads", "TwoHotHead": "model.heads", "zero_init_last_linear": "model.heads",
    "TwoHotCodec": "model.symlog",
    "BalancedKL": "objectives", "DynRepKL": "objectives", "FreeNatsKL": "objectives",
    "ReturnNormalizer": "objectives", "SlowTarget": "objectives",
    "NetStyle": "model.layers", "MLP": "model.layers", "BlockLinear": "model.layers", "ConvEncoder": "model.layers",
    "UpsampleConvDecoder": "model.layers", "TransposedConvDecoder": "model.layers",
    "TanhNormalActor": "behavior.actors", "TanhNormal": "behavior.actors",
    "BlockGRU": "model.cores", "NormGRU": "model.cores",
    "V3_SIZES": "config.sizes", "V3_2023_SIZES": "config.sizes", "v3_size": "config.sizes",
    "LaProp": "training.optim", "AdaptiveGradClip": "training.optim", "adaptive_clip_grad_": "training.optim", "adam": "training.optim",
    "CheckpointError": "run.checkpoint", "MissingKeysError": "keys",
    "LatentCEMPlanner": "behavior.planner", "make_planner": "behavior.planner", "BehaviorConfig": "config",
    "make_envs": "builders.agent", "latent_dims": "builders.networks", "carry_transform": "behavior.policy", "ParallelDMC": "data.vector_env", "SerialDMC": "data.vector_env",
    "World": "training.distributed", "DataParallelHook": "training.distributed", "make_data_parallel": "training.distributed",
    "Trainer": "training.trainer", "SyncCollection": "training.collection", "AsyncCollection": "training.collection",
    "make_trainer": "builders.trainer", "make_world": "builders.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")  # a submodule: dt.keys, dt.data
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
