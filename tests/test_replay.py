"""Tests for dreamer_trl.data.replay: windows stay inside one trajectory and one episode (or, with windows="stream", one
env's stream across episode ends), rows stored once."""
import pytest
import torch
from tensordict import TensorDict

from dreamer_trl.data.replay import bytes_per_frame, make_replay_buffer, strip_for_storage
from dreamer_trl.keys import (
    ACTION,
    BELIEF,
    IS_INIT,
    NEXT_REWARD,
    OBSERVATION,
    PIXELS,
    PREV_ACTION,
    STATE,
    STREAM_IDS,
    TRAJ_IDS,
)

B, L = 16, 8


def make_rows(traj_ids, steps, episode_ends, pixel_shape=(3, 8, 8), action_dim=2):
    """Collector-like rows; observation = (traj id, step), pixels = step mod 256.

    Shapes: all inputs ``[N]``; returns a TensorDict ``[N]``.
    """
    n = len(traj_ids)
    traj_ids = torch.as_tensor(traj_ids, dtype=torch.long)
    steps = torch.as_tensor(steps, dtype=torch.long)
    done = torch.as_tensor(episode_ends, dtype=torch.bool).unsqueeze(-1)
    obs = torch.stack([traj_ids, steps], -1).float()
    pixels = (steps % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, *pixel_shape).clone()
    next_pixels = ((steps + 1) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, *pixel_shape).clone()
    is_init = (steps == 0).unsqueeze(-1)
    flags = torch.zeros(n, 1, dtype=torch.bool)
    return TensorDict({
        PIXELS: pixels, OBSERVATION: obs, IS_INIT: is_init,
        ACTION: torch.randn(n, action_dim), PREV_ACTION: torch.randn(n, action_dim),
        "done": flags, "terminated": flags.clone(), "truncated": flags.clone(),
        STATE: torch.randn(n, 4), BELIEF: torch.randn(n, 6),
        "collector": {"traj_ids": traj_ids},
        "next": {
            PIXELS: next_pixels, OBSERVATION: obs + torch.tensor([0.0, 1.0]),
            IS_INIT: torch.zeros(n, 1, dtype=torch.bool), PREV_ACTION: torch.randn(n, action_dim),
            "reward": torch.randn(n, 1), "done": done, "terminated": done.clone(),
            "truncated": flags.clone(), STATE: torch.randn(n, 4),
        },
    }, batch_size=[n])


def episode_stream(lengths, first_id=0, id_stride=1):
    """Rows of consecutive episodes of the given lengths, one trajectory id per episode. Stored, each episode
    gains its final observation's row (step = its length)."""
    ids, steps, ends = [], [], []
    for k, length in enumerate(lengths):
        ids += [first_id + k * id_stride] * length
        steps += list(range(length))
        ends += [False] * (length - 1) + [True]
    return make_rows(ids, steps, ends)


def chunks(td, sizes):
    start = 0
    for size in sizes:
        yield td[start:start + size]
        start += size
    assert start == td.shape[0]


def check_windows(sample, seq_len=L):
    """Each row: one trajectory, consecutive steps, episode start only at index 0."""
    obs = sample[OBSERVATION]
    traj, step = obs[..., 0], obs[..., 1]
    assert (traj == traj[:, :1]).all(), "a window mixes trajectories"
    assert (sample[TRAJ_IDS] == traj.long()).all()
    assert (step.diff(dim=1) == 1).all(), "a window is not consecutive in time"
    assert not sample[IS_INIT][:, 1:].any(), "a window crosses an episode start"
    assert (sample[PIXELS][..., 0, 0, 0] == (step.long() % 256).to(torch.uint8)).all()
    assert sample.shape == torch.Size([sample.shape[0], seq_len])


LENGTHS = [3, 20, 7, 15, 2, 30, 8, 1, 12, 9, 40, 5, 11]


def test_sample_shape_and_dtypes(tmp_path):
    rb = make_replay_buffer(1000, B, L, scratch_dir=str(tmp_path))
    rb.extend(episode_stream(LENGTHS))
    sample = rb.sample()
    assert sample.batch_size == torch.Size([B, L])
    assert sample[PIXELS].shape == (B, L, 3, 8, 8) and sample[PIXELS].dtype == torch.uint8
    assert sample[OBSERVATION].dtype == torch.float32
    assert sample[NEXT_REWARD].shape == (B, L, 1)
    assert sample[IS_INIT].dtype == torch.bool
    assert sample.device == torch.device("cpu")
    check_windows(sample)


