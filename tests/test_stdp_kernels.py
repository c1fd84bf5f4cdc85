"""The fused STDP kernels against the torch code they replace on CPU: same spikes, same traces,
same updates."""

import pytest
import torch

from eventsnn.learning import kernels
from eventsnn.learning.competitive import CompetitiveLayer, sparse_linear
from eventsnn.learning.errors import LearningError
from eventsnn.learning.learner import Plasticity, STDPLearner
from eventsnn.learning.stdp import DiehlCookSTDP, PairSTDP, correlate
from eventsnn.learning.traces import Traces, trace_decay, trace_sequence


def spikes(*shape: int, seed: int = 0, p: float = 0.1) -> torch.Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def torch_window(layer: CompetitiveLayer, x: torch.Tensor) -> torch.Tensor:
    """The layer's torch path (what runs off CPU) on the same input."""
    gain = layer.config.threshold / (layer.config.threshold + layer.theta.to(x.dtype))
    with torch.no_grad():
        return layer._run(sparse_linear(x, layer.weight.to(x.dtype)) * gain, gain)


@pytest.mark.parametrize(
    ("winners", "v_min", "dtype", "scale"),
    [
        (1, -5.0, torch.float32, 1.0),
        (None, None, torch.float32, 1.0),
        (3, None, torch.float64, 1.0),
        (2, -1.0, torch.float32, 2.0),  # not only 0/1 spikes (a power of two: exact products)
    ],
)
def test_competitive_window_spikes_equal_the_torch_loop(winners, v_min, dtype, scale):
    torch.manual_seed(1)
    layer = CompetitiveLayer(
        300, 40, beta=0.95, threshold=4.0, inhibition=2.0, winners=winners, v_min=v_min
    )
    layer.theta.uniform_(0.0, 2.0)
    x = (spikes(50, 6, 300, p=0.08) * scale).to(dtype)
    expected = torch_window(layer, x)
    gain = layer.config.threshold / (layer.config.threshold + layer.theta.to(dtype))
    got = kernels.competitive_window(
        x, layer.weight.to(dtype).t(), gain, beta=0.95, threshold=4.0, low=v_min, inhibition=2.0,
        winners=winners,
    )  # fmt: skip
    assert expected.sum() > 20  # the comparison covers real activity
    assert torch.equal(got, expected)
    if winners is not None:
        assert got.sum(-1).max() <= winners


def test_layer_uses_the_kernel_on_cpu_and_adapts_theta_alike(monkeypatch):
    torch.manual_seed(2)
    layer = CompetitiveLayer(200, 30, threshold=3.0, inhibition=1.0, winners=1, theta_plus=0.5)
    x = spikes(40, 4, 200, seed=3)
    expected = torch_window(layer, x)
    theta_before = layer.theta.clone()
    calls = []
    window = kernels.competitive_window
    monkeypatch.setattr(
        kernels, "competitive_window", lambda *a, **k: calls.append(1) or window(*a, **k)
    )
    out = layer.train()(x)
    assert calls == [1]
    assert torch.equal(out, expected)
    counts = out.sum((0, 1))
    torch.testing.assert_close(layer.theta, theta_before * layer.theta_decay**40 + 0.5 * counts / 4)


def test_empty_windows_and_bad_winner_counts():
    layer = CompetitiveLayer(20, 5, winners=1)
    assert layer(torch.zeros(6, 0, 20)).shape == (6, 0, 5)
    assert layer(torch.zeros(0, 3, 20)).shape == (0, 3, 5)
    with pytest.raises(LearningError, match="winners must be None or >= 1"):
        CompetitiveLayer(20, 5, winners=0)


def test_sparse_rows_matmul_equals_the_dense_product():
    x = spikes(500, 700, p=0.05) * torch.rand(500, 700)
    x[3] = 0  # an empty row
    weight = torch.randn(33, 700)
    torch.testing.assert_close(kernels.sparse_rows_matmul(x, weight.t()), x @ weight.t())
    binary = (x > 0).float()  # spikes: exactly the torch path's sums
    assert torch.equal(
        kernels.sparse_rows_matmul(binary, weight.t()), sparse_linear(binary, weight)
    )


def test_active_inputs_lists_each_rows_nonzero_columns():
    x = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    starts, indices, values = kernels.active_inputs(x)
    assert starts.tolist() == [0, 2, 2, 3]
    assert indices[:3].tolist() == [1, 3, 0]
    assert values[:3].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("mode", ["all_to_all", "nearest"])
@pytest.mark.parametrize("with_initial", [False, True])
def test_trace_rows_equal_the_whole_sequence_at_those_rows(mode, with_initial):
    x = spikes(30, 5, 4, 6, seed=4, p=0.2)
    initial = torch.rand(5, 4, 6) if with_initial else None
    full = trace_sequence(x, 0.8, initial, mode)
    rows = torch.tensor([149, 0, 7, 77, 78, 12, 7])  # any order, repeats, first and last rows
    lazy = Traces(x, 0.8, initial, mode)
    assert torch.equal(lazy.rows(rows), full.flatten(0, 1)[rows])
    assert torch.equal(lazy.last(), full[-1])
    flat = x.flatten(2)
    known = Traces(flat, 0.8, initial, mode, kernels.active_inputs(flat.flatten(0, 1)))
    assert torch.equal(known.rows(rows), full.flatten(0, 1)[rows].flatten(1))


