"""The neuron recurrence: hand-computed traces, fused kernel == reference loop, gradients."""

import pytest
import torch

from eventsnn.nn import kernels
from eventsnn.nn.functional import (
    NeuronConfig,
    NeuronConfigError,
    NeuronState,
    neuron_loop,
    neuron_sequence,
    zero_state,
)
from eventsnn.nn.surrogate import SURROGATES, Surrogate, surrogate


def approx(expected):
    """float32 traces against hand-computed decimals."""
    return pytest.approx(expected, abs=1e-6)


def run(x_values, beta=1.0, alpha=None, **cfg):
    """One neuron (B=1, one feature) through the loop and the fused kernel, checked equal."""
    x = torch.tensor(x_values, dtype=torch.float32).view(-1, 1, 1)
    config = NeuronConfig(**cfg)
    state = zero_state((1, 1), x, alpha is not None, config.adaptive)
    b = torch.tensor(beta)
    a = None if alpha is None else torch.tensor(alpha)
    s1, u1, f1 = neuron_loop(x, state, b, a, config)
    s2, u2, f2 = kernels.fused_sequence(x, state, b, a, config)
    assert torch.equal(s1, s2) and torch.equal(u1, u2)
    return s1.flatten().tolist(), u1.flatten().tolist(), f1


def test_lif_subtract_by_hand():
    spikes, u, state = run([0.6, 0.6, 0.6, 0.0], beta=0.5)
    # u: 0.6, 0.9, 1.05 (spike, v -> 0.05), 0.025
    assert spikes == [0, 0, 1, 0]
    assert u == approx([0.6, 0.9, 1.05, 0.025])
    assert float(state.v) == approx(0.025)


def test_zero_reset_and_custom_amount_by_hand():
    spikes, u, state = run([1.5, 0.5], beta=1.0, reset="zero")
    assert spikes == [1, 0] and u == approx([1.5, 0.5])
    spikes, u, state = run([1.5, 0.5], beta=1.0, reset_amount=0.25)
    assert spikes == [1, 1] and u == approx([1.5, 1.75])
    assert float(state.v) == approx(1.5)


def test_multi_spike_iaf_by_hand():
    spikes, u, state = run([2.5, 0.7, -1.0], threshold=1.0, multi_spike=True)
    # 2.5 -> 2 spikes, v 0.5; 1.2 -> 1 spike, v 0.2; -0.8 -> none
    assert spikes == [2, 1, 0]
    assert float(state.v) == approx(-0.8)


def test_threshold_low_clamps_membrane():
    spikes, u, state = run([-3.0, 0.5], threshold_low=-1.0)
    assert u == approx([-3.0, -0.5])
    assert float(state.v) == approx(-0.5)


def test_alif_threshold_adapts_by_hand():
    spikes, u, state = run([1.2, 1.2, 1.2], adapt_decay=0.5, adapt_scale=0.5)
    # t0: u 1.2 >= 1 spike, v 0.2, a 1; t1: u 1.4 < 1.5, a 0.5; t2: u 2.6 >= 1.25, v 1.35
    assert spikes == [1, 0, 1]
    assert u == approx([1.2, 1.4, 2.6])
    assert float(state.v) == approx(1.35) and float(state.a) == approx(1.25)


def test_reset_delay_subtracts_undecayed_threshold_one_step_late():
    spikes, u, _ = run([1.2, 0.0, 0.0], beta=0.5, reset_delay=True)
    # t1: 0.5*1.2 - 1 = -0.4; t2: -0.2
    assert spikes == [1, 0, 0] and u == approx([1.2, -0.4, -0.2])


def test_synaptic_current_by_hand():
    spikes, u, state = run([1.0, 0.0, 0.0], beta=0.5, alpha=0.5, threshold=10.0)
    # i: 1, 0.5, 0.25; v: 1, 1.0, 0.75
    assert u == approx([1.0, 1.0, 0.75])
    assert float(state.i) == approx(0.25)


def test_bad_combinations_raise():
    with pytest.raises(NeuronConfigError, match="reset must be"):
        NeuronConfig(reset="bounce")
    with pytest.raises(NeuronConfigError, match="reset_delay"):
        NeuronConfig(reset_delay=True, reset="zero")


CONFIGS = [
    ({}, True),
    ({"reset": "zero"}, False),
    ({"reset": "none"}, False),
    ({"multi_spike": True}, False),
    ({"multi_spike": True, "reset": "zero"}, False),
    ({"reset_delay": True}, True),
    ({"threshold_low": -0.3}, False),
    ({"adapt_decay": 0.8, "adapt_scale": 0.4}, True),
    ({"adapt_decay": 0.8, "adapt_scale": 0.4, "reset_amount": 0.7, "threshold_low": -0.2}, False),
    ({"detach_reset": True}, False),
    ({"detach_reset": True, "reset_delay": True}, False),
]