def test_windows_stay_in_one_episode_across_extend_calls(tmp_path):
    rb = make_replay_buffer(1000, B, L, scratch_dir=str(tmp_path))
    stream = episode_stream(LENGTHS)
    for part in chunks(stream, [5, 17, 1, 40, 23, 60, 17]):
        rb.extend(part)
    starts_seen = set()
    for _ in range(50):
        sample = rb.sample()
        check_windows(sample)
        starts_seen.update(map(tuple, sample[OBSERVATION][:, 0].tolist()))
    # Every valid start of the long episodes gets drawn, including windows spanning extend calls.
    expected = {(k, s) for k, n in enumerate(LENGTHS) for s in range(n + 1 - L + 1)}  # n rows + the final one
    assert starts_seen == expected


def test_is_init_is_a_boundary_even_with_one_traj_id(tmp_path):
    rb = make_replay_buffer(1000, B, L, scratch_dir=str(tmp_path))
    rows = episode_stream([10, 12, 9])
    rows[TRAJ_IDS] = torch.zeros(rows.shape[0], dtype=torch.long)
    rows[OBSERVATION][:, 0] = 0
    rows["next", OBSERVATION][:, 0] = 0
    rb.extend(rows)
    for _ in range(20):
        check_windows(rb.sample())


def two_env_batches(lengths, frames_per_env, n_batches):
    """[2, T] batches from two envs with disjoint trajectory ids (even and odd)."""
    env0 = episode_stream(lengths, first_id=0, id_stride=2)
    env1 = episode_stream(lengths[::-1], first_id=1, id_stride=2)
    for k in range(n_batches):
        rows = slice(k * frames_per_env, (k + 1) * frames_per_env)
        yield torch.stack([env0[rows], env1[rows]], 0)


def test_two_interleaved_envs_never_mix(tmp_path):
    rb = make_replay_buffer(1000, B, L, scratch_dir=str(tmp_path))
    ends = 0
    for batch in two_env_batches(LENGTHS, frames_per_env=5, n_batches=30):
        assert batch.batch_size == torch.Size([2, 5])
        rb.extend(batch)
        ends += int(batch["next", "done"].sum())
    assert len(rb) == 300 + ends  # each ended episode's final observation is a row
    spans_batches = False
    for _ in range(50):
        sample = rb.sample()
        check_windows(sample)
        spans_batches |= bool((sample["index"].diff(dim=1) != 1).any())
    assert spans_batches, "windows of an env should continue across [2, T] batches"


@pytest.mark.parametrize("two_envs", [False, True])
def test_circular_overwrite_never_crosses_or_mixes(tmp_path, two_envs):
    capacity = 50
    rb = make_replay_buffer(capacity, B, L, scratch_dir=str(tmp_path))
    if two_envs:
        batches = list(two_env_batches(LENGTHS * 2, frames_per_env=3, n_batches=60))
    else:
        batches = list(chunks(episode_stream(LENGTHS * 2), [7] * 45 + [11]))
    wrapped = False
    for batch in batches:
        rb.extend(batch)
        if len(rb) < L:
            continue
        try:
            sample = rb.sample()
        except ValueError:  # a moment with no episode of L rows stored
            continue
        check_windows(sample)
        wrapped |= bool(((sample["index"] == 0) & (sample["index"].roll(1, 1) == capacity - 1)).any())
    assert len(rb) == capacity
    assert wrapped, "no window spanned the storage's wrap point"


def test_split_trajectory_at_wrap_point(tmp_path):
    capacity = 40
    rb = make_replay_buffer(capacity, B, L, scratch_dir=str(tmp_path))
    rb.extend(episode_stream([30]))  # rows 0..29
    rb.extend(episode_stream([25], first_id=1))  # rows 30..39 then 0..14: split by the wrap
    windows = rb.sample(200)
    check_windows(windows)
    traj = windows[OBSERVATION][:, 0, 0]
    assert (traj == 1).any() and (traj == 0).any()  # rows 15..29 of episode 0 survive
    assert windows[OBSERVATION][traj == 0][..., 1].min() >= 15  # its overwritten rows are gone


