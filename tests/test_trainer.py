"""dreamer_trl.training.trainer: typed counters, the ETA, the free-nats warning, build() (dreamer_trl.builders.trainer),
and whole Trainer runs."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import json  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
from dataclasses import asdict  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import dreamer_trl as dt  # noqa: E402
from dreamer_trl import config  # noqa: E402
from dreamer_trl.builders.trainer import build, make_buffer, make_loggers, make_run_dir  # noqa: E402
from dreamer_trl.run.checkpoint import read_meta  # noqa: E402
from dreamer_trl.training.trainer import (  # noqa: E402
    Counters,
    Pace,
    PriorWatch,
    Trainer,
    batch_frames,
    events_left,
    resolve_device,
    seed_everything,
    work_left,
)

# --- counters ----------------------------------------------------------------------------------------


def test_counters_round_trip_through_json():
    c = Counters(env_steps=800, updates=6, episodes=4, traj_offset=5, pending_updates=2, eval_due=True,
                 evals=[(400, 1.5), (800, 2.25)], physics_errors=1)
    back = Counters.from_dict(json.loads(json.dumps(asdict(c))))
    assert back == c and all(type(e) is tuple for e in back.evals)


def test_counters_keep_the_checkpoint_format():
    # The names run_state has saved since format 1; checkpoints written before the trainer must still load.
    saved = {"env_steps": 0, "updates": 0, "episodes": 0, "traj_offset": 0, "pending_updates": 0, "eval_due": False,
             "evals": [], "physics_errors": 0}
    assert asdict(Counters.from_dict(saved)) == saved


def test_counters_refuse_unknown_and_missing_names():
    data = asdict(Counters())
    with pytest.raises(ValueError, match=r"unknown \['steps'\]"):
        Counters.from_dict({**data, "steps": 1})
    del data["updates"]
    with pytest.raises(ValueError, match=r"missing \['updates'\]"):
        Counters.from_dict(data)


# --- progress ----------------------------------------------------------------------------------------


def test_work_left_counts_the_updates_of_every_training_phase_to_come():
    s = config.debug().schedule  # prefill 400, then 2 updates per 200 env steps, 800 in all
    assert work_left(Counters(env_steps=0), s) == (6, 400, 400)           # updates at 400, 600 and 800
    assert work_left(Counters(env_steps=200), s) == (6, 400, 200)
    assert work_left(Counters(env_steps=400, pending_updates=2), s) == (6, 400, 0)
    assert work_left(Counters(env_steps=800, pending_updates=1), s) == (1, 0, 0)


def test_eta_comes_from_the_update_and_collection_rates_not_the_prefill():
    pace = Pace()
    pace.stepped(400, 4.0, "prefill")           # random actions: 100 env steps per second, no updates
    assert pace.eta(updates=6, train_steps=400, prefill_steps=0) == "?"    # no update timed yet
    pace.updated(2.0)
    pace.updated(4.0)                           # 3 s per update
    assert pace.seconds_left(6, 400, 0) == pytest.approx(6 * 3.0 + 400 * 0.01)  # policy rate unknown: prefill's
    pace.stepped(200, 10.0, "train")            # collecting with the policy: 0.05 s per env step
    assert pace.seconds_left(4, 200, 0) == pytest.approx(4 * 3.0 + 200 * 0.05)
    assert pace.eta(4, 200, 0) == "00:22"
    assert pace.seconds_left(0, 0, 0) == 0.0


def test_events_left_counts_the_evaluations_and_checkpoints_to_come():
    s = config.debug().schedule  # 800 env steps, an evaluation every 400 (and at the end)
    assert events_left(Counters(env_steps=0), s, 400) == (2, 2)
    assert events_left(Counters(env_steps=200), s, 300) == (2, 3)          # checkpoints at 300, 600 and 800
    assert events_left(Counters(env_steps=400, eval_due=True), s, 400) == (2, 2)  # at 400, not saved yet
    assert events_left(Counters(env_steps=400), s, 400, saved_at=400) == (1, 1)
    assert events_left(Counters(env_steps=800, eval_due=True), s, 400, saved_at=400) == (1, 1)
    assert events_left(Counters(env_steps=800), s, 400, saved_at=800) == (0, 0)
    s.total_env_steps = 900  # not a multiple: one more evaluation and checkpoint at the end
    assert events_left(Counters(env_steps=500), s, 400) == (2, 2)


def test_eta_adds_the_evaluations_and_checkpoints_at_their_measured_cost():
    pace = Pace()
    pace.stepped(200, 20.0, "train")  # 0.1 s per env step
    # untimed: an evaluation costs its env steps at the collection rate, a checkpoint nothing
    assert pace.seconds_left(0, 200, 0, evals=2, checkpoints=1, eval_steps=1000) == pytest.approx(20 + 2 * 100)
    pace.happened("eval", 45.0)
    pace.happened("eval", 55.0)
    pace.happened("checkpoint", 3.0)
    assert pace.seconds_left(0, 200, 0, evals=2, checkpoints=1, eval_steps=1000) == pytest.approx(20 + 100 + 3)
    back = Pace()
    back.load_state_dict(json.loads(json.dumps(pace.state_dict())))  # as a checkpoint's meta.json carries it
    assert back.seconds_left(0, 200, 0, 2, 1, 1000) == pace.seconds_left(0, 200, 0, 2, 1, 1000)


class _TimedBatches(list):
    """A collector whose batches each take 1 s of a fake clock."""

    def __init__(self, cfg, clock, n):
        super().__init__(_batch(cfg) for _ in range(n))
        self.clock = clock
        for data in list.__iter__(self):
            data["collector", "traj_ids"] = torch.zeros(data.shape, dtype=torch.long)

    def __iter__(self):
        for data in super().__iter__():
            self.clock.now += 1.0
            yield data

    def shutdown(self, close_env: bool = True) -> None:
        pass


def test_the_eta_of_a_whole_run_is_its_real_remaining_time(tmp_path):
    """Updates 2 s, batches 1 s, evaluations 30 s, checkpoints 5 s of a fake clock: once one of each is timed,
    the logged ETA equals the time the run still took, at every batch (before the fix, evaluations and
    checkpoints were not in it: 30 s short per evaluation to come)."""
    from types import SimpleNamespace

    clock = SimpleNamespace(now=0.0)
    cfg = _config(tmp_path, schedule__total_env_steps=2000, schedule__eval_every=400)  # checkpoints every 400
    trainer = _fake_trainer(cfg, tmp_path)
    trainer.clock = lambda: clock.now
    trainer.env, trainer.buffer = SimpleNamespace(physics_errors=0), SimpleNamespace(sample=lambda: None,
                                                                                     extend=lambda data: None)
    per_batch = cfg.schedule.train_every // cfg.env.action_repeat
    trainer.collection = SimpleNamespace(
        collector=lambda policy, segment, device: _TimedBatches(cfg, clock, segment.total_frames // per_batch))
    trainer.updater.update = lambda batch: setattr(clock, "now", clock.now + 2.0) or {}

    def evaluate_here():
        clock.now += 30.0
        trainer.counters.eval_due = False
        trainer.counters.evals.append((trainer.counters.env_steps, 0.0))

    trainer.evaluate = Trainer.evaluate.__get__(trainer)
    trainer.evaluate_here = evaluate_here
    trainer.save_checkpoint = lambda: setattr(clock, "now", clock.now + 5.0) or setattr(
        trainer, "saved_at", trainer.counters.env_steps)
    logged = []
    trainer.loggers = [SimpleNamespace(log_scalar=lambda name, value, step: logged.append(
        (step, clock.now, value)) if name == "time/eta_s" else None)]
    trainer.run()
    end = clock.now
    timed = [(step, now, eta) for step, now, eta in logged if step > 400]  # after the first evaluation and checkpoint
    assert len(timed) == 8 and len(trainer.counters.evals) == 5
    for step, now, eta in timed:
        assert eta == pytest.approx(end - now), step


class _TickingUpdater:
    """Takes 2 s of a fake clock per update and records the bar's postfix seen after the previous update."""

    def __init__(self, clock):
        self.clock, self.seen, self.trainer, self.skipped = clock, [], None, 0

    def update(self, batch):
        postfix = self.trainer.bar.postfix or ""  # tqdm keeps it as "name=value, name=value"
        self.seen.append(dict(item.split("=", 1) for item in postfix.split(", ") if "=" in item))
        self.clock.now += 2.0
        return {}


