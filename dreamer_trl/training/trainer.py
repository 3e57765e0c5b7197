"""Dreamer's training loop (Hafner et al. 2020, Algorithm 1) as a small trainer: collect, update, evaluate,
checkpoint.

Prefill ``prefill_env_steps`` with uniform random actions; from then on every ``train_every`` env steps
collected by the noisy policy are followed by ``updates_per_train`` updates (world model, actor, value), and
a noise-free evaluation comes every ``eval_every`` env steps. ``pretrain_updates`` more run once, right after
the prefill (DreamerV2's pretraining), in either schedule mode. Env steps are frames after action repeat.
Collection runs in segments of ``checkpoint_every`` env steps, each ending in a checkpoint; SIGTERM/SIGINT
save at the next safe point and exit 143/130 (docs/reliability.md P1, P3). Where the run stands is one typed
:class:`Counters`, saved in every checkpoint as JSON data.

What varies is composed, not subclassed: a collection strategy (:mod:`dreamer_trl.training.collection`: in this
process, or in a worker process) and a world (:class:`~dreamer_trl.training.distributed.World`: one process, or a
torchrun rank). :func:`dreamer_trl.builders.trainer.make_trainer` builds the whole trainer from the config.
"""
from __future__ import annotations

import json
import math
import random
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from dreamer_trl.config import to_dict
from dreamer_trl.report.visualize import (
    log_image,
    log_video,
    open_loop,
    record_episode,
    suite_base_env,
    write_open_loop,
    write_video,
)
from dreamer_trl.run.checkpoint import prune_checkpoints
from dreamer_trl.run.preemption import Preemption
from dreamer_trl.run.state import restore_run, save_run
from dreamer_trl.training.collection import Segment, SyncCollection
from dreamer_trl.training.distributed import World

if TYPE_CHECKING:
    from dreamer_trl.builders.agent import Agent
    from dreamer_trl.config import DreamerConfig
    from dreamer_trl.training.update import DreamerUpdate

@dataclass
class Counters:
    """Where a run stands; saved in each checkpoint as JSON (:func:`dataclasses.asdict` / :meth:`from_dict`)."""

    env_steps: int = 0
    """env steps (frames after action repeat) collected"""
    updates: int = 0
    """updates run (skipped non-finite ones included)"""
    episodes: int = 0
    """training episodes finished"""
    traj_offset: int = 0
    """added to the collector's trajectory ids, so ids stay unique across segments and resumes"""
    pending_updates: int = 0
    """updates due but not run yet (a training phase cut short by preemption)"""
    eval_due: bool = False
    """an evaluation is due (also one cut short by preemption)"""
    evals: list[tuple[int, float]] = field(default_factory=list)
    """(env steps, mean noise-free return) of each evaluation"""
    physics_errors: int = 0
    """MuJoCo physics errors of the training env over the whole run"""

    @classmethod
    def from_dict(cls, data: dict) -> Counters:
        """The counters saved by a checkpoint; missing or unknown names are refused."""
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ValueError(f"checkpoint counters: missing {sorted(names - set(data))}, "
                             f"unknown {sorted(set(data) - names)}")
        return cls(**{**data, "evals": [(int(step), float(ret)) for step, ret in data["evals"]]})


