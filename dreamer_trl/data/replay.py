"""Sequence replay buffer: memory-mapped storage of collector rows, sampled as trajectory windows.

Each row is one agent step (layout in :mod:`dreamer_trl.keys`), stored once: the next
observation is the following row, so ``("next", "pixels")`` and other copies are dropped on write. The final
observation of an episode, which no later row holds, is written as a row of its own after the row whose
``("next", "done")`` ended the episode ("is_last" True; :func:`with_final_rows`), as the official Dreamer drivers
store an episode's last step: the final reward and terminal flag are then a row's targets like any other (the
world-model loss reads row t's reward and continue targets from row t-1), and each frame is still stored once.
A sample is ``B`` windows of ``T = seq_len`` consecutive rows, drawn uniformly among all valid windows;
which windows are valid depends on ``windows``:

- ``"episode"`` (the default): the rows of a single trajectory and episode, so the first and last ``T - 1``
  rows of each episode lie in fewer windows than its middle rows;
- ``"stream"``: the rows of a single env's continuing stream, across episode ends, as the 2023 DreamerV3 replay
  (danijar/dreamerv3 423291a, ``embodied/replay/generic.py``, ``Generic.add`` keeps one window per step of each
  worker's stream): every row past a stream's first ``T - 1`` lies in ``T`` windows. Rows where an episode
  begins keep their "is_init" inside the window, so the world model restarts its state there and its losses
  skip the reward and continue targets that would cross the reset. A stream is one env of the collector's
  batch (``("collector", "stream_ids")``, written on ``extend``: the env's index in a ``[n_envs, T']`` batch,
  0 for ``[N]`` rows). The trainer's envs live for the whole run and each checkpoint segment starts them on a
  fresh episode (in a resumed run as in the uninterrupted one), so a window over a segment boundary crosses
  an episode start like any other.

Windows follow each trajectory's rows in write order rather than storage order, so they may span
several ``extend`` calls even when a batched env interleaves its envs' rows, and may span the
point where the circular storage wraps around. Rows overwritten by the writer simply disappear
from their trajectory (always its oldest rows), which leaves the rest contiguous.

Rows that come without ``("collector", "traj_ids")`` (e.g. from ``env.rollout()``) get one fresh trajectory id
per env per write, and rows without "is_init" have it derived from ``("next", "done")``: episodes then end
where the done flags say. Pixels are stored as uint8; float ``[0, 1]`` frames (TorchRL's ``ToTensorImage``)
are quantised back to uint8 on write.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import LazyMemmapStorage, RoundRobinWriter, TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import Sampler

from dreamer_trl.keys import (
    ACTION,
    BELIEF,
    DONE,
    ENCODED_LATENTS,
    IS_INIT,
    IS_LAST,
    OBSERVATION,
    PIXELS,
    PREV_ACTION,
    REWARD,
    STATE,
    STREAM_IDS,
    TERMINATED,
    TRAJ_IDS,
    TRUNCATED,
    MissingKeysError,
)
from dreamer_trl.model.pixels import pixels_as_uint8

_KEPT_UNDER_NEXT = {REWARD, DONE, TERMINATED, TRUNCATED}
# The policy's recurrent carry: recomputed by the world model during training.
_DROPPED = {STATE, BELIEF, ENCODED_LATENTS, "episode_reward"}
WINDOWS = ("episode", "stream")  # what a replay window may span (module docstring)


def strip_for_storage(td: TensorDictBase, keep_latents: bool = False) -> TensorDictBase:
    """Drops what need not be stored and flattens the batch to rows.

    Removes ``("next", k)`` for observations and for every ``k`` that duplicates a root key,
    except the reward and end-of-episode flags, and removes ``"state"``, ``"belief"`` and
    ``"encoded_latents"`` (``keep_latents``: "state" and "belief" stay, the policy's posterior s_t, h_t after
    o_t, the replay context's first value). A ``[n_envs, T]`` batch is flattened env-major, so each env's rows
    stay contiguous and in time order.

    Shapes:
        td: ``[N]`` or ``[n_envs, T]``; pixels ``[N, C, Hh, W]`` uint8.
        returns: ``[N]`` (``N = n_envs * T``).
    """
    root = set(td.keys())
    dropped = _DROPPED - {STATE, BELIEF} if keep_latents else _DROPPED
    drop = [key for key in dropped if key in root]
    if "next" in root:
        for key in td.get("next").keys():
            duplicate = key in root or key in (PIXELS, OBSERVATION) or key in _DROPPED
            if duplicate and key not in _KEPT_UNDER_NEXT:
                drop.append(("next", key))
    out = td.exclude(*drop)
    if PIXELS in root and out.get(PIXELS).dtype != torch.uint8:
        out.set(PIXELS, pixels_as_uint8(out.get(PIXELS)))  # float [0, 1] frames; other dtypes are refused
    if out.batch_dims > 1:
        out = out.reshape(-1)
    return out


def with_final_rows(td: TensorDictBase) -> TensorDictBase:
    """Rows with an episode's final observation inserted after each row whose ``("next", "done")`` is set, and
    "is_last" on every row (True on the inserted ones).

    An inserted row holds the ended row's ``("next", k)`` as ``k`` for every observation and other key kept
    both at the root and under "next" (o_T, a step counter), "prev_action" = the ended row's action, "action"
    zeros, "is_init" False, "state" / "belief" zeros (the policy never filtered o_T; a replay context read from
    this row is reset by the next row's "is_init"), and inert ``("next", ...)`` fields: zero reward, flags
    False. Ids ("collector" keys) are the episode's. Rows without ``("next", "done")`` gain only "is_last".

    Shapes: td ``[N]`` (time last, env-major) -> ``[N + E]``, E the episode ends in td.
    """
    n = td.batch_size[0]
    td = td.clone(False).set(IS_LAST, torch.zeros(n, 1, dtype=torch.bool))
    done_key = ("next", DONE)
    if done_key not in td.keys(include_nested=True):
        return td
    ends = td.get(done_key).reshape(n).bool().nonzero().squeeze(-1)
    if ends.numel() == 0:
        return td
    ended = td[ends]
    nxt, root = ended.get("next"), set(ended.keys())
    observed = [k for k in (PIXELS, OBSERVATION) if k in root]
    lacking = [k for k in observed if k not in nxt.keys()]
    if lacking:
        raise MissingKeysError(f"replay rows that end an episode need the final observation ('next', {lacking[0]!r}) "
                               "(a TorchRL collector or env.rollout() writes it): it is stored as a row of its own")
    final = ended.clone()
    for key in nxt.keys():
        if key in root and key not in _KEPT_UNDER_NEXT and key not in _DROPPED:
            final.set(key, nxt.get(key).clone())
    if PREV_ACTION in root:
        final.set(PREV_ACTION, ended.get(ACTION).clone())
    if ACTION in root:
        final.set(ACTION, torch.zeros_like(ended.get(ACTION)))
    for key in (STATE, BELIEF):
        if key in root:
            final.set(key, torch.zeros_like(ended.get(key)))
    if IS_INIT in root:
        final.set(IS_INIT, torch.zeros_like(ended.get(IS_INIT)))
    final.set(IS_LAST, torch.ones_like(ended.get(IS_LAST)))
    for key in _KEPT_UNDER_NEXT & set(nxt.keys()):
        final.set(("next", key), torch.zeros_like(nxt.get(key)))
    place = torch.cat([2 * torch.arange(n), 2 * ends + 1]).argsort()  # each final row right after its ended row
    return torch.cat([td, final.select(*td.keys(include_nested=True, leaves_only=True))])[place]


def _leaves_first(td: TensorDictBase) -> TensorDictBase:
    """``td`` with its tensors before its nested TensorDicts, each in their order: the order a memory-mapped
    TensorDict loads in (:func:`load_buffer`), so a resumed buffer saves byte for byte as the uninterrupted one."""
    nested = [k for k in td.keys() if isinstance(td.get(k), TensorDictBase)]
    return td.select(*[k for k in td.keys() if k not in nested], *nested)


def mark_episodes(td: TensorDictBase, first_id: int) -> TensorDictBase:
    """Adds what windows need and plain rollouts lack: trajectory ids (one per env, from ``first_id``) when
    ``("collector", "traj_ids")`` is absent, and "is_init" from ``("next", "done")`` when absent.

    Shapes: td ``[*E, T]`` (time last; ``[T]`` for one env, ``[]`` for one row) -> ``[*E, T]`` with ids
    ``[*E, T]`` and is_init ``[*E, T, 1]``.
    """
    if td.batch_dims == 0:
        td = td.unsqueeze(0)
    present = set(td.keys(include_nested=True))
    if IS_INIT not in present:
        if ("next", DONE) not in present:
            raise MissingKeysError(f"replay rows need {IS_INIT!r} (torchrl.envs.InitTracker) or ('next', 'done') "
                                   f"to find episode starts; they have {sorted(map(str, present))}")
        done = td.get(("next", DONE)).reshape(*td.batch_size, 1).bool()
        td = td.clone(False).set(IS_INIT, torch.cat([torch.ones_like(done[..., :1, :]), done[..., :-1, :]], -2))
    if TRAJ_IDS not in present:
        envs = td.batch_size[:-1].numel()
        ids = first_id + torch.arange(envs, dtype=torch.long).reshape(*td.batch_size[:-1], 1)
        td = td.clone(False).set(TRAJ_IDS, ids.expand(td.batch_size).clone())
    return td


def mark_streams(td: TensorDictBase) -> TensorDictBase:
    """Adds ``("collector", "stream_ids")`` when absent: each row's env, its index in the leading batch dims.

    Shapes: td ``[*E, T]`` (``[T]`` for one env: all 0; ``[]`` for one row) -> ``[*E, T]`` with ids ``[*E, T]``.
    """
    if td.batch_dims == 0:
        td = td.unsqueeze(0)
    if STREAM_IDS in td.keys(include_nested=True):
        return td
    envs = td.batch_size[:-1].numel()
    ids = torch.arange(envs, dtype=torch.long).reshape(*td.batch_size[:-1], 1)
    return td.clone(False).set(STREAM_IDS, ids.expand(td.batch_size).clone())


class TrajectoryWindowSampler(Sampler):
    """Samples windows of ``seq_len`` consecutive rows of one trajectory and one episode (``windows="episode"``)
    or of one env's stream across episode ends (``windows="stream"``).

    Rows are ordered by (trajectory id or stream id, write age); a window start is valid when the window's
    first and last rows lie in the same run of that order, a run ending where the id changes or, for
    "episode", where ``is_init`` is set. Overwritten rows are always the oldest of their trajectory or stream,
    so a run is contiguous in time and never crosses the write head. The order is rebuilt lazily after each
    write (one sort of the stored ids: about 2 ms per 100k rows).

    Shapes:
        sample(storage, batch_size) -> index ``[B, T]`` into the storage,
        with ``B = batch_size // seq_len`` and ``T = seq_len``.
    """

    def __init__(self, seq_len: int, traj_key=TRAJ_IDS, init_key=IS_INIT, windows: str = "episode",
                 stream_key=STREAM_IDS):
        if seq_len < 1:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        if windows not in WINDOWS:
            raise ValueError(f"windows must be one of {', '.join(WINDOWS)}, got {windows!r}")
        self.seq_len = seq_len
        self.traj_key = traj_key
        self.init_key = init_key
        self.windows = windows
        self.stream_key = stream_key
        self._newest = None  # storage index of the last row written
        self._order = None  # storage indices sorted by (trajectory, write age); None when stale
        self._starts = None  # positions in _order where a valid window begins
        self._longest = 0  # longest run, for the error message

    def add(self, index) -> None:
        self._newest, self._order = int(index), None

    def extend(self, index: torch.Tensor) -> None:
        if index.numel():
            self._newest, self._order = int(index.reshape(-1)[-1]), None

    def _index_windows(self, storage) -> None:
        n, capacity = len(storage), storage.max_size
        rows = storage._storage
        stream = self.windows == "stream"
        needed = (self.stream_key, self.init_key) if stream else (self.traj_key, self.init_key)
        missing = [k for k in needed if k not in rows.keys(include_nested=True)]
        if missing:
            raise MissingKeysError(f"stored rows lack {', '.join(map(repr, missing))}: write through "
                                   f"SequenceReplayBuffer.extend (windows={self.windows!r}), which adds them "
                                   "to plain rollouts")
        traj = rows.get(self.stream_key if stream else self.traj_key)[:n].reshape(n).to(torch.long)
        cursor = n if self._newest is None else (self._newest + 1) % capacity
        age = (torch.arange(n) - cursor) % capacity  # 0 = oldest row still stored
        order = ((traj - traj.min()) * capacity + age).argsort()
        traj = traj[order]
        new_run = torch.ones(n, dtype=torch.bool)
        if stream:  # an episode start inside a stream is no boundary
            new_run[1:] = traj[1:] != traj[:-1]
        else:
            init = rows.get(self.init_key)[:n].reshape(n)[order]
            new_run[1:] = (traj[1:] != traj[:-1]) | init[1:]
        run = new_run.cumsum(0)
        length = self.seq_len
        self._starts = (run[length - 1:] == run[: max(n - length + 1, 0)]).nonzero().squeeze(-1)
        self._longest = int(torch.bincount(run).max()) if n else 0
        self._order = order

    def sample(self, storage, batch_size: int) -> tuple[torch.Tensor, dict]:
        if batch_size % self.seq_len:
            raise ValueError(f"batch_size={batch_size} rows is not a multiple of seq_len={self.seq_len}")
        if len(storage) == 0:
            raise ValueError(f"cannot sample windows of seq_len={self.seq_len}: the buffer is empty")
        if self._order is None:
            self._index_windows(storage)
        if self._starts.numel() == 0:
            what = "env stream" if self.windows == "stream" else "trajectory"
            raise ValueError(
                f"no stored {what} is at least seq_len={self.seq_len} rows long yet "
                f"(longest stored: {self._longest} rows)"
            )
        pick = torch.randint(self._starts.numel(), (batch_size // self.seq_len,), generator=self._rng)
        positions = self._starts[pick, None] + torch.arange(self.seq_len)  # (B, T)
        return self._order[positions], {}

    def all_windows(self, storage) -> torch.Tensor:
        """Every valid window, ``[W, T]`` storage indices (what :meth:`sample` draws from, uniformly)."""
        if self._order is None:
            self._index_windows(storage)
        return self._order[self._starts[:, None] + torch.arange(self.seq_len)]

    def _empty(self) -> None:
        self._newest, self._order = None, None

    def state_dict(self) -> dict:
        return {"newest": self._newest}

    def load_state_dict(self, state_dict: dict) -> None:
        self._newest, self._order = state_dict["newest"], None

    def dumps(self, path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "sampler.json").write_text(json.dumps(self.state_dict()))

    def loads(self, path) -> None:
        self.load_state_dict(json.loads((Path(path) / "sampler.json").read_text()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seq_len={self.seq_len}, windows={self.windows!r})"


class SequenceReplayBuffer(TensorDictReplayBuffer):
    """Replay buffer that strips rows on write and samples ``[B, T]`` trajectory windows.

    ``windows``: "episode" (windows inside one episode) or "stream" (inside one env's stream, across episode
    ends; the rows then also store ``("collector", "stream_ids")``): see the module docstring.

    ``keep_latents``: rows keep the policy's "state" and "belief" (the posterior after each row's observation),
    and :meth:`write_latents` overwrites them with the training posteriors (DreamerV3's replay context).

    Shapes:
        extend(td): ``[N]`` or ``[n_envs, T']`` collector output.
        sample(): ``[B, T]`` on ``device``, pixels ``[B, T, C, Hh, W]`` uint8.
    """

    def __init__(self, *, capacity: int, batch_size: int, seq_len: int,
                 scratch_dir: str | None = None, device="cpu", windows: str = "episode", keep_latents: bool = False):
        super().__init__(
            # existsok: a scratch directory may be reused by a rerun; its contents are disposable.
            storage=LazyMemmapStorage(capacity, scratch_dir=scratch_dir, existsok=True),
            sampler=TrajectoryWindowSampler(seq_len, windows=windows),
            # The plain writer: the TensorDict one also stores each row's own "index" (8 bytes).
            writer=RoundRobinWriter(),
            batch_size=batch_size * seq_len,
        )
        self.capacity, self.seq_len, self.device = capacity, seq_len, torch.device(device)
        self.windows, self.keep_latents = windows, keep_latents
        # sample(batch_size) counts windows, not rows: silence the parent's batch-size warning.
        self._warned_batch_size_conflict = True

    def _next_traj_id(self) -> int:
        n = len(self)
        if n == 0 or TRAJ_IDS not in self.storage._storage.keys(include_nested=True):
            return 0
        return int(self.storage._storage.get(TRAJ_IDS)[:n].max()) + 1

    def _marked(self, data: TensorDictBase) -> TensorDictBase:
        """``data`` with trajectory ids and "is_init" (see :func:`mark_episodes`), and with "stream" windows
        the env of each row (see :func:`mark_streams`)."""
        present = set(data.keys(include_nested=True))
        if TRAJ_IDS not in present or IS_INIT not in present:
            data = mark_episodes(data, self._next_traj_id())
        return mark_streams(data) if self.windows == "stream" else data

    def _rows(self, data: TensorDictBase) -> TensorDictBase:
        """``data`` as the rows to store ``[N']``: marked, flattened env-major, final observations inserted
        (:func:`with_final_rows`), stripped (:func:`strip_for_storage`)."""
        marked = self._marked(data)
        return _leaves_first(strip_for_storage(with_final_rows(marked.reshape(-1)), self.keep_latents))

    def add(self, data: TensorDictBase) -> int:
        """Store one row (and, when it ends an episode, its final observation's row); returns the row's index."""
        rows = self._rows(data)
        if rows.batch_size[0] == 1:
            return super().add(rows[0])
        return int(super().extend(rows)[0])

    def extend(self, tensordicts: TensorDictBase, **kwargs) -> torch.Tensor:
        data = self._rows(tensordicts)
        # Writing more rows than fit at once would overwrite rows of this same call.
        return super().extend(data[-self.capacity:], **kwargs)

    def sample(self, batch_size: int | None = None, return_info: bool = False, **kwargs):
        """Samples ``batch_size`` windows (default: the constructor's) as a ``[B, T]`` TensorDict."""
        rows = None if batch_size is None else batch_size * self.seq_len
        data, info = super().sample(rows, return_info=True, **kwargs)
        data = data.to(self.device, non_blocking=True)
        return (data, info) if return_info else data


    def write_latents(self, index: torch.Tensor, state: torch.Tensor, belief: torch.Tensor) -> None:
        """Overwrite the stored "state" / "belief" of rows ``index`` (in place: the buffer's length, writer and
        windows are unchanged; the trainer writes between a sample and the next collection, so ``index`` still
        holds the sampled rows).

        Shapes: index ``[*N]`` storage indices (a sample's "index"), state ``[*N, S]``, belief ``[*N, D]``.
        """
        if not self.keep_latents:
            raise RuntimeError("write_latents: this buffer was built without keep_latents")
        rows = self.storage._storage
        flat = index.reshape(-1).to(torch.long).cpu()
        rows.get(STATE)[flat] = state.detach().reshape(flat.numel(), -1).to("cpu", rows.get(STATE).dtype)
        rows.get(BELIEF)[flat] = belief.detach().reshape(flat.numel(), -1).to("cpu", rows.get(BELIEF).dtype)

def make_replay_buffer(capacity: int, batch_size: int, seq_len: int, *,
                       scratch_dir: str | None = None, device="cpu", windows: str = "episode",
                       keep_latents: bool = False) -> SequenceReplayBuffer:
    """Builds the replay buffer: ``capacity`` rows memory-mapped in ``scratch_dir`` (a temporary
    directory if None); ``sample()`` returns ``batch_size`` windows of ``seq_len`` rows, inside one episode
    (``windows="episode"``) or one env's stream across episode ends (``"stream"``; module docstring);
    ``keep_latents``: rows keep the policy's posterior for the replay context (:class:`SequenceReplayBuffer`).

    Shapes:
        sample(): ``[B, T]`` with ``B = batch_size``, ``T = seq_len``.
    """
    return SequenceReplayBuffer(capacity=capacity, batch_size=batch_size, seq_len=seq_len,
                                scratch_dir=scratch_dir, device=device, windows=windows, keep_latents=keep_latents)


def bytes_per_frame(rb: TensorDictReplayBuffer) -> float:
    """Storage bytes per stored row: the sum over stored leaves of element size x numel per row."""
    storage = rb.storage
    if not storage.initialized:
        raise ValueError("the replay buffer storage is empty: nothing written yet")
    leaves = storage._storage.values(include_nested=True, leaves_only=True)
    return float(sum(leaf.element_size() * leaf[0].numel() for leaf in leaves))


def save_buffer(rb: SequenceReplayBuffer, path: str | Path) -> None:
    """Copy the stored rows (memory-mapped files, JSON metadata) and the write cursor into ``path``."""
    path = Path(path)
    n = len(rb)
    meta = {"len": n, "capacity": rb.capacity, "writer": {"cursor": rb._writer._cursor,
            "write_count": rb._writer._write_count}, "sampler": rb._sampler.state_dict()}
    if n:
        rb.storage._storage[:n].memmap(path / "rows", num_threads=0, copy_existing=True)
    (path / "buffer.json").write_text(json.dumps(meta))


def load_buffer(rb: SequenceReplayBuffer, path: str | Path) -> None:
    """Restore what :func:`save_buffer` wrote into an empty buffer of the same capacity (no pickle)."""
    path = Path(path)
    meta = json.loads((path / "buffer.json").read_text())
    if meta["capacity"] != rb.capacity:
        raise ValueError(f"buffer_capacity {rb.capacity} differs from the checkpoint's {meta['capacity']}")
    if meta["len"]:
        rows = TensorDict.load_memmap(path / "rows", allow_pickle=False)
        if IS_LAST not in rows.keys():  # saved before final observations were stored (none is a final row)
            rows = rows.clone(False).set(IS_LAST, torch.zeros(meta["len"], 1, dtype=torch.bool))
        rb.storage.set(torch.arange(meta["len"]), rows)
    rb._writer._cursor = meta["writer"]["cursor"]
    rb._writer._write_count = meta["writer"]["write_count"]
    rb._sampler.load_state_dict(meta["sampler"])


def mark_last_row_truncated(rb: SequenceReplayBuffer) -> None:
    """End the open episode at the newest stored row (done and truncated), e.g. at a save point."""
    if len(rb) == 0:
        return
    newest = (rb._writer._cursor - 1) % rb.capacity
    rows = rb.storage._storage
    for key in (("next", DONE), ("next", TRUNCATED)):
        if key in rows.keys(include_nested=True):
            rows.get(key)[newest] = True


def check_disk_space(directory: str | Path, capacity: int, row_bytes: int, copies: int = 1,
                     margin: float = 1.1) -> None:
    """Refuse to start when ``directory`` cannot hold ``copies`` x ``capacity`` rows (the buffer and its
    checkpoint copies); a full disk under a memory-mapped buffer kills the process with SIGBUS hours
    later (docs/reliability.md P8)."""
    directory = Path(directory)
    probe = directory
    while not probe.exists():
        probe = probe.parent
    need = int(copies * capacity * row_bytes * margin)
    free = shutil.disk_usage(probe).free
    if need > free:
        raise ValueError(f"buffer_capacity {capacity} needs about {need / 2**30:.2f} GiB in {directory} "
                         f"({row_bytes} bytes per row, {copies} copies: the buffer and its checkpoints), "
                         f"but only {free / 2**30:.2f} GiB are free")
