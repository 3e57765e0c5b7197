"""DreamerV2/V3 from the family's parts: every preset builds, acts and runs updates; the pieces are wired as
the official code wires them."""
import copy

import pytest
import torch
from tensordict import TensorDict

import dreamer_trl as dt
from dreamer_trl import keys
from dreamer_trl.builders.agent import SINGLE_PHASE
from dreamer_trl.builders.networks import latent_dims
from dreamer_trl.config import PRESETS, apply_size

FAMILY = ["dreamer_v2", "dreamer_v3", "dreamer_v3_proprio", "dreamer_v3_current", "dreamer_v3_proprio_current"]
B, T, A, O = 2, 6, 2, 5


def small(name):
    cfg = PRESETS[name]()
    if cfg.nets.style != "v2":  # V3: its smallest named size (the 2023 networks keep their own vector MLPs)
        cfg = apply_size(cfg, "size1m")
        if cfg.nets.style == "v3_2023":
            cfg.world_model.vector_layers = cfg.behavior.actor.layers
    else:
        wm = cfg.world_model
        wm.rssm.belief_dim, wm.rssm.hidden, wm.cnn_depth, wm.latent.state_dim, wm.latent.classes = 16, 16, 4, 4, 4
        wm.units = cfg.behavior.actor.units = cfg.behavior.critic.units = 16
    cfg.behavior.horizon = 4
    return cfg


def batch(obs_key, cfg=None):
    """A replay batch with stored posteriors "state" / "belief" (what V3 current's replay context starts from; at
    ``cfg``'s widths, by default the V3 current presets' here); the other presets recompute them."""
    obs = (torch.randint(0, 256, (B, T, 3, 64, 64), dtype=torch.uint8) if obs_key == keys.PIXELS
           else torch.randn(B, T, O))
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    td = TensorDict({obs_key: obs, keys.ACTION: torch.rand(B, T, A) * 2 - 1,
                     keys.PREV_ACTION: torch.rand(B, T, A) * 2 - 1, keys.IS_INIT: is_init,
                     ("next", keys.REWARD): torch.randn(B, T, 1),
                     ("next", keys.TERMINATED): torch.zeros(B, T, 1, dtype=torch.bool)}, [B, T])
    S, D = latent_dims(cfg or small("dreamer_v3_proprio_current"))
    if True:
        td[keys.STATE], td[keys.BELIEF] = torch.rand(B, T, S), torch.rand(B, T, D) * 2 - 1
    return td


def build(name):
    torch.manual_seed(0)
    cfg = small(name)
    obs_key = keys.PIXELS if cfg.env.from_pixels else keys.OBSERVATION
    shape = (3, 64, 64) if cfg.env.from_pixels else (O,)
    agent = dt.make_agent(obs_key, shape, A, cfg, "cpu")
    return cfg, obs_key, agent, dt.make_update(agent, cfg.optim)


@pytest.mark.parametrize("name", FAMILY)
def test_preset_builds_and_updates(name):
    cfg, obs_key, agent, update = build(name)
    data = batch(obs_key, cfg)
    before = [p.detach().clone() for p in agent.world_model.parameters()]
    for _ in range(2):
        metrics = update.update(data)
    assert update.skipped == 0
    assert all(torch.isfinite(v).all() for v in metrics.values())
    expected = {"loss/model_reco", "loss/model_reward", "loss/actor", "loss/value"}
    expected |= {"loss/model_dyn", "loss/model_rep"} if cfg.world_model.loss.kl == "dyn_rep" else {"loss/model_kl"}
    assert expected <= set(metrics)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.world_model.parameters()))
    names = [p.name for p in update.phases]
    assert names == ([SINGLE_PHASE] if cfg.optim.kind == "laprop" else ["model", "actor", "value"])


