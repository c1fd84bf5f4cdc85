"""STDP rules as pure functions of (weights, spikes, traces) that return the weight update.

Every input is time-first: spikes and traces of shape ``(T, B, F)`` for a linear layer or
``(T, B, C, H, W)`` for a conv layer, with traces as made by :mod:`eventsnn.learning.traces` (the
value at step t includes step t's spikes). The weights stay fixed over the window, so an update is
a sum over steps of (post-side term) x (pre-side term) products, computed in one contraction over
time, batch and (for convolutions, whose kernel is shared) positions. ``reduce="mean"`` divides by
the batch size: the mean of the per-sample updates; ``"sum"`` keeps their sum.

With traces of time constants ``tau_plus`` (pre) and ``tau_minus`` (post), a lone pair with the pre
spike ``k`` steps before the post spike gives ``+a_plus * exp(-k dt / tau_plus)`` (potentiation)
and with the post spike first ``-a_minus * exp(-k dt / tau_minus)`` (depression): the STDP window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import torch
from torch import Tensor

from eventsnn.learning.errors import LearningError
from eventsnn.learning.traces import (
    TraceMode,
    Traces,
    as_tensor,
    check_trace_mode,
    scatter_add_rows,
)

Reduce = Literal["mean", "sum"]
WeightDependence = Literal["additive", "soft_bound"]
Side = Literal["pre", "post"]


@dataclass(frozen=True)
class ConvGeometry:
    """Stride, padding and dilation of a 2-D convolution whose kernel STDP learns."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)


def correlate(
    post: Tensor | Traces,
    pre: Tensor | Traces,
    weight_shape: torch.Size | tuple[int, ...],
    conv: ConvGeometry | None = None,
    reduce: Reduce = "mean",
    pre_offset: float = 0.0,
) -> Tensor:
    """Sum over time, batch (and kernel positions) of post x (pre - pre_offset) products, shaped
    like the weights.

    Linear: ``(T, B, out) x (T, B, in) -> (out, in)``. Conv: the kernel-shaped correlation of each
    post-synaptic position with its pre-synaptic patch, summed over positions (weight sharing).
    Only the steps and samples with a non-zero post term are read (post spikes are sparse), and
    when those terms are few, each is added as one row of pre values: `Traces` given as ``pre``
    are then computed at those rows only.
    """
    if post.shape[:2] != pre.shape[:2]:
        raise LearningError(
            f"pre and post activity need the same (T, B) leading shape, got {tuple(pre.shape)} "
            f"and {tuple(post.shape)}"
        )
    batch = post.shape[1]
    post = as_tensor(post)
    if conv is None:
        if (
            post.ndim != 3
            or len(pre.shape) != 3
            or tuple(weight_shape) != (post.shape[-1], pre.shape[-1])
        ):
            raise LearningError(
                f"linear STDP needs (T, B, out) post, (T, B, in) pre and (out, in) weights; got "
                f"post {tuple(post.shape)}, pre {tuple(pre.shape)}, weights {tuple(weight_shape)}"
            )
        update = _correlate_rows(post.flatten(0, 1), pre, pre_offset)
    else:
        if post.ndim != 5 or len(pre.shape) != 5:
            raise LearningError(
                f"conv STDP needs (T, B, C, H, W) pre and post, got pre {tuple(pre.shape)} "
                f"and post {tuple(post.shape)}"
            )
        pre = as_tensor(pre)
        update = torch.nn.grad.conv2d_weight(
            (pre - pre_offset if pre_offset else pre).flatten(0, 1),
            tuple(weight_shape),
            post.flatten(0, 1),
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
        )
    if reduce == "mean":
        return update.div_(batch)  # a fresh tensor: scaled in place, no second copy
    if reduce != "sum":
        raise LearningError(f"unknown reduce {reduce!r}; expected 'mean' or 'sum'")
    return update


SPARSE_POST = 1 / 16
"""Below this fraction of non-zero post terms among the active rows, `correlate` adds the rows
one by one instead of a matrix product (a product does ~16x more useful work per operation)."""


def _correlate_rows(post_rows: Tensor, pre: Tensor | Traces, pre_offset: float) -> Tensor:
    """``post_rows.T @ (pre_rows - pre_offset)`` over the rows where a post term is non-zero."""
    active = post_rows.any(dim=1).nonzero().squeeze(1)
    post_rows = post_rows[active]
    row, neuron = post_rows.nonzero(as_tuple=True)
    if len(row) >= SPARSE_POST * post_rows.numel():
        pre_rows = pre.rows(active) if isinstance(pre, Traces) else pre.flatten(0, 1)[active]
        return post_rows.t() @ (pre_rows - pre_offset if pre_offset else pre_rows)
    weights, size = post_rows[row, neuron], post_rows.shape[1]
    if isinstance(pre, Traces):
        return pre.scatter_rows(active[row], neuron, weights, size, pre_offset)
    return scatter_add_rows(pre.flatten(0, 1)[active[row]] - pre_offset, neuron, weights, size)