def test_the_bar_moves_at_every_update_and_estimates_from_the_update_rate(tmp_path):
    """A training phase of 5 updates: the postfix changes at every update (not once per phase), and the ETA
    is the remaining updates at 2 s each plus the remaining env steps at the policy's collection rate."""
    import io
    from types import SimpleNamespace

    from tqdm import tqdm

    clock = SimpleNamespace(now=100.0)
    cfg = _config(tmp_path, schedule__updates_per_train=5)
    updater = _TickingUpdater(clock)
    trainer = Trainer(cfg, "debug", tmp_path, env=None, eval_env=None,
                      agent=SimpleNamespace(world_model=None, actor=None, value=None), policy=None, updater=updater,
                      buffer=SimpleNamespace(sample=lambda: None), loggers=[], device=torch.device("cpu"))
    trainer.clock, updater.trainer = (lambda: clock.now), trainer
    trainer.bar = tqdm(total=800, file=io.StringIO(), mininterval=0)
    trainer.pace.stepped(400, 4.0, "prefill")
    trainer.pace.stepped(200, 20.0, "train")    # 0.1 s per env step with the policy
    trainer.counters = Counters(env_steps=600, pending_updates=5)
    trainer.train_and_evaluate()
    phases = updater.seen[1:]  # what the bar showed after updates 1..4
    assert [p["phase"] for p in phases] == ["train 1/5", "train 2/5", "train 3/5", "train 4/5"]
    assert [p["updates"] for p in phases] == ["1", "2", "3", "4"]
    # after the 4th update: 1 update of this phase + 5 after the last 200 env steps, 2 s each, + 200 steps x 0.1 s,
    # + the evaluation at 800 (untimed yet: its 200 env steps at the collection rate); checkpoints untimed: free
    assert phases[-1]["eta"] == tqdm.format_interval(6 * 2.0 + 200 * 0.1 + 200 * 0.1)
    assert trainer.counters.updates == 5 and trainer.aside_seconds == 10.0