def test_extend_larger_than_capacity_keeps_newest_rows(tmp_path):
    rb = make_replay_buffer(30, B, L, scratch_dir=str(tmp_path))
    rb.extend(episode_stream([10, 35]))
    assert len(rb) == 30
    sample = rb.sample(100)
    check_windows(sample)
    assert (sample[OBSERVATION][..., 0] == 1).all() and sample[OBSERVATION][..., 1].min() >= 5


def test_next_duplicates_and_carry_are_not_stored(tmp_path):
    rb = make_replay_buffer(100, B, L, scratch_dir=str(tmp_path))
    rb.extend(episode_stream([20]))
    stored = rb.storage._storage
    keys = set(stored.keys(include_nested=True, leaves_only=True))
    for key in [("next", PIXELS), ("next", OBSERVATION), ("next", IS_INIT), ("next", PREV_ACTION),
                ("next", STATE), STATE, BELIEF, "index"]:
        assert key not in keys, key
    for key in [PIXELS, OBSERVATION, ACTION, PREV_ACTION, IS_INIT, NEXT_REWARD, ("next", "done"),
                ("next", "terminated"), ("next", "truncated"), TRAJ_IDS]:
        assert key in keys, key
    assert stored[PIXELS].dtype == torch.uint8


def test_strip_for_storage_flattens_env_major():
    batch = next(two_env_batches([10, 10], frames_per_env=4, n_batches=1))
    rows = strip_for_storage(batch)
    assert rows.batch_size == torch.Size([8])
    assert rows[TRAJ_IDS].tolist() == [0] * 4 + [1] * 4
    assert ("next", PIXELS) not in rows.keys(include_nested=True)


def test_bytes_per_frame_is_one_uint8_frame(tmp_path):
    rb = make_replay_buffer(100, B, L, scratch_dir=str(tmp_path))
    rows = episode_stream([12])
    big = make_rows(rows[TRAJ_IDS], rows[OBSERVATION][:, 1].long(), rows["next", "done"].squeeze(-1),
                    pixel_shape=(3, 64, 64), action_dim=6)
    rb.extend(big)
    frame = 3 * 64 * 64
    assert frame <= bytes_per_frame(rb) < frame + 256


def test_scratch_dir_holds_the_memmaps(tmp_path):
    scratch = tmp_path / "rb"
    rb = make_replay_buffer(100, B, L, scratch_dir=str(scratch))
    rb.extend(episode_stream([20]))
    files = [p for p in scratch.rglob("*") if p.is_file()]
    assert any(p.name.startswith(PIXELS) for p in files), files


def test_error_when_no_trajectory_is_long_enough(tmp_path):
    rb = make_replay_buffer(100, B, L, scratch_dir=str(tmp_path))
    rb.extend(episode_stream([3, 5, 2]))
    with pytest.raises(ValueError, match=r"seq_len=8.*longest stored: 6"):  # 5 rows and the final one
        rb.sample()


def test_save_and_load_buffer_round_trip(tmp_path):
    from dreamer_trl.data.replay import load_buffer, mark_last_row_truncated, save_buffer

    rb = make_replay_buffer(40, 2, 4, scratch_dir=str(tmp_path / "a"))
    for traj, n in enumerate([15, 20, 12]):  # wraps around the 40-row storage
        rows = TensorDict({"observation": torch.randn(n, 3), "action": torch.randn(n, 1),
                           "is_init": torch.arange(n)[:, None] == 0,
                           ("collector", "traj_ids"): torch.full((n,), traj),
                           ("next", "reward"): torch.randn(n, 1), ("next", "done"): torch.zeros(n, 1, dtype=torch.bool),
                           ("next", "truncated"): torch.zeros(n, 1, dtype=torch.bool)}, [n])
        rb.extend(rows)
    mark_last_row_truncated(rb)
    newest = (rb._writer._cursor - 1) % 40
    assert rb.storage._storage["next", "truncated"][newest].item()
    save_buffer(rb, tmp_path / "saved")
    other = make_replay_buffer(40, 2, 4, scratch_dir=str(tmp_path / "b"))
    load_buffer(other, tmp_path / "saved")
    assert len(other) == len(rb) and other._writer._cursor == rb._writer._cursor
    assert (other.storage._storage[:40] == rb.storage._storage[:40]).all()
    torch.manual_seed(0)
    x = rb.sample()
    torch.manual_seed(0)
    assert (other.sample() == x).all()
    with pytest.raises(ValueError, match="buffer_capacity 50 differs"):
        load_buffer(make_replay_buffer(50, 2, 4), tmp_path / "saved")