@pytest.mark.parametrize("name", FAMILY)
def test_policy_acts_at_the_latent_widths(name):
    cfg, obs_key, agent, _ = build(name)
    S, D = dt.latent_dims(cfg)
    assert (S, D) == (agent.world_model.rssm.state_dim, agent.world_model.rssm.belief_dim)
    from torchrl.data import Bounded
    policy = dt.make_policy(agent.world_model, agent.actor, Bounded(-1.0, 1.0, (A,)), cfg.behavior.exploration.noise)
    obs = batch(obs_key)[:, 0]
    td = TensorDict({obs_key: obs[obs_key], keys.STATE: torch.zeros(B, S), keys.BELIEF: torch.zeros(B, D),
                     keys.PREV_ACTION: torch.zeros(B, A), keys.IS_INIT: torch.ones(B, 1, dtype=torch.bool)}, [B])
    action = policy(td)[keys.ACTION]
    assert action.shape == (B, A) and action.abs().max() <= 1


def test_v3_slow_critic_and_return_statistics_move_and_are_checkpointed():
    cfg, obs_key, agent, update = build("dreamer_v3_proprio_current")
    slow, norm = agent.hooks
    with torch.no_grad():  # the reward head starts at exactly 0 (zero output layer): give it some returns
        for p in agent.world_model.reward_head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    start = copy.deepcopy(slow.target.state_dict())
    for _ in range(3):  # LaProp's warmup makes the first step 0
        update.update(batch(obs_key, cfg))
    assert slow.count == 3 and float(norm.hi - norm.lo) != 0.0
    moved = [not torch.equal(a, b) for a, b in zip(start.values(), slow.target.state_dict().values())]
    assert any(moved)
    state = update.state_dict()
    assert set(state["hooks"]) == {"0", "1"}
    _, _, agent2, update2 = build("dreamer_v3_proprio_current")
    update2.load_state_dict(state)
    assert torch.equal(agent2.hooks[1].hi, norm.hi) and agent2.hooks[0].count == 3


def test_v3_continue_head_target_holds_the_discount():
    cfg, obs_key, agent, _ = build("dreamer_v3_proprio_current")
    assert agent.model_loss.continue_discount == pytest.approx(1 - 1 / 333)
    assert agent.actor_loss.continue_has_discount
    _, _, agent, _ = build("dreamer_v3_proprio")  # 2023: the head learns 1 - terminal, gamma applied after
    assert agent.model_loss.continue_discount == 1.0 and not agent.actor_loss.continue_has_discount


def test_v2_uses_the_target_critic_for_returns_and_no_slow_regulariser():
    _, _, agent, update = build("dreamer_v2")
    assert agent.actor_loss.target_value is agent.hooks[0].target
    assert agent.value_loss.slow_value is None
    assert agent.world_model.continue_head is None
    assert agent.hooks[0].every == 100 and agent.hooks[0].fraction == 1.0
    assert isinstance(update.phase("model").optimizer, torch.optim.AdamW)
    assert PRESETS["dreamer_v2"]().behavior.actor.outscale == 1.0  # dreamerv2 DistLayer: plain Dense output layers


def test_sizes_set_the_widths():
    def widths(cfg):
        wm = cfg.world_model
        return (wm.rssm.belief_dim, wm.rssm.hidden, wm.latent.state_dim, wm.latent.classes, wm.units,
                wm.vector_units, cfg.behavior.actor.units, cfg.behavior.critic.units, wm.cnn_depth)

    cfg = PRESETS["dreamer_v3_current"]()
    assert widths(cfg) == (8192, 1024, 32, 64, 1024, 1024, 1024, 1024, 64)
    small = apply_size(cfg, "size1m")
    assert widths(small) == (512, 64, 32, 4, 64, 64, 64, 64, 4) and small.nets.size == "size1m"
    assert cfg.nets.size == "size200m"  # a copy
    _, _, agent, _ = build("dreamer_v3_proprio_current")
    assert agent.world_model.rssm.belief_dim == 512 and agent.world_model.rssm.state_dim == 32 * 4


# Review against danijar/dreamerv2 (configs.yaml defaults + dmc_vision, common/nets.py): parts the dreamer_v2
# preset builds with V3 pieces where V2 differs.

