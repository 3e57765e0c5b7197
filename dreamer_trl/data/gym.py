"""Gymnasium environments for TorchRL in the replay layout, with action repeat (``env.suite gym``).

Any registered gymnasium id: vector observations (a ``Box``, flattened to float32 "observation") or, with
``from_pixels``, the env's ``rgb_array`` render resized to ``image_size`` (uint8 "pixels", rendered once per agent
step). Actions: a bounded ``Box`` is acted in [-1, 1] and mapped affinely onto its bounds (as
:class:`~dreamer_trl.data.dmc.DMCEnv`); ``Discrete(n)`` is acted as a one-hot vector ``[n]`` (TorchRL ``OneHot``),
the index its argmax. Other spaces are refused, naming the space.

Episode ends keep gymnasium's distinction: ``terminated`` (the continue head's 0) and ``truncated`` (the env's
time limit, or ``episode_frames`` frames here; continue 1). Rewards are summed over the repeated frames; repeats
stop at an episode end.

Seeding: the first reset passes ``seed`` to gymnasium (``reset(seed=...)``), later resets continue the env's own
random stream, which :meth:`GymEnv.task_random_state` saves for an exact resume.
"""
from __future__ import annotations

import difflib
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless rgb_array renders (pygame) need no display
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torch.nn import functional as F
from torchrl.data import Bounded, Composite, OneHot, Unbounded
from torchrl.envs import EnvBase, InitTracker, TransformedEnv

from dreamer_trl.data.suites import check_env_numbers, end_flags, step_specs
from dreamer_trl.keys import ACTION, OBSERVATION, PIXELS, REWARD

_MAX_ACTION_BOUND = 10.0  # as DMCEnv: wider bounds are treated as unbounded and refused


def gym_ids() -> list[str]:
    """Every registered gymnasium id (after importing gymnasium's own registrations)."""
    import gymnasium

    return sorted(gymnasium.envs.registry.keys())


def check_gym_id(env_id: str) -> None:
    """``env_id`` is a registered gymnasium id; otherwise ValueError naming ``env.task`` and the closest ids."""
    try:
        ids = gym_ids()
    except ImportError as error:
        raise ValueError("config field 'env.suite': gym needs gymnasium (pip install 'dreamer_trl[gym]')") from error
    if env_id not in ids:
        close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"none of the {len(ids)} registered ids is close"
        raise ValueError(f"config field 'env.task': unknown gymnasium id {env_id!r}; {hint}")


def gym_action_space(env_id: str) -> str:
    """"discrete" or "continuous": the kind of ``env_id``'s action space (the env is built and closed; no reset)."""
    import gymnasium
    from gymnasium import spaces

    env = gymnasium.make(env_id)
    try:
        return "discrete" if isinstance(env.action_space, spaces.Discrete) else "continuous"
    finally:
        env.close()


