"""Named starting configurations: plain functions returning a fresh :class:`DreamerConfig`."""
from __future__ import annotations

import inspect
from typing import Callable

from .schema import (
    ActorConfig,
    AtariConfig,
    BehaviorConfig,
    CriticConfig,
    DreamerConfig,
    EnvConfig,
    ExplorationConfig,
    LatentConfig,
    NetsConfig,
    OptimConfig,
    RSSMConfig,
    RunConfig,
    ScheduleConfig,
    WorldModelConfig,
    WorldModelLossConfig,
)
from .sizes import apply_size


def _units(cfg: DreamerConfig, units: int) -> None:
    """One width for every MLP (V1's ``mlp_hidden``): the world model's heads (and its vector nets, when the
    observation is a vector), actor and critic."""
    cfg.world_model.units = units
    if not cfg.env.from_pixels:
        cfg.world_model.vector_units = units
    cfg.behavior.actor.units = cfg.behavior.critic.units = units


def paper() -> DreamerConfig:
    """Dreamer V1 from pixels, every default as in the paper (GPU work)."""
    return DreamerConfig()


def state(from_pixels: bool = False) -> DreamerConfig:
    """Proprioceptive observations, smaller model and batch: learns cartpole_balance on 2 CPU cores.

    60k env steps; each evaluation is the mean of 10 noise-free episodes (single episodes swing widely). One torch
    thread: an update then takes about as long beside another busy process as alone.
    cartpole_balance reached 536.0 and 464.2 in two seeds (cartpole_swingup stays at the constant push
    within 60k; benchmarks/RESULTS.md, "The family architecture"). Free nats 0 instead of
    the paper's 3: from proprioception the posterior needs only about 0.5 nats (measured), so with a
    threshold of 3 the batch-mean KL never reaches it and the prior, trained only by the KL term, would get
    no gradient (benchmarks/RESULTS.md, "Learning on CPU").
    """
    cfg = DreamerConfig()
    cfg.env = EnvConfig(task="cartpole_balance", from_pixels=from_pixels)
    cfg.world_model.latent.state_dim = 16
    cfg.world_model.rssm = RSSMConfig(belief_dim=128, hidden=128)
    _units(cfg, 200)
    cfg.world_model.loss.free_nats = 0.0
    cfg.schedule = ScheduleConfig(total_env_steps=60_000, prefill_env_steps=5000, batch_size=8, seq_len=32,
                                  eval_every=10_000, eval_episodes=10, buffer_capacity=100_000)
    cfg.run = RunConfig(threads=1)  # robust beside other jobs: no OpenMP barriers (benchmarks/shared_machine.py)
    return cfg


def debug(from_pixels: bool = True) -> DreamerConfig:
    """Tiny networks and schedule on real pixels: the whole loop in about a minute on CPU."""
    cfg = DreamerConfig()
    cfg.env = EnvConfig(task="cartpole_swingup", from_pixels=from_pixels, episode_frames=200)
    cfg.world_model.latent.state_dim = 8
    cfg.world_model.rssm = RSSMConfig(belief_dim=32, hidden=32)
    if from_pixels:
        cfg.world_model.cnn_depth = 4
    _units(cfg, 32)
    cfg.behavior.horizon = 5
    cfg.schedule = ScheduleConfig(total_env_steps=800, prefill_env_steps=400, train_every=200, updates_per_train=2,
                                  batch_size=4, seq_len=10, eval_every=400, buffer_capacity=2000)
    cfg.run = RunConfig(tensorboard=False)
    return cfg


