"""Synapse and shape layers: time folding, pooling, cropping, output shapes, Sinabs pooling."""

import pytest
import torch
import torch.nn.functional as F

from eventsnn.nn import (
    LIF,
    Conv2d,
    Crop2d,
    Flatten,
    Input,
    Linear,
    MaxPool2d,
    ShapeError,
    SpikingMaxPool2d,
    SumPool2d,
    get_states,
    reset_states,
    spiking_conv2d,
    spiking_linear,
)


def _spikes(*shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).float()


def test_conv_folds_time_into_batch_and_reports_shape():
    conv = Conv2d(2, 4, 3, stride=2, padding=1)
    x = _spikes(5, 3, 2, 9, 11)
    out = conv(x)
    per_step = torch.stack([F.conv2d(x_t, conv.weight, conv.bias, 2, 1) for x_t in x])
    torch.testing.assert_close(out, per_step)
    assert tuple(out.shape[2:]) == conv.output_shape((2, 9, 11)) == (4, 5, 6)
    assert conv(x[0]).shape == (3, 4, 5, 6)  # one step (B, C, H, W)
    with pytest.raises(ShapeError):
        conv.output_shape((3, 9, 11))


def test_sum_pool_sums_windows_and_max_pool_takes_or():
    x = torch.arange(16.0).view(1, 1, 1, 4, 4)
    assert SumPool2d(2)(x)[0, 0, 0].tolist() == [[10.0, 18.0], [42.0, 50.0]]
    assert MaxPool2d(2)(x)[0, 0, 0].tolist() == [[5.0, 7.0], [13.0, 15.0]]
    assert SumPool2d(2, stride=1).output_shape((1, 4, 4)) == (1, 3, 3)
    assert MaxPool2d(3).output_shape((5, 10, 7)) == (5, 3, 2)


@pytest.mark.parametrize("kernel", [2, (3, 2), 4, (2, 3)])
def test_sum_pool_tiles_match_torch_pooling_values_and_gradients(kernel):
    """The strided-addition path against avg_pool2d with divisor 1 (odd sizes drop the edge)."""
    x = torch.rand(3, 2, 2, 11, 9, dtype=torch.float64, requires_grad=True)
    ours = SumPool2d(kernel)(x)
    theirs = F.avg_pool2d(x.flatten(0, 1), kernel, kernel, divisor_override=1)
    torch.testing.assert_close(ours, theirs.view(3, 2, *theirs.shape[1:]))
    assert tuple(ours.shape[2:]) == SumPool2d(kernel).output_shape((2, 11, 9))
    (ours_grad,) = torch.autograd.grad(ours.square().sum(), x)
    (theirs_grad,) = torch.autograd.grad(theirs.square().sum(), x)
    torch.testing.assert_close(ours_grad, theirs_grad)
    assert ours_grad[..., 10, :].abs().sum() == 0  # 11 rows: no tile holds the last one


def test_crop_removes_top_bottom_left_right():
    x = torch.arange(30.0).view(1, 1, 1, 5, 6)
    crop = Crop2d(((1, 2), (0, 3)))
    out = crop(x)
    assert out[0, 0, 0].tolist() == [[6.0, 7.0, 8.0], [12.0, 13.0, 14.0]]
    assert crop.output_shape((1, 5, 6)) == tuple(out.shape[2:]) == (1, 2, 3)


def test_flatten_keeps_time_and_batch_and_linear_maps_features():
    x = _spikes(4, 2, 3, 2, 2)
    flat = Flatten()(x)
    assert flat.shape == (4, 2, 12) and Flatten().output_shape((3, 2, 2)) == (12,)
    lin = Linear(12, 5)
    assert lin(flat).shape == (4, 2, 5) and lin.output_shape((12,)) == (5,)
    with pytest.raises(ShapeError, match="flatten"):
        lin.output_shape((3, 2, 2))


def test_spiking_blocks_chain_synapse_and_neuron():
    block = spiking_conv2d(2, 3, 3, LIF(beta=0.9))
    out = block(_spikes(6, 2, 2, 8, 8) * 3)
    assert out.shape == (6, 2, 3, 6, 6) and set(out.unique().tolist()) <= {0.0, 1.0}
    assert block.output_shape((2, 8, 8)) == (3, 6, 6)
    lin = spiking_linear(12, 4, LIF())
    assert lin(_spikes(6, 2, 12)).shape == (6, 2, 4)


def test_spiking_max_pool_matches_sinabs_and_chunks_exactly():
    sinabs_layers = pytest.importorskip("sinabs.layers")
    x = _spikes(10, 2, 3, 6, 6, p=0.4)
    ours = SpikingMaxPool2d(2)
    peer = sinabs_layers.SpikingMaxPooling2dLayer((2, 2))
    whole = ours(x)
    # Sinabs takes (T, C, H, W) for one sample
    for b in range(x.shape[1]):
        assert torch.equal(whole[:, b], peer(x[:, b]))
    reset_states(ours)
    chunks = torch.cat([ours(x[:3]), ours(x[3:])])
    assert torch.equal(chunks, whole)
    assert set(get_states(ours)) == {"counts"}
    assert ours.output_shape((3, 6, 6)) == (3, 3, 3)


def test_input_layer_checks_the_per_sample_shape():
    layer = Input((2, 4, 4))
    x = torch.zeros(3, 1, 2, 4, 4)
    assert layer(x) is x and layer.output_shape((2, 4, 4)) == (2, 4, 4)
    with pytest.raises(ShapeError, match=r"\(T, B, \*\(2, 4, 4\)\)"):
        layer(torch.zeros(3, 1, 2, 4, 5))


def test_conv_same_padding_keeps_the_frame_size():
    conv = Conv2d(2, 3, 3, padding="same")
    x = _spikes(2, 1, 2, 7, 9)
    assert tuple(conv(x).shape[2:]) == conv.output_shape((2, 7, 9)) == (3, 7, 9)


@pytest.mark.parametrize("size", [(8, 10), (11, 7)])
def test_fast_2x2_max_pool_equals_torch_values_and_gradients(size):
    x = _spikes(3, 2, 4, *size, p=0.4)
    x[0, 0, 0] = torch.randn(size)  # dense values and ties both
    x.requires_grad_()
    ours = MaxPool2d(2)(x)
    ref = F.max_pool2d(x.flatten(0, 1), 2).view_as(ours)
    assert torch.equal(ours, ref)
    g = torch.randn_like(ours)
    (g_ours,) = torch.autograd.grad(ours, x, g)
    (g_ref,) = torch.autograd.grad(ref, x, g)
    assert torch.equal(g_ours, g_ref)
