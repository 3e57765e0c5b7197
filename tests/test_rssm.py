"""The RSSM against a plain loop of its equations (Dreamer Eq. 1, PlaNet Sec. 3) built from its own layers.

    h_t = GRU(elu(img_in(cat(s_{t-1}, a_{t-1}))), h_{t-1})        (s, h, a zero where is_init)
    q(s_t | h_t, e_t) = N(m, softplus(x) + 0.1),  (m, x) = obs_out(elu(Dense(cat(h_t, e_t))))
    p(s_t | h_t)      = N(m, softplus(x) + 0.1),  (m, x) = img_out(h_t)
"""
import pytest
import torch
from torch.nn import functional as F

from dreamer_trl.model.rssm import gru_cell_rssm

S, D, A, E = 4, 8, 2, 6


def rssm_and_inputs(B=3, T=6, seed=0, min_std=0.1):
    torch.manual_seed(seed)
    rssm = gru_cell_rssm(A, E, S, D, hidden_dim=8, min_std=min_std)
    embed, prev_action = torch.randn(B, T, E), torch.rand(B, T, A) * 2 - 1
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    return rssm, embed, prev_action, is_init


def observe(rssm, embed, prev_action, is_init, seed=1, **kw):
    torch.manual_seed(seed)
    return rssm.observe(embed, prev_action, is_init, **kw)


def gaussian(raw, min_std=0.1):
    mean, x = raw.chunk(2, -1)
    return mean, torch.log1p(torch.exp(x)) + min_std


def posterior_raw(rssm, belief, embed):
    """The posterior's first layer as the one Dense on concat(h_t, e_t) that obs_belief/obs_embed split."""
    weight = torch.cat([rssm.obs_belief.weight, rssm.obs_embed.weight], 1)
    return rssm.obs_out[-1](F.elu(F.linear(torch.cat([belief, embed], -1), weight, rssm.obs_embed.bias)))


def observe_by_equations(rssm, embed, prev_action, is_init, state=None, belief=None, seed=1):
    """Filtering step by step; the posterior noise is drawn per step from the global stream, as in observe."""
    torch.manual_seed(seed)
    B, T = embed.shape[:2]
    s = torch.zeros(B, S) if state is None else state
    h = torch.zeros(B, D) if belief is None else belief
    out = {k: [] for k in ("state", "belief", "prior_mean", "prior_std", "posterior_mean", "posterior_std")}
    for t in range(T):
        reset = is_init[:, t]                                                   # (B, 1)
        s, h = torch.where(reset, 0.0, s), torch.where(reset, 0.0, h)
        a = torch.where(reset, 0.0, prev_action[:, t])
        h = rssm.core.gru(F.elu(rssm.core.img_in(torch.cat([s, a], -1))), h)
        mean, std = gaussian(posterior_raw(rssm, h, embed[:, t]))
        s = mean + std * torch.randn(B, S)
        prior_mean, prior_std = gaussian(rssm.img_out(h))
        for k, v in zip(out, (s, h, prior_mean, prior_std, mean, std)):
            out[k].append(v)
    return {k: torch.stack(v, 1) for k, v in out.items()}


def assert_outputs_close(out, ref):
    assert set(out) == set(ref)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], msg=lambda m: f"{k}: {m}")


def test_shapes():
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    out = observe(rssm, embed, prev_action, is_init)
    for k in ("state", "prior_mean", "prior_std", "posterior_mean", "posterior_std"):
        assert out[k].shape == (3, 6, S), k
    assert out["belief"].shape == (3, 6, D)


@pytest.mark.parametrize("min_std", [0.1, 0.4])
def test_std_is_softplus_of_the_raw_output_plus_min_std(min_std):
    rssm, embed, prev_action, is_init = rssm_and_inputs(min_std=min_std)
    out = observe(rssm, embed, prev_action, is_init)
    with torch.no_grad():
        prior_mean, prior_std = gaussian(rssm.img_out(out["belief"]), min_std)
        post_mean, post_std = gaussian(posterior_raw(rssm, out["belief"], embed), min_std)
    torch.testing.assert_close(out["prior_mean"], prior_mean)
    torch.testing.assert_close(out["prior_std"], prior_std)
    torch.testing.assert_close(out["posterior_mean"], post_mean)
    torch.testing.assert_close(out["posterior_std"], post_std)


def test_observe_matches_the_equations():
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    is_init[1, 3] = True
    assert_outputs_close(observe(rssm, embed, prev_action, is_init), observe_by_equations(rssm, embed, prev_action, is_init))


def test_window_starting_mid_episode_uses_its_previous_action():
    """No is_init on the first row: zero state and belief, but a_{t-1} is real and enters h_1."""
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    is_init[:] = False
    out = observe(rssm, embed, prev_action, is_init)
    assert_outputs_close(out, observe_by_equations(rssm, embed, prev_action, is_init))
    zero_first = prev_action.clone()
    zero_first[:, 0] = 0.0
    other = observe(rssm, embed, zero_first, is_init)
    assert not torch.allclose(out["belief"][:, 0], other["belief"][:, 0])


