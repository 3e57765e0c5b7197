"""symlog/symexp and the two-hot codec against plain Python loops written from DreamerV3 Eq. 9-11."""
import math

import pytest
import torch

from dreamer_trl.model.symlog import TwoHotCodec, symexp, symlog, symmetric_bins


def test_symlog_matches_its_definition_and_symexp_inverts_it():
    x = torch.tensor([-1e6, -300.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 1.0, 42.0, 1e6], dtype=torch.float64)
    for xi, si in zip(x.tolist(), symlog(x).tolist()):
        assert si == pytest.approx(math.copysign(math.log(abs(xi) + 1), xi) if xi else 0.0, rel=1e-12)
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-12, atol=0)
    y = torch.linspace(-20, 20, 101, dtype=torch.float64)
    torch.testing.assert_close(symlog(symexp(y)), y)
    assert symlog(torch.zeros(1)).item() == 0.0 and symexp(torch.zeros(1)).item() == 0.0


@pytest.mark.parametrize("space", ["symexp", "symlog"])
@pytest.mark.parametrize("num_bins", [255, 8])
def test_bins_are_linspace_through_symexp_and_exactly_symmetric(space, num_bins):
    bins = symmetric_bins(num_bins, -20, 20, space)
    ref = [(-20 + 40 * i / (num_bins - 1)) for i in range(num_bins)]
    if space == "symexp":
        ref = [math.copysign(math.expm1(abs(v)), v) for v in ref]
    torch.testing.assert_close(bins, torch.tensor(ref, dtype=torch.float32), rtol=1e-5, atol=1e-6)
    assert torch.equal(bins, -bins.flip(0))
    assert (bins[1:] > bins[:-1]).all()
    if num_bins % 2:
        assert bins[num_bins // 2].item() == 0.0


def two_hot_loop(bins, value):
    """Eq. 11 by hand: weights on the two neighbouring bins, all on the end bin outside the range."""
    K = len(bins)
    w = [0.0] * K
    if value <= bins[0]:
        w[0] = 1.0
    elif value >= bins[-1]:
        w[-1] = 1.0
    else:
        k = max(i for i in range(K) if bins[i] <= value)
        frac = (value - bins[k]) / (bins[k + 1] - bins[k])
        w[k] += 1 - frac
        w[k + 1] += frac
    return w


@pytest.mark.parametrize("space", ["symexp", "symlog"])
def test_encode_matches_a_loop_on_inside_outside_and_exactly_on_bin_edges(space):
    codec = TwoHotCodec(9, -5.0, 5.0, space)
    bins = codec.bins.tolist()
    to_bin = (lambda v: v) if space == "symexp" else (lambda v: math.copysign(math.log1p(abs(v)), v))
    from_bin = (lambda v: v) if space == "symexp" else (lambda v: math.copysign(math.expm1(abs(v)), v))
    on_edges = [from_bin(b) for b in bins]                     # exactly on every bin, both ends included
    g = torch.Generator().manual_seed(0)
    inside = (torch.rand(40, generator=g) * 2 - 1) * from_bin(bins[-1]) * 0.999
    outside = [from_bin(bins[-1]) * 3, -from_bin(bins[-1]) * 3, 1e9, -1e9]
    values = torch.tensor(on_edges + inside.tolist() + outside + [0.0])
    out = codec.encode(values)
    assert out.shape == (len(values), 9)
    for v, row in zip(values.tolist(), out.tolist()):
        ref = two_hot_loop(bins, to_bin(v))
        assert row == pytest.approx(ref, abs=1e-6), v
    torch.testing.assert_close(out.sum(-1), torch.ones(len(values)))
    for i in range(9):  # on a bin edge: exactly one-hot
        assert out[i, i].item() == pytest.approx(1.0, abs=1e-6)


def test_every_one_of_the_255_value_space_bins_encodes_to_its_own_one_hot():
    codec = TwoHotCodec()
    assert torch.equal(codec.encode(codec.bins), torch.eye(255))


@pytest.mark.parametrize("space", ["symexp", "symlog"])
def test_encode_then_bin_mean_recovers_values_inside_the_range(space):
    codec = TwoHotCodec(space=space)
    y = torch.tensor([-1234.5, -3.0, -0.01, 0.0, 0.2, 1.0, 7.5, 980.0])
    mean = (codec.encode(y).double() * codec.bins.double()).sum(-1)
    recovered = mean if space == "symexp" else symexp(mean)
    torch.testing.assert_close(recovered.float(), y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("space", ["symexp", "symlog"])
def test_decode_matches_a_loop_over_softmax_weighted_bins(space):
    codec = TwoHotCodec(255, space=space)
    logits = torch.randn(6, 255, generator=torch.Generator().manual_seed(1)) * 3
    out = codec.decode(logits)
    bins = codec.bins.double().tolist()
    for row, value in zip(logits.double().tolist(), out.tolist()):
        z = max(row)
        e = [math.exp(v - z) for v in row]
        mean = sum(ei * b for ei, b in zip(e, bins)) / sum(e)
        ref = mean if space == "symexp" else math.copysign(math.expm1(abs(mean)), mean)
        assert value == pytest.approx(ref, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("space", ["symexp", "symlog"])
def test_uniform_logits_decode_to_exactly_zero(space):
    codec = TwoHotCodec(space=space)
    assert torch.equal(codec.decode(torch.zeros(3, 255)), torch.zeros(3))
    assert torch.equal(TwoHotCodec(8, space=space).decode(torch.zeros(2, 8)), torch.zeros(2))


def test_nll_is_cross_entropy_to_the_two_hot_and_its_gradient_is_softmax_minus_target():
    codec = TwoHotCodec(255)
    logits = torch.randn(4, 255, generator=torch.Generator().manual_seed(2)).requires_grad_()
    y = torch.tensor([0.0, 3.3, -50.0, 1e12])
    loss = codec.nll(logits, y)
    target = codec.encode(y)
    ref = [-sum(t * l for t, l in zip(trow, lrow)) for trow, lrow in
           zip(target.tolist(), torch.log_softmax(logits.detach(), -1).tolist())]
    torch.testing.assert_close(loss.detach(), torch.tensor(ref), rtol=1e-5, atol=1e-5)
    loss.sum().backward()
    torch.testing.assert_close(logits.grad, torch.softmax(logits.detach(), -1) - target)


def test_bins_follow_the_module_device_and_dtype_moves_and_stay_out_of_the_state_dict():
    codec = TwoHotCodec(5)
    assert "bins" not in codec.state_dict()
    codec = codec.to(torch.float64)
    assert codec.bins.dtype == torch.float64
    assert codec.encode(torch.tensor([0.5], dtype=torch.float32)).dtype == torch.float64


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="space"):
        TwoHotCodec(space="linear")
    with pytest.raises(ValueError, match="low == -high"):
        TwoHotCodec(low=-1, high=2)