def test_prior_watch_warns_once_after_ten_clamped_phases():
    watch = PriorWatch(free_nats=3.0)
    clamped = {"loss/kl_clamped": torch.tensor(1.0), "loss/kl": torch.tensor(0.5)}
    warnings = [watch.observe(clamped) for _ in range(12)]
    assert [i for i, w in enumerate(warnings) if w] == [9]
    assert "0.50 nats" in warnings[9] and "free_nats (3.0)" in warnings[9] and "--world-model.loss.free-nats" in warnings[9]
    assert watch.observe({"loss/kl_clamped": torch.tensor(0.0), "loss/kl": torch.tensor(4.0)}) is None
    assert watch.streak == 0


def test_prior_watch_skips_objectives_without_the_clamp():
    watch = PriorWatch(free_nats=3.0, phases=1)
    assert watch.observe({"loss/kl": 0.1}) is None and watch.streak == 0


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --- build and whole runs ----------------------------------------------------------------------------


def _config(tmp_path, **changes):
    """The debug preset on state observations, one torch thread, writing under tmp_path (with
    ``behavior__kind="planner"``: the actor's fields back at their defaults, as the planner reads none)."""
    cfg = config.debug()
    cfg.env.from_pixels = False
    if changes.get("behavior__kind") == "planner":
        default = config.DreamerConfig().behavior
        cfg.behavior.actor, cfg.behavior.critic, cfg.behavior.horizon = default.actor, default.critic, default.horizon
    cfg.world_model.cnn_depth = config.WorldModelConfig().cnn_depth  # state observations do not read it (config/reads.py)
    cfg.run.progress, cfg.run.run_dir, cfg.run.run_name, cfg.run.checkpoint_every = False, str(tmp_path), "run", 400
    for name, value in changes.items():
        config.set_field(cfg, name.replace("__", "."), value)
    config.validate(cfg)
    return cfg


