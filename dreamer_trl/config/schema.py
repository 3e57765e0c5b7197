"""The run configuration as nested typed dataclasses, with Dreamer V1's defaults, and its plain-data form.

Defaults are Dreamer V1's (Hafner et al. 2020, Appendix A and the official code; see
docs/sources.md). The groups follow the parts: ``nets`` (how every network is built), ``world_model``
(with its ``latent``, ``rssm`` and ``loss``), ``behavior`` (with its ``actor``, ``critic``, ``exploration``
and ``planner``), then ``optim``, ``schedule``, ``run`` and ``env``; a part is chosen by name (e.g.
``world_model.rssm.core``, ``behavior.actor.dist``) and a variant is an assignment of names and numbers
(``presets.py``). Each field has its one-line description in the docstring under it; the command line
(``cli.py``, through tyro) shows it in ``--help`` as ``--GROUP.PART.FIELD``.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class AtariConfig:
    """How an Atari game is played and observed (env.suite atari; danijar/dreamerv3 ``embodied/envs/atari.py``).
    The frame size is env.image_size, the action repeat env.action_repeat, the time limit env.episode_frames."""

    sticky: bool = True
    """sticky actions: the emulator repeats the previous action with probability 0.25 (official atari: on; atari100k: off)"""
    gray: bool = True
    """observe one luminance channel (0.299 R + 0.587 G + 0.114 B) instead of RGB (official atari: on; atari100k: off)"""
    actions: Literal["all", "needed"] = "all"
    """action set: all 18 ALE actions or the game's minimal set (official atari: all; atari100k: needed)"""
    lives: Literal["unused", "reset"] = "unused"
    """a lost life: unused (the episode goes on, the official setting) or reset (it ends the episode as a termination)"""
    noops: int = 30
    """at each reset, a uniform number of no-op frames in [0, noops]"""
    pooling: int = 2
    """the observation pools this many last frames of an action's repeat"""
    aggregate: Literal["max", "mean"] = "max"
    """how the pooled frames are combined (the official max removes the games' flicker)"""


@dataclass
class EnvConfig:
    """The environment (a DeepMind Control Suite task, an Atari game, a gymnasium id or a user's TorchRL env)
    and how it is observed."""

    suite: Literal["dmc", "atari", "gym", "torchrl"] = "dmc"
    """where env.task comes from: dmc (the DeepMind Control Suite), atari (ALE games; pip install 'dreamer_trl[atari]'), gym (any registered gymnasium id; pip install 'dreamer_trl[gym]') or torchrl (a factory of your own TorchRL env)"""
    task: str = "cheetah_run"
    """dmc: domain_task, e.g. walker_walk; atari: a game, e.g. pong, ms_pacman; gym: a gymnasium id, e.g. CartPole-v1; torchrl: module:function returning an EnvBase"""
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
    atari: AtariConfig = field(default_factory=AtariConfig)
    """env.suite atari: how the game is played and observed"""


@dataclass
class NetsConfig:
    """How every network is built (world model, actor, critic): layer style, normalisation, named size, two-hot bins."""

    style: Literal["v1", "v2", "v3_2023", "v3"] = "v1"
    """layer style: v1 (ELU, Glorot-uniform init, no norm), v2 (ELU, Glorot-uniform init), v3_2023 (SiLU, fan-avg, no biases before norms, eps 1e-3; danijar/dreamerv3 84ecf19) or v3 (SiLU, fan-in, eps 1e-4; e3f0224)"""
    norm: Literal["rms", "layer", "none"] = "rms"
    """normalisation of the v2 / v3 style layers (V3 current: rms; V3 2023: layer; V2: none)"""
    size: Literal["custom", "size1m", "size12m", "size25m", "size50m", "size100m", "size200m", "size400m"] = "custom"
    """DreamerV3 named size: writes its widths into the latent, rssm, world-model, actor and critic fields; custom: the fields as given"""
    twohot_bins: int = 255
    """bins of the two-hot reward and critic heads (V3)"""
    twohot_space: Literal["symexp", "symlog"] = "symexp"
    """two-hot bins and interpolation in value space over symexp-spaced bins (current code) or in symlog space (2023 code, the paper)"""