def test_disk_preflight_refuses_a_capacity_that_does_not_fit(tmp_path):
    from dreamer_trl.data.replay import check_disk_space

    check_disk_space(tmp_path / "new" / "dir", 1000, 12_400)
    with pytest.raises(ValueError, match=r"buffer_capacity 1000000000000 needs about .* GiB .* free"):
        check_disk_space(tmp_path, 10**12, 12_400)


# --- rows from plain rollouts (issue 14): no ("collector", "traj_ids"), maybe no "is_init" ---


def rollout_rows(lengths, drop=(TRAJ_IDS,)):
    """env.rollout()-like rows: episodes back to back, without the collector's trajectory ids."""
    return episode_stream(lengths).exclude(*drop)


def check_episode_windows(sample, seq_len=L):
    """Windows of consecutive steps inside one episode (the observation holds (episode, step))."""
    obs = sample[OBSERVATION]
    assert (obs[..., 0] == obs[:, :1, 0]).all(), "a window mixes episodes"
    assert (obs[..., 1].diff(dim=1) == 1).all(), "a window is not consecutive in time"


@pytest.mark.parametrize("drop", [(TRAJ_IDS,), (TRAJ_IDS, IS_INIT)], ids=["no_traj_ids", "no_traj_ids_no_is_init"])
def test_rollout_rows_without_trajectory_ids_sample_windows_inside_episodes(tmp_path, drop):
    rb = make_replay_buffer(1000, B, L, scratch_dir=str(tmp_path))
    stream = rollout_rows(LENGTHS, drop)
    for part in chunks(stream, [50, 60, len(stream) - 110]):
        rb.extend(part)
    for _ in range(20):
        check_episode_windows(rb.sample())
    # one id per write: a window never spans two writes
    ids = rb.storage._storage.get(TRAJ_IDS)[: len(rb)]
    assert ids.unique().tolist() == [0, 1, 2]


def test_batched_rollout_rows_without_trajectory_ids_never_mix_envs(tmp_path):
    """A [n_envs, T] rollout: one id per env, so windows stay in one env's time series."""
    rb = make_replay_buffer(1000, B, L, scratch_dir=str(tmp_path))
    first, second = episode_stream([30, 12]), episode_stream([25, 17], first_id=10)
    rb.extend(torch.stack([first, second]).exclude(TRAJ_IDS))        # [2, 42]
    for _ in range(20):
        check_episode_windows(rb.sample())


def test_rows_without_any_episode_marks_name_what_is_missing(tmp_path):
    rb = make_replay_buffer(1000, B, L, scratch_dir=str(tmp_path))
    rows = rollout_rows([20], drop=(TRAJ_IDS, IS_INIT, ("next", "done")))
    with pytest.raises(KeyError, match=r"'is_init' \(torchrl.envs.InitTracker\) or \('next', 'done'\)"):
        rb.extend(rows)


def test_float_pixels_in_the_unit_range_are_stored_as_their_uint8_frames(tmp_path):
    rb = make_replay_buffer(1000, 2, 4, scratch_dir=str(tmp_path))
    rows = episode_stream([20])
    frames = rows[PIXELS].clone()
    rows[PIXELS] = frames.float() / 255
    final = rows["next", PIXELS][-1:].clone()
    rows["next", PIXELS] = rows["next", PIXELS].float() / 255
    rb.extend(rows)
    stored = rb.storage._storage.get(PIXELS)[: len(rb)]
    assert stored.dtype == torch.uint8 and torch.equal(stored, torch.cat([frames, final]))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        rb.extend(episode_stream([20]).set(PIXELS, frames.float()))


# --- windows along each env's stream across episode ends (windows="stream", the 2023 DreamerV3 replay) ---