def dreamer_v3(from_pixels: bool = True) -> DreamerConfig:
    """DreamerV3 from pixels as it produced the official DMC score files: the 2023 code (danijar/dreamerv3
    84ecf19 / 423291a, configs.yaml ``defaults`` + ``dmc_vision``; the score files were added in 423291a and
    later only moved). Size ``small``: GRU 512 with LayerNorm gates (no blocks), RSSM layers 512, 32 x 32
    categoricals with 1% unimix, LayerNorm + SiLU (eps 1e-3, fan-avg init), 4x4 stride-2 convs of depth 32,
    2 x 512 reward / continue / actor / critic MLPs; symlog-space two-hot heads (255 bins, zero output
    layers), continue head on 1 - terminal, read by its mode (0 or 1) in imagination, where the start's own
    flag is 1 (``WorldModel.imagine``), dyn 0.5 / rep 0.1 with 1 free nat each,
    dynamics-backprop actor with the baseline differentiated (actor output scale 1.0, entropy 3e-4, std
    in [0.1, 1]), return normalisation (5th-95th percentile, EMA 0.99, max(1, S)), slow critic (EMA 0.02,
    regulariser 1), no replay critic loss, Adam per objective (model 1e-4 / eps 1e-8 / clip 1000, actor and
    critic 3e-5 / eps 1e-5 / clip 100), the world model stepping before the actor imagines with it (423291a
    ``agent.py`` ``Agent.train``), batch 16 x 64, train ratio 512, action repeat 2; random actions
    until the replay holds batch 16 x 64 = 1024 sequences (``embodied/run/train.py``: ``len(replay)`` counts
    the 64-step windows, one per step once an env's stream holds 64, filled in 100-step driver calls): 1100
    policy steps with one env (1300 with 4 envs), here 2208 env steps, the next multiple of train_every;
    replay windows along each env's stream across episode ends (423291a ``embodied/replay/generic.py``,
    ``Generic.add``: one window per step of a worker's stream; ``replay_windows="stream"``). Not reproduced:
    the learned initial belief (zeros here), 4 training envs (``--env.num-envs 4``) and float16 compute. The
    current code's configuration is :func:`dreamer_v3_current`. GPU work. ``from_pixels`` False: the vector
    networks instead (:func:`dreamer_v3_proprio`)."""
    cfg = DreamerConfig()
    cfg.env = EnvConfig(task="walker_walk", from_pixels=from_pixels, action_repeat=2)
    cfg.nets = NetsConfig(style="v3_2023", norm="layer", twohot_bins=255, twohot_space="symlog")
    cfg.world_model = WorldModelConfig(
        latent=LatentConfig(kind="categorical", state_dim=32, classes=32, unimix=0.01),
        rssm=RSSMConfig(core="norm_gru", belief_dim=512, hidden=512, initial="learned"),
        loss=WorldModelLossConfig(kl="dyn_rep", dyn_scale=0.5, rep_scale=0.1, free_nats=1.0,
                                  window_start="episode_start"),
        units=512, reward_head="twohot", head_layers=2, continue_head=True, continue_discount=False)
    _observation_parts(cfg.world_model, from_pixels, image=("conv_stride", "deconv_mse"), cnn_depth=32,
                       vector=("mlp_symlog", "mlp_symlog"), vector_layers=2, vector_units=512)
    cfg.behavior = BehaviorConfig(
        losses="v2_v3", horizon=15, gamma=1 - 1 / 333, lmbda=0.95, continue_mode="mode",
        actor=ActorConfig(dist="bounded_normal", layers=2, units=512, outscale=1.0, reinforce=0.0,
                          backprop_baseline=True, entropy=3e-4),
        critic=CriticConfig(head="twohot", layers=2, units=512, replay_scale=0.0),
        exploration=ExplorationConfig(noise=0.0))
    cfg.optim = OptimConfig(kind="adam", model_lr=1e-4, model_adam_eps=1e-8, model_grad_clip=1000.0, actor_lr=3e-5,
                            value_lr=3e-5, adam_eps=1e-5, grad_clip=100.0, step_model_first=True)
    cfg.schedule = ScheduleConfig(total_env_steps=1_000_000, prefill_env_steps=2208, train_every=16, train_ratio=512,
                                  batch_size=16, seq_len=64, eval_every=10_000, eval_episodes=10,
                                  replay_windows="stream")
    return cfg