@dataclass
class LatentConfig:
    """The stochastic state s_t (Dreamer V1: Gaussian; DreamerV2/V3: categorical groups)."""

    kind: Literal["gaussian", "categorical"] = "gaussian"
    """s_t's distribution: diagonal Gaussian (V1) or state_dim one-hot groups of `classes` (V2/V3)"""
    state_dim: int = 30
    """size of s_t (Gaussian) or number of categorical groups"""
    min_std: float = 0.1
    """Gaussian: added to softplus(std) of prior and posterior"""
    classes: int = 32
    """categorical: classes per group (V2: 32; V3 size1m: 4)"""
    unimix: float = 0.01
    """categorical: uniform mix of the latents (V3: 1%; V2: 0)"""


@dataclass
class RSSMConfig:
    """The recurrent state-space model's deterministic path h_t = f(h_{t-1}, s_{t-1}, a_{t-1})."""

    core: Literal["gru_cell", "norm_gru", "norm_gru_gates", "block_gru"] = "gru_cell"
    """recurrent core: gru_cell (V1 / PlaNet), norm_gru_gates (V2: LayerNorm gates), norm_gru (V3 2023) or block_gru (V3 current: block-diagonal, 2 prior layers)"""
    belief_dim: int = 200
    """deterministic belief h_t size"""
    hidden: int = 200
    """hidden width inside the RSSM"""
    blocks: int = 8
    """blocks of the block GRU (and of the upsample decoder's first layer)"""
    initial: Literal["zeros", "learned"] = "zeros"
    """state at every episode start: zeros, or learned (V3 2023: h_0 = tanh(w) with w trained, s_0 the prior's mode at h_0)"""


@dataclass
class WorldModelLossConfig:
    """The world model's objective (Dreamer Eq. 10; V2 KL balancing; V3 dyn / rep terms with free bits)."""

    representation: Literal["reconstruction", "contrastive", "reward"] = "reconstruction"
    """objective (Dreamer Sec. 4, Fig. 8): reconstruction (a decoder), contrastive (InfoNCE, no decoder) or reward (no observation model)"""
    obs_scale: float = 1.0
    """weight of the observation term (reconstruction or contrastive)"""
    reward_scale: float = 1.0
    """weight of the reward term"""
    kl: Literal["free_nats", "balance", "dyn_rep"] = "free_nats"
    """KL term(s): V1's max(mean KL, free_nats); V2's balancing; V3's dyn and rep terms with free bits"""
    kl_scale: float = 1.0
    """weight of the KL term (free_nats, balance)"""
    free_nats: float = 3.0
    """the KL is clamped from below at this many nats"""
    kl_balance: float = 0.8
    """balance: weight of the prior's side KL[sg(q) || p] (the posterior's side gets 1 - it)"""
    dyn_scale: float = 1.0
    """dyn_rep: scale of the dynamics term max(free_nats, KL[sg(q) || p]) (current code 1.0; 2023 paper 0.5)"""
    rep_scale: float = 0.1
    """dyn_rep: scale of the representation term max(free_nats, KL[q || sg(p)])"""
    continue_scale: float = 1.0
    """weight of the continue head's term"""
    window_start: Literal["carry_action", "episode_start", "replay_context"] = "carry_action"
    """row 0 of each replay window: carry_action (V1: zero state, the real previous action), episode_start (V2, V3 2023: zero state and zero previous action, as the official replays mark is_first there) or replay_context (V3 current: one extra row whose stored posterior starts the window; training posteriors are written back; needs schedule.replay_windows stream)"""