def test_v2_image_loss_is_the_unit_gaussian_nll():
    _, _, agent, _ = build("dreamer_v2")
    decoder = agent.world_model.decoder
    raw = torch.zeros(1, 3, 64, 64, requires_grad=True)
    decoder.nll(raw, torch.full((1, 3, 64, 64), 0.25)).sum().backward()
    torch.testing.assert_close(raw.grad, torch.full_like(raw, -0.25))  # d/dm of 1/2 (y - m)^2 at m = 0


def test_v2_gru_normalises_its_gates():
    _, _, agent, _ = build("dreamer_v2")
    assert any(isinstance(m, torch.nn.LayerNorm) for m in agent.world_model.rssm.core.modules())


def test_v2_prior_has_one_hidden_layer():
    _, _, agent, _ = build("dreamer_v2")
    linears = [m for m in agent.world_model.rssm.img_out.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2


def test_v2_actor_samples_a_truncated_normal_in_the_action_box():
    # dreamerv2 07d906e: actor.dist auto -> trunc_normal (agent.py ActorCritic.__init__); common/nets.py DistLayer:
    # TruncNormalDist(tanh m, 2 sigmoid(s / 2) + 0.1, -1, 1), draws clipped to [-1 + 1e-6, 1 - 1e-6]
    cfg, _, agent, _ = build("dreamer_v2")
    S, D = dt.latent_dims(cfg)
    dist = agent.actor.module.dist(torch.zeros(4096, S), torch.zeros(4096, D))
    assert isinstance(dist, dt.TruncatedNormal) and (dist.low, dist.high) == (-1.0, 1.0)
    assert dist.rsample().abs().max() <= 1.0 - 1e-6 + 1e-7
    assert ((dist.scale > 0.1) & (dist.scale < 2.1)).all()
    for name in FAMILY[1:]:  # V3 keeps its bounded normal
        assert isinstance(build(name)[2].actor.module, dt.BoundedNormalActor)


def test_v3_stride_image_networks_are_two_part_names_away():
    cfg = small("dreamer_v3_current")
    cfg.world_model.image_encoder, cfg.world_model.image_decoder = "conv_stride", "deconv_mse"
    agent = dt.make_agent(keys.PIXELS, (3, 64, 64), A, cfg, "cpu")
    update = dt.make_update(agent, cfg.optim)
    strides = {m.stride for m in agent.world_model.encoder.modules() if isinstance(m, torch.nn.Conv2d)}
    assert strides == {(2, 2)}
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in agent.world_model.decoder.modules())
    assert torch.isfinite(update.update(batch(keys.PIXELS))["loss/model_reco"])


# The presets follow the code behind the official DMC score files: danijar/dreamerv3 added
# scores/data/dmcproprio_dreamerv3.json.gz (and dmcvision) in 423291a (2023-05-06, the 2023 configs.yaml);
# 2411f7d (2024) moved them to scores/dmc_proprio-dreamerv3.json.gz with the same values.