def stream_rows(lengths, env=0, n_envs=1, t0=0):
    """One env's rows of consecutive episodes; observation = (env, time in the env's stream, step in the episode).

    The time counts the stored rows: each ended episode's final observation is a row of the stream too, so
    ``sum(lengths) + len(lengths)`` stored rows have times ``t0, t0 + 1, ...``. Trajectory ids are unique over
    envs (env + n_envs * k), as the collector's.
    """
    rows = episode_stream(lengths, first_id=env, id_stride=n_envs)
    n = rows.shape[0]
    done = rows["next", "done"].squeeze(-1).float()
    time = t0 + torch.arange(n, dtype=torch.float32) + done.cumsum(0) - done  # past the final rows before it
    env_col = torch.full((n,), float(env))
    rows.set(OBSERVATION, torch.stack([env_col, time, rows[OBSERVATION][:, 1]], -1))
    rows.set(("next", OBSERVATION), torch.stack([env_col, time + 1, rows[OBSERVATION][:, 2] + 1], -1))
    return rows


def stored_length(lengths):
    """The rows a stream of whole episodes occupies once stored: each episode's own and its final one."""
    return sum(lengths) + len(lengths)


def official_windows(streams, length):
    """The 2023 replay's windows as a plain loop (danijar/dreamerv3 423291a, embodied/replay/generic.py,
    Generic.add with stride 1): each step joins its worker's stream, kept as its last ``length`` steps, and once
    the stream holds ``length`` steps every step stores one window of them. ``streams``: {worker: rows in time
    order}; returns the windows as tuples of rows."""
    table = []
    for rows in streams.values():
        last = []
        for row in rows:
            last = (last + [row])[-length:]
            if len(last) == length:
                table.append(tuple(last))
    return table


def windows_as_rows(rb):
    """Every window the sampler may draw, as tuples of (env, stream time) pairs (sorted)."""
    index = rb.sampler.all_windows(rb.storage)
    obs = rb.storage._storage.get(OBSERVATION)[index]                         # (W, T, 3)
    return sorted(tuple(map(tuple, w)) for w in obs[..., :2].long().tolist())


def check_stream_windows(sample):
    """Each window: one env, consecutive steps of its stream, is_init exactly where an episode starts."""
    obs = sample[OBSERVATION]
    env, time, step = obs[..., 0], obs[..., 1], obs[..., 2]
    assert (env == env[:, :1]).all(), "a window mixes envs"
    assert (time.diff(dim=1) == 1).all(), "a window is not consecutive in its env's stream"
    assert torch.equal(sample[IS_INIT].squeeze(-1), step == 0), "is_init does not mark the episode starts"


def test_every_row_of_an_env_stream_is_replayed_as_often_as_in_the_2023_replay(tmp_path):
    """One env, episodes of 12 rows, windows of 4: the windows are those of the official rule over the stream
    (every row past the stream's first 3 lies in 4 windows), each drawn uniformly, so an episode's first row is
    sampled as often as a middle row; with "episode" windows it lies in 1 window of 9 (a middle row in 4)."""
    torch.manual_seed(0)
    seq, lengths = 4, [12, 12, 12]
    rb = make_replay_buffer(1000, 64, seq, scratch_dir=str(tmp_path), windows="stream")
    rows = stream_rows(lengths)
    rb.extend(rows)
    n = stored_length(lengths)
    official = official_windows({0: [(0, t) for t in range(n)]}, seq)
    assert windows_as_rows(rb) == sorted(official)
    counts = torch.zeros(n)
    for _ in range(200):
        sample = rb.sample()
        check_stream_windows(sample)
        counts += torch.bincount(sample[OBSERVATION][..., 1].long().flatten(), minlength=n)
    expected = torch.zeros(n)
    for window in official:
        for _, t in window:
            expected[t] += 1
    expected *= counts.sum() / expected.sum()
    assert ((counts - expected).abs() / expected).max() < 0.12  # each row within 12% (about 4 standard deviations)
    step = rb.storage._storage.get(OBSERVATION)[:n, 2]  # in stream order: one env, one write
    later = torch.arange(n) >= 13  # episodes 1 and 2: past the stream's start
    first, middle = counts[later & (step == 0)].sum(), counts[later & (step == 6)].sum()
    assert 0.9 < first / middle < 1.1
    episodes = make_replay_buffer(1000, 64, seq, scratch_dir=str(tmp_path / "episode"))
    episodes.extend(rows)
    obs = episodes.sample(2000)[OBSERVATION]
    per_step = torch.bincount(obs[..., 2].long().flatten(), minlength=13).float()
    assert per_step[0] / per_step[6] < 0.4  # "episode": an episode start lies in 1 of its windows, a middle row in 4