def soft_bound_factors(
    weights: Tensor, w_min: float, w_max: float, mu: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Weight-dependent scales: ``(w_max - w)^mu`` for potentiation, ``(w - w_min)^mu`` for
    depression, so that updates shrink near the bounds (multiplicative / soft-bound STDP)."""
    room_up = (w_max - weights).clamp(min=0)
    room_down = (weights - w_min).clamp(min=0)
    return room_up.pow(mu), room_down.pow(mu)


def pair_stdp(
    weights: Tensor,
    pre_spikes: Tensor,
    post_spikes: Tensor,
    pre_trace: Tensor | Traces,
    post_trace: Tensor | Traces,
    *,
    a_plus: float,
    a_minus: float,
    weight_dependence: WeightDependence = "additive",
    w_min: float = 0.0,
    w_max: float = 1.0,
    mu: float = 1.0,
    conv: ConvGeometry | None = None,
    reduce: Reduce = "mean",
) -> Tensor:
    """Pair-based STDP: potentiation ``a_plus * pre_trace`` on post spikes, depression
    ``a_minus * post_trace`` on pre spikes; additive or soft-bound (scaled by the room left)."""
    shape = weights.shape
    potentiation = correlate(post_spikes, pre_trace, shape, conv, reduce)
    depression = correlate(post_trace, pre_spikes, shape, conv, reduce)
    if weight_dependence == "soft_bound":
        up, down = soft_bound_factors(weights, w_min, w_max, mu)
        potentiation, depression = potentiation.mul_(up), depression.mul_(down)
    elif weight_dependence != "additive":
        raise LearningError(
            f"unknown weight_dependence {weight_dependence!r}; expected 'additive' or 'soft_bound'"
        )
    return potentiation.mul_(a_plus).sub_(depression, alpha=a_minus)


def triplet_stdp(
    weights: Tensor,
    pre_spikes: Tensor,
    post_spikes: Tensor,
    pre_trace: Tensor | Traces,
    post_trace: Tensor | Traces,
    pre_slow_before: Tensor,
    post_slow_before: Tensor,
    *,
    a2_plus: float,
    a3_plus: float,
    a2_minus: float,
    a3_minus: float,
    conv: ConvGeometry | None = None,
    reduce: Reduce = "mean",
) -> Tensor:
    """Triplet STDP (Pfister & Gerstner 2006): on a post spike ``+r1 * (a2+ + a3+ * o2)``, on a pre
    spike ``-o1 * (a2- + a3- * r2)``, with the slow traces r2, o2 read just before the spike."""
    shape = weights.shape
    potentiation = correlate(
        post_spikes * (a2_plus + a3_plus * post_slow_before), pre_trace, shape, conv, reduce
    )
    depression = correlate(
        post_trace, pre_spikes * (a2_minus + a3_minus * pre_slow_before), shape, conv, reduce
    )
    return potentiation.sub_(depression)


def diehl_cook_stdp(
    weights: Tensor,
    pre_spikes: Tensor,
    post_spikes: Tensor,
    pre_trace: Tensor | Traces,
    post_trace: Tensor | Traces | None,
    *,
    eta_post: float,
    eta_pre: float = 0.0,
    x_tar: float = 0.0,
    w_max: float = 1.0,
    mu: float = 0.0,
    conv: ConvGeometry | None = None,
    reduce: Reduce = "mean",
) -> Tensor:
    """Diehl & Cook (2015): on a post spike ``eta_post * (x_pre - x_tar) * (w_max - w)^mu``; the
    offset x_tar depresses synapses whose input was silent. ``eta_pre`` adds pre-spike depression
    by the post trace (BindsNET's variant; the post trace may be None without it)."""
    shape = weights.shape
    potentiation = correlate(post_spikes, pre_trace, shape, conv, reduce, pre_offset=x_tar)
    if mu:
        potentiation = potentiation * (w_max - weights).clamp(min=0).pow(mu)
    update = potentiation.mul_(eta_post)
    if eta_pre:
        if post_trace is None:
            raise LearningError("diehl_cook_stdp with eta_pre needs the post trace")
        update.sub_(correlate(post_trace, pre_spikes, shape, conv, reduce), alpha=eta_pre)
    return update


class Rule(Protocol):
    """A configured STDP rule: which traces it reads and the update it returns for a window."""

    trace_mode: TraceMode
    reads_before: ClassVar[bool]  # whether `update` reads the traces just before each step
    # whether `update` takes `Traces` (computed where read) instead of whole tensors; optional,
    # a rule without it gets tensors
    lazy_traces: ClassVar[bool]

    def trace_taus(self) -> Mapping[str, tuple[Side, float]]:
        """Trace name -> (the side whose spikes feed it, its time constant in steps of dt)."""
        ...

    def update(
        self,
        weights: Tensor,
        pre_spikes: Tensor,
        post_spikes: Tensor,
        traces: Mapping[str, Tensor | Traces],
        before: Mapping[str, Tensor],
        conv: ConvGeometry | None,
        reduce: Reduce,
    ) -> Tensor:
        """The weight update for one window of activity (see the module docstring)."""
        ...


@dataclass(frozen=True)
class PairSTDP:
    """Configuration of :func:`pair_stdp` (additive or soft-bound)."""

    a_plus: float = 1e-2
    a_minus: float = 1e-2
    tau_plus: float = 20.0
    tau_minus: float = 20.0
    weight_dependence: WeightDependence = "additive"
    mu: float = 1.0
    w_min: float = 0.0
    w_max: float = 1.0
    trace_mode: TraceMode = "all_to_all"

    reads_before: ClassVar[bool] = False
    lazy_traces: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_trace_mode(self.trace_mode)

    def trace_taus(self) -> Mapping[str, tuple[Side, float]]:
        """A pre trace (tau_plus) and a post trace (tau_minus)."""
        return {"pre": ("pre", self.tau_plus), "post": ("post", self.tau_minus)}

    def update(
        self,
        weights: Tensor,
        pre_spikes: Tensor,
        post_spikes: Tensor,
        traces: Mapping[str, Tensor | Traces],
        before: Mapping[str, Tensor],
        conv: ConvGeometry | None,
        reduce: Reduce,
    ) -> Tensor:
        """See :func:`pair_stdp`."""
        return pair_stdp(
            weights,
            pre_spikes,
            post_spikes,
            traces["pre"],
            traces["post"],
            a_plus=self.a_plus,
            a_minus=self.a_minus,
            weight_dependence=self.weight_dependence,
            w_min=self.w_min,
            w_max=self.w_max,
            mu=self.mu,
            conv=conv,
            reduce=reduce,
        )


@dataclass(frozen=True)
class TripletSTDP:
    """Configuration of :func:`triplet_stdp` (defaults: Pfister & Gerstner's visual-cortex fit)."""

    a2_plus: float = 5e-10
    a3_plus: float = 6.2e-3
    a2_minus: float = 7e-3
    a3_minus: float = 2.3e-4
    tau_plus: float = 16.8
    tau_minus: float = 33.7
    tau_x: float = 101.0
    tau_y: float = 125.0
    trace_mode: TraceMode = "all_to_all"

    reads_before: ClassVar[bool] = True
    lazy_traces: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_trace_mode(self.trace_mode)

    def trace_taus(self) -> Mapping[str, tuple[Side, float]]:
        """Fast (r1, o1) and slow (r2, o2) traces on each side."""
        return {
            "pre": ("pre", self.tau_plus),
            "post": ("post", self.tau_minus),
            "pre_slow": ("pre", self.tau_x),
            "post_slow": ("post", self.tau_y),
        }

    def update(
        self,
        weights: Tensor,
        pre_spikes: Tensor,
        post_spikes: Tensor,
        traces: Mapping[str, Tensor | Traces],
        before: Mapping[str, Tensor],
        conv: ConvGeometry | None,
        reduce: Reduce,
    ) -> Tensor:
        """See :func:`triplet_stdp`."""
        return triplet_stdp(
            weights,
            pre_spikes,
            post_spikes,
            traces["pre"],
            traces["post"],
            before["pre_slow"],
            before["post_slow"],
            a2_plus=self.a2_plus,
            a3_plus=self.a3_plus,
            a2_minus=self.a2_minus,
            a3_minus=self.a3_minus,
            conv=conv,
            reduce=reduce,
        )


@dataclass(frozen=True)
class DiehlCookSTDP:
    """Configuration of :func:`diehl_cook_stdp`."""

    eta_post: float = 1e-2
    eta_pre: float = 0.0
    x_tar: float = 0.0
    w_max: float = 1.0
    mu: float = 0.0
    tau_pre: float = 20.0
    tau_post: float = 20.0
    trace_mode: TraceMode = "all_to_all"

    reads_before: ClassVar[bool] = False
    lazy_traces: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_trace_mode(self.trace_mode)

    def trace_taus(self) -> Mapping[str, tuple[Side, float]]:
        """A pre trace (tau_pre), and a post trace (tau_post) when eta_pre uses one."""
        taus: dict[str, tuple[Side, float]] = {"pre": ("pre", self.tau_pre)}
        if self.eta_pre:
            taus["post"] = ("post", self.tau_post)
        return taus

    def update(
        self,
        weights: Tensor,
        pre_spikes: Tensor,
        post_spikes: Tensor,
        traces: Mapping[str, Tensor | Traces],
        before: Mapping[str, Tensor],
        conv: ConvGeometry | None,
        reduce: Reduce,
    ) -> Tensor:
        """See :func:`diehl_cook_stdp`."""
        return diehl_cook_stdp(
            weights,
            pre_spikes,
            post_spikes,
            traces["pre"],
            traces.get("post"),
            eta_post=self.eta_post,
            eta_pre=self.eta_pre,
            x_tar=self.x_tar,
            w_max=self.w_max,
            mu=self.mu,
            conv=conv,
            reduce=reduce,
        )
