"""STDP rules against hand-computed updates for spike pairs at known time differences."""

import math

import pytest
import torch

from eventsnn.learning.errors import LearningError
from eventsnn.learning.stdp import (
    ConvGeometry,
    DiehlCookSTDP,
    PairSTDP,
    TripletSTDP,
    correlate,
    diehl_cook_stdp,
    pair_stdp,
    triplet_stdp,
)
from eventsnn.learning.traces import trace_decay, trace_sequence, traces_before

TAU_PLUS, TAU_MINUS, A_PLUS, A_MINUS = 10.0, 20.0, 0.5, 0.25


def spike_train(steps: int, times: list[int]) -> torch.Tensor:
    """A (T, B=1, N=1) spike train with spikes at the given steps."""
    train = torch.zeros(steps, 1, 1, dtype=torch.float64)
    train[times] = 1.0
    return train


def pair_update(pre_times: list[int], post_times: list[int], steps: int, **kwargs) -> float:
    """The pair-STDP update of one synapse for the given spike times."""
    pre, post = spike_train(steps, pre_times), spike_train(steps, post_times)
    pre_trace = trace_sequence(pre, trace_decay(TAU_PLUS), mode=kwargs.pop("mode", "all_to_all"))
    post_trace = trace_sequence(post, trace_decay(TAU_MINUS))
    weights = kwargs.pop("weights", torch.full((1, 1), 0.5, dtype=torch.float64))
    dw = pair_stdp(
        weights, pre, post, pre_trace, post_trace, a_plus=A_PLUS, a_minus=A_MINUS, **kwargs
    )
    return float(dw)


@pytest.mark.parametrize("lag", [1, 2, 5, 10, 30])
def test_pair_window_potentiates_pre_before_post(lag):
    assert pair_update([0], [lag], lag + 1) == pytest.approx(A_PLUS * math.exp(-lag / TAU_PLUS))


@pytest.mark.parametrize("lag", [1, 2, 5, 10, 30])
def test_pair_window_depresses_post_before_pre(lag):
    assert pair_update([lag], [0], lag + 1) == pytest.approx(-A_MINUS * math.exp(-lag / TAU_MINUS))


def test_pair_window_shape_over_lags():
    lags = range(-40, 41)
    curve = [pair_update([max(0, -d)], [max(0, d)], 41) for d in lags if d != 0]
    positive = curve[40:]
    negative = curve[:40]
    assert all(v > 0 for v in positive) and all(v < 0 for v in negative)
    assert all(a > b for a, b in zip(positive, positive[1:], strict=False))  # decays with lag
    assert all(a > b for a, b in zip(negative, negative[1:], strict=False))  # stronger near 0
    ratios = [b / a for a, b in zip(positive, positive[1:], strict=False)]
    assert ratios == pytest.approx([math.exp(-1 / TAU_PLUS)] * len(ratios))
    ratios = [a / b for a, b in zip(negative, negative[1:], strict=False)]
    assert ratios == pytest.approx([math.exp(-1 / TAU_MINUS)] * len(ratios))


def test_simultaneous_spikes_give_both_terms():
    assert pair_update([3], [3], 5) == pytest.approx(A_PLUS - A_MINUS)


def test_all_to_all_sums_every_pre_spike_nearest_only_the_last():
    expected_all = A_PLUS * (math.exp(-5 / TAU_PLUS) + math.exp(-3 / TAU_PLUS))
    expected_nearest = A_PLUS * math.exp(-3 / TAU_PLUS)
    assert pair_update([0, 2], [5], 6) == pytest.approx(expected_all)
    assert pair_update([0, 2], [5], 6, mode="nearest") == pytest.approx(expected_nearest)


def test_soft_bound_scales_by_room_to_the_bounds():
    w = torch.tensor([[0.8]], dtype=torch.float64)
    up = pair_update([0], [4], 5, weights=w, weight_dependence="soft_bound", w_max=1.0)
    down = pair_update([4], [0], 5, weights=w, weight_dependence="soft_bound", w_min=0.0)
    assert up == pytest.approx(A_PLUS * math.exp(-4 / TAU_PLUS) * (1.0 - 0.8))
    assert down == pytest.approx(-A_MINUS * math.exp(-4 / TAU_MINUS) * 0.8)
    w_mu = torch.tensor([[0.75]], dtype=torch.float64)
    up_mu = pair_update([0], [4], 5, weights=w_mu, weight_dependence="soft_bound", mu=2.0)
    assert up_mu == pytest.approx(A_PLUS * math.exp(-4 / TAU_PLUS) * 0.25**2)


def test_triplet_matches_pfister_gerstner_by_hand():
    tau_x, tau_y, a2p, a3p, a2m, a3m = 50.0, 40.0, 0.1, 0.2, 0.3, 0.4
    steps = 12
    pre, post = spike_train(steps, [0, 6]), spike_train(steps, [3, 9])
    decays = {n: trace_decay(t) for n, t in [("r1", TAU_PLUS), ("o1", TAU_MINUS)]}
    r1 = trace_sequence(pre, decays["r1"])
    o1 = trace_sequence(post, decays["o1"])
    r2 = trace_sequence(pre, trace_decay(tau_x))
    o2 = trace_sequence(post, trace_decay(tau_y))
    r2_before = traces_before(r2, None, trace_decay(tau_x))
    o2_before = traces_before(o2, None, trace_decay(tau_y))
    dw = triplet_stdp(
        torch.zeros(1, 1, dtype=torch.float64), pre, post, r1, o1, r2_before, o2_before,
        a2_plus=a2p, a3_plus=a3p, a2_minus=a2m, a3_minus=a3m,
    )  # fmt: skip
    e = math.exp
    # post at 3: pre 0 (lag 3), no earlier post. post at 9: pres 0, 6; earlier post at 3 (6 ago).
    ltp = a2p * e(-3 / TAU_PLUS) + (e(-9 / TAU_PLUS) + e(-3 / TAU_PLUS)) * (
        a2p + a3p * e(-6 / tau_y)
    )
    # pre at 0: no post yet. pre at 6: post at 3 (lag 3); earlier pre at 0 (6 ago).
    ltd = e(-3 / TAU_MINUS) * (a2m + a3m * e(-6 / tau_x))
    assert float(dw) == pytest.approx(ltp - ltd)