def test_stream_windows_cross_episode_ends_with_is_init_at_each_start(tmp_path):
    torch.manual_seed(0)
    rb = make_replay_buffer(1000, B, L, scratch_dir=str(tmp_path), windows="stream")
    rows = stream_rows(LENGTHS)  # episodes of 1 and 2 rows too: shorter than a window
    for part in chunks(rows, [5, 17, 1, 40, 23, 60, len(rows) - 146]):
        rb.extend(part)
    assert windows_as_rows(rb) == sorted(official_windows({0: [(0, t) for t in range(stored_length(LENGTHS))]}, L))
    crossed = 0
    for _ in range(20):
        sample = rb.sample()
        check_stream_windows(sample)
        crossed += int(sample[IS_INIT][:, 1:].any(1).sum())
    assert crossed > 0, "no window crossed an episode end"


def test_stream_windows_of_several_envs_never_mix(tmp_path):
    """[3, T'] batches: each env is its own stream (its index in the batch), continued across batches."""
    torch.manual_seed(0)
    lengths = [[9, 14, 3, 20], [25, 2, 19], [5, 5, 5, 5, 5, 21]]  # 46 rows each
    envs = [stream_rows(lengths[e], env=e, n_envs=3) for e in range(3)]
    rb = make_replay_buffer(1000, B, L, scratch_dir=str(tmp_path), windows="stream")
    for start, size in ((0, 5), (5, 11), (16, 30)):
        rb.extend(torch.stack([env[start:start + size] for env in envs], 0))
    stored = rb.storage._storage
    assert torch.equal(stored.get(STREAM_IDS)[:len(rb)], stored.get(OBSERVATION)[:len(rb), 0].long())
    streams = {e: [(e, t) for t in range(stored_length(lengths[e]))] for e in range(3)}
    assert windows_as_rows(rb) == sorted(official_windows(streams, L))
    for _ in range(20):
        check_stream_windows(rb.sample())


