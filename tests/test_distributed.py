"""Data-parallel learning on gloo with spawned ranks: an update on two shards equals one process's update on the
concatenated batch; the parameters stay identical over many updates; a drift is caught and named; a loss term that
is not finite on one rank only makes every rank skip (or undo) the update and raise together."""
import datetime
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tensordict import TensorDict
from torch import nn

import dreamer_trl as dt
from dreamer_trl import keys
from dreamer_trl.config import PRESETS
from dreamer_trl.training.distributed import World, check_identical, make_data_parallel, rank_seed

PRESETS_CHECKED = ["debug", "planet_state", "dreamer_v2", "dreamer_v3_proprio", "dreamer_v3_proprio_current"]
B, T, A, O = 4, 6, 2, 5  # B: the concatenated batch; each of 2 ranks takes B // 2


def tiny(name):
    """The preset at tiny widths; free nats 0 where the clamp acts on the batch mean (V1, V2: per rank)."""
    cfg = PRESETS[name]()
    wm = cfg.world_model
    cfg.nets.size = "custom"
    wm.rssm.belief_dim = wm.rssm.hidden = wm.units = wm.vector_units = 16
    cfg.behavior.actor.units = cfg.behavior.critic.units = 16
    wm.latent.state_dim, wm.latent.classes, wm.rssm.blocks = 4, 4, min(wm.rssm.blocks, 2)
    if cfg.nets.style != "v1":
        wm.vector_layers = cfg.behavior.actor.layers
    cfg.behavior.horizon = 4
    if cfg.world_model.loss.kl != "dyn_rep":
        cfg.world_model.loss.free_nats = 0.0
    cfg.behavior.planner.candidates, cfg.behavior.planner.top_k, cfg.behavior.planner.iterations = 8, 2, 2
    return cfg


LATENT_MAX = (16, 16)  # (S, D) of the tiny V3 current preset below: its replay context reads them


