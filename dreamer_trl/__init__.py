"""dreamer_trl: Dreamer (Hafner et al., ICLR 2020) and PlaNet (ICML 2019) as TorchRL components.

Names are imported on first use (PEP 562), so that ``import dreamer_trl.config`` (the command line)
does not pull in torch, TorchRL and MuJoCo: bad arguments are refused in well under a second.
"""
from __future__ import annotations

import importlib
import importlib.util

# public name -> the module defining it
_EXPORTS = {
    "Agent": "builders", "make_agent": "builders", "make_env": "builders", "make_update": "builders",
    "make_actor": "behavior", "make_value": "behavior",
    "load_checkpoint": "checkpoint", "prune_checkpoints": "checkpoint", "save_checkpoint": "checkpoint",
    "DreamerConfig": "config", "EnvConfig": "config", "LossConfig": "config", "ModelConfig": "config",
    "OptimConfig": "config", "ScheduleConfig": "config",
    "make_replay_buffer": "data",
    "DMCEnv": "envs", "make_dmc_env": "envs", "split_task": "envs",
    "ImaginationEnv": "imagination", "make_imagination_env": "imagination",
    "ActorLoss": "objectives", "ValueLoss": "objectives", "WorldModelLoss": "objectives",
    "lambda_return": "objectives", "LambdaReturn": "objectives", "NStepReturn": "objectives",
    "RewardSum": "objectives", "make_value_estimate": "objectives",
    "NormalHead": "heads", "GaussianLatent": "latent",
    "Preemption": "preemption",
    "Filter": "policy", "make_policy": "policy", "policy_carry_transform": "policy",
    "RSSM": "rssm",
    "restore_run": "run_state", "save_run": "run_state",
    "DreamerUpdate": "training", "Phase": "training", "ChainedLoss": "training",
    "ImaginedActorLoss": "objectives", "ImaginedCriticLoss": "objectives",
    "BoundedNormalActor": "behavior", "BoundedNormal": "behavior", "MSEHead": "heads",
    "OneHotActor": "behavior", "OneHotCategorical": "behavior",
    "TruncNormalActor": "behavior", "TruncatedNormal": "trunc_normal",
    "make_family_agent": "family", "make_family_update": "family",
    "DreamerWorldModel": "world_model", "make_world_model": "world_model",
    "CategoricalLatent": "latent",
    "BernoulliHead": "heads", "SymlogMSEHead": "heads", "TwoHotHead": "heads", "zero_init_last_linear": "heads",
    "TwoHotCodec": "symlog",
    "BalancedKL": "objectives", "DynRepKL": "objectives", "FreeNatsKL": "objectives",
    "ReturnNormalizer": "objectives", "SlowTarget": "objectives",
    "NetStyle": "v3_networks", "MLPV3": "v3_networks", "BlockLinear": "v3_networks", "ConvEncoderV3": "v3_networks",
    "ConvDecoderV3": "v3_networks", "TransposedConvDecoderV3": "v3_networks",
    "RSSMV3": "rssm_v3", "BlockGRU": "rssm_v3", "NormGRU": "rssm_v3",
    "V3_SIZES": "config.sizes", "V3_2023_SIZES": "config.sizes", "v3_size": "config.sizes",
    "LaProp": "optim", "AdaptiveGradClip": "optim", "adaptive_clip_grad_": "optim", "v2_adam": "optim",
    "CheckpointError": "checkpoint", "MissingKeysError": "keys",
    "LatentCEMPlanner": "planner", "make_planner": "planner", "BehaviorConfig": "config",
    "make_envs": "vector_env", "ParallelDMC": "vector_env", "SerialDMC": "vector_env",
    "World": "distributed", "DataParallelHook": "distributed", "make_data_parallel": "distributed",
    "DataParallelTrainer": "parallel_trainer", "train_data_parallel": "parallel_trainer",
    "AsyncTrainer": "async_trainer",
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