@pytest.mark.parametrize("n_envs", [1, 2])
def test_stream_windows_never_cross_the_write_head(tmp_path, n_envs):
    """A 50-row circular storage written many times over: the windows are those of the official rule over
    each env's surviving rows (always the newest ones of its stream), so none mixes old and new data."""
    torch.manual_seed(0)
    capacity, per_batch = 50, 3
    envs = [stream_rows(LENGTHS * 2, env=e, n_envs=n_envs) for e in range(n_envs)]
    rb = make_replay_buffer(capacity, B, L, scratch_dir=str(tmp_path), windows="stream")
    wrapped = False
    for k in range(len(envs[0]) // per_batch):
        part = [env[k * per_batch:(k + 1) * per_batch] for env in envs]
        rb.extend(torch.stack(part, 0) if n_envs > 1 else part[0])
        obs = rb.storage._storage.get(OBSERVATION)[:len(rb)]
        streams = {}
        for e in range(n_envs):
            times = obs[obs[:, 0] == e, 1].long().sort().values
            assert torch.equal(times, torch.arange(times[0], times[-1] + 1)), "an env's stored rows have a gap"
            streams[e] = [(e, t) for t in times.tolist()]
        assert windows_as_rows(rb) == sorted(official_windows(streams, L))
        if len(rb) == capacity:
            sample = rb.sample()
            check_stream_windows(sample)
            wrapped |= bool(((sample["index"] == 0) & (sample["index"].roll(1, 1) == capacity - 1)).any())
    assert wrapped, "no window spanned the storage's wrap point"


def test_stream_buffer_saves_and_restores_its_streams(tmp_path):
    from dreamer_trl.data.replay import load_buffer, save_buffer

    rb = make_replay_buffer(40, 2, 4, scratch_dir=str(tmp_path / "a"), windows="stream")
    for k in range(5):  # wraps around the 40-row storage
        rb.extend(torch.stack([stream_rows([7, 8], env=e, n_envs=2, t0=17 * k) for e in range(2)], 0))
    save_buffer(rb, tmp_path / "saved")
    other = make_replay_buffer(40, 2, 4, scratch_dir=str(tmp_path / "b"), windows="stream")
    load_buffer(other, tmp_path / "saved")
    assert windows_as_rows(other) == windows_as_rows(rb)
    torch.manual_seed(0)
    x = rb.sample()
    torch.manual_seed(0)
    assert (other.sample() == x).all()


def test_episode_windows_store_no_stream_ids(tmp_path):
    rb = make_replay_buffer(100, B, L, scratch_dir=str(tmp_path))
    rb.extend(episode_stream([20]))
    assert STREAM_IDS not in rb.storage._storage.keys(include_nested=True)


def test_stream_windows_of_rollout_rows_without_marks(tmp_path):
    """A [2, T] env.rollout(): trajectory ids, is_init and the stream ids come from the batch."""
    rb = make_replay_buffer(1000, B, L, scratch_dir=str(tmp_path), windows="stream")
    rb.extend(torch.stack([stream_rows([10, 12], env=e) for e in range(2)]).exclude(TRAJ_IDS, IS_INIT))
    for _ in range(10):
        check_stream_windows(rb.sample())


def test_stream_error_when_no_env_stream_is_long_enough(tmp_path):
    rb = make_replay_buffer(100, B, L, scratch_dir=str(tmp_path), windows="stream")
    rb.extend(torch.stack([stream_rows([3, 2], env=e) for e in range(2)]))
    with pytest.raises(ValueError, match=r"no stored env stream .* seq_len=8.*longest stored: 7"):
        rb.sample()
    with pytest.raises(ValueError, match="windows must be one of episode, stream"):
        make_replay_buffer(100, B, L, windows="across")


def test_keep_latents_stores_the_policys_posteriors_and_write_latents_overwrites_them_in_place():
    rb = make_replay_buffer(50, 2, 4, keep_latents=True)
    td = TensorDict({"observation": torch.randn(10, 3), "is_init": torch.zeros(10, 1, dtype=torch.bool),
                     ("collector", "traj_ids"): torch.zeros(10, dtype=torch.long),
                     "state": torch.randn(10, 6), "belief": torch.randn(10, 5),
                     "encoded_latents": torch.randn(10, 8)}, [10])
    td["is_init"][0] = True
    rb.extend(td)
    stored = rb.storage._storage
    assert torch.equal(stored["state"][:10], td["state"]) and "encoded_latents" not in stored.keys()
    batch = rb.sample()
    new_state, new_belief = torch.ones(2, 4, 6), -torch.ones(2, 4, 5)
    rb.write_latents(batch["index"], new_state, new_belief)
    assert len(rb) == 10  # in place: no rows added
    assert (stored["state"][batch["index"].reshape(-1)] == 1).all()
    assert (stored["belief"][batch["index"].reshape(-1)] == -1).all()
    untouched = torch.ones(10, dtype=torch.bool)
    untouched[batch["index"].reshape(-1)] = False
    assert torch.equal(stored["state"][:10][untouched], td["state"][untouched])
    plain = make_replay_buffer(50, 2, 4)
    plain.extend(td)
    assert "state" not in plain.storage._storage.keys()  # without a replay context the carry is not stored
    with pytest.raises(RuntimeError, match="keep_latents"):
        plain.write_latents(batch["index"], new_state, new_belief)


# --- the final observation of an episode is a row of its own (issue 22, item 3) ---


def test_an_episode_end_stores_its_final_observation_as_a_row_of_its_own(tmp_path):
    """Official drivers store an episode's last step (o_T with is_last): here the row after the ended one holds
    ("next", obs) of the ended row, a_{T-1} as its previous action, zero action and inert next fields."""
    rb = make_replay_buffer(100, B, L, scratch_dir=str(tmp_path), keep_latents=True)
    rows = episode_stream([5, 3])
    rb.extend(rows)
    stored = rb.storage._storage[: len(rb)]
    assert len(rb) == 10
    for ended, final in ((4, 5), (7, 9)):
        source = rows[ended]
        row = stored[final]
        assert torch.equal(row[OBSERVATION], source["next", OBSERVATION])
        assert torch.equal(row[PIXELS], source["next", PIXELS])
        assert torch.equal(row[PREV_ACTION], source[ACTION])
        assert not row[ACTION].any() and not row[IS_INIT].any() and row["is_last"].all()
        assert not row[STATE].any() and not row[BELIEF].any()
        assert row["next", "reward"].item() == 0 and not row["next", "done"].any()
        assert not row["next", "terminated"].any() and row[TRAJ_IDS] == source[TRAJ_IDS]
    assert stored["is_last"].squeeze(-1).nonzero().squeeze(-1).tolist() == [5, 9]
    # the other rows as written, in order: the final rows sit between their episode and the next one's start
    others = torch.tensor([0, 1, 2, 3, 4, 6, 7, 8])
    assert torch.equal(stored[OBSERVATION][others], rows[OBSERVATION])
    assert torch.equal(stored["next", "reward"][others], rows["next", "reward"])
    assert stored[IS_INIT].squeeze(-1).tolist() == [True, False, False, False, False, False, True, False, False, False]


def test_final_rows_follow_their_env_in_a_batched_write(tmp_path):
    """[2, T] rows: each env's final observation lands after its own ended row, not the other env's."""
    rb = make_replay_buffer(100, B, L, scratch_dir=str(tmp_path))
    first, second = episode_stream([3, 4]), episode_stream([2, 5], first_id=10)
    rb.extend(torch.stack([first, second]))
    obs = rb.storage._storage[OBSERVATION][: len(rb)]
    assert obs.tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0], [1, 1], [1, 2], [1, 3], [1, 4],
                            [10, 0], [10, 1], [10, 2], [11, 0], [11, 1], [11, 2], [11, 3], [11, 4], [11, 5]]