def test_v3_presets_hold_the_2023_dmc_numbers():
    cfg = PRESETS["dreamer_v3_proprio"]()
    wm, b, o, s = cfg.world_model, cfg.behavior, cfg.optim, cfg.schedule
    a, c, kl = b.actor, b.critic, cfg.world_model.loss
    official = {  # 423291a configs.yaml defaults + dmc_proprio (rssm.deter 512, .*\.units 512, .*\.layers 2)
        "action repeat": (cfg.env.action_repeat, 2), "train ratio": (s.train_ratio, 512),
        "batch": ((s.batch_size, s.seq_len), (16, 64)), "deter": (wm.rssm.belief_dim, 512),
        "rssm units": (wm.rssm.hidden, 512), "latents": ((wm.latent.state_dim, wm.latent.classes), (32, 32)),
        "unimix": (wm.latent.unimix, 0.01), "norm": (cfg.nets.norm, "layer"), "style": (cfg.nets.style, "v3_2023"),
        "core": (wm.rssm.core, "norm_gru"), "head units": ((wm.units, a.units, c.units), (512, 512, 512)),
        "actor/critic layers": ((a.layers, c.layers), (2, 2)), "reward/cont layers": (wm.head_layers, 2),
        "encoder/decoder": ((wm.vector_layers, wm.vector_units), (5, 1024)),
        "vector nets": ((wm.vector_encoder, wm.vector_decoder), ("mlp_symlog", "mlp_symlog")),
        "heads": ((wm.reward_head, c.head, wm.continue_head), ("twohot", "twohot", True)),
        "bins": (cfg.nets.twohot_bins, 255), "two-hot space": (cfg.nets.twohot_space, "symlog"),
        "actor": ((a.dist, a.outscale), ("bounded_normal", 1.0)),
        "std": ((a.min_std, a.max_std), (0.1, 1.0)), "kl": ((kl.kl, kl.dyn_scale, kl.rep_scale, kl.free_nats),
                                                          ("dyn_rep", 0.5, 0.1, 1.0)),
        "actor grad": ((a.reinforce, a.backprop_baseline), (0.0, True)), "actent": (a.entropy, 3e-4),
        "horizon": ((b.horizon, b.lmbda), (15, 0.95)), "discount": (b.gamma, 1 - 1 / 333),
        "slow critic": ((c.slow_rate, c.slow_every, c.slow_reg), (0.02, 1, 1.0)),
        "replay critic loss": (c.replay_scale, 0.0), "contdisc": (wm.continue_discount, False),
        "imagined continue": (b.continue_mode, "mode"),  # WorldModel.imagine: cont_head(traj).mode()
        "losses": (b.losses, "v2_v3"), "exploration": (b.exploration.noise, 0.0),
        "replay windows": (s.replay_windows, "stream"),  # replay/generic.py Generic.add: a window per stream step
        "model opt": ((o.kind, o.model_lr, o.model_adam_eps, o.model_grad_clip), ("adam", 1e-4, 1e-8, 1000.0)),
        "actor/critic opt": ((o.actor_lr, o.value_lr, o.adam_eps, o.grad_clip, o.weight_decay), (3e-5, 3e-5, 1e-5, 100.0, 0.0)),
        "step order": (o.step_model_first, True),  # agent.py Agent.train: self.wm.train, then task_behavior.train
    }
    wrong = {k: v for k, v in official.items() if v[0] != pytest.approx(v[1]) and v[0] != v[1]}
    assert not wrong
    pixels = PRESETS["dreamer_v3"]()
    assert pixels.env.from_pixels and (pixels.world_model.image_encoder, pixels.world_model.image_decoder,
                                       pixels.world_model.cnn_depth) == ("conv_stride", "deconv_mse", 32)
    assert pixels.env.action_repeat == 2 and pixels.schedule.train_ratio == 512


def test_v3_2023_networks_are_built_as_the_2023_code():
    from dreamer_trl.model.cores import NormGRU

    torch.manual_seed(0)
    cfg = PRESETS["dreamer_v3_proprio"]()
    agent = dt.make_agent(keys.OBSERVATION, (O,), A, cfg, "cpu")
    wm = agent.world_model
    assert isinstance(wm.rssm.core, NormGRU) and wm.rssm.belief_dim == 512
    assert len([m for m in wm.rssm.img_out.modules() if isinstance(m, torch.nn.Linear)]) == 2  # one hidden layer
    norms = [m for m in wm.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(n.eps == 1e-3 for n in norms)

    def linears(module):
        return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]

    assert [l.out_features for l in linears(wm.encoder)] == [1024] * 5
    assert all(l.bias is None for l in linears(wm.encoder))  # no bias before a norm (2023 Linear with norm)
    assert [l.out_features for l in linears(wm.decoder)] == [1024] * 5 + [O]
    assert [l.out_features for l in linears(wm.reward_head)] == [512, 512, 255]
    assert [l.out_features for l in linears(agent.actor)] == [512, 512, 2 * A]
    assert wm.reward_head.codec.space == "symlog" and agent.value.module.codec.space == "symlog"
    assert agent.actor_loss.reinforce == 0.0 and agent.actor_loss.backprop_baseline
    update = dt.make_update(agent, cfg.optim)
    got = {p.name: (p.optimizer.defaults["lr"], p.optimizer.defaults["eps"], p.clip) for p in update.phases}
    assert got == {"model": (1e-4, 1e-8, 1000.0), "actor": (3e-5, 1e-5, 100.0), "value": (3e-5, 1e-5, 100.0)}
    current = copy.deepcopy(cfg)
    current.behavior.actor.outscale = 0.01
    quiet = dt.make_actor(wm.rssm.feature_dim, A, current)
    ratio = linears(agent.actor)[-1].weight.detach().std() / linears(quiet)[-1].weight.detach().std()
    assert 50 < float(ratio) < 200  # output layer initialised 100x larger than the current code's 0.01


