"""DeepMind Control Suite environments for TorchRL, written directly on dm_control.

DreamerV1 (Hafner et al. 2020) observes 64x64 RGB frames and repeats each action twice;
this module provides exactly that for any suite (domain, task), plus a state-vector variant.
TorchRL's ``DMControlEnv`` is not used: its pixel path renders 240x320 at every physics step
and, in torchrl 0.14.1, rejects ``render_kwargs``. Here the frame is rendered once per agent
step, directly at the final size.

Frames vs agent steps: a *frame* is one dm_control control step; an agent step applies its
action for ``action_repeat`` frames. A 1000-frame episode with action repeat 2 is 500 agent steps.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from dm_control import suite  # noqa: E402
from dm_control.rl.control import PhysicsError  # noqa: E402
from tensordict import TensorDict, TensorDictBase  # noqa: E402
from torchrl.data import Bounded, Categorical, Composite, Unbounded  # noqa: E402
from torchrl.envs import EnvBase, InitTracker, TransformedEnv  # noqa: E402

from dreamer_trl.data.suites import check_env_numbers  # noqa: E402
from dreamer_trl.keys import (  # noqa: E402
    ACTION,
    DONE,
    OBSERVATION,
    PIXELS,
    REWARD,
    TERMINATED,
    TRUNCATED,
)

# Quadruped's default camera 0 is too far away to see the body at 64x64 (as in DreamerV1).
_DEFAULT_CAMERA = {"quadruped": 2}
# Action bounds beyond this are treated as unbounded (lqr uses +-1e10) and rejected.
_MAX_ACTION_BOUND = 10.0


def _validate_task(domain: str, task: str) -> None:
    """Raise a ValueError naming the bad domain or task and listing the valid choices."""
    domains = sorted({d for d, _ in suite.ALL_TASKS})
    if domain not in domains:
        raise ValueError(
            f"Unknown DMC domain {domain!r}. Valid (domain, task) pairs: {sorted(suite.ALL_TASKS)}"
        )
    tasks = sorted(t for d, t in suite.ALL_TASKS if d == domain)
    if task not in tasks:
        raise ValueError(f"Unknown task {task!r} for DMC domain {domain!r}. Valid tasks: {tasks}")


def split_task(name: str) -> tuple[str, str]:
    """"cartpole_swingup" -> ("cartpole", "swingup"); handles domains with underscores (ball_in_cup)."""
    for domain, task in suite.ALL_TASKS:
        if f"{domain}_{task}" == name:
            return domain, task
    close = sorted(f"{d}_{t}" for d, t in suite.ALL_TASKS)
    raise ValueError(f"Unknown DMC task {name!r}; expected domain_task, one of: {close}")


class DMCEnv(EnvBase):
    """One DeepMind Control Suite task as a TorchRL environment, with action repeat.

    Episodes end after ``episode_frames`` frames (truncated: the suite's time limit keeps
    discount 1) or when dm_control returns a last time step with discount 0 (terminated).
    Rewards are summed over the repeated frames; repeats stop early at a last time step.

    Shapes:
        pixels: [3, Hh, W] uint8 with Hh = W = image_size (only key when from_pixels=True)
        observation: [O] float32, dm_control's observation arrays flattened in dict order
            (only key when from_pixels=False)
        action: [A] float32 in [-1, 1], mapped affinely onto the task's bounds where they
            differ (quadruped)
        reward: [1] float32; done, terminated, truncated: [1] bool
    """

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        from_pixels: bool = True,
        image_size: int = 64,
        camera_id: int | None = None,
        action_repeat: int = 2,
        episode_frames: int = 1000,
        seed: int = 0,
        max_physics_errors: int = 5,
        physics_error_window: int = 100,
        device="cpu",
    ):
        _validate_task(domain, task)
        check_env_numbers(image_size, action_repeat, episode_frames)
        super().__init__(device=device, batch_size=torch.Size([]))
        self.domain, self.task = domain, task
        self.from_pixels = from_pixels
        self.image_size = image_size
        self.camera_id = _DEFAULT_CAMERA.get(domain, 0) if camera_id is None else camera_id
        self.action_repeat = action_repeat
        self.episode_frames = episode_frames
        # The time limit is ours (frame count); dm_control's last() then only signals termination.
        self._env = suite.load(
            domain, task, task_kwargs={"random": seed, "time_limit": float("inf")}
        )
        self._frames = 0
        # Physics faults (docs/reliability.md P5): each truncates its episode; too many within the last
        # `physics_error_window` episodes abort.
        self._physics_errors, self.episodes = 0, 0
        self._fault_episodes: list[int] = []
        self.max_physics_errors, self.physics_error_window = max_physics_errors, physics_error_window
        self._last_obs: dict = {}

        action_spec = self._env.action_spec()
        low, high = action_spec.minimum, action_spec.maximum
        if np.max(np.abs(np.concatenate([low, high]))) > _MAX_ACTION_BOUND:
            raise ValueError(
                f"DMC task {domain}/{task} has effectively unbounded actions [{low}, {high}]; "
                f"DMCEnv needs bounds within [-{_MAX_ACTION_BOUND}, {_MAX_ACTION_BOUND}] to map "
                "its [-1, 1] actions onto them."
            )
        # Most suite tasks use [-1, 1]; quadruped does not (e.g. [-0.8, 0.8], [-1, 1.1]).
        # Like DreamerV1's NormalizeActions, the agent acts in [-1, 1] mapped affinely onto them.
        self._action_low, self._action_high = low, high
        self._rescale_actions = not (np.all(low == -1.0) and np.all(high == 1.0))
        self.action_spec = Bounded(
            -1.0, 1.0, shape=action_spec.shape, dtype=torch.float32, device=self.device
        )
        if from_pixels:
            obs_spec = Bounded(
                0, 255, shape=(3, image_size, image_size), dtype=torch.uint8, device=self.device
            )
            self.observation_spec = Composite({PIXELS: obs_spec}, device=self.device)
        else:
            size = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            obs_spec = Unbounded(shape=(size,), dtype=torch.float32, device=self.device)
            self.observation_spec = Composite({OBSERVATION: obs_spec}, device=self.device)
        self.reward_spec = Unbounded(shape=(1,), dtype=torch.float32, device=self.device)
        flag = Categorical(2, shape=(1,), dtype=torch.bool, device=self.device)
        self.done_spec = Composite(
            {DONE: flag.clone(), TERMINATED: flag.clone(), TRUNCATED: flag.clone()},
            device=self.device,
        )

    @property
    def dm_env(self):
        """The wrapped ``dm_control.rl.control.Environment``."""
        return self._env

    renders = True
    """Frames of any size come from :meth:`render` (videos; the suites' common interface)."""

    @property
    def physics_errors(self) -> int:
        """MuJoCo physics errors since this env was built (each truncated its episode)."""
        return self._physics_errors

    def task_random_state(self) -> list:
        """The state of the task's random stream (initial states of the next episodes), as JSON data."""
        kind, keys, pos, has_gauss, gauss = self._env.task.random.get_state()
        return [kind, keys.tolist(), pos, has_gauss, gauss]

    def set_task_random_state(self, state: list) -> None:
        """Restore a :meth:`task_random_state`, so the next resets match those of the saved env."""
        kind, keys, pos, has_gauss, gauss = state
        self._env.task.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))

    def render(self, size: int | None = None) -> np.ndarray:
        """The current physics state from this env's camera, uint8 ``[size, size, 3]`` (default image_size)."""
        size = size or self.image_size
        return self._env.physics.render(height=size, width=size, camera_id=self.camera_id)

    def _observe(self, time_step) -> dict:
        if self.from_pixels:
            frame = self._env.physics.render(
                height=self.image_size, width=self.image_size, camera_id=self.camera_id
            )  # (Hh, W, 3)
            frame = np.ascontiguousarray(frame.transpose(2, 0, 1))  # (3, Hh, W)
            return {PIXELS: torch.from_numpy(frame).to(self.device)}
        flat = np.concatenate(
            [np.asarray(v, dtype=np.float32).ravel() for v in time_step.observation.values()]
        )
        return {OBSERVATION: torch.from_numpy(flat).to(self.device)}

    def _flags(self, terminated: bool, truncated: bool) -> dict:
        def as_tensor(value: bool) -> torch.Tensor:
            return torch.tensor([value], dtype=torch.bool, device=self.device)

        return {
            DONE: as_tensor(terminated or truncated),
            TERMINATED: as_tensor(terminated),
            TRUNCATED: as_tensor(truncated),
        }

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        time_step = self._env.reset()
        self._frames = 0
        self.episodes += 1
        self._last_obs = self._observe(time_step)
        out = {**self._last_obs, **self._flags(False, False)}
        return TensorDict(out, batch_size=self.batch_size, device=self.device)

    def _physics_fault(self, error: Exception) -> None:
        self._physics_errors += 1
        self._fault_episodes = [e for e in self._fault_episodes if e > self.episodes - self.physics_error_window]
        self._fault_episodes.append(self.episodes)
        if len(self._fault_episodes) > self.max_physics_errors:
            raise RuntimeError(
                f"{len(self._fault_episodes)} MuJoCo physics errors within the last {self.physics_error_window} "
                f"episodes of {self.domain}/{self.task} (max_physics_errors={self.max_physics_errors}); "
                f"last: {error}"
            ) from error

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(ACTION)
        if not torch.isfinite(action).all():
            raise ValueError(f"Non-finite values in {ACTION!r}: {action.tolist()}")
        action = action.detach().cpu().numpy().astype(np.float64)
        if self._rescale_actions:
            action = self._action_low + (action + 1.0) * (self._action_high - self._action_low) / 2
        reward, terminated, truncated, time_step = 0.0, False, False, None
        for _ in range(self.action_repeat):
            try:
                time_step = self._env.step(action)
            except PhysicsError as error:  # unstable simulation: end the episode here, as truncated
                self._physics_fault(error)
                truncated = True
                break
            self._frames += 1
            reward += time_step.reward or 0.0
            if time_step.last():
                terminated = time_step.discount == 0.0
                truncated = not terminated
                break
            if self._frames >= self.episode_frames:
                truncated = True
                break
        if time_step is not None:
            self._last_obs = self._observe(time_step)
        out = {
            **self._last_obs,
            REWARD: torch.tensor([reward], dtype=torch.float32, device=self.device),
            **self._flags(terminated, truncated),
        }
        return TensorDict(out, batch_size=self.batch_size, device=self.device)

    def _set_seed(self, seed: int | None) -> None:
        # dm_control draws initial states from the task's RandomState; reseeding it in place makes the
        # next reset match a fresh env built with `seed`.
        self._env.task.random.seed(seed)


def make_dmc_env(
    domain: str,
    task: str,
    *,
    from_pixels: bool = True,
    image_size: int = 64,
    camera_id: int | None = None,
    action_repeat: int = 2,
    episode_frames: int = 1000,
    seed: int = 0,
    max_physics_errors: int = 5,
    physics_error_window: int = 100,
    device="cpu",
) -> EnvBase:
    """Build a DMC task as in DreamerV1 (64x64 RGB, action repeat 2, Hafner et al. 2020).

    Returns a :class:`DMCEnv` in a ``TransformedEnv`` with ``InitTracker`` (rows get ``"is_init"``).

    Shapes:
        see :class:`DMCEnv`; plus is_init: [1] bool.
    """
    env = DMCEnv(
        domain,
        task,
        from_pixels=from_pixels,
        image_size=image_size,
        camera_id=camera_id,
        action_repeat=action_repeat,
        episode_frames=episode_frames,
        seed=seed,
        max_physics_errors=max_physics_errors,
        physics_error_window=physics_error_window,
        device=device,
    )
    return TransformedEnv(env, InitTracker())
