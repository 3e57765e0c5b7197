"""dreamer_trl.training.optim against plain per-element loops of the update equations (see the module docstring)."""
import copy
import math

import pytest
import torch

from dreamer_trl.training.optim import AdaptiveGradClip, LaProp, adam, adaptive_clip_grad_, warmup_lr
from dreamer_trl.training.update import Phase


def agc_ref(g, p, clip, pmin):
    gn = math.sqrt(sum(x * x for x in g))
    pn = math.sqrt(sum(x * x for x in p))
    return [x / max(1.0, gn / (clip * max(pmin, pn))) for x in g]


def laprop_ref(params, grads_per_step, lr, b1, b2, eps, warmup, agc, pmin=1e-3):
    """Plain-Python LaProp: lists of floats per parameter, one element at a time."""
    params = [list(p) for p in params]
    v = [[0.0] * len(p) for p in params]
    m = [[0.0] * len(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        lr_t = lr * min(t - 1, warmup) / warmup if warmup else lr
        for i, (p, g) in enumerate(zip(params, grads)):
            if agc:
                g = agc_ref(g, p, agc, pmin)
            for j in range(len(p)):
                v[i][j] = b2 * v[i][j] + (1 - b2) * g[j] ** 2
                u = g[j] / (math.sqrt(v[i][j] / (1 - b2**t)) + eps)
                m[i][j] = b1 * m[i][j] + (1 - b1) * u
                p[j] -= lr_t * m[i][j] / (1 - b1**t)
    return params


def test_warmup_lr_is_optax_linear_ramp_read_before_the_increment():
    assert warmup_lr(4e-5, 1, 1000) == 0.0
    assert warmup_lr(4e-5, 2, 1000) == pytest.approx(4e-8)
    assert warmup_lr(4e-5, 501, 1000) == pytest.approx(2e-5)
    assert warmup_lr(4e-5, 1001, 1000) == pytest.approx(4e-5)
    assert warmup_lr(4e-5, 5000, 1000) == pytest.approx(4e-5)
    assert warmup_lr(4e-5, 1, 0) == 4e-5


def test_agc_clips_each_tensor_to_clip_times_its_norm_with_pmin():
    big = torch.nn.Parameter(torch.tensor([3.0, 4.0]))                       # norm 5: bound 1.5
    small = torch.nn.Parameter(torch.tensor([1e-5, 0.0]))                    # below pmin: bound 0.3 * 1e-3
    untouched = torch.nn.Parameter(torch.tensor([10.0, 0.0]))                # bound 3 > |g| = 1
    big.grad, small.grad, untouched.grad = torch.tensor([6.0, 8.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.6, 0.8])
    expected = [agc_ref(p.grad.tolist(), p.tolist(), 0.3, 1e-3) for p in (big, small, untouched)]
    adaptive_clip_grad_([big, small, untouched], clip=0.3, pmin=1e-3)
    for p, e in zip((big, small, untouched), expected):
        torch.testing.assert_close(p.grad, torch.tensor(e))
    assert big.grad.norm().item() == pytest.approx(1.5)
    assert small.grad.norm().item() == pytest.approx(3e-4)
    torch.testing.assert_close(untouched.grad, torch.tensor([0.6, 0.8]))


def test_agc_hook_clips_a_phase():
    p = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
    p.grad = torch.tensor([0.0, 10.0])
    AdaptiveGradClip(0.3).before_clip(Phase("model", torch.nn.Identity(), [p], torch.optim.SGD([p], lr=1.0)))
    torch.testing.assert_close(p.grad, torch.tensor([0.0, 0.3]))


@pytest.mark.parametrize("warmup,agc", [(0, 0.0), (3, 0.3)])
def test_laprop_matches_the_plain_loop(warmup, agc):
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64) * 1e-4]
    grads = [[torch.randn(2, 3, generator=g, dtype=torch.float64) * 5, torch.randn(4, generator=g, dtype=torch.float64)]
             for _ in range(6)]
    params = [torch.nn.Parameter(x.clone()) for x in init]
    opt = LaProp(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-20, warmup=warmup, agc=agc)
    for step in grads:
        for p, gr in zip(params, step):
            p.grad = gr.clone()
        opt.step()
    ref = laprop_ref([x.flatten().tolist() for x in init], [[gr.flatten().tolist() for gr in s] for s in grads],
                     1e-2, 0.9, 0.999, 1e-20, warmup, agc)
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach().flatten(), torch.tensor(r, dtype=torch.float64), rtol=1e-12, atol=1e-14)


def test_laprop_without_momentum_is_rms_scaled_sgd():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = LaProp([p], lr=0.1, warmup=0, agc=0.0, momentum=False)
    p.grad = torch.tensor([0.5, -4.0], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.9], dtype=torch.float64))  # g / |g| after correction


def test_laprop_state_dict_resumes_exactly():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(net.state_dict())
    opt, opt2 = LaProp(net.parameters(), lr=1e-2, warmup=2), None
    x = torch.randn(5, 3)
    for step in range(4):
        if step == 2:  # a fresh optimiser from the saved state continues identically
            opt2 = LaProp(twin.parameters(), lr=1e-2, warmup=2)
            opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as if saved and loaded
            twin.load_state_dict(net.state_dict())
        for model, o in ((net, opt), (twin, opt2)):
            if o is None:
                continue
            o.zero_grad()
            (model(x) ** 2).sum().backward()
            o.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_laprop_defaults_are_the_official_ones():
    d = LaProp([torch.nn.Parameter(torch.zeros(1))]).defaults
    assert (d["lr"], d["betas"], d["eps"], d["warmup"], d["agc"], d["agc_pmin"]) == (4e-5, (0.9, 0.999), 1e-20, 1000, 0.3, 1e-3)


def test_v2_adam_decays_by_one_minus_wd_then_takes_the_adam_step():
    torch.manual_seed(0)
    w0 = torch.randn(4, dtype=torch.float64)
    g = torch.randn(4, dtype=torch.float64)
    lr, wd, eps = 3e-4, 1e-6, 1e-5
    p = torch.nn.Parameter(w0.clone())
    opt = adam([p], lr, eps, wd)
    p.grad = g.clone()
    opt.step()
    # first Adam step: m_hat = g, v_hat = g^2
    expected = (1 - wd) * w0 - lr * g / (g.abs() + eps)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-15)
    assert opt.defaults["eps"] == 1e-5
