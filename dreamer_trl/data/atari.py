"""Atari games (the Arcade Learning Environment through gymnasium) for TorchRL in the replay layout (``env.suite atari``).

The game is ale-py's gymnasium env (``ale_py.env.AtariEnv``, ``frameskip=1``: reset, seeding, the action set); an
action's repeated frames call its emulator directly, as its ``step`` does, reading the screen only for the frames
that are kept. The preprocessing is DreamerV3's (danijar/dreamerv3 e3f0224, ``embodied/envs/atari.py``, values from configs.yaml
``env.atari`` / ``env.atari100k``, :class:`~dreamer_trl.config.AtariConfig`):

- each action is repeated ``action_repeat`` frames (rewards summed, stopping at an episode end); the screens of
  the last ``pooling`` frames of the repeat are kept and combined by their pixel-wise ``max`` (or ``mean``); the
  kept screens carry over between steps, as the official ring buffer does, and a reset fills them all with its
  first screen;
- the pooled RGB screen is resized to ``image_size`` by Pillow's bilinear filter, then, with ``gray``, reduced
  to one channel ``(0.299 R + 0.587 G + 0.114 B)`` truncated to uint8;
- a reset plays a uniform number of no-ops in ``[0, noops]`` (a game over during them resets again);
- sticky actions (the emulator repeats the previous action with probability 0.25) and the action set
  (``all`` 18 or the game's ``needed`` minimal set) are the emulator's own settings;
- ``lives="reset"`` ends the episode at a lost life, as a termination.

Episode ends keep the two kinds apart: a game over is ``terminated`` (the continue head's 0); the time limit
(``episode_frames`` emulator frames, the official 108,000) is ``truncated`` (continue 1). The official driver
marks both as terminal (``is_terminal=is_last`` in ``Atari._obs``); within the atari100k budget no episode
reaches the limit, so the two agree there.

Seeding: the first reset seeds the emulator with ``seed`` (its sticky-action stream) and the no-op counts come
from the env's own generator seeded with ``seed``; :meth:`AtariEnv.task_random_state` saves both (the emulator's
random state through ``cloneState(include_rng=True)``), so a resumed run plays the episodes the uninterrupted
one would have played.
"""
from __future__ import annotations

import base64
import difflib
import pickle

import numpy as np
import torch
from PIL import Image
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Composite, OneHot
from torchrl.envs import EnvBase, InitTracker, TransformedEnv

from dreamer_trl.data.suites import check_env_numbers, end_flags, step_specs
from dreamer_trl.keys import ACTION, PIXELS, REWARD

GRAY_WEIGHTS = np.array([0.299, 0.587, 1 - (0.299 + 0.587)])
"""Luminance weights of R, G, B (the official ``Atari.WEIGHTS``)."""

NOOP = 0  # index 0 is NOOP in both the full and the minimal action set


def _missing(error: ImportError) -> ValueError:
    return ValueError("config field 'env.suite': atari needs ale-py and gymnasium (pip install 'dreamer_trl[atari]'); "
                      f"{error}")


def atari_games() -> list[str]:
    """Every game ale-py ships a ROM for, as the official code names them (snake_case: ``pong``, ``ms_pacman``)."""
    try:
        from ale_py import roms
    except ImportError as error:
        raise _missing(error) from error
    return sorted(roms.get_all_rom_ids())