def test_v3_2023_pixels_use_4x4_stride_convs():
    cfg = PRESETS["dreamer_v3"]()
    encoder = dt.make_world_model(keys.PIXELS, (3, 64, 64), A, cfg).encoder
    convs = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32 * 2**i, (4, 4), (2, 2)) for i in range(4)]



def official_prefill_policy_steps(envs: int, length: int = 64, batch_steps: int = 16 * 64, chunk: int = 100) -> int:
    """Policy steps of random actions in the 2023 code, as a plain loop: 423291a ``embodied/run/train.py`` runs
    ``driver(random_agent.policy, steps=100)`` while ``len(replay) < max(batch_steps, train_fill)`` (train_fill
    0); ``Driver.__call__`` steps all envs at once until it has counted ``chunk`` env steps; ``replay/generic.py``
    ``Generic.add`` stores one ``length``-step window per step once a worker's stream holds ``length`` steps
    (stride 1) and ``__len__`` counts the windows."""
    per_env = windows = 0
    while windows < batch_steps:
        counted = 0
        while counted < chunk:
            per_env += 1
            counted += envs
        windows = envs * max(0, per_env - length + 1)
    return envs * per_env


def test_v3_2023_presets_prefill_until_the_replay_holds_a_batch_of_windows():
    assert official_prefill_policy_steps(1) == 1100 and official_prefill_policy_steps(4) == 1300
    for name in ("dreamer_v3", "dreamer_v3_proprio"):
        cfg = PRESETS[name]()
        s, repeat = cfg.schedule, cfg.env.action_repeat
        frames = official_prefill_policy_steps(cfg.env.num_envs, s.seq_len, s.batch_size * s.seq_len) * repeat
        assert s.prefill_env_steps == -(-frames // s.train_every) * s.train_every  # the next collected batch


STEP_MODEL_FIRST = ["dreamer_v2", "dreamer_v3", "dreamer_v3_proprio"]  # V2 and V3 2023 agent.py Agent.train


def test_v2_and_v3_2023_presets_step_the_world_model_first():
    assert {name for name, make in PRESETS.items() if make().optim.step_model_first} == set(STEP_MODEL_FIRST)


@pytest.mark.parametrize("name", STEP_MODEL_FIRST)
def test_v3_2023_actor_imagines_with_the_world_model_after_its_step(name):
    """423291a agent.py Agent.train runs self.wm.train (jaxutils.Optimizer writes the stepped parameters into
    the context) before self.task_behavior.train, whose self.wm.imagine uses them; V2's Agent.train likewise."""
    _, obs_key, agent, update = build(name)
    before = [p.detach().clone() for p in agent.world_model.rssm.parameters()]
    seen = {}
    forward = agent.actor_loss.forward

    def spy(tensordict):
        seen["rssm"] = [p.detach().clone() for p in agent.world_model.rssm.parameters()]
        return forward(tensordict)

    agent.actor_loss.forward = spy
    update.update(batch(obs_key))
    assert update.skipped == 0
    assert all(torch.equal(a, b) for a, b in zip(seen["rssm"], agent.world_model.rssm.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before, seen["rssm"]))


def loss_backward_clip(phase, data):
    """One phase's forward, backward into its own parameters and clip, as DreamerUpdate does; returns its data."""
    loss_td, data = phase.loss(data)
    loss = sum(v.float() for k, v in loss_td.items() if k.startswith("loss_"))
    phase.optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=phase.params, retain_graph=dt.training.update.carries_graph(data))
    torch.nn.utils.clip_grad_norm_(phase.params, phase.clip)
    return data