def _observation_parts(wm: WorldModelConfig, from_pixels: bool, *, image: tuple[str, str], cnn_depth: int,
                       vector: tuple[str, str], vector_layers: int, vector_units: int) -> None:
    """The encoder and decoder of one observation kind (the other kind's stay at their defaults: unread)."""
    if from_pixels:
        wm.image_encoder, wm.image_decoder = image
        wm.cnn_depth = cnn_depth
    else:
        wm.vector_encoder, wm.vector_decoder = vector
        wm.vector_layers, wm.vector_units = vector_layers, vector_units


def dreamer_v3_proprio() -> DreamerConfig:
    """DreamerV3 from proprioception as it produced the official DMC proprio score file (2023 code,
    ``dmc_proprio``): :func:`dreamer_v3` with vector inputs; the encoder and decoder MLPs keep the default
    5 x 1024 (the size pattern ``.*\\.units`` does not reach ``mlp_units``); 500k env steps (the score file's
    budget). Train ratio 512 at action repeat 2: one update per 4 env steps. The world model steps before the
    actor imagines (423291a ``agent.py`` ``Agent.train``) and replay windows run along each env's stream across
    episode ends (423291a ``embodied/replay/generic.py``), as :func:`dreamer_v3`."""
    cfg = dreamer_v3(from_pixels=False)
    cfg.env.task = "cartpole_balance"
    cfg.world_model.vector_layers, cfg.world_model.vector_units = 5, 1024
    cfg.schedule.total_env_steps = 500_000
    return cfg


def dreamer_v3_current(from_pixels: bool = True) -> DreamerConfig:
    """DreamerV3 from pixels, the official current configuration (danijar/dreamerv3 e3f0224, configs.yaml
    ``defaults`` + ``dmc_vision``): default size (deter 8192, hidden 1024, 32 x 64 categoricals, units 1024),
    RMSNorm + SiLU, block GRU (8), symexp two-hot heads, continue head on c * gamma, dyn 1.0 / rep 0.1 with
    1 free nat, REINFORCE, entropy 3e-4, return normalisation, slow critic 0.02, replay critic loss 0.3, one
    LaProp (lr 4e-5, AGC 0.3, warmup 1000), batch 16 x 64 (65 rows: one replay-context row, ``replay_context: 1``,
    over each env's stream), train ratio 256, action repeat 1. Not the code
    behind the official DMC score files (:func:`dreamer_v3`). GPU work. ``from_pixels`` False: the vector
    networks instead (:func:`dreamer_v3_proprio_current`)."""
    cfg = DreamerConfig()
    cfg.env = EnvConfig(task="walker_walk", from_pixels=from_pixels, action_repeat=1)
    cfg.nets = NetsConfig(style="v3", norm="rms", twohot_bins=255, twohot_space="symexp")
    cfg.world_model = WorldModelConfig(
        latent=LatentConfig(kind="categorical", unimix=0.01), rssm=RSSMConfig(core="block_gru", blocks=8),
        loss=WorldModelLossConfig(kl="dyn_rep", dyn_scale=1.0, rep_scale=0.1, free_nats=1.0,
                                  window_start="replay_context"),
        reward_head="twohot", head_layers=1, continue_head=True, continue_discount=True)
    _observation_parts(cfg.world_model, from_pixels, image=("conv_maxpool", "upsample_mse"), cnn_depth=32,
                       vector=("mlp_symlog", "mlp_symlog"), vector_layers=3, vector_units=400)
    cfg.behavior = BehaviorConfig(
        losses="v2_v3", horizon=15, gamma=1 - 1 / 333, lmbda=0.95, continue_mode="prob",
        actor=ActorConfig(dist="bounded_normal", layers=3, outscale=0.01, reinforce=1.0, entropy=3e-4),
        critic=CriticConfig(head="twohot", layers=3, slow_rate=0.02, slow_every=1, slow_reg=1.0, replay_scale=0.3),
        exploration=ExplorationConfig(noise=0.0))
    cfg.optim = OptimConfig(kind="laprop", lr=4e-5, laprop_eps=1e-20, agc=0.3, warmup=1000)
    cfg.schedule = ScheduleConfig(total_env_steps=1_000_000, prefill_env_steps=1024, train_every=16, train_ratio=256,
                                  batch_size=16, seq_len=64, eval_every=10_000, eval_episodes=10,
                                  replay_windows="stream")
    return apply_size(cfg, "size200m")