class Pace:
    """The ETA from the measured costs of each kind of work still to come: seconds per update, per env step
    collected (with the policy, and apart from it the random-action prefill), per evaluation and per
    checkpoint, all measured in this run (and carried through a resume by the checkpoint, :meth:`state_dict`).

    The random-action prefill is timed apart: it is much faster per env step than collecting with the policy,
    and it runs no updates, so extrapolating it (as tqdm's own estimate does) promises a fraction of the time.
    Evaluations and checkpoints come in bursts (a 10-episode evaluation of a 1000-frame task takes tens of
    seconds), so they are counted as events: until the first evaluation is timed, one is estimated as its env
    steps at the collection rate; until the first checkpoint is timed, a checkpoint counts as free.
    """

    def __init__(self):
        self.update_s, self.updates = 0.0, 0
        self.step_s, self.steps = {"prefill": 0.0, "train": 0.0}, {"prefill": 0, "train": 0}
        self.event_s, self.events = {"eval": 0.0, "checkpoint": 0.0}, {"eval": 0, "checkpoint": 0}

    def updated(self, seconds: float) -> None:
        """One update took ``seconds``."""
        self.update_s, self.updates = self.update_s + seconds, self.updates + 1

    def stepped(self, steps: int, seconds: float, phase: str) -> None:
        """``steps`` env steps of ``phase`` ("prefill" or "train") took ``seconds``, updates and evaluations
        excluded."""
        self.step_s[phase] += seconds
        self.steps[phase] += steps

    def happened(self, event: str, seconds: float) -> None:
        """One ``event`` ("eval" or "checkpoint") took ``seconds``."""
        self.event_s[event] += seconds
        self.events[event] += 1

    def seconds_left(self, updates: int, train_steps: int, prefill_steps: int, evals: int = 0,
                     checkpoints: int = 0, eval_steps: int = 0) -> float | None:
        """Time for that much work at the measured rates (``eval_steps``: env steps of one evaluation, its cost
        until one is timed); None while a needed rate is unmeasured."""
        rate = {k: self.step_s[k] / self.steps[k] for k in self.steps if self.steps[k]}
        per_train_step = rate.get("train", rate.get("prefill"))  # before the first policy batch: a lower bound
        if (updates and not self.updates) or ((train_steps or evals) and per_train_step is None) or \
                (prefill_steps and "prefill" not in rate):
            return None
        per_update = self.update_s / self.updates if self.updates else 0.0
        per = {k: self.event_s[k] / self.events[k] for k in self.events if self.events[k]}
        per_eval = per.get("eval", eval_steps * (per_train_step or 0.0))
        return (updates * per_update + train_steps * (per_train_step or 0.0)
                + prefill_steps * rate.get("prefill", 0.0) + evals * per_eval
                + checkpoints * per.get("checkpoint", 0.0))

    def eta(self, *work, **events) -> str:
        left = self.seconds_left(*work, **events)
        return "?" if left is None else tqdm.format_interval(left)

    def state_dict(self) -> dict:
        """The measured costs, JSON-able (a checkpoint's ``meta.json``)."""
        return {"update": [self.update_s, self.updates], "steps": {k: [self.step_s[k], self.steps[k]]
                for k in self.steps}, "events": {k: [self.event_s[k], self.events[k]] for k in self.events}}

    def load_state_dict(self, state: dict) -> None:
        self.update_s, self.updates = state["update"][0], int(state["update"][1])
        for k, (seconds, n) in state["steps"].items():
            self.step_s[k], self.steps[k] = seconds, int(n)
        for k, (seconds, n) in state["events"].items():
            self.event_s[k], self.events[k] = seconds, int(n)


def work_left(c: Counters, s, action_repeat: int = 1) -> tuple[int, int, int]:
    """(updates, env steps collected with the policy, prefill env steps) still to run under schedule ``s``:
    ``updates_per_train`` updates after each ``train_every`` env steps from the end of the prefill on, or with
    a ``train_ratio`` the updates due at the end (:func:`updates_due`) less those run; the ``pretrain_updates``
    are in both (still to come before the prefill ends, pending or run after)."""
    prefill_steps = max(0, s.prefill_env_steps - c.env_steps)
    train_steps = s.total_env_steps - c.env_steps - prefill_steps
    if s.train_ratio:
        return max(0, updates_due(s.total_env_steps, s, action_repeat) - c.updates), train_steps, prefill_steps
    boundaries = (s.total_env_steps - max(c.env_steps, s.prefill_env_steps - s.train_every)) // s.train_every
    pretrain = s.pretrain_updates if c.env_steps < s.prefill_env_steps else 0  # after: in pending_updates
    return c.pending_updates + max(0, boundaries) * s.updates_per_train + pretrain, train_steps, prefill_steps


