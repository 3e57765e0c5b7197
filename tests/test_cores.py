"""dreamer_trl.model.cores: the block GRU and the 2023 GRU against plain loops of their equations, and RSSM.

Official current core (dreamerv3/rssm.py ``_core``), per block g of h (width D/G):

    a' = a / max(1, |a|);  x = [silu(n(W0 h)), silu(n(W1 s)), silu(n(W2 a'))]
    y_g = silu(n_D(concat_g(W3_g [h_g, x])))        (the norm n_D over all D units)
    r_g, c_g, u_g = split_3(W4_g y_g + b4_g)
    h'_g = sigmoid(u_g - 1) tanh(sigmoid(r_g) c_g) + (1 - sigmoid(u_g - 1)) h_g
"""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dreamer_trl.model.cores import BlockGRU, NormGRU, squash_action
from dreamer_trl.model.latent import GaussianLatent
from dreamer_trl.model.layers import STYLE_2023, NetStyle
from dreamer_trl.model.rssm import RSSM

S, D, A, E, HID = 4, 12, 2, 6, 5


def silu(x):
    return x / (1 + torch.exp(-x))


def rms(norm, x):
    return x / torch.sqrt((x**2).mean(-1, keepdim=True) + norm.eps) * norm.weight


def dense_ref(block, x):
    """Linear -> RMSNorm -> SiLU written out."""
    return silu(rms(block[1], x @ block[0].weight.T + block[0].bias))


def sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def block_gru_ref(core: BlockGRU, h, s, a):
    """One step of the equations above, one sample and one block at a time (plain loops)."""
    G, d = core.blocks, D // core.blocks
    out = torch.empty_like(h)
    for n in range(h.shape[0]):
        a_n = torch.stack([v / max(1.0, abs(v.item())) for v in a[n]])
        x = torch.cat([dense_ref(core.in_belief, h[n]), dense_ref(core.in_state, s[n]), dense_ref(core.in_action, a_n)])
        lin, norm = core.hidden_layers[0], core.hidden_layers[1]
        pre = torch.cat([torch.cat([h[n, g * d:(g + 1) * d], x]) @ lin.weight[g] for g in range(G)]) + lin.bias
        y = silu(rms(norm, pre))
        for g in range(G):
            gates = y[g * d:(g + 1) * d] @ core.gates.weight[g] + core.gates.bias[g * 3 * d:(g + 1) * 3 * d]
            r, c, u = gates[:d], gates[d:2 * d], gates[2 * d:]
            u = sigmoid(u - 1)
            out[n, g * d:(g + 1) * d] = u * torch.tanh(sigmoid(r) * c) + (1 - u) * h[n, g * d:(g + 1) * d]
    return out


def randomise_norms_and_biases(module):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.RMSNorm, nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
            for name in ("bias",):
                b = getattr(m, name, None)
                if isinstance(b, nn.Parameter):
                    b.normal_(0, 0.3)


def inputs(N=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g), torch.randn(N, S, generator=g), 3 * torch.randn(N, A, generator=g)


@pytest.mark.parametrize("blocks", [1, 3])
def test_block_gru_matches_the_equations(blocks):
    torch.manual_seed(0)
    core = BlockGRU(D, S, A, HID, blocks=blocks)
    randomise_norms_and_biases(core)
    h, s, a = inputs()
    out = core(h, s, core.project_action(a))
    torch.testing.assert_close(out, block_gru_ref(core, h, s, a))


def test_block_gru_with_one_block_is_a_dense_gru_on_concat_of_h_and_inputs():
    """blocks=1: the block layers are dense layers on [h, x]; gates are the thirds of one dense output."""
    torch.manual_seed(0)
    core = BlockGRU(D, S, A, HID, blocks=1)
    h, s, a = inputs()
    x = torch.cat([core.in_belief(h), core.in_state(s), core.project_action(a)], -1)
    lin, norm = core.hidden_layers[0], core.hidden_layers[1]
    y = F.silu(norm(F.linear(torch.cat([h, x], -1), lin.weight[0].T, lin.bias)))
    r, c, u = F.linear(y, core.gates.weight[0].T, core.gates.bias).chunk(3, -1)
    u = torch.sigmoid(u - 1)
    torch.testing.assert_close(core(h, s, core.project_action(a)), u * torch.tanh(torch.sigmoid(r) * c) + (1 - u) * h)


def jacobian_blocks(core, h, s, a, G):
    jac = torch.autograd.functional.jacobian(lambda x: core(x[None], s[None], core.project_action(a[None]))[0], h)
    d = D // G
    return [[jac[i * d:(i + 1) * d, j * d:(j + 1) * d].abs().sum().item() for j in range(G)] for i in range(G)]


def test_recurrent_weights_are_block_diagonal_and_blocks_mix_only_through_the_dense_input_and_the_norm():
    torch.manual_seed(0)
    G = 3
    h, s, a = (v[0] for v in inputs())
    # Without norms and with the dense projection of h removed, block i of h' depends only on block i of h.
    core = BlockGRU(D, S, A, HID, blocks=G, style=NetStyle(norm="none"))
    with torch.no_grad():
        core.in_belief[0].weight.zero_()
    blocks = jacobian_blocks(core, h, s, a, G)
    assert all((blocks[i][j] > 0) == (i == j) for i in range(G) for j in range(G)), blocks
    # The official core: the dense projection of the whole h (and the RMS norm) reach every block.
    core = BlockGRU(D, S, A, HID, blocks=G)
    blocks = jacobian_blocks(core, h, s, a, G)
    assert all(blocks[i][j] > 0 for i in range(G) for j in range(G)), blocks