def test_window_continues_from_given_state_and_belief():
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    is_init[:] = False
    state, belief = torch.randn(3, S), torch.randn(3, D)
    out = observe(rssm, embed, prev_action, is_init, state=state, belief=belief)
    assert_outputs_close(out, observe_by_equations(rssm, embed, prev_action, is_init, state, belief))
    assert not torch.allclose(out["belief"][:, 0], observe(rssm, embed, prev_action, is_init)["belief"][:, 0])


def test_is_init_in_the_middle_resets_state_belief_and_previous_action():
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    is_init[:] = False
    is_init[:, 3] = True
    state, belief = torch.randn(3, S), torch.randn(3, D)
    base = observe(rssm, embed, prev_action, is_init, state=state, belief=belief)
    assert_outputs_close(base, observe_by_equations(rssm, embed, prev_action, is_init, state, belief))
    # nothing before the reset (inputs, carried state, the action at the reset row) reaches it
    embed2, action2 = embed.clone(), prev_action.clone()
    embed2[:, :3] += 1.0
    action2[:, :4] = 0.5
    changed = observe(rssm, embed2, action2, is_init, state=-state, belief=-belief)
    torch.testing.assert_close(base["belief"][:, 3:], changed["belief"][:, 3:])
    assert not torch.allclose(base["belief"][:, 2], changed["belief"][:, 2])
    # the reset row's belief is one GRU step from zeros with a zero action
    expected = rssm.core.gru(F.elu(rssm.core.img_in(torch.zeros(3, S + A))), torch.zeros(3, D))
    torch.testing.assert_close(base["belief"][:, 3], expected)


def test_observe_step_chained_matches_the_equations():
    """observe_step carries (s, h) between calls as the acting policy does."""
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    is_init[2, 4] = True
    ref = observe_by_equations(rssm, embed, prev_action, is_init)
    torch.manual_seed(1)
    state, belief = rssm.initial((3,))
    for t in range(embed.shape[1]):
        state, belief = rssm.observe_step(state, belief, prev_action[:, t], embed[:, t], is_init[:, t])
        torch.testing.assert_close(belief, ref["belief"][:, t])
        torch.testing.assert_close(state, ref["state"][:, t])


def test_information_flows_forward_in_time():
    rssm, embed, prev_action, is_init = rssm_and_inputs()
    base = observe(rssm, embed, prev_action, is_init)
    embed2 = embed.clone()
    embed2[:, 0] += 1.0
    changed = observe(rssm, embed2, prev_action, is_init)
    for t in range(1, embed.shape[1]):
        assert not torch.allclose(base["belief"][:, t], changed["belief"][:, t]), t


def test_prior_step_with_given_noise_matches_the_equations():
    rssm, *_ = rssm_and_inputs()
    state, belief, action = torch.randn(5, S), torch.randn(5, D), torch.rand(5, A)
    noise = torch.randn(5, S)
    params, next_state, next_belief = rssm.prior_step(state, belief, action, noise)
    h = rssm.core.gru(F.elu(rssm.core.img_in(torch.cat([state, action], -1))), belief)
    mean, std = gaussian(rssm.img_out(h))
    torch.testing.assert_close(next_belief, h)
    torch.testing.assert_close(params["mean"], mean)
    torch.testing.assert_close(params["std"], std)
    torch.testing.assert_close(next_state, mean + std * noise)


@pytest.mark.parametrize("horizon", [1, 5])
def test_imagine_shapes_and_gradient_to_actions(horizon):
    rssm, *_ = rssm_and_inputs()
    state, belief = torch.randn(7, S), torch.randn(7, D)
    w = torch.zeros(S + D, A, requires_grad=True)
    roll = rssm.imagine(state, belief, lambda s, h: torch.tanh(torch.cat([s, h], -1) @ w), horizon)
    assert roll["state"].shape == (7, horizon, S) and roll["belief"].shape == (7, horizon, D)
    assert roll["action"].shape == (7, horizon, A)
    roll["state"][:, -1].sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_imagine_chains_prior_steps_from_the_start_state():
    """Returns s_1..s_H (not the start), with a_t = policy(s_t, h_t) taken before step t + 1."""
    rssm, *_ = rssm_and_inputs()
    state, belief = torch.randn(4, S), torch.randn(4, D)
    policy = lambda s, h: torch.tanh(s[:, :A] + h[:, :A])  # noqa: E731
    torch.manual_seed(2)
    roll = rssm.imagine(state, belief, policy, 3)
    torch.manual_seed(2)
    s, h = state, belief
    for t in range(3):
        a = policy(s, h)
        h = rssm.core.gru(F.elu(rssm.core.img_in(torch.cat([s, a], -1))), h)
        mean, std = gaussian(rssm.img_out(h))
        s = mean + std * torch.randn(4, S)
        torch.testing.assert_close(roll["action"][:, t], a)
        torch.testing.assert_close(roll["belief"][:, t], h)
        torch.testing.assert_close(roll["state"][:, t], s)


