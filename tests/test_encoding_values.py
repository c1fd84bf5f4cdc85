"""Value encoders: equal to Sinabs' and snnTorch's, seeded, statistically right, on any device."""

import pytest
import torch
from sinabs.layers import Img2SpikeLayer, Sig2SpikeLayer
from snntorch import spikegen

from eventsnn.encoding import values


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("negative_spikes", [False, True])
def test_rate_equals_sinabs_img2spike_under_the_same_seed(negative_spikes):
    image = torch.rand(2, 8, 8, generator=seeded(1)) * 255 * (2 if negative_spikes else 1)
    image = image - (255 if negative_spikes else 0)
    torch.manual_seed(5)
    theirs = Img2SpikeLayer((2, 8, 8), tw=50, max_rate=400, negative_spikes=negative_spikes)(image)
    ours = values.rate(
        image, tw=50, max_rate=400, negative_spikes=negative_spikes, generator=seeded(5)
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_rate_is_seeded_and_fires_at_the_asked_rate():
    image = torch.full((1000,), 255.0)
    a = values.rate(image, tw=100, max_rate=300, generator=seeded(3))
    assert torch.equal(a, values.rate(image, tw=100, max_rate=300, generator=seeded(3)))
    assert abs(a.mean().item() - 0.3) < 0.01  # 1e5 Bernoulli(0.3) draws


def test_signal_to_spike_equals_sinabs_sig2spike():
    signal = torch.rand(4, 30, generator=seeded(2))
    for tw in (1, 3):
        torch.manual_seed(9)
        theirs = Sig2SpikeLayer(4, tw=tw, norm_level=0.8)(signal)
        ours = values.signal_to_spike(signal, tw=tw, norm_level=0.8, generator=seeded(9))
        assert ours.shape == (tw * 30, 4)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_random_flicker_is_a_shared_threshold_per_step():
    image = torch.tensor([0.0, 0.25, 0.5, 1.0])
    spikes = values.random_flicker(image, 4000, generator=seeded(4))
    assert spikes.shape == (4000, 4)
    # brighter inputs fire whenever dimmer ones do (one threshold per step)
    assert (spikes[:, 2] >= spikes[:, 1]).all() and (spikes[:, 1] >= spikes[:, 0]).all()
    torch.testing.assert_close(spikes.mean(0), image, atol=0.03, rtol=0)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"linear": True},
        {"normalize": True, "linear": True},
        {"normalize": True},
        {"tau": 5, "threshold": 0.1, "clip": True},
        {"first_spike_time": 2, "tau": 3},
        {"on_target": 1.5, "off_target": 0.2, "linear": True, "tau": 8},
    ],
    ids=str,
)
def test_latency_equals_snntorch(options):
    data = torch.rand(3, 16, generator=seeded(6))
    data[0, :3] = torch.tensor([0.0, 0.005, 1.0])
    # bypass only silences snnTorch's error for times past num_steps (those give no spike)
    theirs = spikegen.latency(data, num_steps=10, bypass=True, **options)
    ours = values.latency(data, num_steps=10, **options)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_latency_hand_computed_linear_times():
    # snnTorch's docstring example: [0.02, 0.5, 1] over 5 normalised linear steps -> 3.92, 2, 0
    times = values.latency_times(torch.tensor([0.02, 0.5, 1.0]), 5, normalize=True, linear=True)
    torch.testing.assert_close(times, torch.tensor([3.92, 2.0, 0.0]))
    spikes = values.latency(torch.tensor([0.02, 0.5, 1.0]), 5, normalize=True, linear=True)
    assert spikes.argmax(0).tolist() == [4, 2, 0]
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        values.latency(torch.tensor([1.5]), 5)


@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("off_spike", [False, True])
def test_delta_equals_snntorch(padding, off_spike):
    data = torch.randn(20, 2, 5, generator=seeded(7)).cumsum(0)
    theirs = spikegen.delta(data, threshold=0.5, padding=padding, off_spike=off_spike)
    ours = values.delta(data, threshold=0.5, padding=padding, off_spike=off_spike)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_delta_hand_computed():
    b = torch.tensor([1, 2, 0, 2, 2.9])
    assert values.delta(b, threshold=1, off_spike=True).tolist() == [1, 1, -1, 1, 0]
    assert values.delta(b, threshold=1, padding=True, off_spike=True).tolist() == [0, 1, -1, 1, 0]


def test_encoders_follow_the_device_of_their_input():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    image = torch.rand(5, 5, device=device)
    assert values.rate(image, tw=3, norm=1.0).device == image.device
    assert values.random_flicker(image, 3).device == image.device
    assert values.latency(image, 4).device == image.device
    assert values.signal_to_spike(image, tw=2).device == image.device