@dataclass
class WorldModelConfig:
    """Encoder, RSSM, decoder, reward and continue heads, each part chosen by name (builders/networks.py)."""

    latent: LatentConfig = field(default_factory=LatentConfig)
    rssm: RSSMConfig = field(default_factory=RSSMConfig)
    loss: WorldModelLossConfig = field(default_factory=WorldModelLossConfig)
    image_encoder: Literal["conv", "conv_stride", "conv_maxpool"] = "conv"
    """pixels: conv (V1, V2: 4x4 stride-2 valid convs, 64 -> 2), conv_stride (V3 2023: 4x4 stride-2, same padding) or conv_maxpool (V3 current: 5x5 convs + 2x2 max-pool)"""
    image_decoder: Literal["deconv", "deconv_normal", "deconv_mse", "upsample_mse"] = "deconv"
    """pixels: deconv (V1, V2: dense to a 1x1 map + 5, 5, 6, 6 transposed convs, N(x, 1)), deconv_normal (V3 2023's 4x4 stride-2 transposed convs, N(x, 1)), deconv_mse (V3 2023: the same, MSE) or upsample_mse (V3 current: upsample + conv, MSE)"""
    vector_encoder: Literal["mlp_out", "mlp", "mlp_symlog"] = "mlp_out"
    """vectors: mlp_out (V1: vector_layers hidden layers, then an activated output layer of width vector_units), mlp (V2: vector_layers layers) or mlp_symlog (V3: the same on symlog inputs)"""
    vector_decoder: Literal["mlp_normal", "mlp_symlog"] = "mlp_normal"
    """vectors: mlp_normal (V1, V2: N(x, 1)) or mlp_symlog (V3: MSE in symlog space)"""
    cnn_depth: int = 32
    """channels of the first conv layer (doubled per stage; V3 current: x2, 3, 4, 4)"""
    vector_layers: int = 2
    """hidden layers of the vector encoder and decoder"""
    vector_units: int = 400
    """width of the vector encoder and decoder"""
    units: int = 400
    """width of the reward and continue heads (and of the contrastive state model, the upsample decoder's input layer)"""
    reward_head: Literal["normal", "twohot"] = "normal"
    """reward predictor: normal (V1, V2: N(r, 1)) or twohot (V3: symexp two-hot over nets.twohot_bins)"""
    head_layers: int = 2
    """hidden layers of the reward and continue heads"""
    continue_head: bool = False
    """learn a continue (discount) predictor that discounts imagined returns (V3; V2 on DMC: off)"""
    continue_discount: bool = True
    """the continue head learns c * gamma (V3 current "contdisc"), so gamma is not applied again"""


@dataclass
class ActorConfig:
    """The actor pi(a_t | s_t, h_t) and its gradient."""

    dist: Literal["tanh_normal", "bounded_normal", "trunc_normal"] = "tanh_normal"
    """tanh_normal (V1: tanh of N(s tanh(m / s), softplus std)), bounded_normal (V3: N(tanh m, std in [min, max])) or trunc_normal (V2: N(tanh m, 2 sigmoid(s / 2) + min_std) truncated to [-1, 1])"""
    layers: int = 4
    """hidden layers"""
    units: int = 400
    """hidden width"""
    mean_scale: float = 5.0
    """tanh_normal: the pre-tanh mean is s tanh(x / s) with this s (paper 5); 0: the raw mean (TorchRL's actor)"""
    min_std: float = 0.1
    """bounded_normal, trunc_normal: minimum std"""
    max_std: float = 1.0
    """bounded_normal: maximum std"""
    outscale: float = 1.0
    """scale of the output layer's initialisation (V1, V2 and V3 2023: 1.0; V3 current 0.01)"""
    reinforce: float = 1.0
    """v2_v3 losses: gradient mix rho, 1 REINFORCE (V3 current), 0 dynamics backprop (V2 DMC, V3 2023 continuous)"""
    backprop_baseline: bool = False
    """v2_v3 losses, rho < 1: dynamics backprop differentiates the baseline too, -(R_t - v(s_t)) / S (V3 2023 code); False: sg(v(s_t)) (V2)"""
    entropy: float = 3e-4
    """v2_v3 losses: entropy bonus eta (V3: 3e-4; V2: 1e-4)"""
    return_norm: bool = True
    """v2_v3 losses: divide advantages by max(1, S), S the EMA of the 5th-95th percentile range of the returns (V3)"""


