"""The run configuration as nested typed dataclasses, with Dreamer V1's defaults, and its plain-data form.

Defaults are Dreamer V1's (Hafner et al. 2020, Appendix A and the official code; see
docs/sources.md). Each field has its one-line description in the docstring under it; the
command line (``cli.py``, through tyro) shows it in ``--help`` as ``--GROUP.FIELD``.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class EnvConfig:
    """The DeepMind Control Suite task and how it is observed."""

    task: str = "cheetah_run"
    """DMC task as domain_task, e.g. walker_walk, cartpole_swingup"""
    from_pixels: bool = True
    """observe 64x64 RGB pixels (paper); False: proprioceptive state vector"""
    image_size: int = 64
    """rendered image height and width"""
    action_repeat: int = 2
    """each action is repeated this many frames; rewards are summed"""
    episode_frames: int = 1000
    """frames per episode (time limit; the episode ends as truncated)"""
    num_envs: int = 1
    """training envs per learner (rank), the policy batched over them; seeds seed + 1000 * i"""
    parallel_envs: bool = True
    """with num_envs > 1: step the envs in worker processes (TorchRL ParallelEnv); False: in turn (SerialEnv)"""


@dataclass
class ModelConfig:
    """Network sizes (Dreamer V1, Hafner et al. 2020, Appendix A)."""

    state_dim: int = 30
    """stochastic state s_t size"""
    belief_dim: int = 200
    """deterministic GRU belief h_t size"""
    rssm_hidden: int = 200
    """hidden width inside the RSSM"""
    min_std: float = 0.1
    """added to softplus(std) of prior and posterior"""
    cnn_depth: int = 32
    """channels of the first conv layer, doubled at each of the 4 layers"""
    mlp_hidden: int = 400
    """width of the reward, value, actor and vector-observation MLPs"""
    reward_layers: int = 2
    """hidden layers of the reward head"""
    value_layers: int = 3
    """hidden layers of the value head"""
    actor_layers: int = 4
    """hidden layers of the actor"""
    actor_mean_scale: float = 5.0
    """the actor's pre-tanh mean is s*tanh(x/s) with this s (paper 5); 0: the raw mean (TorchRL's actor)"""
    obs_layers: int = 2
    """hidden layers of the vector-observation encoder and decoder"""
    agent: Literal["dreamer", "dreamer_v2", "dreamer_v3"] = "dreamer"
    """which agent the builders make: Dreamer V1 (with its ablations), DreamerV2 or DreamerV3"""
    size: Literal["custom", "size1m", "size12m", "size25m", "size50m", "size100m", "size200m", "size400m"] = "custom"
    """DreamerV2/V3 size: a V3 named size sets belief_dim, rssm_hidden, classes, mlp_hidden and cnn_depth; custom: the fields as given"""
    latent: Literal["gaussian", "categorical"] = "gaussian"
    """s_t's distribution: diagonal Gaussian (V1) or state_dim one-hot groups of `classes` (V2/V3)"""
    classes: int = 32
    """classes per categorical group (V2: 32; V3 size1m: 4)"""
    unimix: float = 0.01
    """uniform mix of the categorical latents and discrete actions (V3: 1%; V2: 0)"""
    norm: Literal["rms", "layer", "none"] = "rms"
    """normalisation in the V2/V3 MLPs and convs (V3 current: rms; V3 2023: layer; V2: none)"""
    blocks: int = 8
    """blocks of the block-diagonal GRU (V3 current: 8; 1: a dense GRU)"""
    mlp_layers: int = 3
    """hidden layers of the V3 encoder, decoder, actor and critic MLPs (reward and continue heads: head_layers)"""
    head_layers: int = 1
    """hidden layers of the V3 reward and continue heads"""
    conv: Literal["maxpool", "stride"] = "maxpool"
    """V3 image networks: maxpool (current official: 5x5 stride-1 convs + 2x2 max-pool, upsample + conv decoder) or stride (2023 code and TorchRL's V3: 4x4 stride-2 convs, transposed-conv decoder; about 4x fewer conv FLOPs)"""
    twohot_bins: int = 255
    """symexp two-hot bins of the reward and critic heads (V3); 0: unit-Gaussian heads (V2)"""
    continue_head: bool = True
    """learn a continue (discount) predictor that discounts imagined returns (V3; V2 on DMC: off)"""
    actor_min_std: float = 0.1
    """V2/V3 actor's minimum std"""
    actor_max_std: float = 1.0
    """V3 actor's maximum std"""
    actor_dist: Literal["bounded_normal", "trunc_normal"] = "bounded_normal"
    """V2/V3 continuous actor: bounded_normal (V3: N(tanh m, std in [min, max]), unbounded draws) or trunc_normal (V2: N(tanh m, 2 sigmoid(s / 2) + min_std) truncated to [-1, 1])"""
    nets: Literal["current", "2023"] = "current"
    """V3 network structure: current (e3f0224: block GRU, 2 prior layers, fan-in init, norm eps 1e-4) or 2023 (84ecf19: dense GRU with normed gates, 1 prior layer, fan-avg init, no biases before norms, eps 1e-3, 4x4 stride convs)"""
    vector_layers: int = 0
    """hidden layers of the V2/V3 vector encoder and decoder MLPs; 0: mlp_layers (V3 2023 DMC: 5)"""
    vector_units: int = 0
    """width of the V2/V3 vector encoder and decoder MLPs; 0: mlp_hidden (V3 2023 DMC: 1024)"""
    actor_outscale: float = 0.01
    """scale of the V3 actor's output-layer initialisation (current code 0.01; 2023 code 1.0)"""
    twohot_space: Literal["symexp", "symlog"] = "symexp"
    """two-hot bins and interpolation in value space over symexp-spaced bins (current code) or in symlog space (2023 code, the paper)"""


