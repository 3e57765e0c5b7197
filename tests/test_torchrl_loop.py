"""Every preset's losses in a TorchRL-style loop (issue: one ``backward()`` per loss, one Adam per module, then
``agent.after_update()``), in any order of the backward calls, with the gradients of the library's own update."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_golden import CASES, golden_batch, stored_latents

from dreamer_trl.builders.agent import make_agent, make_update


def build(name):
    obs_key, obs_shape, action_dim, cfg, (B, T) = CASES[name]
    torch.manual_seed(0)
    action_spec = None
    if cfg.behavior.kind == "planner":
        from torchrl.data import Bounded

        action_spec = Bounded(-1.0, 1.0, (action_dim,))
    agent = make_agent(obs_key, obs_shape, action_dim, cfg, action_spec=action_spec)
    latents = stored_latents(agent, cfg)
    return agent, cfg.optim, lambda seed: golden_batch(B, T, action_dim, obs_key, obs_shape[0], seed, latents)


def modules(agent):
    return [(m, lr) for m, lr in ((agent.world_model, 6e-4), (agent.actor, 8e-5), (agent.value, 8e-5))
            if m is not None and not (m is agent.value and agent.value_loss is None)]


def forward(agent, batch):
    """The README's chain: (loss TensorDict, data) handed from loss to loss."""
    model_td, posterior = agent.model_loss(batch)
    tds = [model_td]
    if agent.actor_loss is not None:
        actor_td, imagined = agent.actor_loss(posterior)
        tds.append(actor_td)
        if agent.value_loss is not None:
            tds.append(agent.value_loss(imagined)[0])
    return [sum(v for k, v in td.items() if k.startswith("loss_")) for td in tds]


@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_readme_loop_runs_for_every_preset(name, order):
    agent, _, batch = build(name)
    optimizers = [(m, torch.optim.Adam(m.parameters(), lr=lr, eps=1e-7)) for m, lr in modules(agent)]
    slow = [h for h in agent.hooks if hasattr(h, "target")]
    before = [p.detach().clone() for h in slow for p in h.target.parameters()]
    for i in range(2):
        losses = forward(agent, batch(100 + i))
        for loss in (losses if order == "forward" else losses[::-1]):
            loss.backward()
        for module, optimizer in optimizers:
            torch.nn.utils.clip_grad_norm_(module.parameters(), 100.0)
            optimizer.step()
            optimizer.zero_grad()
        agent.after_update()
        assert all(torch.isfinite(loss) for loss in losses)
    after = [p.detach() for h in slow for p in h.target.parameters()]
    if slow:  # the slow critic moved (V3: EMA every update; V2: a copy at the first update)
        assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert all(p.requires_grad for m, _ in modules(agent) for p in m.parameters())  # nothing left frozen


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_backward_per_loss_gives_the_updates_gradients(name):
    """The plain loop's gradients, summed per module, are those of ``DreamerUpdate`` (its phases restrict each
    backward to their parameters; V3 current's one phase also trains the world model by the replay critic term,
    which reaches it through the retained posterior graph in the plain loop too)."""
    agent, optim_cfg, batch = build(name)
    update = make_update(agent, optim_cfg)
    data = batch(100)
    torch.manual_seed(1)
    update.losses(data, backward=True)
    params = [p for phase in update.phases for p in phase.params]
    want = [None if p.grad is None else p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    torch.manual_seed(1)
    for loss in reversed(forward(agent, data)):
        loss.backward()
    for i, (p, w) in enumerate(zip(params, want)):
        if w is None:
            assert p.grad is None or not p.grad.any(), i
        else:
            torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-6, msg=f"parameter {i}")


@pytest.mark.parametrize("name", ["dreamer_v3_current", "dreamer_v3_proprio_current"])
def test_the_world_model_loss_hands_on_its_graph_for_the_one_laprop_phase(name):
    """The world-model loss keeps the posterior graph for the replay critic term, so the one-phase LaProp update
    trains the world model by it: the world model's gradient with the replay term differs from the one without
    (once the critic's zero-initialised output layer has moved)."""
    agent, optim_cfg, batch = build(name)
    assert agent.model_loss.keep_graph
    update = make_update(agent, optim_cfg)
    data = batch(100)
    with torch.no_grad():  # the critic's output layer starts at zero (outscale 0): no gradient to its inputs yet
        for p in agent.value.parameters():
            p.add_(0.01 * torch.randn_like(p))
    grads = []
    for scale in (agent.value_loss.replay_scale, 0.0):
        agent.value_loss.replay_scale = scale
        agent.world_model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        update.losses(data, backward=True)
        grads.append(torch.cat([p.grad.flatten() for p in agent.world_model.parameters() if p.grad is not None]))
    assert grads[0].shape == grads[1].shape and not torch.allclose(grads[0], grads[1])


def test_phase_by_name_lists_the_phases():
    agent, optim_cfg, _ = build("dreamer_v3_current")
    update = make_update(agent, optim_cfg)
    with pytest.raises(KeyError, match=r"'model'.*\['agent'\]"):
        update.phase("model")
    assert update.phase("agent") is update.phases[0]