def networks(agent):
    return {"world_model": agent.world_model, "actor": agent.actor, "value": agent.value,
            "slow": agent.hooks[0].target}


@pytest.mark.parametrize("name", ["dreamer_v2", "dreamer_v3_proprio"])
def test_step_model_first_equals_the_model_step_then_the_behaviour_update_by_hand(name):
    """With the option, the update is: the model phase alone (loss, backward, clip, Adam step), then the actor and
    value losses from the start states the model phase handed on (computed before its step), with the same
    random stream, then their steps and the hooks. Without it, the actor's update differs (the control)."""
    _, obs_key, agent, update = build(name)
    _, _, by_hand, manual = build(name)
    _, _, old, old_update = build(name)
    old_update.step_model_first = False
    data = batch(obs_key)
    starts = {}
    forward = agent.actor_loss.forward
    agent.actor_loss.forward = lambda td: (starts.setdefault("td", td.clone()), forward(td))[1]
    torch.manual_seed(3)
    update.update(data)
    torch.manual_seed(3)
    old_update.update(data)

    torch.manual_seed(3)
    model, actor, value = (manual.phase(n) for n in ("model", "actor", "value"))
    handed = loss_backward_clip(model, data)
    model.optimizer.step()
    assert all(torch.equal(starts["td"][k], v) for k, v in handed.items(include_nested=True, leaves_only=True))
    loss_backward_clip(value, loss_backward_clip(actor, handed))
    actor.optimizer.step()
    value.optimizer.step()
    for phase in manual.phases:
        for hook in manual.hooks:
            getattr(hook, "after_step", lambda p: None)(phase)

    for key, module in networks(agent).items():
        for (n, a), b in zip(module.state_dict().items(), networks(by_hand)[key].state_dict().values()):
            assert torch.equal(a, b), (key, n)
    if name == "dreamer_v3_proprio":  # the return statistics of the same imagined returns
        norm, norm_by_hand = agent.hooks[1], by_hand.hooks[1]
        assert torch.equal(norm.hi, norm_by_hand.hi) and torch.equal(norm.lo, norm_by_hand.lo)
    assert any(not torch.equal(a, b) for a, b in zip(agent.actor.parameters(), old.actor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(agent.world_model.parameters(), old.world_model.parameters()))


class NanGradient:
    """A before_clip hook that makes one phase's gradient NaN when armed; records the world model it saw then."""

    def __init__(self, agent, phase):
        self.agent, self.phase, self.armed, self.calls, self.model = agent, phase, True, [], None

    def before_clip(self, phase):
        self.calls.append(("before_clip", phase.name))
        if phase.name == self.phase:
            self.model = [p.detach().clone() for p in self.agent.world_model.parameters()]
            if self.armed:
                next(p for p in phase.params if p.grad is not None).grad.view(-1)[0] = float("nan")

    def after_step(self, phase):
        self.calls.append(("after_step", phase.name))


def everything(agent, update):
    """Every weight, slow weight, optimizer moment and return statistic ("hooks": "0" the slow critic, "1" the
    return normaliser, which the actor's forward moves before the update is known to be skipped), copied."""
    params = {f"{k}.{n}": v.detach().clone() for k, m in networks(agent).items() for n, v in m.state_dict().items()}
    state = copy.deepcopy(update.state_dict())
    assert set(state["hooks"]) == {"0", "1"}
    return params, state


def assert_same(a, b):
    (pa, sa), (pb, sb) = a, b
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    torch.testing.assert_close(sa, sb, rtol=0, atol=0)


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("bad_phase", ["actor", "value"])
def test_step_model_first_a_later_nonfinite_phase_undoes_the_model_step(warm, bad_phase):
    """The model stepped (the actor imagined with it), then the actor's or critic's gradient is NaN: the update is
    skipped as a whole, the model's weights and Adam moments (none yet when not warm) are restored exactly."""
    _, obs_key, agent, update = build("dreamer_v3_proprio")
    hook = NanGradient(agent, bad_phase)
    update.hooks.append(hook)
    if warm:
        hook.armed = False
        update.update(batch(obs_key))
        hook.armed = True
    before = everything(agent, update)
    model_before = [p.detach().clone() for p in agent.world_model.parameters()]
    hook.calls.clear()
    metrics = update.update(batch(obs_key))
    assert update.skipped == 1 and update.skip_streak == 1 and metrics["train/skipped_updates"] == 1
    assert any(not torch.equal(a, b) for a, b in zip(model_before, hook.model))  # it had stepped
    assert_same(everything(agent, update), before)
    if not warm:
        assert not update.phase("model").optimizer.state  # the moments the undone first step created are gone
    assert hook.calls == [("before_clip", n) for n in ("model", "actor", "value")]  # no after_step
    hook.armed = False
    update.update(batch(obs_key))
    assert update.skip_streak == 0 and update.skipped == 1


def test_step_model_first_a_nonfinite_model_phase_steps_nothing_and_the_other_phases_still_run():
    """The model's terms are NaN: it does not step, yet the actor and critic phases run their before_clip hooks
    (a data-parallel all-reduce must be made by every rank in the same order); nothing changes."""
    _, obs_key, agent, update = build("dreamer_v3_proprio")
    hook = NanGradient(agent, "actor")
    hook.armed = False
    update.hooks.append(hook)
    update.update(batch(obs_key))
    before = everything(agent, update)
    hook.calls.clear()
    bad = batch(obs_key)
    bad["next", keys.REWARD][0, 2] = float("nan")
    update.update(bad)
    assert update.skipped == 1
    assert all(torch.equal(a, b) for a, b in zip(hook.model, agent.world_model.parameters()))  # never stepped
    assert hook.calls == [("before_clip", n) for n in ("model", "actor", "value")]
    assert_same(everything(agent, update), before)


@pytest.mark.parametrize("name", ["dreamer_v3_proprio", "dreamer_v3_proprio_current"])
def test_a_skipped_update_puts_the_return_statistics_back(name):
    """The returns are finite, so the actor's forward moves the percentile EMAs; a later term is NaN, so the update
    is skipped, and the statistics are those of before it (with the model stepped first, and in one LaProp phase)."""
    _, obs_key, agent, update = build(name)
    bad_phase = "value" if name == "dreamer_v3_proprio" else SINGLE_PHASE
    hook = NanGradient(agent, bad_phase)
    hook.armed = False
    update.hooks.append(hook)
    norm = update.hooks[1]
    assert isinstance(norm, dt.ReturnNormalizer)
    update.update(batch(obs_key))
    hook.armed = True
    stats = [b.clone() for b in norm.buffers()]
    seen = []
    norm.register_forward_hook(lambda m, i, o: seen.append([b.clone() for b in m.buffers()]))
    update.update(batch(obs_key))
    assert update.skipped == 1
    assert any(not torch.equal(a, b) for a, b in zip(seen[-1], stats))  # the forward had moved them
    assert all(torch.equal(a, b) for a, b in zip(norm.buffers(), stats))


def test_step_model_first_is_refused_with_a_single_phase():
    cfg = small("dreamer_v3_proprio_current")
    cfg.optim.step_model_first = True
    agent = dt.make_agent(keys.OBSERVATION, (O,), A, cfg, "cpu")
    with pytest.raises(ValueError, match="optim.step_model_first"):
        dt.make_update(agent, cfg.optim)


@pytest.mark.parametrize("estimate", ["nstep", "reward"])
@pytest.mark.parametrize("name", ["dreamer_v3", "dreamer_v3_current", "dreamer_v2", "state"])
def test_the_papers_value_estimates_train_every_agent(name, estimate):
    """``behavior.value_estimate`` reaches V2/V3 too (one ActorLoss): V_N^k bootstraps from the critic with the continue
    discounts; V_R trains no critic (no critic loss, phase or slow critic)."""
    torch.manual_seed(0)
    cfg = small(name) if name != "state" else PRESETS[name]()
    if name == "state":
        wm = cfg.world_model
        wm.latent.state_dim, wm.rssm.belief_dim, wm.rssm.hidden = 4, 16, 16
        wm.units = wm.vector_units = cfg.behavior.actor.units = cfg.behavior.critic.units = 16
        cfg.behavior.horizon = 4
    cfg.behavior.value_estimate, cfg.behavior.value_steps = estimate, 2
    obs_key = keys.PIXELS if cfg.env.from_pixels else keys.OBSERVATION
    shape = (3, 64, 64) if cfg.env.from_pixels else (O,)
    agent = dt.make_agent(obs_key, shape, A, cfg, "cpu")
    update = dt.make_update(agent, cfg.optim)
    actor_before = [p.detach().clone() for p in agent.actor.parameters()]
    for _ in range(3):
        metrics = update.update(batch(obs_key))
    assert update.skipped == 0 and all(torch.isfinite(v).all() for v in metrics.values())
    assert any(not torch.equal(a, p) for a, p in zip(actor_before, agent.actor.parameters()))
    assert type(agent.actor_loss.estimate).__name__ == {"nstep": "NStepReturn", "reward": "RewardSum"}[estimate]
    if estimate == "reward":
        assert agent.value_loss is None and "loss/value" not in metrics and not any(
            hasattr(h, "target") for h in agent.hooks)
        assert all(p is not q for phase in update.phases for p in phase.params for q in agent.value.parameters())
    else:
        assert agent.value_loss is not None and torch.isfinite(metrics["loss/value"])


@pytest.mark.parametrize("name", FAMILY)
def test_discrete_actions_build_act_and_update(name):
    """A one-hot action space (gymnasium Discrete): the categorical actor with DreamerV3's 1% unimix acts with
    one-hot samples (argmax in evaluation) and every preset's update trains it."""
    from torchrl.data import OneHot
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    torch.manual_seed(0)
    cfg = small(name)
    obs_key = keys.PIXELS if cfg.env.from_pixels else keys.OBSERVATION
    shape = (3, 64, 64) if cfg.env.from_pixels else (O,)
    spec = OneHot(A, dtype=torch.float32)
    agent = dt.make_agent(obs_key, shape, A, cfg, "cpu", action_spec=spec)
    assert isinstance(agent.actor.module, dt.OneHotActor) and agent.actor.module.unimix == 0.01
    update = dt.make_update(agent, cfg.optim)
    data = batch(obs_key, cfg)
    choice = torch.randint(A, (B, T))
    data[keys.ACTION] = torch.nn.functional.one_hot(choice, A).float()
    data[keys.PREV_ACTION] = torch.cat([torch.zeros(B, 1, A), data[keys.ACTION][:, :-1]], 1)
    before = [p.detach().clone() for p in agent.actor.parameters()]
    for _ in range(2):
        metrics = update.update(data)
    assert update.skipped == 0 and all(torch.isfinite(v).all() for v in metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
    policy = agent.policy(spec)
    S, D = dt.latent_dims(cfg)
    td = TensorDict({obs_key: data[obs_key][:, 0], keys.STATE: torch.zeros(B, S), keys.BELIEF: torch.zeros(B, D),
                     keys.PREV_ACTION: torch.zeros(B, A), keys.IS_INIT: torch.ones(B, 1, dtype=torch.bool)}, [B])
    for mode in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC):
        with set_exploration_type(mode):
            action = policy(td.clone())[keys.ACTION]
        assert ((action == 0) | (action == 1)).all() and (action.sum(-1) == 1).all()


def test_discrete_actions_refuse_gaussian_noise_and_the_planner():
    from torchrl.data import OneHot

    spec = OneHot(A, dtype=torch.float32)
    with pytest.raises(ValueError, match="'behavior.exploration.noise'"):
        dt.make_agent(keys.OBSERVATION, (O,), A, dt.make_preset("state"), action_spec=spec)
    with pytest.raises(ValueError, match="'behavior.kind': planner"):
        dt.make_agent(keys.OBSERVATION, (O,), A, dt.make_preset("planet_state"), action_spec=spec)