def events_left(c: Counters, s, checkpoint_every: int, saved_at: int = -1) -> tuple[int, int]:
    """(evaluations, checkpoints) still to come under schedule ``s``: an evaluation each time the env steps cross
    a multiple of ``eval_every`` and one at the end, plus one due now (``c.eval_due``); a checkpoint at each
    multiple of ``checkpoint_every`` and at the end, plus the one at this step when it is a boundary and the
    last checkpoint (``saved_at``, env steps) is not yet this one."""
    if c.env_steps >= s.total_env_steps:
        return int(c.eval_due), int(saved_at != c.env_steps)

    def crossings(every: int) -> int:
        return s.total_env_steps // every - c.env_steps // every + (1 if s.total_env_steps % every else 0)

    here = c.env_steps > 0 and c.env_steps % checkpoint_every == 0 and saved_at != c.env_steps
    return crossings(s.eval_every) + int(c.eval_due), crossings(checkpoint_every) + int(here)


class PriorWatch:
    """Warns once when the batch-mean KL has stayed below the free nats for ``phases`` training phases in a
    row: the prior then gets no gradient and imagination runs on an untrained prior."""

    def __init__(self, free_nats: float, phases: int = 10):
        self.free_nats, self.phases, self.streak = free_nats, phases, 0

    def observe(self, metrics: dict) -> str | None:
        """The warning at the ``phases``-th clamped phase in a row; None otherwise or without a free-nats clamp."""
        clamped = metrics.get("loss/kl_clamped")
        if clamped is None:
            return None
        self.streak = self.streak + 1 if float(clamped) else 0
        if self.streak != self.phases:
            return None
        return (f"warning: the batch-mean KL ({float(metrics.get('loss/kl', math.nan)):.2f} nats) has stayed below "
                f"free_nats ({self.free_nats}) for {self.phases} training phases, so the prior gets no gradient and "
                "imagination runs on an untrained prior; try a lower --world-model.loss.free-nats (the state preset uses 0)")