@dataclass
class CriticConfig:
    """The value model v(s_t, h_t) (V1 / V2 / V3) and its slow copy."""

    head: Literal["normal", "twohot"] = "normal"
    """normal (V1, V2: N(v, 1)) or twohot (V3: symexp two-hot over nets.twohot_bins)"""
    layers: int = 3
    """hidden layers"""
    units: int = 400
    """hidden width"""
    slow_rate: float = 0.02
    """v2_v3 losses: slow critic EMA v_slow += rate (v - v_slow) every slow_every updates (V2: 1.0 every 100)"""
    slow_every: int = 1
    """v2_v3 losses: updates between slow-critic updates"""
    slow_reg: float = 1.0
    """v2_v3 losses: weight of the regulariser toward the slow critic (V2: 0, the target critic makes the returns)"""
    replay_scale: float = 0.3
    """v2_v3 losses: scale of the critic loss on replayed states (V3 current code; 0: off)"""


@dataclass
class ExplorationConfig:
    """How the agent acts in the real environment while training (evaluation acts with the mode, noise-free)."""

    noise: float = 0.3
    """std of the Gaussian noise added to actions (V1, PlaNet: 0.3; V2, V3: 0, they act with samples)"""
    act_with_mode: bool = False
    """act with the actor's mode plus noise (TorchRL's recipe) instead of a sample plus noise (paper)"""


@dataclass
class PlannerConfig:
    """PlaNet's CEM planner in latent space (Hafner et al. 2019)."""

    horizon: int = 12
    """imagined steps per candidate action sequence (PlaNet 12)"""
    candidates: int = 1000
    """candidate action sequences per CEM iteration (PlaNet 1000)"""
    top_k: int = 100
    """best candidates the Gaussian is refit to (PlaNet 100)"""
    iterations: int = 10
    """CEM iterations per agent step (PlaNet 10)"""
    warm_start: bool = False
    """start from the previous plan shifted by one step instead of N(0, I) (PlaNet: off)"""


@dataclass
class BehaviorConfig:
    """What acts and how it learns in imagination: actor and critic (Dreamer) or CEM planning (PlaNet)."""

    actor: ActorConfig = field(default_factory=ActorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    kind: Literal["actor", "planner"] = "actor"
    """actor (Dreamer: actor and critic are trained) or planner (PlaNet: CEM in latent space, world model only)"""
    losses: Literal["v1", "v2_v3"] = "v1"
    """imagined actor and critic losses: v1 (Dreamer Eq. 6-8: targets on s_1..s_H-1, gamma^t weights, backprop, squared value error) or v2_v3 (targets on s_0.., continue weights, rho mix, entropy, return norm, slow critic, NLL critic)"""
    horizon: int = 15
    """imagination horizon H (>= 2 for the v1 losses' targets on s_1..s_H-1; >= 1 with targets from s_0: v2_v3 or start_state_targets)"""
    gamma: float = 0.99
    """discount gamma of V_lambda / V_N^k and of the step weights (V_R, value_estimate reward, is undiscounted: gamma weights the steps only)"""
    lmbda: float = 0.95
    """lambda of the lambda-return V_lambda"""
    value_estimate: Literal["lambda", "nstep", "reward"] = "lambda"
    """value estimate the actor maximises (Dreamer Eq. 4-6): lambda (V_lambda), nstep (V_N^k, k = value_steps) or reward (V_R: imagined rewards only, no critic)"""
    value_steps: int = 5
    """k of the k-step estimate V_N^k (value_estimate nstep)"""
    sample_imagined_heads: bool = False
    """score imagined rollouts with rewards and values drawn from N(mean, 1) (TorchRL) instead of the means"""
    start_state_targets: bool = False
    """v1 losses: TorchRL's alignment, targets for the start state too, each from the next state's reward (paper: off)"""
    target_reward: Literal["next", "same"] = "next"
    """v2_v3 losses: the reward that starts the target R_t of s_t, next (V3: r(s_t+1), the actor at s_t scored by R_t) or same (V2: r(s_t), discounted by c_t, the actor at s_t scored by R_t+1)"""
    continue_mode: Literal["prob", "mode"] = "prob"
    """v2_v3 losses with a continue head: read its probability at every state (current code) or its mode, 0 or 1, with c_0 = 1 (2023 code)"""


@dataclass
class OptimConfig:
    """Optimizers: Adam per objective (world model, actor, critic) or one LaProp for everything."""

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
class DreamerConfig:
    """A whole run: one sub-config per concern."""

    env: EnvConfig = field(default_factory=EnvConfig)
    nets: NetsConfig = field(default_factory=NetsConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)


GROUPS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DreamerConfig))
"""The top-level groups; world_model and behavior hold parts of their own (world_model.latent, behavior.actor, ...)."""


