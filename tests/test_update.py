"""DreamerUpdate: each loss changes only its own parameters; all three computed with pre-update weights."""
import copy

import pytest
import torch
from conftest import TINY, make_batch

from dreamer_trl.behavior.imagination import make_imagination_env
from dreamer_trl.builders.networks import make_actor, make_value, make_world_model
from dreamer_trl.config import OptimConfig
from dreamer_trl.objectives import ActorLoss, CriticLoss, WorldModelLoss
from dreamer_trl.training.update import DreamerUpdate

A, FEAT = 2, TINY.world_model.latent.state_dim + TINY.world_model.rssm.belief_dim


def build(seed=0, share_value=False, step_model_first=False, discrete=False):
    torch.manual_seed(seed)
    wm = make_world_model("pixels", (3, 64, 64), A, TINY)
    actor, value = make_actor(FEAT, A, TINY, discrete=discrete), make_value(FEAT, TINY)
    env = make_imagination_env(wm)
    return DreamerUpdate(WorldModelLoss(wm), ActorLoss(actor, value, env, horizon=4, share_value=share_value),
                         CriticLoss(value, regression="squared"), OptimConfig(step_model_first=step_model_first))


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return [not torch.equal(b, p) for b, p in zip(before, module.parameters())]


def modules(updater):
    return {"model": updater.phase("model").loss.world_model, "actor": updater.phase("actor").loss.actor,
            "value": updater.phase("value").loss.value}