def _trainer(cfg, preset="debug", updater_wrapper=None) -> Trainer:
    """Everything the recipe builds, in the recipe's order."""
    seed_everything(cfg.run.seed)
    device = torch.device("cpu")
    env = dt.make_env(cfg, cfg.run.seed)
    eval_env = dt.make_env(cfg, cfg.run.seed + 10_000)
    agent, policy, updater = build(cfg, env, device)
    run_dir = make_run_dir(cfg, preset)
    updater = updater_wrapper(updater) if updater_wrapper else updater
    return Trainer(cfg, preset, run_dir, env=env, eval_env=eval_env, agent=agent, policy=policy, updater=updater,
                   buffer=make_buffer(cfg, env, run_dir, device), loggers=make_loggers(cfg.run, run_dir),
                   device=device)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_build_makes_a_wired_agent_policy_and_updater(tmp_path, one_thread):
    cfg = _config(tmp_path)
    env = dt.make_env(cfg, 0)
    agent, policy, updater = build(cfg, env, "cpu")
    td = policy(env.reset())
    assert td["action"].shape == env.action_spec.shape and torch.isfinite(td["action"]).all()
    assert set(updater.optimizers) == {"model", "actor", "value"}
    assert updater.max_nonfinite == cfg.run.max_nonfinite_updates
    assert updater.optimizers["model"].param_groups[0]["lr"] == cfg.optim.model_lr


class _Updater:
    """Delegates to a real updater; can drop a metric and request preemption after a number of updates."""

    def __init__(self, updater, drop=(), preempt_after=None):
        self._updater, self.drop, self.preempt_after, self.calls, self.trainer = updater, drop, preempt_after, 0, None

    def update(self, batch):
        self.calls += 1
        if self.calls == self.preempt_after:
            self.trainer.preemption.requested = signal.SIGTERM  # as the SIGTERM handler records it
        return {k: v for k, v in self._updater.update(batch).items() if k not in self.drop}

    def __getattr__(self, name):
        return getattr(self._updater, name)


@pytest.mark.slow
def test_trainer_run_keeps_the_replay_ratio_and_counts(tmp_path, one_thread, capsys):
    wrapper = lambda u: _Updater(u, drop=("loss/kl_clamped",))  # noqa: E731  an objective without free nats
    trainer = _trainer(_config(tmp_path), updater_wrapper=wrapper)
    summary = trainer.run()
    c = trainer.counters
    # prefill 400, then 2 updates per 200 env steps: at 400, 600 and 800; evaluations at 400 and 800
    assert (c.env_steps, c.updates, c.pending_updates, c.eval_due) == (800, 6, 0, False)
    assert [step for step, _ in c.evals] == [400, 800] and c.episodes == 4  # 200-frame episodes, repeat 2
    assert summary["evaluations"] == c.evals and summary["final_eval_return"] == c.evals[-1][1]
    _, meta = dt.load_checkpoint(summary["checkpoint"])
    assert meta["counters"] == json.loads(json.dumps(asdict(c)))
    assert "warning" not in capsys.readouterr().out


@pytest.mark.slow
def test_trainer_preempted_mid_phase_resumes_to_the_same_counters(tmp_path, one_thread):
    cfg = _config(tmp_path, schedule__updates_per_train=3)
    trainer = _trainer(cfg, updater_wrapper=lambda u: _Updater(u, preempt_after=4))
    trainer.updater.trainer = trainer
    with pytest.raises(SystemExit) as exc:
        trainer.run()
    assert exc.value.code == 143
    stopped = trainer.counters
    assert stopped.updates == 4 and stopped.pending_updates == 2  # the second training phase was cut short
    cfg.run.resume = str(trainer.checkpoint_path)
    resumed = _trainer(cfg)
    assert resumed.counters == stopped
    resumed.run()
    c = resumed.counters
    assert (c.env_steps, c.updates, c.pending_updates) == (800, 9, 0)
    assert [step for step, _ in c.evals] == [400, 800] and math.isfinite(resumed.last_eval)
    for csv in (resumed.run_dir / "logs").rglob("*.csv"):  # the cut phase logged once, when it ended at 600
        steps = [int(float(line.split(",")[0])) for line in csv.read_text().split()]
        ordered = steps == sorted(steps) if csv.name == "episode_return.csv" else steps == sorted(set(steps))
        assert ordered, (csv.relative_to(resumed.run_dir), steps)
    saved = Pace()
    saved.load_state_dict(read_meta(cfg.run.resume)["pace"])
    assert saved.updates == 4 and saved.events["checkpoint"] == 1  # the ETA goes on from the measured costs