def field_types(group: type) -> dict[str, Any]:
    """{field name: type} of one sub-config class (annotations resolved)."""
    return typing.get_type_hints(group)


def _is_part(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def leaf_fields(obj: Any, prefix: str = "") -> list[str]:
    """Every leaf field under ``obj`` as a dotted path (parts before the fields of their own level)."""
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out += leaf_fields(value, f"{prefix}{f.name}.") if _is_part(value) else [f"{prefix}{f.name}"]
    return out


def field_names(cfg: DreamerConfig | None = None) -> list[str]:
    """Every field as its dotted path (``schedule.batch_size``, ``world_model.rssm.belief_dim``), in order."""
    return leaf_fields(cfg or DreamerConfig())


def group_of(name: str) -> str:
    """The top-level group of a dotted field name."""
    return name.split(".", 1)[0]


def owner(cfg: DreamerConfig, name: str) -> tuple[Any, str]:
    """(the dataclass holding ``name``, the field's own name)."""
    *path, leaf = name.split(".")
    obj = cfg
    for part in path:
        obj = getattr(obj, part)
    return obj, leaf


def get_field(cfg: DreamerConfig, name: str) -> Any:
    obj, leaf = owner(cfg, name)
    return getattr(obj, leaf)


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
    """Set a field by its dotted path (e.g. ``schedule.batch_size``, ``world_model.rssm.belief_dim``), converting
    strings to the field's type.

    For programmatic overrides and :func:`from_dict`; the command line goes through tyro (``cli.py``).
    Unknown names are refused with the closest valid names.
    """
    names = field_names(cfg)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        close = close or [n for n in names if n.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown config field {name!r}{hint}")
    sub, leaf = owner(cfg, name)
    setattr(sub, leaf, _convert(name, field_types(type(sub))[leaf], value))


def to_dict(cfg: DreamerConfig) -> dict:
    """``{group: {field or part: ...}}``, nested as the dataclasses are, JSON-ready."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> DreamerConfig:
    """Inverse of :func:`to_dict`; unknown groups or fields and wrong types are refused by name.

    Fields missing from ``data`` keep their defaults. A config of the flat layout before format 3 (groups
    ``model`` and ``loss``) is migrated first (:func:`~dreamer_trl.config.legacy.migrate_flat`).
    """
    from .legacy import is_flat, migrate_flat

    if is_flat(data):
        data = migrate_flat(data)
    cfg = DreamerConfig()

    def walk(values: dict, prefix: str) -> None:
        for name, value in values.items():
            path = f"{prefix}{name}"
            if isinstance(value, dict):
                walk(value, path + ".")
            else:
                set_field(cfg, path, value)

    for group, values in data.items():
        if group not in GROUPS or not isinstance(values, dict):
            close = difflib.get_close_matches(str(group), GROUPS, n=1)
            raise ValueError(f"unknown config group {group!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        walk(values, f"{group}.")
    return cfg