@dataclass
class LossConfig:
    """Objectives (Dreamer Eq. 6-8, 10)."""

    representation: Literal["reconstruction", "contrastive", "reward"] = "reconstruction"
    """world-model objective (Dreamer Sec. 4, Fig. 8): reconstruction, contrastive (InfoNCE) or reward (no observation model)"""
    obs_scale: float = 1.0
    """weight of the observation term (reconstruction or contrastive)"""
    reward_scale: float = 1.0
    """weight of the reward term of the world-model loss"""
    kl_scale: float = 1.0
    """weight of the KL term of the world-model loss"""
    free_nats: float = 3.0
    """the batch-mean KL is clamped from below at this many nats"""
    horizon: int = 15
    """imagination horizon H"""
    gamma: float = 0.99
    """discount"""
    lmbda: float = 0.95
    """lambda of the lambda-return V_lambda"""
    value_estimate: Literal["lambda", "nstep", "reward"] = "lambda"
    """value estimate the actor maximises (Dreamer Eq. 4-6): lambda (V_lambda), nstep (V_N^k, k = value_steps) or reward (V_R: imagined rewards only, no value net)"""
    value_steps: int = 5
    """k of the k-step estimate V_N^k (value_estimate nstep)"""
    exploration_noise: float = 0.3
    """std of the Gaussian noise added to actions in the real env"""
    act_with_mode: bool = False
    """act with the actor's mode plus noise (TorchRL's recipe) instead of a sample plus noise (paper)"""
    sample_imagined_heads: bool = False
    """score imagined rollouts with rewards and values drawn from N(mean, 1) (TorchRL) instead of the means"""
    start_state_targets: bool = False
    """TorchRL's alignment: targets for the start state too, each from the next state's reward (paper: off)"""
    kl: Literal["free_nats", "balance", "dyn_rep"] = "free_nats"
    """KL term(s): V1's max(mean KL, free_nats); V2's balancing; V3's dyn and rep terms with free bits"""
    kl_balance: float = 0.8
    """V2: weight of the prior's side KL[sg(q) || p] (the posterior's side gets 1 - it)"""
    dyn_scale: float = 1.0
    """V3: scale of the dynamics term max(free_nats, KL[sg(q) || p]) (current code 1.0; 2023 paper 0.5)"""
    rep_scale: float = 0.1
    """V3: scale of the representation term max(free_nats, KL[q || sg(p)])"""
    continue_scale: float = 1.0
    """scale of the continue head's term of the world-model loss"""
    actor_reinforce: float = 1.0
    """V2/V3 actor gradient mix rho: 1 REINFORCE (V3 current), 0 dynamics backprop (V2 DMC, V3 2023 continuous)"""
    actor_backprop_baseline: bool = False
    """dynamics backprop (rho < 1) differentiates the baseline too, -(R_t - v(s_t)) / S (V3 2023 code); False: sg(v(s_t)) (V2)"""
    actor_entropy: float = 3e-4
    """V2/V3 entropy bonus eta (V3: 3e-4; V2: 1e-4)"""
    return_norm: bool = True
    """V3: divide advantages by max(1, S), S the EMA of the 5th-95th percentile range of the returns"""
    slow_value_rate: float = 0.02
    """V3: slow critic EMA v_slow += rate (v - v_slow) every slow_value_every updates (V2: 1.0 every 100)"""
    slow_value_every: int = 1
    """updates between slow-critic updates"""
    slow_value_reg: float = 1.0
    """V3: weight of the critic's regulariser toward the slow critic (V2: 0, the target net makes the returns)"""
    replay_value_scale: float = 0.3
    """V3 current code: scale of the critic loss on replayed states (0: off)"""
    continue_discount: bool = True
    """V3 current code: the continue head learns c * gamma ("contdisc"), so gamma is not applied again"""
    continue_mode: Literal["prob", "mode"] = "prob"
    """V3: imagination reads the continue head's probability at every state (current code) or its mode, 0 or 1, with c_0 = 1 for the start (2023 code)"""


