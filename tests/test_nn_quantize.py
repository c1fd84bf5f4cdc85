"""Quantisation, threshold functions, NeuromorphicReLU and value-to-spike layers vs Sinabs."""

import pytest
import torch

from eventsnn.nn import (
    Img2Spike,
    NeuromorphicReLU,
    Sig2Spike,
    build,
    quantize,
    stochastic_rounding,
    threshold_reset,
    threshold_subtract,
)


def test_quantize_floors_with_straight_through_gradient():
    x = torch.tensor([-1.5, 0.2, 2.7], requires_grad=True)
    y = quantize(x)
    assert y.tolist() == [-2.0, 0.0, 2.0]
    (g,) = torch.autograd.grad((y * torch.tensor([1.0, 2.0, 3.0])).sum(), x)
    assert g.tolist() == [1.0, 2.0, 3.0]


def test_stochastic_rounding_is_unbiased_and_straight_through():
    x = torch.full((20000,), 2.25, requires_grad=True)
    y = stochastic_rounding(x, torch.Generator().manual_seed(0))
    assert set(y.unique().tolist()) == {2.0, 3.0}
    assert float(y.detach().mean()) == pytest.approx(2.25, abs=0.02)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert bool((g == 1).all())


def test_threshold_functions_by_hand():
    v = torch.tensor([-0.5, 0.4, 0.8, 1.0, 2.6], requires_grad=True)
    counts = threshold_subtract(v, threshold=1.0, window=0.5)
    assert counts.tolist() == [0.0, 0.0, 0.0, 1.0, 2.0]
    (g,) = torch.autograd.grad(counts.sum(), v)
    assert g.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # v >= 0.5
    single = threshold_reset(v, threshold=2.0, window=0.5)
    assert single.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    (g,) = torch.autograd.grad(single.sum(), v)
    assert g.tolist() == [0.0, 0.0, 0.0, 0.0, 0.5]  # v >= 1.5, / threshold


def test_neuromorphic_relu_matches_sinabs():
    sinabs_layers = pytest.importorskip("sinabs.layers")
    x = torch.randn(4, 3, 5) * 3
    for quant in (True, False):
        ours = NeuromorphicReLU(quantize=quant, fanout=7)
        peer = sinabs_layers.NeuromorphicReLU(quantize=quant, fanout=7)
        assert torch.equal(ours(x), peer(x))
        assert torch.equal(ours.activity, peer.activity)
    ours = NeuromorphicReLU(stochastic_rounding=True).eval()
    assert torch.equal(ours(x), torch.relu(x).round())
    assert build([{"neuromorphic_relu": {"fanout": 3}}], (3, 5))[0].fanout == 3


def test_img2spike_and_sig2spike_equal_sinabs_for_the_same_seed():
    sinabs_layers = pytest.importorskip("sinabs.layers")
    image = torch.rand(1, 2, 5, 5) * 255
    torch.manual_seed(3)
    peer = sinabs_layers.Img2SpikeLayer(image_shape=(2, 5, 5), tw=20, max_rate=500)(image)
    torch.manual_seed(3)
    ours = Img2Spike(tw=20, max_rate=500)(image)
    assert ours.shape == (20, 1, 2, 5, 5) and torch.equal(ours, peer)

    signal = torch.rand(4, 6)  # Sinabs: (channels, time)
    torch.manual_seed(5)
    peer = sinabs_layers.Sig2SpikeLayer(channels_in=4, tw=3)(signal)
    torch.manual_seed(5)
    ours = Sig2Spike(tw=3)(signal.t().unsqueeze(1))  # ours: (T, B=1, C)
    assert ours.shape == (18, 1, 4) and torch.equal(ours[:, 0], peer)
    held = Sig2Spike(tw=2, spk_out=False)(signal.t().unsqueeze(1))
    assert torch.equal(held[0], held[1]) and torch.equal(held[0, 0], signal[:, 0])