def updates_due(env_steps: int, schedule, action_repeat: int) -> int:
    """Updates due after ``env_steps`` under ``schedule.train_ratio`` (DreamerV3's replay ratio).

    train_ratio = replayed steps per policy step, so after the prefill every policy step (env steps /
    action repeat) earns train_ratio / (batch_size * seq_len) updates; the count is taken over the whole run
    (floor), so the realised ratio never drifts from the configured one, whatever the collection granularity.
    Once the prefill is done, ``schedule.pretrain_updates`` are due on top (:func:`pretrain_due`).
    """
    policy_steps = max(0, env_steps - schedule.prefill_env_steps) // action_repeat
    regular = int(policy_steps * schedule.train_ratio // (schedule.batch_size * schedule.seq_len))
    return regular + pretrain_due(env_steps, schedule)


def pretrain_due(env_steps: int, schedule) -> int:
    """The pretraining updates due after ``env_steps``: ``schedule.pretrain_updates`` once the prefill is done.

    DreamerV2 (danijar/dreamerv2 07d906e, ``dreamerv2/train.py`` ``main``) trains ``config.pretrain`` times on
    replayed batches between the random prefill and the first policy step, then goes on with its ``train_every``
    schedule; ``configs.yaml`` sets ``pretrain: 100`` for ``dmc_vision`` and ``dmc_proprio``. They are extra to
    the schedule in both modes and left out of the logged ``train/replay_ratio`` (the regular schedule's ratio;
    the official code logs no ratio). The official ``main`` also runs one update just before them (the call that
    creates the variables and applies its gradients): the fixed schedule's ``updates_per_train`` after the
    prefill stands for it; with a ``train_ratio`` schedule it is one more pretraining update (the ``dreamer_v2``
    preset sets 101).
    """
    return schedule.pretrain_updates if env_steps >= schedule.prefill_env_steps else 0


PLANNER_CHUNK = 10
"""at most this many planned steps per collected batch (see :func:`batch_frames`)"""


def batch_frames(cfg) -> int:
    """Policy steps (frames, all envs together) per collected batch: ``train_every``'s; with the CEM planner
    the largest divisor of it up to :data:`PLANNER_CHUNK` that the envs divide. A planned step costs tens of
    milliseconds (PlaNet's 1000 candidates x 12 horizon steps x 10 iterations), so a whole train_every batch
    would freeze the progress bar and delay a stop by minutes; the updates stay at the train_every boundaries
    (:meth:`Trainer.count`), so the run's numbers do not depend on the chunk."""
    n = cfg.schedule.train_every // cfg.env.action_repeat
    if cfg.behavior.kind != "planner":
        return n
    envs = cfg.env.num_envs
    return max((d for d in range(1, min(n, PLANNER_CHUNK) + 1) if n % d == 0 and d % envs == 0), default=n)


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Runs one training run from its current :class:`Counters` to ``total_env_steps`` (see module docstring).

    Two parts decide where things happen: ``collection`` makes each segment's collector
    (:class:`~dreamer_trl.training.collection.SyncCollection` over ``env``, the default, or
    :class:`~dreamer_trl.training.collection.AsyncCollection` in a worker process), and ``world``
    (:class:`~dreamer_trl.training.distributed.World`: one process, the default, or a torchrun rank) says whether
    a stop is requested on any rank, where this rank checkpoints, and whether it is rank 0, which alone logs,
    evaluates and writes the summary. :func:`dreamer_trl.builders.trainer.make_trainer` assembles it from the config.

    ``cfg.run.resume`` (a checkpoint directory) restores networks, optimizers, replay, counters and every
    random stream before the first step, so the run continues exactly as if never stopped.
    """

    def __init__(self, cfg: DreamerConfig, preset: str, run_dir: Path, *, env, eval_env, agent: Agent,
                 policy, updater: DreamerUpdate, buffer, loggers: list, device, collection=None,
                 world: World | None = None):
        self.cfg, self.preset, self.run_dir, self.device = cfg, preset, run_dir, device
        self.env, self.eval_env, self.agent, self.policy = env, eval_env, agent, policy
        self.updater, self.buffer, self.loggers = updater, buffer, loggers
        if getattr(buffer, "keep_latents", False) and getattr(agent, "model_loss", None) is not None:
            agent.model_loss.context_sink = buffer.write_latents  # the replay context: posteriors back into replay
        self.collection = SyncCollection(env) if collection is None else collection
        self.world = World() if world is None else world
        self.alone = False  # rank 0 evaluating while the others wait: stop requests stay local
        modules = {"world_model": agent.world_model, "actor": agent.actor, "value": agent.value}
        self.run_parts = dict(modules={k: m for k, m in modules.items() if m is not None},  # planner: the model only
                              updater=updater, buffer=buffer, envs={"train": env, "eval": eval_env})
        self.counters = Counters()
        self.pace = Pace()
        if cfg.run.resume:
            self.counters = Counters.from_dict(restore_run(cfg.run.resume, **self.run_parts, map_location=device,
                                                           pace=self.pace))
        self.physics_errors_before = self.counters.physics_errors  # the env counts this process's only
        self.checkpoint_path = cfg.run.resume
        self.saved_at = self.counters.env_steps if cfg.run.resume else -1  # env steps of the last checkpoint
        self.last_eval = self.counters.evals[-1][1] if self.counters.evals else math.nan
        self.prior_watch = PriorWatch(cfg.world_model.loss.free_nats)
        self.videos = run_dir / "videos"
        self.preemption = Preemption()
        self.clock = time.perf_counter  # replaceable in tests
        self.aside_seconds = 0.0  # spent in updates and evaluations since the last collected batch
        self.threads = torch.get_num_threads()  # run.threads, set by make_trainer: kept (keep_threads)

    @property
    def stopping(self) -> bool:
        """SIGTERM or SIGINT arrived on any rank: checkpoint at the next safe point, then exit (one all-reduce
        on a torchrun rank; local only while rank 0 evaluates alone)."""
        local = self.preemption.requested is not None
        if self.alone:
            return local
        anywhere = self.world.any(local)
        if anywhere and not local:
            self.preemption.requested = signal.SIGTERM  # stopped by another rank: save, then exit 143
        return anywhere

    def run(self) -> dict:
        """Train to ``total_env_steps`` (or ``stop_at_env_steps``) and return the summary; exit 143/130 if preempted."""
        c, s, r = self.counters, self.cfg.schedule, self.cfg.run
        if self.world.is_main:
            print(f"run directory: {self.run_dir}", flush=True)
        self.start = (self.clock(), c.env_steps, c.updates)
        self.bar = tqdm(total=s.total_env_steps, initial=c.env_steps, unit="env step", disable=not r.progress,
                        dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        with self.preemption:
            while c.env_steps < s.total_env_steps:
                self.train_and_evaluate()  # work left over from a preempted segment
                if self.stopping:
                    self.checkpoint()
                    break
                self.collect_segment()
                self.checkpoint()
                if self.stopping or (r.stop_at_env_steps and c.env_steps >= r.stop_at_env_steps):
                    break
        self.bar.close()
        if self.stopping:
            print(f"preempted: checkpoint at {c.env_steps} env steps in {self.checkpoint_path}; "
                  f"resume with --resume {self.run_dir}")
            raise SystemExit(self.preemption.exit_code)
        return self.summary()

    def collect_segment(self) -> None:
        """Collect up to the next checkpoint boundary, training and evaluating whenever due."""
        c, s = self.counters, self.cfg.schedule
        end = min((c.env_steps // self.cfg.run.checkpoint_every + 1) * self.cfg.run.checkpoint_every,
                  s.total_env_steps)
        collector = self.make_collector(end)
        self.keep_threads()
        max_traj = c.traj_offset - 1
        mark = self.clock()
        for data in collector:
            phase = "prefill" if c.env_steps < s.prefill_env_steps else "train"
            data["collector", "traj_ids"] += c.traj_offset
            max_traj = max(max_traj, int(data["collector", "traj_ids"].max()))
            self.buffer.extend(data)
            new_steps = self.count(data)
            self.bar.update(new_steps)  # before the batch's updates: the bar shows the env steps collected
            self.aside_seconds = 0.0
            self.train_and_evaluate()
            c.physics_errors = self.physics_errors_before + self.env.physics_errors
            now = self.clock()
            self.pace.stepped(new_steps, now - mark - self.aside_seconds, phase)
            mark = now
            elapsed = now - self.start[0]
            rate = (c.env_steps - self.start[1]) / elapsed
            policy_steps = max(0, c.env_steps - s.prefill_env_steps) // self.cfg.env.action_repeat
            boundary = c.env_steps % s.train_every == 0  # planner chunks: one row per train_every, as for the actor
            if policy_steps and boundary:  # the regular schedule's ratio: the pretraining updates are left out
                regular = max(0, c.updates - pretrain_due(c.env_steps, s))
                self.log({"train/replay_ratio": regular * s.batch_size * s.seq_len / policy_steps})
            left = self.seconds_left()  # the ETA, logged so that it can be checked against the real end
            if boundary:
                self.log({"time/env_steps_per_s": rate, "time/updates_per_s": (c.updates - self.start[2]) / elapsed,
                          "time/elapsed_s": elapsed, **({"time/eta_s": left} if left is not None else {}),
                          "train/episodes": c.episodes, "train/physics_errors": c.physics_errors})
            self.show_progress(steps_per_s=f"{rate:.0f}")
            if self.stopping:
                break
        collector.shutdown(close_env=False)
        self.keep_threads()
        c.traj_offset = max_traj + 1

    def make_collector(self, end: int):
        """The segment's collector, up to ``end`` env steps, from the collection strategy."""
        c, s, a = self.counters, self.cfg.schedule, self.cfg.env.action_repeat
        segment = Segment(c.env_steps, frames_per_batch=batch_frames(self.cfg), total_frames=(end - c.env_steps) // a,
                          init_random_frames=max(0, s.prefill_env_steps - c.env_steps) // a)
        return self.collection.collector(self.policy, segment, self.device)

    def count(self, data) -> int:
        """Book a collected batch: env steps, finished episodes, and the updates and evaluation now due."""
        c, s = self.counters, self.cfg.schedule
        new_steps = data.numel() * self.cfg.env.action_repeat
        c.env_steps += new_steps
        finished = data["next", "done"].squeeze(-1)
        for ret in data["next", "episode_reward"][finished].flatten().tolist():
            self.log({"train/episode_return": ret})
        c.episodes += int(finished.sum())
        if c.env_steps >= s.prefill_env_steps:
            if s.train_ratio:  # exact over the whole run: due(env steps) - updates run so far
                c.pending_updates = max(0, updates_due(c.env_steps, s, self.cfg.env.action_repeat) - c.updates)
            else:  # per train_every boundary crossed from the prefill's end on, and the pretraining once there
                first = max(s.prefill_env_steps, c.env_steps - new_steps + 1)  # boundaries in (before, now]
                phases = max(0, c.env_steps // s.train_every - (first - 1) // s.train_every)
                c.pending_updates += phases * s.updates_per_train + pretrain_due(c.env_steps, s) - pretrain_due(
                    c.env_steps - new_steps, s)
        crossed = c.env_steps // s.eval_every > (c.env_steps - new_steps) // s.eval_every
        c.eval_due = c.eval_due or crossed or c.env_steps >= s.total_env_steps
        return new_steps

    def train_and_evaluate(self) -> None:
        """Run the pending updates, then the due evaluation; both stop early on preemption."""
        c = self.counters
        metrics, phase_updates = None, c.pending_updates
        while c.pending_updates > 0 and not self.stopping:
            start = self.clock()
            metrics = self.updater.update(self.buffer.sample())
            seconds = self.clock() - start
            self.pace.updated(seconds)
            self.aside_seconds += seconds
            c.updates += 1
            c.pending_updates -= 1
            self.show_progress(phase=f"train {phase_updates - c.pending_updates}/{phase_updates}")  # every update
        if metrics is not None and not c.pending_updates:  # a phase cut short logs once, when it ends after resume
            self.log({**metrics, "train/updates": c.updates})
            warning = self.prior_watch.observe(metrics)
            if warning:
                tqdm.write(warning)
        self.show_progress()
        if c.eval_due and not self.stopping:
            self.evaluate()

    def evaluate(self) -> None:
        """Noise-free episodes (return, video of the first) and the open-loop prediction on replayed data; on rank
        0 only (the others go on and wait for it at the next collective)."""
        if not self.world.is_main:
            self.counters.eval_due = False
            return
        self.alone, start = True, self.clock()
        try:
            self.evaluate_here()
        finally:
            self.alone = False
        seconds = self.clock() - start
        self.aside_seconds += seconds
        if not self.counters.eval_due:  # done, not cut short by preemption
            self.pace.happened("eval", seconds)

    def evaluate_here(self) -> None:
        c, episodes = self.counters, self.cfg.schedule.eval_episodes
        self.bar.set_postfix_str(f"evaluating ({episodes} noise-free episodes)")
        returns, frames = [], None
        video = 64 if getattr(suite_base_env(self.eval_env), "renders", True) else 0  # gym envs may not render
        for i in range(episodes):
            result = record_episode(self.eval_env, self.policy, video_size=video if i == 0 else 0,
                                    stop=lambda: self.stopping)
            if result is None:
                return  # preempted: the evaluation stays due
            returns.append(result[0])
            frames = result[1] if i == 0 else frames
        step, self.last_eval, c.eval_due = c.env_steps, float(np.mean(returns)), False
        c.evals.append((step, self.last_eval))
        if video:
            write_video(frames, self.videos / f"eval_{step:010d}")
            log_video(self.loggers, "eval/video", frames, step)
        self.log({"eval/return": self.last_eval, **self.show_world_model(step)})

    def show_world_model(self, step: int) -> dict:
        """Open-loop prediction (Dreamer Fig. 5) on replayed sequences: error per horizon step, and for pixels
        the true | predicted | error strip as an image and a video. None without an observation model."""
        if self.agent.world_model.decoder is None:
            return {}
        try:
            batch = self.buffer.sample()[:4]
        except ValueError:  # no stored episode fills a sequence yet
            return {}
        out = open_loop(self.agent.world_model, batch, context=min(5, batch.shape[-1] - 1))
        if self.cfg.env.from_pixels:
            paths = write_open_loop(out, self.videos / f"open_loop_{step:010d}")
            log_image(self.loggers, "eval/open_loop", imageio.imread(paths[0]), step)
        return {f"eval/open_loop_mse_h{h:02d}": v for h, v in enumerate(out["mse_per_step"].tolist(), 1)}

    def checkpoint(self) -> None:
        """Save everything needed to continue exactly, then keep only the newest ``checkpoints_kept``.

        On torchrun ranks every rank r > 0 saves its shard (``RUN/checkpoints_rank<r>``) first, then rank 0 its
        checkpoint, so a rank-0 checkpoint exists only when every shard of it does."""
        start = self.clock()
        if not self.world.is_main:
            self.save_checkpoint()
        self.world.barrier()
        if self.world.is_main:
            self.save_checkpoint()
        self.world.barrier()
        self.pace.happened("checkpoint", self.clock() - start)

    def save_checkpoint(self) -> None:
        root = self.world.checkpoints(self.run_dir)
        self.saved_at = self.counters.env_steps
        self.checkpoint_path = save_run(root / f"{self.counters.env_steps:010d}", **self.run_parts,
                                           counters=asdict(self.counters), config=to_dict(self.cfg),
                                           preset=self.preset, pace=self.pace.state_dict())
        prune_checkpoints(root, self.cfg.run.checkpoints_kept)

    def log(self, metrics: dict, step: int | None = None) -> None:
        if not self.world.is_main:
            return
        step = self.counters.env_steps if step is None else step
        for name, value in metrics.items():
            for logger in self.loggers:
                logger.log_scalar(name, float(value), step=step)

    def show_progress(self, **extra) -> None:
        """Redraw the bar's postfix: phase (with the update count inside a training phase), updates, last
        evaluation, and the ETA from the current rates (:class:`Pace`)."""
        c, s = self.counters, self.cfg.schedule
        shown = {"phase": "prefill" if c.env_steps < s.prefill_env_steps else "train", "updates": c.updates,
                 "eval_return": f"{self.last_eval:.1f}", **extra}
        self.bar.set_postfix(**shown, eta=self.pace.eta(*self.work_left()))

    def work_left(self) -> tuple:
        """(updates, policy env steps, prefill env steps, evaluations, checkpoints, env steps per evaluation) to
        come, the arguments of :meth:`Pace.seconds_left`."""
        c, s = self.counters, self.cfg.schedule
        evals, checkpoints = events_left(c, s, self.cfg.run.checkpoint_every, self.saved_at)
        return (*work_left(c, s, self.cfg.env.action_repeat), evals, checkpoints,
                s.eval_episodes * self.cfg.env.episode_frames)

    def seconds_left(self) -> float | None:
        """The ETA in seconds (None while a rate is unmeasured)."""
        return self.pace.seconds_left(*self.work_left())

    def summary(self) -> dict:
        """Write ``summary.json``, print where everything is, and return the summary (rank 0); the other ranks
        return their counts."""
        c, run_dir = self.counters, self.run_dir
        if not self.world.is_main:
            return {"rank": self.world.rank, "env_steps": c.env_steps, "updates": c.updates}
        summary = {"run_dir": str(run_dir), "checkpoint": str(self.checkpoint_path), "env_steps": c.env_steps,
                   "updates": c.updates, "skipped_updates": self.updater.skipped, "final_eval_return": self.last_eval,
                   "evaluations": c.evals, "wall_clock_s": round(self.clock() - self.start[0], 1)}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"done: {c.env_steps} env steps, {c.updates} updates, final eval return {self.last_eval:.1f}, "
              f"{summary['wall_clock_s']} s\n  run directory: {run_dir}\n  checkpoint: {self.checkpoint_path}\n"
              f"  videos: {self.videos}\n  metrics: {run_dir / 'logs'}; plots: {shlex.quote(sys.executable)} "
              f"recipes/plot_runs.py {run_dir} "
              f"--out {run_dir / 'plots'}")
        return summary

    def close(self) -> None:
        """End the training env's workers (``env.num_envs`` > 1, :mod:`dreamer_trl.data.vector_env`)."""
        getattr(self.env, "shutdown", lambda: None)()
        self.keep_threads()

    def keep_threads(self) -> None:
        """Put back this process's torch thread count as the trainer was built (``run.threads``), after a collector
        or env started or ended its workers: TorchRL's asynchronous collector takes one thread per worker when it
        starts, and it and a closed ``ParallelEnv`` give one per worker back on shutdown (up to the count at
        TorchRL's import), so later updates would run on more threads than configured, or fewer."""
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