def _resize(frame: np.ndarray, size: int) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, size, size]`` uint8 (area-averaged when shrinking, bilinear when growing)."""
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).unsqueeze(0).float()
    if x.shape[-2:] != (size, size):
        mode = "area" if x.shape[-1] >= size and x.shape[-2] >= size else "bilinear"
        x = F.interpolate(x, size=(size, size), mode=mode)
    return x.squeeze(0).round().clamp(0, 255).to(torch.uint8)


class GymEnv(EnvBase):
    """One gymnasium environment as a TorchRL environment with action repeat (module docstring).

    Shapes:
        observation: ``[O]`` float32 (the flattened ``Box``), or pixels ``[3, Hh, W]`` uint8 with ``from_pixels``;
        action: ``[A]`` float32 in [-1, 1] (``Box``) or one-hot ``[n]`` float32 (``Discrete(n)``);
        reward: ``[1]`` float32; done, terminated, truncated: ``[1]`` bool.
    """

    def __init__(self, env_id: str, *, from_pixels: bool = False, image_size: int = 64, action_repeat: int = 1,
                 episode_frames: int = 1000, seed: int = 0, device="cpu", **make_kwargs):
        import gymnasium
        from gymnasium import spaces

        check_env_numbers(image_size, action_repeat, episode_frames)
        check_gym_id(env_id)
        super().__init__(device=device, batch_size=torch.Size([]))
        self.env_id, self.from_pixels, self.image_size = env_id, from_pixels, image_size
        self.action_repeat, self.episode_frames = action_repeat, episode_frames
        try:
            self._env = gymnasium.make(env_id, render_mode="rgb_array", **make_kwargs)
            self.renders = True
        except TypeError:  # an env whose constructor takes no render_mode: no frames (no pixels, no videos)
            self._env = gymnasium.make(env_id, **make_kwargs)
            self.renders = False
        if from_pixels and not self.renders:
            raise ValueError(f"config field 'env.from_pixels': {env_id!r} renders no rgb_array frames to observe; "
                             "use --env.no-from-pixels")
        self._seed, self._frames, self.episodes = seed, 0, 0
        act = self._env.action_space
        if isinstance(act, spaces.Discrete):
            self.discrete, self._start = True, int(act.start)
            self.action_spec = OneHot(int(act.n), dtype=torch.float32, device=self.device)
        elif isinstance(act, spaces.Box) and len(act.shape) == 1:
            low, high = act.low.astype(np.float64), act.high.astype(np.float64)
            if not np.all(np.isfinite(low) & np.isfinite(high)) or np.max(np.abs([low, high])) > _MAX_ACTION_BOUND:
                raise ValueError(f"env.task {env_id!r}: its Box actions [{low}, {high}] are effectively unbounded; "
                                 f"the agent acts in [-1, 1] mapped onto bounds within +-{_MAX_ACTION_BOUND}")
            self.discrete, self._low, self._high = False, low, high
            self.action_spec = Bounded(-1.0, 1.0, shape=act.shape, dtype=torch.float32, device=self.device)
        else:
            raise ValueError(f"env.task {env_id!r}: the agent takes Discrete or 1-d Box actions, not {act} "
                             f"({type(act).__name__})")
        obs = self._env.observation_space
        if from_pixels:
            self.observation_spec = Composite(
                {PIXELS: Bounded(0, 255, shape=(3, image_size, image_size), dtype=torch.uint8, device=self.device)},
                device=self.device)
        elif isinstance(obs, spaces.Box) and obs.dtype != np.uint8:
            size = int(np.prod(obs.shape))
            self.observation_spec = Composite(
                {OBSERVATION: Unbounded(shape=(size,), dtype=torch.float32, device=self.device)}, device=self.device)
        else:
            raise ValueError(f"env.task {env_id!r}: its observations {obs} ({type(obs).__name__}) are no float Box; "
                             "observe its render with --env.from-pixels")
        self.reward_spec, self.done_spec = step_specs(self.device)

    @property
    def gym_env(self):
        """The wrapped ``gymnasium.Env``."""
        return self._env

    @property
    def physics_errors(self) -> int:
        """Always 0: only MuJoCo's physics faults are counted (:class:`~dreamer_trl.data.dmc.DMCEnv`)."""
        return 0

    def task_random_state(self) -> dict:
        """The env's random stream (initial states of the next episodes) as JSON data: before the first reset, the
        seed that reset will use."""
        if self._seed is not None:  # not reset yet: the first reset seeds the stream
            return {"seed": self._seed}
        return {"bit_generator": self._env.unwrapped.np_random.bit_generator.state}

    def set_task_random_state(self, state: dict) -> None:
        """Restore a :meth:`task_random_state`, so the next resets match those of the saved env."""
        if "seed" in state:
            self._seed = state["seed"]
            return
        self._env.unwrapped.np_random.bit_generator.state = state["bit_generator"]
        self._seed = None

    def render(self, size: int | None = None) -> np.ndarray:
        """The env's ``rgb_array`` render, uint8 ``[size, size, 3]`` (default image_size)."""
        if not self.renders:
            raise ValueError(f"{self.env_id!r} renders no rgb_array frames")
        return _resize(self._env.render(), size or self.image_size).permute(1, 2, 0).numpy()

    def _observe(self, obs) -> dict:
        if self.from_pixels:
            return {PIXELS: _resize(self._env.render(), self.image_size).to(self.device)}
        flat = np.asarray(obs, dtype=np.float32).reshape(-1)
        return {OBSERVATION: torch.from_numpy(flat).to(self.device)}

    def _flags(self, terminated: bool, truncated: bool) -> dict:
        return end_flags(terminated, truncated, self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        obs, _ = self._env.reset(seed=self._seed)
        if self._seed is not None:
            self._env.action_space.seed(self._seed)
        self._seed, self._frames = None, 0
        self.episodes += 1
        return TensorDict({**self._observe(obs), **self._flags(False, False)}, batch_size=self.batch_size,
                          device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(ACTION)
        if not torch.isfinite(action).all():
            raise ValueError(f"Non-finite values in {ACTION!r}: {action.tolist()}")
        if self.discrete:
            act = self._start + int(action.argmax(-1))
        else:
            x = action.detach().cpu().numpy().astype(np.float64)
            act = (self._low + (x + 1.0) * (self._high - self._low) / 2).astype(self._env.action_space.dtype)
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            obs, r, terminated, truncated, _ = self._env.step(act)
            self._frames += 1
            reward += float(r)
            truncated = truncated or (self._frames >= self.episode_frames and not terminated)
            if terminated or truncated:
                break
        out = {**self._observe(obs), REWARD: torch.tensor([reward], dtype=torch.float32, device=self.device),
               **self._flags(bool(terminated), bool(truncated))}
        return TensorDict(out, batch_size=self.batch_size, device=self.device)

    def _set_seed(self, seed: int | None) -> None:
        self._seed = seed  # the next reset seeds the env's stream, matching a fresh env built with ``seed``

    def close(self, *, raise_if_closed: bool = True) -> None:
        self._env.close()
        super().close(raise_if_closed=raise_if_closed)


def make_gym_env(env_id: str, *, from_pixels: bool = False, image_size: int = 64, action_repeat: int = 1,
                 episode_frames: int = 1000, seed: int = 0, device="cpu", **make_kwargs) -> EnvBase:
    """A :class:`GymEnv` in a ``TransformedEnv`` with ``InitTracker`` (rows get ``"is_init"``).

    Shapes: see :class:`GymEnv`; plus is_init ``[1]`` bool.
    """
    env = GymEnv(env_id, from_pixels=from_pixels, image_size=image_size, action_repeat=action_repeat,
                 episode_frames=episode_frames, seed=seed, device=device, **make_kwargs)
    return TransformedEnv(env, InitTracker())