def dreamer_v3_proprio_current() -> DreamerConfig:
    """DreamerV3 from proprioception, the official current ``dmc_proprio`` configuration: size1m (deter 512,
    hidden 64, 32 x 4 categoricals, units 64), train ratio 1024 at action repeat 1 (about one update per env
    step: slow on CPU), 1.1e6 env steps (its ``run.steps``), otherwise as :func:`dreamer_v3_current`; TorchRL's
    DreamerV3 walker preset uses these sizes and ratio."""
    cfg = dreamer_v3_current(from_pixels=False)
    cfg.env.task = "cartpole_balance"
    cfg = apply_size(cfg, "size1m")
    cfg.schedule = ScheduleConfig(total_env_steps=1_100_000, prefill_env_steps=1024, train_every=16, train_ratio=1024,
                                  batch_size=16, seq_len=64, eval_every=10_000, eval_episodes=10,
                                  replay_windows="stream")
    return cfg


ATARI100K_GAMES = ("alien", "amidar", "assault", "asterix", "bank_heist", "battle_zone", "boxing", "breakout",
                   "chopper_command", "crazy_climber", "demon_attack", "freeway", "frostbite", "gopher", "hero",
                   "jamesbond", "kangaroo", "krull", "kung_fu_master", "ms_pacman", "pong", "private_eye", "qbert",
                   "road_runner", "seaquest", "up_n_down")
"""The 26 games of the Atari 100k benchmark (Kaiser et al. 2020), as ale-py names their ROMs."""


def dreamer_v3_atari100k(task: str = "pong") -> DreamerConfig:
    """DreamerV3 on Atari 100k, the official current configuration (danijar/dreamerv3 e3f0224, configs.yaml
    ``defaults`` + ``atari100k``; the official atari100k score file): :func:`dreamer_v3_current` (size200m,
    LaProp, REINFORCE; the discrete actor with 1% unimix, chosen from the env's one-hot actions) on the game's
    screen with ``env.atari100k``'s preprocessing: 64 x 64 RGB (``gray: False``), action repeat 4, no sticky
    actions, the game's minimal action set (``actions: needed``), lives unused, up to 30 no-ops at a reset,
    the max over the last 2 frames (``pooling: 2``, the constructor's default), Pillow resize, no reward
    clipping, the 108,000-frame time limit (``length``); ``run.steps: 1.1e5`` policy steps = 440,000 frames
    (env steps here), one env, train ratio 256 (an update per 4 policy steps, 16 frames); training starts
    once the replay holds 16 x 64 = 1024 steps (4096 frames). Evaluations: 10 noise-free (actor mode)
    episodes every 40,000 frames. GPU work."""
    cfg = dreamer_v3_current(from_pixels=True)
    cfg.env = EnvConfig(suite="atari", task=task, from_pixels=True, image_size=64, action_repeat=4,
                        episode_frames=108_000,
                        atari=AtariConfig(sticky=False, gray=False, actions="needed", lives="unused", noops=30,
                                          pooling=2, aggregate="max"))
    cfg.schedule.total_env_steps, cfg.schedule.prefill_env_steps = 440_000, 4096
    cfg.schedule.train_ratio, cfg.schedule.eval_every = 256, 40_000
    return cfg