def test_optimizers_follow_the_paper():
    upd = build()
    lrs = {k: o.param_groups[0]["lr"] for k, o in upd.optimizers.items()}
    assert lrs == {"model": 6e-4, "actor": 8e-5, "value": 8e-5}
    assert all(o.param_groups[0]["eps"] == 1e-7 for o in upd.optimizers.values())
    assert upd.clip == 100.0
    ids = [set(map(id, g)) for g in upd.groups.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
@pytest.mark.parametrize("only", ["model", "actor", "value"])
def test_each_loss_changes_only_its_own_parameters(only, discrete):
    upd = build(discrete=discrete)  # discrete: the one-hot actor (straight-through samples through the dynamics)
    mods = modules(upd)
    before = {k: snapshot(m) for k, m in mods.items()}
    torch.manual_seed(1)
    out = upd.losses(make_batch())
    for name, loss in out["total"].items():
        upd.optimizers[name].zero_grad(set_to_none=True)
    out["total"][only].backward(inputs=upd.groups[only])
    upd.optimizers[only].step()
    for name, m in mods.items():
        assert any(changed(before[name], m)) == (name == only), name
        if name != only:
            assert all(p.grad is None for p in m.parameters()), name


@pytest.mark.parametrize("share_value", [False, True])
def test_update_equals_three_separate_updates_from_the_same_weights(share_value):
    """The full update matches applying each loss alone to a copy: no gradient leaks between losses."""
    full = build(share_value=share_value)
    alone = {name: build(share_value=share_value) for name in ("model", "actor", "value")}
    batch = make_batch()
    torch.manual_seed(5)
    full.update(batch)
    for name, upd in alone.items():
        torch.manual_seed(5)
        out = upd.losses(batch)
        upd.optimizers[name].zero_grad(set_to_none=True)
        out["total"][name].backward(inputs=upd.groups[name])
        torch.nn.utils.clip_grad_norm_(upd.groups[name], upd.clip)
        upd.optimizers[name].step()
        for a, b in zip(modules(full)[name].parameters(), modules(upd)[name].parameters()):
            torch.testing.assert_close(a, b)


def test_sharing_the_value_predictions_gives_the_same_update():
    """ActorLoss(share_value=True): CriticLoss reuses the actor phase's value forward; same weights and Adam state
    up to float summation order (the shared forward runs over H rows per start, the separate one over H-1)."""
    shared, separate = build(share_value=True), build(share_value=False)
    batch = make_batch()
    for step in range(2):
        for upd in (shared, separate):
            torch.manual_seed(10 + step)
            upd.update(batch)
    for name in ("model", "actor", "value"):
        for a, b in zip(modules(shared)[name].parameters(), modules(separate)[name].parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(shared.state_dict(), separate.state_dict(), rtol=1e-4, atol=1e-6)


def test_update_returns_finite_metrics_and_learns_on_a_fixed_batch():
    upd = build()
    batch = make_batch()
    first = upd.update(batch)
    for _ in range(20):
        last = upd.update(batch)
    assert all(torch.isfinite(v) for v in last.values())
    assert last["loss/model_reco"] < first["loss/model_reco"]
    assert {"loss/model_kl", "loss/model_reward", "loss/actor", "loss/value", "train/grad_norm_model"} <= set(last)


def test_optimizer_state_round_trip():
    upd = build()
    upd.update(make_batch())
    other = build()
    other.load_state_dict(copy.deepcopy(upd.state_dict()))
    assert other.optimizers["model"].state_dict()["state"].keys() == upd.optimizers["model"].state_dict()["state"].keys()


def _state(upd):
    params = {k: snapshot(m) for k, m in modules(upd).items()}
    return params, copy.deepcopy(upd.state_dict())


def test_one_nonfinite_update_is_skipped_and_changes_nothing():
    upd = build()
    upd.update(make_batch())  # Adam has state now
    params, opt_state = _state(upd)
    bad = make_batch()
    bad["next", "reward"][0, 2] = float("nan")
    metrics = upd.update(bad)
    assert upd.skipped == 1 and upd.skip_streak == 1 and metrics["train/skipped_updates"] == 1
    for name, m in modules(upd).items():
        assert not any(changed(params[name], m)), name
    after = upd.state_dict()
    for name in opt_state:
        for i, s in opt_state[name]["state"].items():
            for k, v in s.items():
                assert torch.equal(v, after[name]["state"][i][k]), (name, i, k)
    upd.update(make_batch())
    assert upd.skip_streak == 0 and upd.skipped == 1


def test_a_streak_of_nonfinite_updates_stops_the_run_naming_the_terms():
    upd = build()
    upd.max_nonfinite = 3
    bad = make_batch()
    bad["next", "reward"][:] = float("inf")
    upd.update(bad)
    upd.update(bad)
    with pytest.raises(Exception, match="3 consecutive.*loss/model_reward"):
        upd.update(bad)


class RecordingHook:
    """Records the phase order of before_clip / after_step calls, with a checkpointable counter."""

    def __init__(self):
        self.calls, self.steps = [], 0

    def before_clip(self, phase):
        assert all(p.grad is not None for p in phase.params if p.requires_grad), phase.name
        self.calls.append(("before_clip", phase.name))

    def after_step(self, phase):
        self.calls.append(("after_step", phase.name))
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def test_hooks_run_before_clipping_and_after_each_step_and_are_checkpointed():
    upd = build()
    hook = RecordingHook()
    upd.hooks.append(hook)
    upd.update(make_batch())
    names = ["model", "actor", "value"]
    assert hook.calls == [("before_clip", n) for n in names] + [("after_step", n) for n in names]
    state = upd.state_dict()
    assert state["hooks"] == {"0": {"steps": 3}}
    other = build()
    other.hooks.append(RecordingHook())
    other.load_state_dict(copy.deepcopy(state))
    assert other.hooks[0].steps == 3


def test_a_hook_before_clipping_sees_and_can_change_the_gradients():
    """What a gradient all-reduce needs: halving the gradients before the clip halves the Adam step's input."""
    class Halve:
        def before_clip(self, phase):
            for p in phase.params:
                if p.grad is not None:
                    p.grad.mul_(0.5)

    plain, halved = build(), build()
    halved.hooks.append(Halve())
    batch = make_batch()
    torch.manual_seed(2)
    m1 = plain.update(batch)
    torch.manual_seed(2)
    m2 = halved.update(batch)
    for name in ("model", "actor", "value"):
        assert m2[f"train/grad_norm_{name}"].item() == pytest.approx(0.5 * m1[f"train/grad_norm_{name}"].item(),
                                                                      rel=1e-4)


def test_a_skipped_update_runs_no_after_step_hook():
    upd = build()
    hook = RecordingHook()
    upd.hooks.append(hook)
    bad = make_batch()
    bad["next", "reward"][0, 1] = float("nan")
    upd.update(bad)
    assert [c for c in hook.calls if c[0] == "after_step"] == []


def test_retain_graph_follows_the_data_a_phase_hands_on(monkeypatch):
    """Only the actor phase with shared value predictions keeps its graph for the next phase."""
    for share in (False, True):
        upd = build(share_value=share)
        seen = []
        original = torch.Tensor.backward

        def spy(self, *args, retain_graph=None, **kwargs):
            seen.append(bool(retain_graph))
            return original(self, *args, retain_graph=retain_graph, **kwargs)

        monkeypatch.setattr(torch.Tensor, "backward", spy)
        upd.losses(make_batch(), backward=True)
        monkeypatch.setattr(torch.Tensor, "backward", original)
        assert seen == [False, share, False], share


def test_phases_are_any_list_and_names_must_be_unique():
    upd = build()
    phases = upd.phases[:2]  # world model and actor only, as with V_R
    two = DreamerUpdate(phases=phases)
    assert list(two.optimizers) == ["model", "actor"]
    metrics = two.update(make_batch())
    assert "loss/value" not in metrics and "train/grad_norm_value" not in metrics
    with pytest.raises(ValueError, match="unique"):
        DreamerUpdate(phases=[phases[0], phases[0]])
    with pytest.raises(ValueError, match="either"):
        DreamerUpdate(upd.phase("model").loss, phases=phases)


# optim.step_model_first (DreamerV2 / DreamerV3 2023 agent.py Agent.train): the world model steps, then the
# behaviour imagines with it from the posteriors computed before that step.

def clipped_step(upd, name, loss):
    upd.optimizers[name].zero_grad(set_to_none=True)
    loss.backward(inputs=upd.groups[name])
    torch.nn.utils.clip_grad_norm_(upd.groups[name], upd.clip)
    upd.optimizers[name].step()


@pytest.mark.parametrize("share_value", [False, True])
def test_step_model_first_equals_the_model_step_then_the_behaviour_losses(share_value):
    """By hand: the model phase alone on a copy, then the actor and value losses from its (pre-step) start states
    in the same random stream. The first update is checked (Adam's first step moves by about lr for any gradient,
    so the order shows at once) and a second from the states both runs reached."""
    first, hand = build(share_value=share_value, step_model_first=True), build(share_value=share_value)
    plain = build(share_value=share_value)
    for step in range(2):
        batch = make_batch(seed=step)
        torch.manual_seed(7 + step)
        first.update(batch)
        torch.manual_seed(7 + step)
        plain.update(batch)
        torch.manual_seed(7 + step)
        model, actor, value = (hand.phase(n) for n in ("model", "actor", "value"))
        loss_td, starts = model.loss(batch)
        clipped_step(hand, "model", sum(v for k, v in loss_td.items() if k.startswith("loss_")))
        assert not any(t.requires_grad for t in starts.values(include_nested=True, leaves_only=True))
        actor_td, imagined = actor.loss(starts)
        value_td, _ = value.loss(imagined)
        for upd_name, td in (("actor", actor_td), ("value", value_td)):
            hand.optimizers[upd_name].zero_grad(set_to_none=True)
            sum(v for k, v in td.items() if k.startswith("loss_")).backward(inputs=hand.groups[upd_name],
                                                                            retain_graph=True)
        for upd_name in ("actor", "value"):
            torch.nn.utils.clip_grad_norm_(hand.groups[upd_name], hand.clip)
            hand.optimizers[upd_name].step()
        for name in ("model", "actor", "value"):
            for a, b in zip(modules(first)[name].parameters(), modules(hand)[name].parameters()):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
        torch.testing.assert_close(first.state_dict(), hand.state_dict(), rtol=1e-6, atol=1e-7)
    differ = [not torch.equal(a, b) for a, b in zip(modules(first)["actor"].parameters(),
                                                   modules(plain)["actor"].parameters())]
    assert any(differ)  # the control: all losses before any step is another update


class NanActorGradient:
    def __init__(self):
        self.armed = False

    def before_clip(self, phase):
        if phase.name == "actor" and self.armed:
            next(p for p in phase.params if p.grad is not None).grad.view(-1)[0] = float("nan")


def test_step_model_first_a_skipped_update_is_undone_as_if_it_never_ran():
    """The model steps, then the actor's gradient is NaN: the update is skipped and the model step undone, so the
    run continues exactly as one that never saw that batch (weights and every Adam moment, bit for bit)."""
    skipping, clean = build(step_model_first=True), build(step_model_first=True)
    hook = NanActorGradient()
    skipping.hooks.append(hook)
    torch.manual_seed(1)
    skipping.update(make_batch(seed=1))
    torch.manual_seed(1)
    clean.update(make_batch(seed=1))
    hook.armed = True
    metrics = skipping.update(make_batch(seed=2))
    assert skipping.skipped == 1 and metrics["train/skipped_updates"] == 1
    hook.armed = False
    torch.manual_seed(3)
    skipping.update(make_batch(seed=3))
    torch.manual_seed(3)
    clean.update(make_batch(seed=3))
    assert skipping.skip_streak == 0
    for name in ("model", "actor", "value"):
        assert not any(changed(snapshot(modules(clean)[name]), modules(skipping)[name])), name
    torch.testing.assert_close(skipping.state_dict(), clean.state_dict(), rtol=0, atol=0)


def test_step_model_first_keeps_the_nonfinite_rules_and_the_hook_order():
    upd = build(step_model_first=True)
    hook = RecordingHook()
    upd.hooks.append(hook)
    upd.update(make_batch())
    names = ["model", "actor", "value"]
    assert hook.calls == [("before_clip", n) for n in names] + [("after_step", n) for n in names]
    params, opt_state = _state(upd)
    hook.calls.clear()
    bad = make_batch()
    bad["next", "reward"][0, 2] = float("nan")
    upd.max_nonfinite = 2
    upd.update(bad)
    assert hook.calls == [("before_clip", n) for n in names]  # every phase ran, none stepped
    for name, m in modules(upd).items():
        assert not any(changed(params[name], m)), name
    torch.testing.assert_close(upd.state_dict()["model"], opt_state["model"], rtol=0, atol=0)
    with pytest.raises(Exception, match="2 consecutive.*loss/model_reward"):
        upd.update(bad)


def test_step_model_first_needs_two_phases_and_defaults_to_the_config():
    upd = build()
    assert not upd.step_model_first and build(step_model_first=True).step_model_first
    assert DreamerUpdate(phases=upd.phases[:2], step_model_first=True).step_model_first
    with pytest.raises(ValueError, match="optim.step_model_first"):
        DreamerUpdate(phases=upd.phases[:1], step_model_first=True)