def test_train_ratio_is_exact_over_the_run_whatever_the_collection_granularity():
    from dreamer_trl.config import ScheduleConfig
    from dreamer_trl.training.trainer import updates_due

    s = ScheduleConfig(prefill_env_steps=1000, batch_size=4, seq_len=8, train_ratio=12, total_env_steps=9000)
    # 12 replayed steps per policy step, 32 per update: 3 updates per 8 policy steps after the prefill
    assert updates_due(1000, s, 1) == 0 and updates_due(1008, s, 1) == 3 and updates_due(9000, s, 1) == 3000
    assert updates_due(9000, s, 2) == 1500  # policy steps are env steps / action repeat
    for chunk in (1, 7, 64):  # collecting in any chunk size ends at the same count
        done, steps = 0, 1000
        while steps < 9000:
            steps = min(9000, steps + chunk)
            done += max(0, updates_due(steps, s, 1) - done)
        assert done == 3000 and done * 32 / 8000 == 12
    assert work_left(Counters(env_steps=5000, updates=1400), s, 1) == (1600, 4000, 0)


# --- DreamerV2's pretraining updates ------------------------------------------------------------------


def _official_v2_updates(prefill: int, pretrain: int, every: int, train_steps: int, policy_steps: int) -> int:
    """Updates danijar/dreamerv2 07d906e (``dreamerv2/train.py`` ``main``, ``common/when.py`` ``Every``) has run
    ``policy_steps`` policy steps after a prefill of ``prefill`` policy steps, written out as a plain loop: one
    update that creates the variables, ``pretrain`` updates, then at each policy step (the step counter goes on
    from the prefill) ``train_steps`` updates whenever ``Every(every)`` fires, which it does at its first call."""
    updates, last = 1 + pretrain, None
    for step in range(prefill + 1, prefill + policy_steps + 1):
        if last is None or step >= last + every:
            last = step if last is None else last + every
            updates += train_steps
    return updates


def _fake_trainer(cfg, tmp_path, counters=None) -> Trainer:
    """A Trainer whose updates only count (no networks, env or replay), to run its schedule alone."""
    import io
    from types import SimpleNamespace

    from tqdm import tqdm

    trainer = Trainer(cfg, "debug", tmp_path, env=None, eval_env=None,
                      agent=SimpleNamespace(world_model=None, actor=None, value=None), policy=None,
                      updater=SimpleNamespace(update=lambda batch: {}, skipped=0),
                      buffer=SimpleNamespace(sample=lambda: None), loggers=[], device=torch.device("cpu"))
    trainer.bar, trainer.evaluate = tqdm(total=cfg.schedule.total_env_steps, file=io.StringIO()), lambda: None
    trainer.counters = counters or Counters()
    return trainer


def _batch(cfg):
    """One collected batch (``train_every`` env steps; the planner's chunk of them), no episode ending in it."""
    from tensordict import TensorDict

    n = batch_frames(cfg)
    return TensorDict({"next": {"done": torch.zeros(n, 1, dtype=torch.bool), "episode_reward": torch.zeros(n, 1)}},
                      batch_size=[n])