def test_squash_action_scales_to_unit_magnitude_without_differentiating_the_divisor():
    a = torch.tensor([-3.0, -0.5, 0.0, 0.7, 2.0], requires_grad=True)
    out = squash_action(a)
    torch.testing.assert_close(out, torch.tensor([-1.0, -0.5, 0.0, 0.7, 1.0]))
    out.sum().backward()
    torch.testing.assert_close(a.grad, torch.tensor([1 / 3, 1.0, 1.0, 1.0, 0.5]))


def test_norm_gru_2023_matches_the_equations():
    torch.manual_seed(0)
    core = NormGRU(D, S, A, HID, style=STYLE_2023)
    randomise_norms_and_biases(core)
    h, s, a = inputs()
    a_sq = a / a.abs().clamp(min=1)

    def ln(norm, x):
        m = x.mean(-1, keepdim=True)
        return (x - m) / torch.sqrt(((x - m) ** 2).mean(-1, keepdim=True) + norm.eps) * norm.weight + norm.bias

    assert core.img_in.bias is None and core.gru.bias is None             # 2023: no bias before a norm
    x = silu(ln(core.img_in_norm[0], torch.cat([s, a_sq], -1) @ core.img_in.weight.T))
    gates = ln(core.gru_norm, torch.cat([h, x], -1) @ core.gru.weight.T)
    r, c, u = gates[:, :D], gates[:, D:2 * D], gates[:, 2 * D:]
    u = sigmoid(u - 1)
    torch.testing.assert_close(core(h, s, core.project_action(a)), u * torch.tanh(sigmoid(r) * c) + (1 - u) * h)


def make_rssm(core="block", seed=0):
    torch.manual_seed(seed)
    if core == "block":
        return RSSM(BlockGRU(D, S, A, HID, blocks=3), GaussianLatent(S), E, HID)
    return RSSM(NormGRU(D, S, A, HID), GaussianLatent(S), E, HID, img_layers=1, style=STYLE_2023)


def observe_by_equations(rssm, embed, prev_action, is_init, seed=1):
    """Filtering step by step; posterior = obs_out(W [h, e] + b) with the joint first layer."""
    torch.manual_seed(seed)
    B, T = embed.shape[:2]
    s, h = torch.zeros(B, S), torch.zeros(B, D)
    w = torch.cat([rssm.obs_belief.weight, rssm.obs_embed.weight], 1)
    out = {k: [] for k in ("state", "belief", "posterior_mean", "posterior_std")}
    for t in range(T):
        reset = is_init[:, t]
        s, h = torch.where(reset, 0.0, s), torch.where(reset, 0.0, h)
        a = torch.where(reset, 0.0, prev_action[:, t])
        h = rssm.core(h, s, rssm.core.project_action(a))
        first = F.linear(torch.cat([h, embed[:, t]], -1), w, rssm.obs_embed.bias)
        params = rssm.latent.params(rssm.obs_out(first))
        s = params["mean"] + params["std"] * torch.randn(B, S)
        for k, v in zip(out, (s, h, params["mean"], params["std"])):
            out[k].append(v)
    out = {k: torch.stack(v, 1) for k, v in out.items()}
    prior = rssm.latent.params(rssm.img_out(out["belief"]))
    out.update(prior_mean=prior["mean"], prior_std=prior["std"])
    return out


@pytest.mark.parametrize("core", ["block", "2023"])
def test_rssm_v3_observe_matches_the_equations_with_resets(core):
    rssm = make_rssm(core)
    B, T = 3, 5
    embed, prev_action = torch.randn(B, T, E), 2 * torch.randn(B, T, A)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[1, 3] = True
    torch.manual_seed(1)
    out = rssm.observe(embed, prev_action, is_init)
    ref = observe_by_equations(rssm, embed, prev_action, is_init)
    assert set(out) == set(ref)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], msg=lambda m: f"{k}: {m}")


def test_rssm_v3_observe_step_chained_equals_observe_and_imagine_shapes():
    rssm = make_rssm()
    B, T = 2, 4
    embed, prev_action = torch.randn(B, T, E), torch.randn(B, T, A)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    torch.manual_seed(1)
    out = rssm.observe(embed, prev_action, is_init)
    torch.manual_seed(1)
    state, belief = rssm.initial((B,))
    for t in range(T):
        state, belief = rssm.observe_step(state, belief, prev_action[:, t], embed[:, t], is_init[:, t])
        torch.testing.assert_close(belief, out["belief"][:, t])
        torch.testing.assert_close(state, out["state"][:, t])
    roll = rssm.imagine(state, belief, lambda s, h: torch.tanh(h[:, :A]), horizon=3)
    assert roll["state"].shape == (B, 3, S) and roll["belief"].shape == (B, 3, D) and roll["action"].shape == (B, 3, A)
    assert rssm.feature_dim == S + D


def test_rssm_v3_prior_step_with_given_noise_is_deterministic_and_gradients_reach_the_core():
    rssm = make_rssm()
    s, h = torch.randn(2, S), torch.randn(2, D)
    a = torch.randn(2, A, requires_grad=True)
    noise = torch.randn(2, S)
    p1, s1, h1 = rssm.prior_step(s, h, a, noise)
    _, s2, _ = rssm.prior_step(s, h, a, noise)
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(s1, p1["mean"] + p1["std"] * noise)
    s1.sum().backward()
    assert a.grad.abs().sum() > 0 and rssm.core.gates.weight.grad.abs().sum() > 0


def test_rssm_v3_rejects_a_latent_of_another_width():
    with pytest.raises(ValueError, match="sample_dim"):
        RSSM(BlockGRU(D, S + 1, A, HID, blocks=3), GaussianLatent(S), E, HID)