@dataclass
class OptimConfig:
    """Three Adam optimizers, one per objective."""

    model_lr: float = 6e-4
    """world-model learning rate"""
    actor_lr: float = 8e-5
    """actor learning rate"""
    value_lr: float = 8e-5
    """value learning rate"""
    adam_eps: float = 1e-7
    """Adam epsilon"""
    grad_clip: float = 100.0
    """global-norm gradient clip, per optimizer"""
    kind: Literal["adam", "laprop"] = "adam"
    """adam: one Adam per objective (V1, V2, V3 2023); laprop: one LaProp with AGC for everything (V3 current)"""
    lr: float = 4e-5
    """LaProp learning rate (V3 current)"""
    laprop_eps: float = 1e-20
    """LaProp epsilon"""
    agc: float = 0.3
    """LaProp: adaptive gradient clipping, each tensor's gradient norm clipped to agc * max(1e-3, its norm)"""
    warmup: int = 1000
    """LaProp: updates of linear learning-rate warmup"""
    weight_decay: float = 0.0
    """Adam weight decay (V2: 1e-6)"""
    model_adam_eps: float = 0.0
    """Adam epsilon of the world model's optimizer; 0: adam_eps (V3 2023: 1e-8, actor and critic 1e-5)"""
    model_grad_clip: float = 0.0
    """global-norm clip of the world model's optimizer; 0: grad_clip (V3 2023: 1000, actor and critic 100)"""
    step_model_first: bool = False
    """world model steps, then actor and critic imagine with it (V2, V3 2023); false: all losses, then steps (V1)"""


@dataclass
class ScheduleConfig:
    """Data collection and update schedule; env steps are frames after action repeat."""

    total_env_steps: int = 1_000_000
    """env steps (frames) to train for"""
    prefill_env_steps: int = 5000
    """env steps of uniform random actions before training"""
    train_every: int = 1000
    """env steps collected between training phases"""
    updates_per_train: int = 100
    """gradient updates per training phase (also once after prefill)"""
    train_ratio: float = 0.0
    """replayed steps per policy step (DreamerV3), exact over the run; 0: updates_per_train per train_every"""
    pretrain_updates: int = 0
    """extra updates once the prefill is done, on top of the schedule (DreamerV2's pretrain)"""
    batch_size: int = 50
    """sequences per batch"""
    seq_len: int = 50
    """steps per sequence"""
    eval_every: int = 10_000
    """env steps between noise-free evaluation episodes"""
    eval_episodes: int = 1
    """episodes per evaluation"""
    buffer_capacity: int = 1_000_000
    """replay capacity in agent steps (stored frames)"""
    replay_windows: Literal["episode", "stream"] = "episode"
    """replay windows inside one episode, or along each env's stream across episode ends (2023 DreamerV3)"""