def test_add_of_an_ending_row_stores_the_final_row_too(tmp_path):
    rb = make_replay_buffer(100, B, L, scratch_dir=str(tmp_path))
    rows = episode_stream([2])
    assert rb.add(rows[0]) == 0 and len(rb) == 1
    assert rb.add(rows[1]) == 1 and len(rb) == 3
    assert rb.storage._storage[OBSERVATION][2].tolist() == [0, 2]


def test_an_ending_row_without_its_next_observation_is_refused_by_name(tmp_path):
    rb = make_replay_buffer(100, B, L, scratch_dir=str(tmp_path))
    with pytest.raises(KeyError, match=r"final observation \('next', 'pixels'\)"):
        rb.extend(episode_stream([4]).exclude(("next", PIXELS)))


def test_a_buffer_saved_before_final_rows_loads_with_is_last_false(tmp_path):
    from dreamer_trl.data.replay import load_buffer, save_buffer

    rb = make_replay_buffer(40, 2, 4, scratch_dir=str(tmp_path / "a"))
    rb.extend(episode_stream([12]))
    save_buffer(rb, tmp_path / "saved")
    rows = TensorDict.load_memmap(tmp_path / "saved" / "rows")
    rows.exclude("is_last").memmap(tmp_path / "old" / "rows", copy_existing=True)  # the layout before final rows were stored
    (tmp_path / "old" / "buffer.json").write_text((tmp_path / "saved" / "buffer.json").read_text())
    other = make_replay_buffer(40, 2, 4, scratch_dir=str(tmp_path / "b"))
    load_buffer(other, tmp_path / "old")
    assert len(other) == 13 and not other.storage._storage["is_last"][:13].any()
    other.extend(episode_stream([5], first_id=1))  # later writes carry the flag
    assert other.storage._storage["is_last"][18].item()  # rows 13..17, then the final one


def test_a_loaded_buffer_saves_byte_for_byte_as_the_uninterrupted_one(tmp_path):
    """The stored keys keep one order (tensors, then nested), the one a memory-mapped buffer loads in, so a
    resumed run's replay files equal those of the run never stopped (tests/test_parallel_trainer.py)."""
    from dreamer_trl.data.replay import load_buffer, save_buffer

    rows = episode_stream([10, 12])
    a = make_replay_buffer(100, 2, 4, scratch_dir=str(tmp_path / "a"))
    a.extend(rows[:11])
    save_buffer(a, tmp_path / "saved")
    b = make_replay_buffer(100, 2, 4, scratch_dir=str(tmp_path / "b"))
    load_buffer(b, tmp_path / "saved")
    for buffer, out in ((a, "after_a"), (b, "after_b")):
        buffer.extend(rows[11:])
        save_buffer(buffer, tmp_path / out)
    for name in ("rows/meta.json", "buffer.json"):
        assert (tmp_path / "after_a" / name).read_bytes() == (tmp_path / "after_b" / name).read_bytes(), name