def dreamer_v2(from_pixels: bool = True) -> DreamerConfig:
    """DreamerV2 on DMC, the official configuration (danijar/dreamerv2 configs.yaml ``defaults`` + ``dmc``):
    deter 200, hidden 200, 32 x 32 categoricals, LayerNorm GRU gates, ELU, conv depth 48, KL balancing 0.8 with
    1 free nat, no discount head, unit-Gaussian image, reward and critic heads, dynamics backprop, entropy 1e-4,
    target critic copied every 100 updates, Adam eps 1e-5 clip 100 weight decay 1e-6 (model 3e-4, actor and
    critic 8e-5), the world model stepping before the actor imagines with it (``agent.py`` ``Agent.train``),
    batch 16 x 50, one update every 5 agent steps (train ratio 160), action repeat 2, prefill 1000
    agent steps, the truncated-normal actor (``common/dists.py`` ``TruncNormalDist``) whose output layers are
    plain Glorot-initialised Dense layers (``common/nets.py`` ``DistLayer``: output scale 1), and its 101
    updates after the prefill (``train.py`` ``main``: one that creates the variables and applies its gradients,
    then ``pretrain: 100``). Its image networks (``common/nets.py`` ``Encoder._cnn``, ``Decoder._cnn``): Keras
    "valid" 4x4 stride-2 convs, 64 -> 31 -> 14 -> 6 -> 2 (a 1536-wide embedding), and Dense(32 x 48) viewed as a
    1x1 map, then stride-2 transposed convs with kernels 5, 5, 6, 6; ELU, no norm, Keras's Glorot-uniform
    kernels throughout. Pixels; GPU work (``from_pixels`` False: its 4 x 400 vector MLPs instead)."""
    cfg = DreamerConfig()
    cfg.env = EnvConfig(task="walker_walk", from_pixels=from_pixels, action_repeat=2)
    cfg.nets = NetsConfig(style="v2", norm="none")
    cfg.world_model = WorldModelConfig(
        latent=LatentConfig(kind="categorical", state_dim=32, classes=32, unimix=0.0),
        rssm=RSSMConfig(core="norm_gru_gates", belief_dim=200, hidden=200),
        loss=WorldModelLossConfig(kl="balance", kl_balance=0.8, free_nats=1.0, window_start="episode_start"),
        units=400, reward_head="normal", head_layers=4, continue_head=False)
    _observation_parts(cfg.world_model, from_pixels, image=("conv", "deconv"), cnn_depth=48,
                       vector=("mlp", "mlp_normal"), vector_layers=4, vector_units=400)
    cfg.behavior = BehaviorConfig(
        losses="v2_v3", horizon=15, gamma=0.99, lmbda=0.95, target_reward="same",
        actor=ActorConfig(dist="trunc_normal", layers=4, units=400, outscale=1.0, reinforce=0.0, entropy=1e-4,
                          return_norm=False),
        critic=CriticConfig(head="normal", layers=4, units=400, slow_rate=1.0, slow_every=100, slow_reg=0.0,
                            replay_scale=0.0),
        exploration=ExplorationConfig(noise=0.0))
    cfg.optim = OptimConfig(kind="adam", model_lr=3e-4, actor_lr=8e-5, value_lr=8e-5, adam_eps=1e-5, grad_clip=100.0,
                            weight_decay=1e-6, step_model_first=True)
    cfg.schedule = ScheduleConfig(total_env_steps=1_000_000, prefill_env_steps=2000, train_every=10, train_ratio=160,
                                  pretrain_updates=101, batch_size=16, seq_len=50, eval_every=10_000, eval_episodes=10)
    return cfg


# PlaNet's action repeat per DMC domain (Hafner et al. 2019, Sec. 5; docs/sources.md).
PLANET_ACTION_REPEAT = {"cartpole": 8, "reacher": 4, "cheetah": 4, "finger": 2, "ball_in_cup": 4, "walker": 2}


def planet_action_repeat(task: str) -> int:
    """PlaNet's action repeat for the task's domain; domains PlaNet did not run keep the default 2."""
    for domain, repeat in PLANET_ACTION_REPEAT.items():
        if task.startswith(domain + "_"):
            return repeat
    return EnvConfig().action_repeat