@pytest.mark.parametrize("groups,classes", [(3, 4), (2, 2)])
def test_rssm_with_categorical_latents_observes_and_imagines_with_one_hot_states(groups, classes):
    from dreamer_trl.model.latent import CategoricalLatent
    torch.manual_seed(0)
    latent = CategoricalLatent(groups, classes)
    rssm = gru_cell_rssm(A, E, belief_dim=D, hidden_dim=8, latent=latent)
    B, T, Sc = 3, 5, groups * classes
    embed, prev_action = torch.randn(B, T, E), torch.rand(B, T, A) * 2 - 1
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    out = rssm.observe(embed, prev_action, is_init)
    assert out["state"].shape == (B, T, Sc) and out["belief"].shape == (B, T, D)
    assert out["prior_logits"].shape == out["posterior_logits"].shape == (B, T, Sc)
    assert torch.equal(out["state"].detach().view(B, T, groups, classes).sum(-1), torch.ones(B, T, groups))
    kl = latent.kl({"logits": out["posterior_logits"]}, {"logits": out["prior_logits"]})
    assert kl.shape == (B, T) and (kl >= -1e-6).all()
    kl.mean().backward()
    assert rssm.obs_out[-1].weight.grad.abs().sum() > 0 and rssm.img_out[-1].weight.grad.abs().sum() > 0
    start = (out["state"][:, -1].detach(), out["belief"][:, -1].detach())
    weight = torch.randn(Sc + D, A, requires_grad=True)
    imagined = rssm.imagine(*start, lambda s, h: torch.tanh(torch.cat([s, h], -1) @ weight), horizon=4)
    assert imagined["state"].shape == (B, 4, Sc) and imagined["belief"].shape == (B, 4, D)
    assert imagined["action"].shape == (B, 4, A)
    assert torch.equal(imagined["state"].detach().view(B, 4, groups, classes).sum(-1), torch.ones(B, 4, groups))
    imagined["belief"].sum().backward()
    assert weight.grad.abs().sum() > 0


def _learned_v3_rssm(seed=0):
    """The V3 2023 RSSM (norm GRU, categorical latent) with a learned initial state, w drawn at random."""
    from dreamer_trl.builders.networks import make_world_model
    from dreamer_trl.config import make_preset, set_field

    cfg = make_preset("dreamer_v3_proprio")
    for name, value in {"world_model.rssm.belief_dim": 16, "world_model.rssm.hidden": 16,
                        "world_model.latent.state_dim": 4, "world_model.latent.classes": 4,
                        "world_model.vector_units": 16, "world_model.units": 16}.items():
        set_field(cfg, name, value)
    assert cfg.world_model.rssm.initial == "learned"
    torch.manual_seed(seed)
    rssm = make_world_model("observation", (3,), 2, cfg).rssm
    with torch.no_grad():
        rssm.initial_belief.normal_()
    return rssm


def test_learned_initial_state_is_tanh_w_and_the_priors_mode():
    """danijar/dreamerv3 423291a nets.py RSSM.initial ('learned'): deter = tanh(w), stoch = the mode (one-hot
    argmax per group) of the prior's logits at deter."""
    rssm = _learned_v3_rssm()
    start = rssm.initial((2,))
    h0 = torch.tanh(rssm.initial_belief)
    logits = rssm.img_out(h0).reshape(4, 4)
    s0 = F.one_hot(logits.argmax(-1), 4).float().reshape(-1)
    torch.testing.assert_close(start.belief, h0.expand(2, -1))
    torch.testing.assert_close(start.state, s0.expand(2, -1))


def test_a_reset_starts_from_the_learned_initial_state():
    """obs_step's reset (``x * (1 - is_first) + initial * is_first``): a sequence with episode starts at rows 0
    and 3 equals two runs given the learned initial state explicitly, with zero previous actions there."""
    rssm = _learned_v3_rssm()
    B, T = 2, 6
    g = torch.Generator().manual_seed(3)
    embed, action = torch.randn(B, T, rssm.obs_embed.in_features, generator=g), torch.randn(B, T, 2, generator=g)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = is_init[:, 3] = True
    torch.manual_seed(5)
    full = rssm.observe(embed, action, is_init)
    start = rssm.initial((B,))
    no_init = torch.zeros(B, 3, 1, dtype=torch.bool)
    torch.manual_seed(5)
    first = rssm.observe(embed[:, :3], torch.cat([torch.zeros(B, 1, 2), action[:, 1:3]], 1), no_init,
                         start.state, start.belief)
    second = rssm.observe(embed[:, 3:], torch.cat([torch.zeros(B, 1, 2), action[:, 4:]], 1), no_init,
                          start.state, start.belief)
    for key in ("state", "belief"):
        torch.testing.assert_close(full[key], torch.cat([first[key], second[key]], 1))
    full["belief"].square().sum().backward()
    assert rssm.initial_belief.grad is not None and rssm.initial_belief.grad.abs().sum() > 0


def test_zeros_initial_has_no_initial_parameter():
    rssm, *_ = rssm_and_inputs()
    assert rssm.initial_belief is None
    assert not any("initial" in name for name, _ in rssm.named_parameters())
