"""A competitive spiking layer (Diehl & Cook 2015): linear synapses into LIF neurons with adaptive
thresholds (theta) and soft lateral inhibition, learnt by STDP outside autograd.

The neuron maths is eventsnn.nn's (``neuron_step``: LIF, reset to zero); the inhibition is
:func:`eventsnn.learning.inhibition.lateral_inhibition` of the previous step's spikes. The
per-neuron threshold ``threshold + theta`` enters by scaling: with ``g = threshold / (threshold +
theta)`` the recurrence on ``g * input`` crossing ``threshold`` is the recurrence on ``input``
crossing ``threshold + theta`` (same spikes, reset to zero), so no neuron code is repeated.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eventsnn.learning import kernels
from eventsnn.learning.errors import LearningError
from eventsnn.learning.homeostasis import adaptive_threshold_window, normalize_weights
from eventsnn.learning.inhibition import kwta, lateral_inhibition
from eventsnn.learning.stdp import Reduce
from eventsnn.nn.functional import NeuronConfig, neuron_step, zero_state


def sparse_linear(inputs: Tensor, weight: Tensor) -> Tensor:
    """``inputs @ weight.T`` summing only the weight columns of non-zero inputs (torch's
    embedding_bag): input spikes are sparse, so this skips most of a dense product's work."""
    flat = inputs.reshape(-1, inputs.shape[-1])
    rows, cols = flat.nonzero(as_tuple=True)
    starts = torch.searchsorted(rows, torch.arange(flat.shape[0], device=flat.device))
    out = torch.nn.functional.embedding_bag(
        cols, weight.t().contiguous(), starts, mode="sum", per_sample_weights=flat[rows, cols]
    )
    return out.view(*inputs.shape[:-1], weight.shape[0])


class CompetitiveLayer(nn.Module):
    """Excitatory LIF neurons with adaptive thresholds and all-to-all lateral inhibition.

    Input spikes ``(T, B, in_features)`` give output spikes ``(T, B, out_features)``; theta (a
    buffer, saved in the state dict) rises by ``theta_plus`` per spike while the layer trains and
    decays by ``theta_decay`` per step; each spike inhibits the other neurons of its sample by
    ``inhibition`` at the next step. Weights are a parameter outside autograd, for STDP.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        beta: float = 0.99,
        threshold: float = 1.0,
        inhibition: float = 1.0,
        winners: int | None = None,
        v_min: float | None = None,
        theta_plus: float = 0.05,
        theta_decay: float = 1.0,
        weight_init: float = 0.3,
        normalize: float | None = None,
        reduce: Reduce = "mean",
        adapt: bool = True,
    ) -> None:
        super().__init__()
        if winners is not None and winners < 1:
            raise LearningError(f"CompetitiveLayer winners must be None or >= 1, got {winners}")
        if in_features < 1 or out_features < 1:
            raise LearningError(
                f"CompetitiveLayer needs positive sizes, got in_features={in_features}, "
                f"out_features={out_features}"
            )
        weight = torch.rand(out_features, in_features) * weight_init
        if normalize is not None:
            weight = normalize_weights(weight, normalize)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.register_buffer("theta", torch.zeros(out_features))
        self.register_buffer("beta", torch.tensor(float(beta)))
        self.config = NeuronConfig(threshold=float(threshold), reset="zero", threshold_low=v_min)
        self.winners = winners
        self.inhibition = float(inhibition)
        self.theta_plus = float(theta_plus)
        self.theta_decay = float(theta_decay)
        self.reduce: Reduce = reduce
        self.adapt = adapt
        self._last_input: tuple[Tensor, int, kernels.Active | None] | None = None
        self._transposed: Tensor | None = None  # see _weights_by_input

    @property
    def in_features(self) -> int:
        """Input size."""
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        """Number of excitatory neurons."""
        return self.weight.shape[0]

    def forward(self, spikes: Tensor) -> Tensor:
        """Output spikes for one window of input spikes (T, B, in); theta adapts while training."""
        if spikes.ndim != 3 or spikes.shape[-1] != self.in_features:
            raise LearningError(
                f"CompetitiveLayer expects (T, B, {self.in_features}) spikes, "
                f"got {tuple(spikes.shape)}"
            )
        with torch.no_grad():
            weight = self.weight.to(spikes.dtype)
            gain = self.config.threshold / (self.config.threshold + self.theta.to(spikes.dtype))
            if kernels.applies(spikes, weight):
                active = kernels.active_inputs(spikes.flatten(0, 1))
                out = kernels.competitive_window(
                    spikes, self._weights_by_input(weight), gain, beta=float(self.beta),
                    threshold=self.config.threshold, low=self.config.threshold_low,
                    inhibition=self.inhibition, winners=self.winners, active=active,
                )  # fmt: skip
            else:
                active = None
                out = self._run(sparse_linear(spikes, weight) * gain, gain)
            # kept while training: STDP's traces of this input reuse it (see activity_of)
            self._last_input = (spikes, spikes._version, active) if self.training else None
            if self.training and self.adapt:
                self.theta.copy_(
                    adaptive_threshold_window(
                        self.theta, out, self.theta_plus, self.theta_decay, self.reduce
                    )
                )
        return out

    def activity_of(self, spikes: Tensor) -> kernels.Active | None:
        """The `kernels.active_inputs` found for ``spikes`` if they were this layer's last
        training input, unchanged since (else None): STDP's traces reuse them."""
        if self._last_input is None:
            return None
        last, version, active = self._last_input
        return active if last is spikes and version == spikes._version else None

    def _weights_by_input(self, weight: Tensor) -> Tensor:
        """The weights transposed (in, out), as the kernel reads them, copied into a buffer kept
        between calls (a new multi-megabyte tensor every window costs page faults)."""
        buffer = self._transposed
        if buffer is None or (buffer.shape, buffer.dtype) != (weight.t().shape, weight.dtype):
            self._transposed = buffer = weight.new_empty(weight.t().shape)
        return buffer.copy_(weight.t())

    def _run(self, current: Tensor, gain: Tensor) -> Tensor:
        """The neuron loop in torch (any device; on CPU `kernels.competitive_window` runs it):
        LIF steps on the (gain-scaled) input plus the inhibition of the step before; inhibition
        spares the neuron that spiked."""
        state = zero_state(current.shape[1:], current, synaptic=False, adaptive=False)
        beta = self.beta.to(current.dtype)
        out = torch.empty_like(current)
        last = torch.zeros_like(current[0])
        for t in range(current.shape[0]):
            drive = current[t] + gain * lateral_inhibition(last, self.inhibition)
            last, membrane, state = neuron_step(drive, state, beta, None, self.config)
            if self.winners is not None:
                last = kwta(last, membrane, self.winners)
            out[t] = last
        return out

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"beta={float(self.beta):g}, threshold={self.config.threshold:g}, "
            f"inhibition={self.inhibition:g}, theta_plus={self.theta_plus:g}"
        )