def planet(task: str = "cartpole_swingup") -> DreamerConfig:
    """PlaNet from pixels (Hafner et al. 2019): CEM planning in latent space, world model only (GPU work).

    The same RSSM as Dreamer V1; no actor or value. CEM with horizon 12, 1000 candidates, top 100, 10
    iterations; 100 updates per collected episode (1000 env steps), batch 50 x 50, free nats 3, Adam 1e-3
    (eps 1e-4), gradient clip 1000, exploration noise 0.3; action repeat per domain (cartpole 8, reacher 4,
    cheetah 4, finger 2, cup 4, walker 2), derived from ``task`` (also from ``--env.task`` on the command
    line) unless ``--env.action-repeat`` is given.
    """
    cfg = DreamerConfig()
    cfg.env = EnvConfig(task=task, from_pixels=True, action_repeat=planet_action_repeat(task))
    cfg.optim = OptimConfig(model_lr=1e-3, adam_eps=1e-4, grad_clip=1000.0)
    cfg.behavior.kind = "planner"
    return cfg


def planet_state(task: str = "cartpole_balance", from_pixels: bool = False) -> DreamerConfig:
    """PlaNet on proprioceptive observations with the state preset's model and batch: for 2 CPU cores.

    PlaNet's planner, optimizer and action repeat (:func:`planet`), 100 updates per episode; the world
    model, batch (8 x 32), free nats (0) and evaluation (10 episodes every 10k env steps) of the ``state``
    preset, so that beside it only the behaviour differs.
    """
    cfg = planet(task)
    base = state(from_pixels)
    cfg.env = EnvConfig(task=task, from_pixels=from_pixels, action_repeat=planet_action_repeat(task))
    cfg.world_model, cfg.schedule, cfg.run = base.world_model, base.schedule, base.run
    return cfg


PRESETS: dict[str, Callable[..., DreamerConfig]] = {
    "paper": paper, "state": state, "debug": debug, "planet": planet, "planet_state": planet_state,
    "dreamer_v2": dreamer_v2, "dreamer_v3": dreamer_v3, "dreamer_v3_proprio": dreamer_v3_proprio,
    "dreamer_v3_current": dreamer_v3_current, "dreamer_v3_proprio_current": dreamer_v3_proprio_current,
    "dreamer_v3_atari100k": dreamer_v3_atari100k,
}


SUMMARIES: dict[str, str] = {
    "paper": "Dreamer V1 from pixels, every default as in the paper (GPU work).",
    "state": "Dreamer V1 from proprioception, a smaller model and batch: learns cartpole_balance on 2 CPU cores.",
    "debug": "Dreamer V1 with tiny networks and schedule on real pixels: the whole loop in about a minute on CPU.",
    "planet": "PlaNet from pixels: CEM planning in latent space, world model only (GPU work).",
    "planet_state": "PlaNet from proprioception with the state preset's model and batch (CPU).",
    "dreamer_v2": "DreamerV2 on DMC from pixels, the official configuration (danijar/dreamerv2 07d906e; GPU work).",
    "dreamer_v3": "DreamerV3 from pixels as it made the official DMC score files (2023 code, 84ecf19 / 423291a; GPU work).",
    "dreamer_v3_proprio": "DreamerV3 from proprioception as it made the official DMC proprio score file (2023 code).",
    "dreamer_v3_current": "DreamerV3 from pixels, the official current configuration (e3f0224: size200m, LaProp; GPU work).",
    "dreamer_v3_proprio_current": "DreamerV3 from proprioception, the current dmc_proprio configuration (size1m, train "
                                  "ratio 1024).",
    "dreamer_v3_atari100k": "DreamerV3 on Atari 100k, the official current atari100k configuration (e3f0224; GPU work).",
}
"""One line per preset, for ``--help`` and the README's table (the docstrings hold the details and sources)."""


def make_preset(name: str, task: str | None = None, from_pixels: bool | None = None) -> DreamerConfig:
    """The preset ``name``; presets that take a task (planet: its action repeat) are given ``task``, those whose
    networks depend on the observation kind (DreamerV2 / V3) ``from_pixels``; ``env.task`` and ``env.from_pixels``
    are then set to the values given."""
    make = PRESETS[name]
    params = inspect.signature(make).parameters
    kwargs = {k: v for k, v in (("task", task), ("from_pixels", from_pixels)) if v is not None and k in params}
    cfg = make(**kwargs)
    if task is not None:
        cfg.env.task = task
    if from_pixels is not None:
        cfg.env.from_pixels = from_pixels
    return cfg
