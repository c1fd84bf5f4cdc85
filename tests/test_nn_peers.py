"""Neurons against the peer libraries on the same inputs and parameters.

snnTorch and Sinabs compute the same float operations in the same order as ours: spikes and
membranes agree bit for bit. SpikingJelly (v - v/tau + x) and Norse (v + dt/tau (x - v)) write the
leak differently, so their membranes differ by float rounding (~1e-7) while spikes agree.
"""

import math
import warnings

import pytest
import torch

from eventsnn.nn import IAF, LIF

T, B, F = 40, 4, 50


@pytest.fixture(scope="module")
def x():
    g = torch.Generator().manual_seed(0)
    # below 2 * threshold after a reset, so snnTorch's "avoid double reset" never triggers
    return torch.rand(T, B, F, generator=g) * 1.5 - 0.5


def run(neuron, x):
    """Our spikes and membrane after reset (the state the peers report) for time-first x."""
    neuron.record_membrane = True
    spikes = neuron(x)
    after = neuron.v_trace if neuron.config.reset_delay else neuron.v_trace - spikes
    return spikes, after


@pytest.mark.parametrize("delay", [False, True])
def test_snntorch_leaky_bit_for_bit(x, delay):
    snn = pytest.importorskip("snntorch")
    leaky = snn.Leaky(beta=0.9, threshold=1.0, reset_mechanism="subtract", reset_delay=delay)
    mem = torch.zeros(B, F)
    spikes, membrane = [], []
    for x_t in x:
        spk, mem = leaky(x_t, mem)
        spikes.append(spk)
        membrane.append(mem)
    ours_s, ours_v = run(LIF(beta=0.9, reset_delay=delay), x)
    assert ours_s.sum() > 100
    assert torch.equal(torch.stack(spikes), ours_s)
    assert torch.equal(torch.stack(membrane), ours_v)


def test_sinabs_lif_single_spike_bit_for_bit(x):
    layers = pytest.importorskip("sinabs.layers")
    from sinabs.activation import SingleSpike

    peer = layers.LIF(
        tau_mem=-1 / math.log(0.9), spike_fn=SingleSpike, norm_input=False, record_states=True
    )
    peer_s = peer(x.transpose(0, 1)).transpose(0, 1)  # Sinabs is batch-first
    # the same parameter: Sinabs' decay exp(-1/tau_mem) as the float32 it computes
    ours_s, ours_v = run(LIF(beta=peer.alpha_mem_calculated), x)
    assert torch.equal(peer_s, ours_s)
    assert torch.equal(peer.recordings["v_mem"].transpose(0, 1), ours_v)


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("low", [None, -0.3])
def test_sinabs_iaf_single_and_multi_spike_bit_for_bit(x, multi, low):
    layers = pytest.importorskip("sinabs.layers")
    from sinabs.activation import MultiSpike, SingleSpike

    peer = layers.IAF(
        spike_fn=MultiSpike if multi else SingleSpike, min_v_mem=low, record_states=True
    )
    drive = x * 2
    peer_s = peer(drive.transpose(0, 1)).transpose(0, 1)
    ours_s, ours_v = run(IAF(multi_spike=multi, threshold_low=low), drive)
    assert torch.equal(peer_s, ours_s)
    assert ours_s.max() == (2 if multi else 1)
    if low is None:  # with min_v_mem our trace is before the clamp; compare the final state
        assert torch.equal(peer.recordings["v_mem"].transpose(0, 1), ours_v)
    else:
        final = peer.recordings["v_mem"][:, -1]
        assert torch.equal(final, torch.clamp(ours_v[-1] - low, min=0) + low)


def test_sinabs_iaf_reset_to_zero_bit_for_bit(x):
    layers = pytest.importorskip("sinabs.layers")
    from sinabs.activation import MembraneReset, SingleSpike

    peer = layers.IAF(spike_fn=SingleSpike, reset_fn=MembraneReset(), record_states=True)
    peer_s = peer((x * 2).transpose(0, 1)).transpose(0, 1)
    neuron = IAF(reset="zero", record_membrane=True)
    ours_s = neuron(x * 2)
    assert torch.equal(peer_s, ours_s)
    after = neuron.v_trace * (1 - ours_s)
    assert torch.equal(peer.recordings["v_mem"].transpose(0, 1), after)


def test_spikingjelly_lifnode_soft_reset(x):
    neuron_mod = pytest.importorskip("spikingjelly.activation_based.neuron")
    peer = neuron_mod.LIFNode(
        tau=10.0, decay_input=False, v_reset=None, step_mode="m", store_v_seq=True
    )
    peer_s = peer(x)
    ours_s, ours_v = run(LIF(beta=1 - 1 / 10.0), x)
    assert torch.equal(peer_s, ours_s)
    torch.testing.assert_close(peer.v_seq, ours_v, rtol=0, atol=1e-6)


def test_norse_lif_box_cell_subtract_reset(x):
    norse = pytest.importorskip("norse.torch")
    from norse.torch.functional.reset import reset_subtract

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = norse.LIFBoxParameters(
            tau_mem_inv=torch.tensor(100.0),
            v_th=torch.tensor(1.0),
            v_reset=torch.tensor(0.0),
            reset_method=reset_subtract,
        )
        cell = norse.LIFBoxCell(params, dt=0.001)  # v <- v + 0.1 (x' - v): beta 0.9, x' = 10 x
        state, spikes, membrane = None, [], []
        for x_t in x:
            z, state = cell(x_t * 10, state)
            spikes.append(z)
            membrane.append(state.v)
    ours_s, ours_v = run(LIF(beta=0.9), x)
    assert torch.equal(torch.stack(spikes), ours_s)
    torch.testing.assert_close(torch.stack(membrane), ours_v, rtol=0, atol=1e-6)
