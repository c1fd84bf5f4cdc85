"""Neuron modules: state on the module, chunking == one run, single-step, states API, params."""

import pytest
import torch

from eventsnn.nn import (
    ALIF,
    IAF,
    LIF,
    NeuronConfigError,
    StateError,
    SurrogateError,
    detach_states,
    get_states,
    reset_states,
    set_states,
)
from eventsnn.nn.surrogate import Arctan

NEURONS = {
    "lif": lambda: LIF(beta=0.8),
    "lif_channel_beta": lambda: LIF(beta=torch.tensor([0.9, 0.5, 0.7]).view(3, 1), learn_beta=True),
    "iaf_multi": lambda: IAF(threshold=0.5, multi_spike=True),
    "alif": lambda: ALIF(beta=0.9, adapt_decay=0.8, adapt_scale=0.3),
    "synaptic": lambda: LIF(beta=0.9, alpha=0.6),
    "delay": lambda: LIF(beta=0.9, reset_delay=True),
    "low_zero": lambda: LIF(beta=0.9, reset="zero", threshold_low=-0.2),
    "recurrent": lambda: LIF(beta=0.9, recurrent_features=12),
}


def _sequence(steps=12, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(steps, batch, 3, 4, generator=g) * 1.6 - 0.3


@pytest.mark.parametrize("kind", sorted(NEURONS))
def test_chunks_and_single_steps_equal_one_run(kind):
    torch.manual_seed(0)
    neuron = NEURONS[kind]()
    x = _sequence()
    whole = neuron(x)
    assert whole.shape == x.shape and whole.sum() > 0
    final = get_states(neuron)
    reset_states(neuron)
    chunks = torch.cat([neuron(part) for part in torch.split(x, [5, 1, 6])])
    assert torch.equal(whole, chunks)
    for key, value in get_states(neuron).items():
        assert torch.equal(value, final[key]), key
    reset_states(neuron)
    neuron.step_mode = "single"
    steps = torch.stack([neuron(x_t) for x_t in x])
    assert torch.equal(whole, steps)


def test_reset_states_restarts_from_rest_and_batch_change_starts_fresh():
    neuron = LIF(beta=0.9)
    x = _sequence()
    first = neuron(x)
    assert not torch.equal(neuron(x), first)  # carried state changes the answer
    reset_states(neuron)
    assert torch.equal(neuron(x), first)
    three = _sequence(batch=3)
    neuron(three)  # a new batch size: fresh state, no error
    assert get_states(neuron)["v"].shape == (3, 3, 4)


def test_get_set_states_round_trip_through_another_network():
    a, b = LIF(beta=0.85, alpha=0.5), LIF(beta=0.85, alpha=0.5)
    x = _sequence()
    whole = a(x)
    reset_states(a)
    a(x[:4])
    saved = {k: v.clone() for k, v in get_states(a).items()}
    assert set(saved) == {"v", "i"}
    set_states(b, saved)
    assert torch.equal(b(x[4:]), whole[4:])
    with pytest.raises(StateError, match="names no stateful layer"):
        set_states(b, {"7.v": saved["v"]})
    with pytest.raises(StateError, match="needs"):
        b.set_state({"v": saved["v"]})


def test_state_is_not_in_state_dict_and_detach_cuts_history():
    neuron = LIF(beta=0.9, learn_beta=True)
    x = _sequence().requires_grad_()
    neuron(x)
    assert set(neuron.state_dict()) == {"beta"}
    assert get_states(neuron)["v"].requires_grad
    detach_states(neuron)
    assert not get_states(neuron)["v"].requires_grad


def test_membrane_trace_is_recorded_and_differentiable():
    neuron = LIF(beta=0.9, record_membrane=True)
    x = _sequence().requires_grad_()
    spikes = neuron(x)
    assert neuron.v_trace.shape == spikes.shape
    # membrane before reset: first step equals the input (rest state, beta * 0 + x)
    assert torch.equal(neuron.v_trace[0], x[0])
    (grad,) = torch.autograd.grad(neuron.v_trace[-1].sum(), x)
    assert grad[-1].eq(1).all() and grad[0].abs().sum() > 0


def test_learnable_decays_get_gradients():
    neuron = LIF(beta=torch.full((3, 1), 0.8), learn_beta=True, alpha=0.5, learn_alpha=True)
    out = neuron(_sequence())
    out.sum().backward()
    assert neuron.beta.grad.shape == (3, 1) and neuron.beta.grad.abs().sum() > 0
    assert neuron.alpha.grad.abs() > 0


def test_recurrent_weights_feed_last_spikes_back():
    neuron = LIF(beta=0.0, threshold=0.5, recurrent_features=2)
    with torch.no_grad():
        neuron.recurrent.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    x = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])  # neuron 0 fires at t0, drives neuron 1 at t1
    out = neuron(x)
    assert out[:, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_surrogate_by_name_dict_or_object():
    x = _sequence().requires_grad_()
    grads = []
    for spec in ("arctan", {"name": "arctan", "alpha": 2.0}, Arctan(2.0)):
        (g,) = torch.autograd.grad(LIF(surrogate=spec)(x).sum(), x)
        grads.append(g)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])
    with pytest.raises(SurrogateError, match="unknown surrogate"):
        LIF(surrogate="spiky")


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(NeuronConfigError, match="beta must lie in"):
        LIF(beta=1.5)
    with pytest.raises(NeuronConfigError, match="step_mode"):
        LIF(step_mode="both")
    with pytest.raises(NeuronConfigError, match="adapt_decay"):
        ALIF(adapt_decay=2.0)


def test_overwriting_the_input_gives_the_same_spikes_and_gradients():
    torch.manual_seed(0)
    x = _sequence().requires_grad_()
    results = []
    for overwrite in (False, True):
        neuron = LIF(beta=0.9, record_membrane=True, overwrite_input=overwrite)
        current = x * 1.0  # a fresh intermediate, as a synapse's output
        spikes = neuron(current)
        loss = (spikes * torch.arange(12.0).view(12, 1, 1, 1)).sum() + neuron.v_trace.square().sum()
        (grad,) = torch.autograd.grad(loss, x)
        results.append((spikes, neuron.v_trace.detach().clone(), grad))
        if overwrite:  # the input now holds the membrane
            assert torch.equal(current.detach(), results[-1][1])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