def batch(seed=0, size=B):
    g = torch.Generator().manual_seed(seed)
    is_init = torch.zeros(size, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[0, 3] = is_init[1, 2] = True  # episode starts inside rank 0's windows only: uneven valid counts
    return TensorDict({keys.OBSERVATION: torch.randn(size, T, O, generator=g),
                       keys.ACTION: torch.rand(size, T, A, generator=g) * 2 - 1,
                       keys.PREV_ACTION: torch.rand(size, T, A, generator=g) * 2 - 1, keys.IS_INIT: is_init,
                       ("next", keys.REWARD): torch.randn(size, T, 1, generator=g),
                       ("next", keys.TERMINATED): torch.zeros(size, T, 1, dtype=torch.bool),
                       # stored posteriors (the replay context of V3 current); the other presets recompute them
                       keys.STATE: torch.rand(size, T, LATENT_MAX[0], generator=g),
                       keys.BELIEF: torch.rand(size, T, LATENT_MAX[1], generator=g) * 2 - 1}, [size, T])


def build(name, seed=0):
    torch.manual_seed(seed)
    cfg = tiny(name)
    agent = dt.make_agent(keys.OBSERVATION, (O,), A, cfg, "cpu",
                          action_spec=None)
    return agent, dt.make_update(agent, cfg.optim)


def state(agent, updater):
    modules = {"world_model": agent.world_model, "actor": agent.actor, "value": agent.value}
    return {f"{k}.{n}": v.detach().clone() for k, m in modules.items() if m is not None
            for n, v in m.state_dict().items()}


class GradientRecorder:
    """The gradients each phase is clipped with (after the all-reduce when it comes last among the hooks)."""

    def __init__(self):
        self.grads = {}

    def before_clip(self, phase):
        for i, p in enumerate(phase.params):
            if p.grad is not None:
                self.grads[f"{phase.name}.{i}"] = p.grad.detach().clone()


def fixed_noise(monkeypatch_setattr):
    """Noise as a fixed function of the numbers it perturbs, not of the batch size or the random stream, so an
    update is a function of its batch alone and shards can be compared with their concatenation."""
    monkeypatch_setattr(torch, "randn_like", lambda x, **kw: torch.sin(3.0 * x.detach() + 1.0))
    monkeypatch_setattr(torch, "rand_like", lambda x, **kw: 0.01 + 0.49 * (torch.sin(5.0 * x.detach()) + 1.0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PoisonTerm(nn.Module):
    """Wraps a phase's loss: on the chosen calls its first ``loss_*`` term's value becomes NaN, while its gradient
    stays that of the term (``v + (nan - v).detach()``), so only the loss value says something is wrong."""

    def __init__(self, loss: nn.Module, calls):
        super().__init__()
        self.loss, self.calls, self.count = loss, calls, 0

    def forward(self, data):
        loss_td, data = self.loss(data)
        if self.calls is None or self.count in self.calls:
            key = next(k for k in loss_td.keys() if k.startswith("loss_"))
            v = loss_td[key]
            loss_td[key] = v + (torch.full_like(v, float("nan")) - v).detach()
        self.count += 1
        return loss_td, data


def optimizer_state(updater):
    return {f"{phase.name}.{i}.{k}": v.detach().clone() for phase in updater.phases
            for i, p in enumerate(phase.params) for k, v in phase.optimizer.state.get(p, {}).items()
            if torch.is_tensor(v)}


# (preset, phase with the NaN term): V1's phases step together; V3's model steps first, and the NaN comes after its
# step (it must be undone) or in it (it must not step)
NONFINITE_CASES = [("debug", "actor"), ("dreamer_v3_proprio", "actor"), ("dreamer_v3_proprio", "model")]


def _worker(rank, world_size, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    world = World(rank, world_size)
    try:
        # 1. one update on this rank's shard, with the noise fixed (see fixed_noise)
        real = torch.randn_like, torch.rand_like
        fixed_noise(lambda obj, name, value: setattr(obj, name, value))
        for name in PRESETS_CHECKED:
            agent, updater = build(name, seed=rank)  # different initialisations: the broadcast makes them equal
            make_data_parallel(agent, updater, world, check_every=1)
            recorder = GradientRecorder()
            updater.hooks.append(recorder)
            share = B // world_size
            updater.update(batch()[rank * share:(rank + 1) * share])
            torch.save(recorder.grads, os.path.join(out, f"{name}_{rank}.pt"))
        torch.randn_like, torch.rand_like = real

        # 2. twenty updates with each rank's own batches and random streams, checked every 5
        agent, updater = build("dreamer_v3_proprio")
        make_data_parallel(agent, updater, world, check_every=5)
        torch.manual_seed(rank_seed(0, world))
        for i in range(20):
            updater.update(batch(seed=100 * rank + i, size=2))
        torch.save(state(agent, updater), os.path.join(out, f"twenty_{rank}.pt"))

        # 3. a drift on one rank is caught and named
        if rank == 1:
            with torch.no_grad():
                next(agent.value.parameters()).view(-1)[0] += 1e-3
        try:
            check_identical({"value": agent.value})
            message = ""
        except dt.training.distributed.ParametersDiverged as err:
            message = str(err)
        with open(os.path.join(out, f"drift_{rank}.txt"), "w") as f:
            f.write(message)

        # 4. update 1 has a NaN term on rank 1 only: both ranks skip it (V3, actor: undo the model's step)
        for name, poisoned in NONFINITE_CASES:
            agent, updater = build(name, seed=rank)
            make_data_parallel(agent, updater, world, check_every=1)  # a parameter check after every step
            phase = updater.phase(poisoned)
            phase.loss = PoisonTerm(phase.loss, {1} if rank == 1 else set())
            torch.manual_seed(rank_seed(0, world))
            record = {}
            for i in range(3):
                metrics = updater.update(batch(seed=100 * rank + i, size=2))
                record[f"state{i}"], record[f"optim{i}"] = state(agent, updater), optimizer_state(updater)
                record[f"metrics{i}"] = {k: v.detach().clone() for k, v in metrics.items()}
            record["skipped"] = updater.skipped
            torch.save(record, os.path.join(out, f"skip_{name}_{poisoned}_{rank}.pt"))

        # 5. rank 1 is not finite on every update: both ranks raise at the third one
        agent, updater = build("debug")
        make_data_parallel(agent, updater, world, check_every=1)
        updater.max_nonfinite = 3
        if rank == 1:
            actor = updater.phase("actor")
            actor.loss = PoisonTerm(actor.loss, None)
        raised = -1
        for i in range(6):
            try:
                updater.update(batch(seed=100 * rank + i, size=2))
            except dt.training.update.NonFiniteError:
                raised = i
                break
        dist.barrier()  # both ranks are here, at the same point
        with open(os.path.join(out, f"raised_{rank}.txt"), "w") as f:
            f.write(str(raised))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Run the two-rank worker once for the whole module; its results are files in the returned directory.
    A hang (ranks making different collective calls) fails the tests instead of blocking them."""
    out = tmp_path_factory.mktemp("ranks")
    context = mp.spawn(_worker, args=(2, free_port(), str(out)), nprocs=2, join=False)
    deadline = time.monotonic() + 300
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two ranks did not finish in 300 s")
    return out


@pytest.mark.parametrize("name", PRESETS_CHECKED)
def test_two_ranks_update_as_one_process_on_the_concatenated_batch(ranks, name, monkeypatch):
    """The gradients every phase is clipped and stepped with (Adam's first step is about lr * sign(g), so the
    weights after it would amplify float noise in gradients near zero; the twenty-update test covers the steps)."""
    _, updater = build(name, seed=0)  # rank 0's initialisation, which the broadcast gives every rank
    recorder = GradientRecorder()
    updater.hooks.append(recorder)
    fixed_noise(monkeypatch.setattr)
    updater.update(batch())
    expected = recorder.grads
    assert expected
    for rank in range(2):
        got = torch.load(ranks / f"{name}_{rank}.pt", weights_only=True)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            scale = value.abs().max().item()
            torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5 * max(scale, 1e-3),
                                       msg=lambda m, key=key: f"{name} {key}: {m}")


def test_parameters_stay_identical_over_twenty_updates(ranks):
    first, second = (torch.load(ranks / f"twenty_{r}.pt", weights_only=True) for r in range(2))
    initial = state(*build("dreamer_v3_proprio"))
    assert any(not torch.equal(first[k], initial[k]) for k in first)  # it trained
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_a_drift_between_ranks_is_caught_and_named(ranks):
    for rank in range(2):
        message = (ranks / f"drift_{rank}.txt").read_text()
        assert message.startswith("parameters differ between ranks: value."), message


@pytest.mark.parametrize("name, poisoned", NONFINITE_CASES)
def test_a_nonfinite_term_on_one_rank_skips_the_update_on_every_rank(ranks, name, poisoned):
    first, second = (torch.load(ranks / f"skip_{name}_{poisoned}_{r}.pt", weights_only=True) for r in range(2))
    for record in first, second:
        assert record["skipped"] == 1
        # the skipped update left weights and optimizer states as they were (V3, actor: the model stepped, undone)
        for part in "state", "optim":
            before, after = record[f"{part}0"], record[f"{part}1"]
            assert before.keys() == after.keys()
            assert all(torch.equal(before[k], after[k]) for k in before), part
        assert any(not torch.equal(record["state1"][k], record["state2"][k]) for k in record["state1"])  # trained on
        skipped = record["metrics1"]
        assert skipped["train/skipped_updates"] == 1
        assert not torch.isfinite(skipped[f"train/grad_norm_{poisoned}"])  # the sign every rank sees
        if poisoned != "model":
            assert torch.isfinite(skipped["train/grad_norm_model"])  # so with step_model_first the model stepped
    assert all(torch.isfinite(v).all() for k, v in first["metrics1"].items() if k.startswith("loss/"))
    assert not all(torch.isfinite(v).all() for k, v in second["metrics1"].items() if k.startswith("loss/"))  # rank 1
    for i in range(3):
        for part in "state", "optim":
            ours, theirs = first[f"{part}{i}"], second[f"{part}{i}"]
            assert ours.keys() == theirs.keys()
            for key in ours:
                assert torch.equal(ours[key], theirs[key]), f"{part}{i} {key}"


def test_nonfinite_terms_on_one_rank_raise_on_every_rank_together(ranks):
    assert [(ranks / f"raised_{r}.txt").read_text() for r in range(2)] == ["2", "2"]


def test_a_single_process_is_left_alone():
    agent, updater = build("debug")
    hooks = list(updater.hooks)
    assert make_data_parallel(agent, updater, World()) is None and updater.hooks == hooks
    assert rank_seed(7, World(3, 4)) == 10 and World(0, 2).is_main and not World(1, 2).is_main