@dataclass
class RunConfig:
    """Where and how the run executes."""

    seed: int = 0
    """seed of torch, numpy and the environments"""
    device: str = "auto"
    """cuda if available when 'auto', else the given torch device"""
    run_dir: str = "runs"
    """parent directory of run directories"""
    run_name: str = ""
    """run directory name; default: task-preset-seed-timestamp"""
    buffer_dir: str = ""
    """directory of the memory-mapped replay buffer; default: inside the run dir"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    progress: bool = True
    """show a progress bar"""
    tensorboard: bool = True
    """also log to TensorBoard (CSV is always written)"""
    wandb_project: str = ""
    """also log to this Weights & Biases project (needs wandb installed)"""
    resume: str = ""
    """run directory (or checkpoint directory) to continue; its config is used (also --resume)"""
    checkpoint_every: int = 100_000
    """env steps between checkpoints (model, optimizers, RNG, replay)"""
    checkpoints_kept: int = 2
    """how many of the newest checkpoints to keep"""
    stop_at_env_steps: int = 0
    """end this process after the checkpoint at this many env steps (0: never)"""
    max_nonfinite_updates: int = 10
    """consecutive non-finite updates (all skipped) before the run stops"""
    compile: bool = False
    """torch.compile the networks and RSSM steps (CUDA graphs on GPU); eager on failure"""
    compile_backend: str = "inductor"
    """torch.compile backend (aot_eager: capture without code generation)"""
    precision: Literal["fp32", "bf16"] = "fp32"
    """fp32, or bf16: autocast of the loss forward passes (where the device has bf16)"""
    max_physics_errors: int = 5
    """MuJoCo physics errors tolerated within physics_error_window episodes"""
    physics_error_window: int = 100
    """episodes over which physics errors are counted"""
    world_size: int = 1
    """data-parallel ranks (set from torchrun's WORLD_SIZE); a checkpoint resumes only with as many"""
    check_every: int = 100
    """data-parallel: updates between checks that every rank holds the same parameters (0: never)"""
    async_collection: bool = False
    """collect in a worker process while the learner trains (overlap; no bit-exact resume, see training/collection.py)"""


@dataclass
class BehaviorConfig:
    """What acts: the learned actor (Dreamer) or online planning with CEM (PlaNet, Hafner et al. 2019)."""

    kind: Literal["actor", "planner"] = "actor"
    """actor (Dreamer: actor and value are trained) or planner (PlaNet: CEM in latent space, world model only)"""
    plan_horizon: int = 12
    """planner: imagined steps per candidate action sequence (PlaNet 12)"""
    candidates: int = 1000
    """planner: candidate action sequences per CEM iteration (PlaNet 1000)"""
    top_k: int = 100
    """planner: best candidates the Gaussian is refit to (PlaNet 100)"""
    iterations: int = 10
    """planner: CEM iterations per agent step (PlaNet 10)"""
    warm_start: bool = False
    """planner: start from the previous plan shifted by one step instead of N(0, I) (PlaNet: off)"""


@dataclass
class DreamerConfig:
    """A whole run: one sub-config per concern."""

    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)


GROUPS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DreamerConfig))


def field_types(group: type) -> dict[str, Any]:
    """{field name: type} of one sub-config class (annotations resolved)."""
    return typing.get_type_hints(group)


def field_names(cfg: DreamerConfig | None = None) -> list[str]:
    """Every field as ``group.field``, in declaration order."""
    cfg = cfg or DreamerConfig()
    return [f"{g}.{f.name}" for g in GROUPS for f in dataclasses.fields(getattr(cfg, g))]


def get_field(cfg: DreamerConfig, name: str) -> Any:
    group, leaf = name.split(".")
    return getattr(getattr(cfg, group), leaf)


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _convert(name: str, kind: Any, value: Any) -> Any:
    """``value`` as the field's type; a string is parsed; an int widens to a float; anything else is refused."""
    choices = typing.get_args(kind) if typing.get_origin(kind) is Literal else None
    base = str if choices else kind
    if isinstance(value, str) and base is not str:
        text = value.replace("_", "") if base in (int, float) else value
        try:
            value = _parse_bool(text) if base is bool else base(text)
        except ValueError:
            raise ValueError(f"config field {name!r} expects {base.__name__}, got {value!r}") from None
    if base is float and type(value) is int:
        value = float(value)
    if type(value) is not base:  # bool is not an int here
        raise ValueError(f"config field {name!r} expects {base.__name__}, got {type(value).__name__} {value!r}")
    if choices and value not in choices:
        raise ValueError(f"config field {name!r} must be one of {', '.join(choices)}, got {value!r}")
    return value


def set_field(cfg: DreamerConfig, name: str, value: Any) -> None:
    """Set ``group.field`` (e.g. ``schedule.batch_size``), converting strings to the field's type.

    For programmatic overrides and :func:`from_dict`; the command line goes through tyro (``cli.py``).
    Unknown names are refused with the closest valid names.
    """
    names = field_names(cfg)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        close = close or [n for n in names if n.split(".")[1] == name.split(".")[-1]]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown config field {name!r}{hint}")
    group, leaf = name.split(".")
    sub = getattr(cfg, group)
    setattr(sub, leaf, _convert(name, field_types(type(sub))[leaf], value))


def to_dict(cfg: DreamerConfig) -> dict:
    """``{group: {field: value}}``, JSON-ready."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> DreamerConfig:
    """Inverse of :func:`to_dict`; unknown groups or fields and wrong types are refused by name.

    Fields missing from ``data`` keep their defaults.
    """
    cfg = DreamerConfig()
    for group, values in data.items():
        if group not in GROUPS or not isinstance(values, dict):
            close = difflib.get_close_matches(str(group), GROUPS, n=1)
            raise ValueError(f"unknown config group {group!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        for name, value in values.items():
            set_field(cfg, f"{group}.{name}", value)
    return cfg