def test_diehl_cook_offset_and_weight_dependence():
    pre, post = spike_train(6, [0]), spike_train(6, [5])
    x_pre = trace_sequence(pre, trace_decay(TAU_PLUS))
    x_post = trace_sequence(post, trace_decay(TAU_MINUS))
    w = torch.tensor([[0.6]], dtype=torch.float64)
    dw = diehl_cook_stdp(w, pre, post, x_pre, x_post, eta_post=0.1, x_tar=0.2, w_max=1.0, mu=2.0)
    assert float(dw) == pytest.approx(0.1 * (math.exp(-5 / TAU_PLUS) - 0.2) * 0.4**2)
    # a silent input is depressed by x_tar on each post spike
    silent = torch.zeros_like(pre)
    dw_silent = diehl_cook_stdp(w, silent, post, silent, x_post, eta_post=0.1, x_tar=0.2)
    assert float(dw_silent) == pytest.approx(-0.1 * 0.2)
    # pre-spike depression by the post trace (BindsNET's PostPre)
    dw_pre = diehl_cook_stdp(w, post, pre, x_post, x_pre, eta_post=0.0, eta_pre=0.3)
    assert float(dw_pre) == pytest.approx(-0.3 * math.exp(-5 / TAU_PLUS))


def test_batch_mean_and_sum_of_per_sample_updates():
    gen = torch.Generator().manual_seed(0)
    pre = (torch.rand(8, 4, 5, generator=gen) < 0.3).double()
    post = (torch.rand(8, 4, 3, generator=gen) < 0.3).double()
    w = torch.rand(3, 5, generator=gen, dtype=torch.float64)
    rule = PairSTDP(a_plus=0.1, a_minus=0.05, weight_dependence="soft_bound")
    traces = {
        "pre": trace_sequence(pre, trace_decay(rule.tau_plus)),
        "post": trace_sequence(post, trace_decay(rule.tau_minus)),
    }
    total = rule.update(w, pre, post, traces, {}, None, "sum")
    per_sample = [
        rule.update(
            w,
            pre[:, b : b + 1],
            post[:, b : b + 1],
            {k: v[:, b : b + 1] for k, v in traces.items()},
            {},
            None,
            "sum",
        )  # fmt: skip
        for b in range(4)
    ]
    torch.testing.assert_close(total, sum(per_sample))
    torch.testing.assert_close(rule.update(w, pre, post, traces, {}, None, "mean"), total / 4)


def test_conv_update_sums_patches_over_positions():
    pre_trace = torch.arange(16, dtype=torch.float64).reshape(1, 1, 1, 4, 4)
    post = torch.zeros(1, 1, 2, 3, 3, dtype=torch.float64)
    post[0, 0, 1, 0, 2] = 1.0  # channel 1 fires at row 0, col 2
    post[0, 0, 1, 2, 1] = 1.0  # and at row 2, col 1
    dw = correlate(post, pre_trace, (2, 1, 2, 2), ConvGeometry())
    patch_a = pre_trace[0, 0, 0, 0:2, 2:4]
    patch_b = pre_trace[0, 0, 0, 2:4, 1:3]
    torch.testing.assert_close(dw[1, 0], patch_a + patch_b)
    torch.testing.assert_close(dw[0], torch.zeros(1, 2, 2, dtype=torch.float64))


def test_conv_update_equals_linear_update_on_unfolded_patches():
    gen = torch.Generator().manual_seed(1)
    pre = torch.rand(3, 2, 2, 6, 6, generator=gen, dtype=torch.float64)
    post = (torch.rand(3, 2, 4, 3, 3, generator=gen) < 0.4).double()
    geometry = ConvGeometry(stride=(2, 2), padding=(1, 1))
    dw = correlate(post, pre, (4, 2, 3, 3), geometry, "sum")
    patches = torch.nn.functional.unfold(pre.flatten(0, 1), 3, padding=1, stride=2)  # (N, 18, 9)
    expected = torch.einsum("nol,nil->oi", post.flatten(0, 1).flatten(2), patches)
    torch.testing.assert_close(dw, expected.reshape(4, 2, 3, 3))


def test_rule_configs_name_their_traces():
    assert set(TripletSTDP().trace_taus()) == {"pre", "post", "pre_slow", "post_slow"}
    assert DiehlCookSTDP(tau_pre=7.0).trace_taus()["pre"] == ("pre", 7.0)


def test_bad_configuration_raises_learning_error():
    with pytest.raises(LearningError, match="trace mode"):
        PairSTDP(trace_mode="first")
    with pytest.raises(LearningError, match="weight_dependence"):
        pair_update([0], [1], 2, weight_dependence="power")
    with pytest.raises(LearningError, match="reduce"):
        correlate(torch.ones(1, 1, 2), torch.ones(1, 1, 3), (2, 3), None, "median")
    with pytest.raises(LearningError, match=r"\(out, in\)"):
        correlate(torch.ones(1, 1, 2), torch.ones(1, 1, 3), (3, 2))