@pytest.mark.parametrize("rule", [DiehlCookSTDP(eta_post=0.1, x_tar=0.3), PairSTDP()])
def test_sparse_correlation_with_lazy_traces_equals_the_dense_product(rule):
    pre = spikes(60, 4, 50, seed=5, p=0.2)
    post = torch.zeros(60, 4, 10)
    post[torch.randint(0, 60, (25,)), torch.randint(0, 4, (25,)), torch.randint(0, 10, (25,))] = 1
    weights = torch.rand(10, 50)
    traces = {name: trace_sequence(x, 0.9) for name, x in (("pre", pre), ("post", post))}
    lazy = {name: Traces(x, 0.9) for name, x in (("pre", pre), ("post", post))}
    traces = {k: v for k, v in traces.items() if k in rule.trace_taus()}
    lazy = {k: v for k, v in lazy.items() if k in rule.trace_taus()}
    dense = rule.update(weights, pre, post, traces, {}, None, "sum")
    sparse = rule.update(weights, pre, post, lazy, {}, None, "sum")
    by_hand = torch.einsum("tbo,tbi->oi", post, traces["pre"] - getattr(rule, "x_tar", 0.0))
    torch.testing.assert_close(sparse, dense)
    if isinstance(rule, DiehlCookSTDP):
        torch.testing.assert_close(sparse, 0.1 * by_hand)


@pytest.mark.parametrize("mode", ["all_to_all", "nearest"])
def test_scattered_update_equals_the_product_over_whole_traces(monkeypatch, mode):
    pre = spikes(40, 3, 60, seed=6, p=0.2)
    post = torch.zeros(40, 3, 30)  # at most one spike a row: the scatter path (< 1/16 dense)
    rows = torch.randperm(120)[:50]
    post.view(120, 30)[rows, torch.randint(0, 30, (50,))] = 1
    initial = torch.rand(3, 60)
    calls = []
    scatter = kernels.trace_scatter
    monkeypatch.setattr(kernels, "trace_scatter", lambda *a: calls.append(1) or scatter(*a))
    lazy = Traces(pre, 0.85, initial, mode)
    got = correlate(post, lazy, (30, 60), reduce="mean", pre_offset=0.3)
    whole = trace_sequence(pre, 0.85, initial, mode)
    expected = torch.einsum("tbo,tbi->oi", post, whole - 0.3) / 3
    assert calls == [1]
    torch.testing.assert_close(got, expected)
    assert torch.equal(lazy.last(), whole[-1])  # made by the same pass


def test_learner_on_kernels_equals_learner_on_torch(monkeypatch):
    """Two windows with carried traces, then a batch-size change, through the CPU kernels and
    through the torch path (as on another device): same spikes, updates and trace state."""

    def run(use_kernels: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(kernels, "applies", lambda *t: use_kernels)
        torch.manual_seed(3)
        net = torch.nn.Sequential(
            CompetitiveLayer(80, 12, threshold=2.0, inhibition=0.5, winners=2, reduce="sum")
        )
        rule = DiehlCookSTDP(eta_post=0.1, x_tar=0.2)
        learner = STDPLearner(net, {"0": Plasticity(rule=rule)}, carry_traces=True)
        buffer = torch.zeros(30, 4, 80)
        seen = []
        for seed, batch in ((7, 4), (8, 4), (9, 2)):
            buffer = buffer if batch == 4 else torch.zeros(30, batch, 80)
            buffer.copy_(spikes(30, batch, 80, seed=seed, p=0.15))  # the caller reuses its buffer
            with learner.capture():
                seen.append(net(buffer))
            seen.append(learner.updates()["0"])
            seen += list(learner.get_state().values())
        return seen

    on_kernels, on_torch = run(True), run(False)
    assert on_kernels[0].sum() > 10
    for got, expected in zip(on_kernels, on_torch, strict=True):
        torch.testing.assert_close(got, expected)


def test_correlate_uses_the_product_for_dense_post_terms():
    pre, post = torch.rand(20, 3, 8), torch.rand(20, 3, 5)  # every term non-zero
    expected = torch.einsum("tbo,tbi->oi", post, trace_sequence(pre, 0.5)) / 3
    torch.testing.assert_close(correlate(post, Traces(pre, 0.5), (5, 8)), expected)


def test_trace_state_is_the_window_just_learnt_even_if_the_caller_reuses_its_buffer():
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Linear(50, 8, bias=False), torch.nn.Threshold(0.3, 0.0))
    learner = STDPLearner(net, {"0": Plasticity(rule=PairSTDP())}, carry_traces=True)
    buffer = spikes(20, 3, 50, seed=10, p=0.3)
    window = buffer.clone()
    with learner.capture():
        net(buffer)
    learner.updates()
    buffer.copy_(spikes(20, 3, 50, seed=11, p=0.3))  # the next window, in the same tensor
    expected = trace_sequence(window, trace_decay(PairSTDP().tau_plus))[-1]
    assert torch.equal(learner.get_state()["0:pre"], expected)
