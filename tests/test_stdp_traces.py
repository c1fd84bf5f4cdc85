"""Traces, competition and homeostasis: hand-computed values and invariants."""

import math

import pytest
import torch

from eventsnn.learning.errors import LearningError
from eventsnn.learning.homeostasis import adaptive_threshold_step, normalize_weights
from eventsnn.learning.inhibition import channel_wta, kwta, lateral_inhibition
from eventsnn.learning.traces import trace_decay, trace_sequence, traces_before


def test_trace_decays_exponentially_and_adds_spikes():
    spikes = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0]).reshape(5, 1)
    d = trace_decay(4.0, dt=2.0)
    assert d == pytest.approx(math.exp(-0.5))
    trace = trace_sequence(spikes, d).flatten().tolist()
    assert trace == pytest.approx([1, d, d**2, d**3 + 1, d**4 + d])
    nearest = trace_sequence(spikes, d, mode="nearest").flatten().tolist()
    assert nearest == pytest.approx([1, d, d**2, 1, d])


def test_chained_windows_equal_one_run():
    gen = torch.Generator().manual_seed(0)
    spikes = (torch.rand(20, 3, 4, generator=gen) < 0.3).float()
    whole = trace_sequence(spikes, 0.8)
    first = trace_sequence(spikes[:7], 0.8)
    second = trace_sequence(spikes[7:], 0.8, initial=first[-1])
    torch.testing.assert_close(torch.cat([first, second]), whole)
    before = traces_before(whole, None, 0.8)
    torch.testing.assert_close(before[1:], whole[:-1] * 0.8)
    assert before[0].abs().sum() == 0


def test_bad_trace_parameters():
    with pytest.raises(LearningError, match="tau"):
        trace_decay(0.0)
    with pytest.raises(LearningError, match="trace mode"):
        trace_sequence(torch.zeros(2, 1), 0.5, mode="latest")


def test_kwta_keeps_the_k_highest_spiking_neurons():
    spikes = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0]])
    scores = torch.tensor([[0.5, 2.0, 9.0, 1.0, 3.0]])  # neuron 2 is silent despite its score
    assert kwta(spikes, scores, k=2).tolist() == [[0.0, 1.0, 0.0, 0.0, 1.0]]
    assert kwta(spikes, scores, k=1).tolist() == [[0.0, 0.0, 0.0, 0.0, 1.0]]
    quiet = torch.zeros(1, 5)
    assert kwta(quiet, scores, k=2).sum() == 0
    with pytest.raises(LearningError, match="k >= 1"):
        kwta(spikes, scores, k=0)


def test_channel_wta_leaves_one_spike_per_position():
    gen = torch.Generator().manual_seed(2)
    spikes = (torch.rand(2, 6, 5, 5, generator=gen) < 0.5).float()
    scores = torch.rand(2, 6, 5, 5, generator=gen)
    winners = channel_wta(spikes, scores)
    per_position = winners.sum(1)
    assert torch.equal(per_position, (spikes.sum(1) > 0).float())
    masked = torch.where(spikes > 0, scores, torch.tensor(-1.0))
    assert torch.equal(winners.argmax(1)[per_position > 0], masked.argmax(1)[per_position > 0])


def test_lateral_inhibition_spares_the_spiking_neuron_itself():
    spikes = torch.tensor([[1.0, 0.0, 1.0]])
    assert lateral_inhibition(spikes, 2.0).tolist() == [[-2.0, -4.0, -2.0]]
    matrix = 2.0 * (torch.ones(3, 3) - torch.eye(3))
    torch.testing.assert_close(lateral_inhibition(spikes, matrix), lateral_inhibition(spikes, 2.0))


def test_adaptive_threshold_rises_on_spikes_and_decays():
    theta = torch.tensor([0.0, 1.0])
    theta = adaptive_threshold_step(theta, torch.tensor([1.0, 0.0]), theta_plus=0.05, decay=0.5)
    assert theta.tolist() == pytest.approx([0.05, 0.5])


def test_normalization_sets_each_neuron_sum():
    gen = torch.Generator().manual_seed(3)
    w = torch.rand(4, 3, 5, 5, generator=gen)
    w[2] = 0.0
    normed = normalize_weights(w, 7.5)
    sums = normed.sum(dim=(1, 2, 3))
    assert sums[[0, 1, 3]].tolist() == pytest.approx([7.5] * 3)
    assert sums[2] == 0
    ratio = normed[0] / w[0]
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio.flatten()[0])))
    with pytest.raises(LearningError, match="total"):
        normalize_weights(w, 0.0)