def check_atari_game(game: str) -> None:
    """``game`` is a game ale-py has a ROM for; otherwise ValueError naming ``env.task`` and the closest games."""
    games = atari_games()
    if game not in games:
        close = difflib.get_close_matches(game, games, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"the {len(games)} games include {', '.join(games[:5])}, ..."
        raise ValueError(f"config field 'env.task': unknown Atari game {game!r} (ale-py's ROM names, snake_case); {hint}")


def pool_resize_gray(screens: list[np.ndarray], size: int, gray: bool, aggregate: str = "max") -> np.ndarray:
    """The official observation of the kept screens ``[H, W, 3]`` uint8: pooled, resized, optionally gray.

    Returns ``[size, size, C]`` uint8 with C = 1 (``gray``) or 3.
    """
    image = np.amax(screens, 0) if aggregate == "max" else np.mean(screens, 0).astype(np.uint8)
    image = np.array(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    if gray:
        image = (image * GRAY_WEIGHTS).sum(-1).astype(image.dtype)[:, :, None]
    return image


class AtariEnv(EnvBase):
    """One Atari game as a TorchRL environment with DreamerV3's preprocessing (module docstring).

    Shapes:
        pixels: ``[C, image_size, image_size]`` uint8 (C = 1 with ``gray``, else 3);
        action: one-hot ``[n]`` float32 over the action set (``actions``: all 18 or the game's minimal set);
        reward: ``[1]`` float32; done, terminated, truncated: ``[1]`` bool.
    """

    renders = True

    def __init__(self, game: str, *, image_size: int = 64, action_repeat: int = 4, episode_frames: int = 108_000,
                 sticky: bool = True, gray: bool = True, actions: str = "all", lives: str = "unused", noops: int = 30,
                 pooling: int = 2, aggregate: str = "max", seed: int = 0, device="cpu"):
        check_env_numbers(image_size, action_repeat, episode_frames)
        for name, ok, want, got in (("actions", actions in ("all", "needed"), "all or needed", actions),
                                    ("lives", lives in ("unused", "reset"), "unused or reset", lives),
                                    ("aggregate", aggregate in ("max", "mean"), "max or mean", aggregate),
                                    ("noops", noops >= 0, ">= 0", noops), ("pooling", pooling >= 1, ">= 1", pooling)):
            if not ok:
                raise ValueError(f"config field 'env.atari.{name}': expected {want}, got {got!r}")
        check_atari_game(game)
        try:
            from ale_py.env import AtariEnv as ALEGymEnv
        except ImportError as error:
            raise _missing(error) from error
        super().__init__(device=device, batch_size=torch.Size([]))
        self.game, self.image_size, self.action_repeat, self.episode_frames = game, image_size, action_repeat, episode_frames
        self.gray, self.lives, self.noops, self.pooling, self.aggregate = gray, lives, noops, pooling, aggregate
        self._env = ALEGymEnv(game=game, obs_type="rgb", frameskip=1, repeat_action_probability=0.25 if sticky else 0.0,
                              full_action_space=actions == "all")  # no emulator limit: episode_frames counts after the no-ops
        self._seed, self._rng = seed, np.random.default_rng(seed)
        self._screens: list[np.ndarray] = []
        self._frames, self._lives, self.episodes = 0, 0, 0
        channels = 1 if gray else 3
        self.action_spec = OneHot(int(self._env.action_space.n), dtype=torch.float32, device=self.device)
        self.observation_spec = Composite(
            {PIXELS: Bounded(0, 255, shape=(channels, image_size, image_size), dtype=torch.uint8, device=self.device)},
            device=self.device)
        self.reward_spec, self.done_spec = step_specs(self.device)

    @property
    def gym_env(self):
        """The wrapped ale-py gymnasium env."""
        return self._env

    @property
    def ale(self):
        """The emulator (``ale_py.ALEInterface``)."""
        return self._env.unwrapped.ale

    @property
    def physics_errors(self) -> int:
        """Always 0: only MuJoCo's physics faults are counted (:class:`~dreamer_trl.data.dmc.DMCEnv`)."""
        return 0

    def task_random_state(self) -> dict:
        """The random streams of the next episodes as JSON data: the no-op generator and the emulator's random
        state (before the first reset: the seed that reset will use)."""
        rng = {"bit_generator": self._rng.bit_generator.state}
        if self._seed is not None:
            return {**rng, "seed": self._seed}
        ale = pickle.dumps(self.ale.cloneState(include_rng=True))
        return {**rng, "ale": base64.b64encode(ale).decode("ascii")}

    def set_task_random_state(self, state: dict) -> None:
        """Restore a :meth:`task_random_state`, so the next episodes match those of the saved env."""
        self._rng.bit_generator.state = state["bit_generator"]
        if "seed" in state:
            self._seed = state["seed"]
            return
        self.ale.restoreState(pickle.loads(base64.b64decode(state["ale"])))
        self._seed = None

    def render(self, size: int | None = None) -> np.ndarray:
        """The emulator's current RGB screen resized (Pillow bilinear) to ``[size, size, 3]`` uint8 (default image_size)."""
        size = size or self.image_size
        return np.array(Image.fromarray(self.ale.getScreenRGB()).resize((size, size), Image.BILINEAR))

    def _keep(self, screen: np.ndarray) -> None:
        self._screens = [screen, *self._screens[: self.pooling - 1]]

    def _pixels(self) -> torch.Tensor:
        image = pool_resize_gray(self._screens, self.image_size, self.gray, self.aggregate)
        return torch.from_numpy(image).permute(2, 0, 1).contiguous().to(self.device)

    def _flags(self, terminated: bool, truncated: bool) -> dict:
        return end_flags(terminated, truncated, self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        screen, _ = self._env.reset(seed=self._seed)  # seeded once: later resets continue the emulator's stream
        self._seed = None
        for _ in range(int(self._rng.integers(self.noops + 1))):
            screen, _, game_over, _, _ = self._env.step(NOOP)
            if game_over:
                screen, _ = self._env.reset()
        self._screens = [screen] * self.pooling
        self._frames, self._lives = 0, self.ale.lives()
        self.episodes += 1
        return TensorDict({PIXELS: self._pixels(), **self._flags(False, False)}, batch_size=self.batch_size,
                          device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(ACTION)
        if not torch.isfinite(action).all():
            raise ValueError(f"Non-finite values in {ACTION!r}: {action.tolist()}")
        ale, act = self.ale, self._env.unwrapped._action_set[int(action.argmax(-1))]
        reward, terminated, truncated = 0.0, False, False
        for repeat in range(self.action_repeat):  # the emulator's own act: what the gymnasium env's step does
            reward += float(ale.act(act))
            self._frames += 1
            if repeat >= self.action_repeat - self.pooling:  # only the kept frames' screens are read
                self._keep(ale.getScreenRGB())
            game_over = ale.game_over(with_truncation=False)
            lives = ale.lives()
            terminated = game_over or (self.lives == "reset" and 0 < lives < self._lives)
            self._lives = lives
            truncated = not terminated and self._frames >= self.episode_frames
            if terminated or truncated:
                break
        out = {PIXELS: self._pixels(), REWARD: torch.tensor([reward], dtype=torch.float32, device=self.device),
               **self._flags(bool(terminated), bool(truncated))}
        return TensorDict(out, batch_size=self.batch_size, device=self.device)

    def _set_seed(self, seed: int | None) -> None:
        self._seed, self._rng = seed, np.random.default_rng(seed)  # the next episodes: a fresh env's with ``seed``

    def close(self, *, raise_if_closed: bool = True) -> None:
        self._env.close()
        super().close(raise_if_closed=raise_if_closed)


def make_atari_env(game: str, *, seed: int = 0, device="cpu", **settings) -> EnvBase:
    """An :class:`AtariEnv` (``settings``: its keyword arguments) in a ``TransformedEnv`` with ``InitTracker``."""
    return TransformedEnv(AtariEnv(game, seed=seed, device=device, **settings), InitTracker())