def _schedule(cfg, tmp_path, stop_after=None) -> list[tuple[int, int, int]]:
    """(env steps, updates run, work_left's updates) after each batch of a whole run of the schedule; with
    ``stop_after`` the run is preempted after that many updates and resumed from its counters (as saved)."""
    trainer, rows, calls = _fake_trainer(cfg, tmp_path), [], [0]

    def update(batch):
        calls[0] += 1
        if calls[0] == stop_after:
            trainer.preemption.requested = signal.SIGTERM
        return {}

    trainer.updater.update = update
    s, a = cfg.schedule, cfg.env.action_repeat
    while trainer.counters.env_steps < s.total_env_steps:
        trainer.count(_batch(cfg))
        trainer.train_and_evaluate()
        c = trainer.counters
        rows.append((c.env_steps, c.updates, work_left(c, s, a)[0]))
        if trainer.stopping:  # resume in a fresh trainer from the counters a checkpoint would hold
            trainer = _fake_trainer(cfg, tmp_path, Counters.from_dict(json.loads(json.dumps(asdict(c)))))
    return rows


def test_the_planner_collects_in_chunks_and_updates_at_the_same_env_steps(tmp_path):
    """Issue 21, item 12: the planner's batches are chunks of at most PLANNER_CHUNK planned steps (the bar moves
    and a stop is seen between them), while the updates and evaluations fall at the same env steps as with
    whole train_every batches."""
    actor = _config(tmp_path)
    planner = _config(tmp_path, behavior__kind="planner")
    assert batch_frames(actor) == 100 and batch_frames(planner) == 10  # train_every 200 at action repeat 2
    whole, chunked = _schedule(actor, tmp_path), _schedule(planner, tmp_path)
    assert len(chunked) == 10 * len(whole)
    assert [row for row in chunked if row[0] % 200 == 0] == whole
    planner.env.num_envs = 4  # a chunk holds whole steps of every env: the largest divisor of 100 that 4 divides
    assert batch_frames(planner) == 4
    planner.schedule.train_every, planner.env.num_envs = 2 * 7, 7
    assert batch_frames(planner) == 7


@pytest.mark.slow
def test_a_stop_reaches_the_planner_between_chunks_and_the_run_resumes(tmp_path, one_thread):
    """SIGTERM during the planner's collection: the run stops within a chunk of 10 planned steps (not at the
    next train_every boundary), checkpoints there, and the resumed run ends with the uninterrupted counts."""
    small = dict(behavior__kind="planner", behavior__planner__horizon=3, behavior__planner__candidates=16,
                 behavior__planner__top_k=4, behavior__planner__iterations=2)
    cfg = _config(tmp_path, **small)
    trainer = _trainer(cfg)
    count, seen = trainer.count, []

    def count_and_stop(data):
        steps = count(data)
        seen.append(trainer.counters.env_steps)
        if trainer.counters.env_steps == 420:  # two chunks into the first policy batch
            trainer.preemption.requested = signal.SIGTERM
        return steps

    trainer.count = count_and_stop
    with pytest.raises(SystemExit):
        trainer.run()
    assert trainer.counters.env_steps == 420 and trainer.checkpoint_path.name == "0000000420"
    assert seen[:2] == [20, 40]  # a batch (and the bar moves) every 10 planned steps
    cfg.run.resume = str(trainer.checkpoint_path)
    resumed = _trainer(cfg)
    resumed.run()
    assert (resumed.counters.env_steps, resumed.counters.updates) == (800, 6)