def _inputs(dtype, synaptic, adaptive, seed=0, steps=7):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, 2, 3, 4, generator=g, dtype=dtype) * 2 - 0.4).requires_grad_()
    beta = torch.tensor([[0.9], [0.6], [1.0]], dtype=dtype).requires_grad_()
    alpha = torch.tensor(0.7, dtype=dtype).requires_grad_() if synaptic else None
    state = NeuronState(
        *(
            None if t is None else (torch.rand(t.shape, generator=g, dtype=dtype) * 0.5)
            for t in zero_state((2, 3, 4), x, synaptic, adaptive)
        )
    )
    return x, beta, alpha, state


@pytest.mark.parametrize(("cfg", "synaptic"), CONFIGS, ids=str)
def test_fused_equals_loop_forward_bit_for_bit_and_backward(cfg, synaptic):
    """float64: same spikes, membrane and state; gradients of every input and parameter agree."""
    config = NeuronConfig(**cfg)
    x, beta, alpha, state = _inputs(torch.float64, synaptic, config.adaptive)
    state = NeuronState(*(None if t is None else t.requires_grad_() for t in state))
    weights = torch.linspace(-1, 1, x.numel(), dtype=x.dtype).view_as(x)

    def loss_and_grads(fn):
        s, u, final = fn(x, state, beta, alpha, config)
        loss = (
            (s * weights).sum() + (u * u).sum() + sum((t * t).sum() for t in final if t is not None)
        )
        leaves = [x, beta, *(t for t in state if t is not None)] + ([alpha] if synaptic else [])
        return (s, u, *(t for t in final if t is not None)), torch.autograd.grad(loss, leaves)

    out_ref, grads_ref = loss_and_grads(neuron_loop)
    out_fused, grads_fused = loss_and_grads(kernels.fused_sequence)
    for a, b in zip(out_ref, out_fused, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(grads_ref, grads_fused, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "cfg", [{}, {"multi_spike": True}, {"adapt_decay": 0.8, "adapt_scale": 0.4}]
)
def test_fused_equals_loop_bit_for_bit_in_float32(cfg):
    config = NeuronConfig(**cfg)
    x, beta, alpha, state = _inputs(torch.float32, True, config.adaptive)
    s1, u1, f1 = neuron_loop(x, state, beta, alpha, config)
    s2, u2, f2 = kernels.fused_sequence(x, state, beta, alpha, config)
    assert torch.equal(s1, s2) and torch.equal(u1, u2) and torch.equal(f1.v, f2.v)


@pytest.mark.parametrize(
    "cfg", [{"threshold_low": -0.3}, {"adapt_decay": 0.8, "adapt_scale": 0.4}], ids=str
)
def test_fused_backward_passes_gradcheck(cfg):
    """Away from thresholds the true derivative of membrane and state exists: the analytic
    backward must match finite differences (reset detached, as its true derivative is 0)."""
    config = NeuronConfig(detach_reset=True, **cfg)
    x, beta, alpha, state = _inputs(torch.float64, True, config.adaptive, seed=3, steps=3)
    state = NeuronState(*(None if t is None else t.requires_grad_() for t in state))

    def membrane_and_state(x, beta, alpha, v0, i0):
        _, u, final = kernels.fused_sequence(x, NeuronState(v0, i0, state.a), beta, alpha, config)
        return u, final.v, final.i

    assert torch.autograd.gradcheck(membrane_and_state, (x, beta, alpha, state.v, state.i))


def test_sequence_dispatches_to_loop_for_custom_surrogate():
    class Cube(Surrogate):
        def derivative(self, z):
            return 1 / (1 + z**2) ** 3

    config = NeuronConfig(surrogate=Cube())
    x = torch.rand(3, 2, 2)
    assert not kernels.applies(x, config)
    s, u, _ = neuron_sequence(
        x, zero_state((2, 2), x, False, False), torch.tensor(0.9), None, config
    )
    assert s.shape == u.shape == x.shape


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_fused_kernel_uses_the_same_surrogate_derivative(name):
    config = NeuronConfig(surrogate=surrogate(name))
    x = (torch.rand(4, 3, 5, dtype=torch.float64) * 2).requires_grad_()
    grads = []
    for fn in (neuron_loop, kernels.fused_sequence):
        s, _, _ = fn(
            x, zero_state((3, 5), x, False, False), torch.tensor(0.8, dtype=x.dtype), None, config
        )
        grads.append(torch.autograd.grad(s.sum(), x)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_kernels_split_over_threads_give_the_same_result(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # enables the thread split
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    config = NeuronConfig()
    x = (torch.rand(5, 4, 9000) * 1.5).requires_grad_()
    state = zero_state((4, 9000), x, False, False)
    s1, u1, _ = neuron_loop(x, state, torch.tensor(0.9), None, config)
    s2, u2, _ = kernels.fused_sequence(x, state, torch.tensor(0.9), None, config)
    assert torch.equal(s1, s2) and torch.equal(u1, u2)
    g1 = torch.autograd.grad(s1.sum() + u1.sum(), x)[0]
    g2 = torch.autograd.grad(s2.sum() + u2.sum(), x)[0]
    torch.testing.assert_close(g1, g2)