@pytest.mark.parametrize("train_ratio", [0.0, 8.0])
def test_pretrain_updates_follow_the_official_v2_loop(tmp_path, train_ratio):
    """After the prefill, pretrain_updates on top of the schedule: one update per 5 policy steps (train_every 10
    env steps at action repeat 2, or train_ratio 8 = 4 x 10 / 5). The fixed schedule's update after the prefill
    stands for the official variable-creating update, so its counts equal the official loop's at every batch;
    the train-ratio schedule has no such update and runs one fewer."""
    cfg = _config(tmp_path, env__action_repeat=2, schedule__seq_len=10, schedule__batch_size=4,
                  schedule__prefill_env_steps=100, schedule__train_every=10, schedule__total_env_steps=400,
                  schedule__updates_per_train=1, schedule__train_ratio=train_ratio, schedule__pretrain_updates=7)
    rows = _schedule(cfg, tmp_path)
    offset = 0 if train_ratio == 0 else 1
    assert [u for steps, u, _ in rows if steps < 100] == [0] * 9  # prefill batches: no update
    for steps, updates, _ in rows[9:]:
        assert updates == _official_v2_updates(50, 7, 5, 1, (steps - 100) // 2) - offset, steps
    total = rows[-1][1]
    assert all(updates + left == total for _, updates, left in rows)  # the ETA counts them from the start
    assert work_left(Counters(), cfg.schedule, 2)[0] == total
    cfg.schedule.pretrain_updates = 0  # the same schedule without them: exactly pretrain_updates fewer
    assert _schedule(cfg, tmp_path)[-1][1] == total - 7


@pytest.mark.parametrize("train_ratio", [0.0, 8.0])
def test_pretrain_updates_cut_short_resume_without_repeating_or_losing_any(tmp_path, train_ratio):
    cfg = _config(tmp_path, env__action_repeat=2, schedule__seq_len=10, schedule__batch_size=4,
                  schedule__prefill_env_steps=100, schedule__train_every=10, schedule__total_env_steps=400,
                  schedule__updates_per_train=1, schedule__train_ratio=train_ratio, schedule__pretrain_updates=7)
    whole = _schedule(cfg, tmp_path)
    cut = _schedule(cfg, tmp_path, stop_after=4)  # preempted in the pretraining phase
    assert cut[9][1] == 4 and cut[-1][1] == whole[-1][1]


def test_pretrain_updates_leave_the_other_presets_alone():
    assert config.PRESETS["dreamer_v2"]().schedule.pretrain_updates == 101  # train.py: 1 creating the variables + 100
    assert all(make().schedule.pretrain_updates == 0 for name, make in config.PRESETS.items() if name != "dreamer_v2")


# --- torch threads through collector and env shutdowns ----------------------------------------------------


@pytest.fixture
def many_core_torchrl(monkeypatch):
    """One torch thread in this process, and TorchRL believing it was imported with 8 (as on an 8-core machine
    without OMP_NUM_THREADS): closing a batched env or an asynchronous collector gives this process back
    their workers' threads up to that count (with OMP_NUM_THREADS=1 it is 1, and nothing shows)."""
    import torchrl

    monkeypatch.setattr(torchrl, "_THREAD_POOL_INIT", 8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _collecting_trainer(cfg, tmp_path, env, collection=None) -> Trainer:
    """:func:`_fake_trainer` over a real ``env`` (or ``collection``) whose replay only takes the batches."""
    from types import SimpleNamespace

    from dreamer_trl.training.collection import SyncCollection

    trainer = _fake_trainer(cfg, tmp_path)
    trainer.env, trainer.buffer = env, SimpleNamespace(sample=lambda: None, extend=lambda data: None)
    trainer.collection = SyncCollection(env) if collection is None else collection
    trainer.start = (trainer.clock(), 0, 0)
    return trainer


def test_two_parallel_envs_leave_the_trainer_its_torch_threads(tmp_path, many_core_torchrl):
    """make_envs(parallel=True) of 2 state envs, one segment collected by the trainer, then its close: the
    process still runs on its one thread (TorchRL's ParallelEnv.close adds one per worker)."""
    from dreamer_trl.builders.agent import make_envs

    cfg = _config(tmp_path)
    trainer = _collecting_trainer(cfg, tmp_path, make_envs(cfg, cfg.run.seed, 2, parallel=True))
    try:
        trainer.collect_segment()
        assert trainer.counters.env_steps == 400 and torch.get_num_threads() == 1
    finally:
        trainer.close()
    assert trainer.env.is_closed and torch.get_num_threads() == 1


@pytest.mark.slow
def test_the_async_collector_leaves_the_trainer_its_torch_threads(tmp_path, many_core_torchrl):
    """An asynchronous segment: TorchRL's collector takes a thread from this process while its worker runs and
    gives one back when it ends; the updates run on the trainer's 2 threads throughout."""
    from dreamer_trl.builders.agent import make_envs
    from dreamer_trl.builders.trainer import make_collection

    torch.set_num_threads(2)
    cfg = _config(tmp_path, run__async_collection=True)
    env = make_envs(cfg, cfg.run.seed, 1)
    trainer = _collecting_trainer(cfg, tmp_path, env, collection=make_collection(cfg, env, cfg.run.seed))
    trainer.policy = build(cfg, env, "cpu")[1]  # the worker gets its weights
    seen = []
    trainer.updater.update = lambda batch: seen.append(torch.get_num_threads()) or {}
    trainer.collect_segment()
    assert trainer.counters.env_steps == 400 and seen == [2, 2]  # the prefill's end: updates_per_train 2
    assert torch.get_num_threads() == 2


# --- the progress bar ---------------------------------------------------------------------------------


class _Batches:
    """A collector of ``n`` :func:`_batch` batches (one trajectory id each)."""

    def __init__(self, cfg, n: int):
        self.cfg, self.n = cfg, n

    def __iter__(self):
        for _ in range(self.n):
            data = _batch(self.cfg)
            data["collector", "traj_ids"] = torch.zeros(data.shape, dtype=torch.long)
            yield data

    def shutdown(self, close_env: bool = True) -> None:
        pass


def test_the_bar_shows_the_env_steps_collected_when_the_updates_run(tmp_path):
    """The bar counts a batch when it is collected, before its updates run: the updates ending the prefill
    see the prefill's count (400), those of the next batches 600 and 800 (not one batch behind)."""
    from types import SimpleNamespace

    cfg = _config(tmp_path)  # prefill 400, 2 updates per 200 env steps, segments of 400
    trainer = _fake_trainer(cfg, tmp_path)
    trainer.env, trainer.buffer = SimpleNamespace(physics_errors=0), SimpleNamespace(sample=lambda: None,
                                                                                     extend=lambda data: None)
    trainer.collection = SimpleNamespace(collector=lambda policy, segment, device: _Batches(cfg, 2))
    trainer.start, seen = (trainer.clock(), 0, 0), []
    trainer.updater.update = lambda batch: seen.append((trainer.counters.env_steps, trainer.bar.n)) or {}
    trainer.collect_segment()
    trainer.collect_segment()
    assert seen == [(400, 400)] * 2 + [(600, 600)] * 2 + [(800, 800)] * 2
    assert trainer.bar.n == 800


def test_the_replay_context_writes_the_training_posteriors_back_into_replay(tmp_path, one_thread):
    """V3 current's replay context on the real env: windows of seq_len + 1 rows, the policy's posteriors stored,
    each update's posteriors of rows 1..T written back in place (DreamerV3 e3f0224 ``replay_context: 1``)."""
    cfg = config.make_preset("dreamer_v3_proprio_current", task="cartpole_balance")
    cfg = config.apply_size(cfg, "size1m")
    cfg.behavior.horizon = 3
    cfg.env.episode_frames, cfg.schedule.batch_size, cfg.schedule.seq_len = 100, 2, 6
    cfg.schedule.prefill_env_steps, cfg.schedule.train_every, cfg.schedule.train_ratio = 96, 16, 8
    cfg.schedule.total_env_steps, cfg.schedule.eval_every, cfg.schedule.eval_episodes = 128, 128, 1
    cfg.schedule.buffer_capacity = 1000
    cfg.run.progress, cfg.run.run_dir, cfg.run.run_name, cfg.run.checkpoint_every = False, str(tmp_path), "run", 128
    config.validate(cfg)
    trainer = _trainer(cfg, "dreamer_v3_proprio_current")
    buffer = trainer.buffer
    assert buffer.keep_latents and buffer.seq_len == 7
    assert trainer.agent.model_loss.context_sink == buffer.write_latents
    buffer.extend(trainer.env.rollout(120, trainer.policy, break_when_any_done=False))  # real physics, our policy
    stored = buffer.storage._storage
    n = len(buffer)
    before = stored["state"][:n].clone()
    assert before.abs().sum() > 0  # the policy's posteriors
    sample = buffer.sample()
    trainer.updater.update(sample)
    after = stored["state"][:n]
    changed = (after != before).any(-1)
    trained = torch.zeros(n, dtype=torch.bool)
    trained[sample["index"][:, 1:].reshape(-1)] = True
    assert changed[trained].all() and not changed[~trained].any()
    assert len(buffer) == n
