"""Pure neuron maths: the state update of IAF/LIF/ALIF neurons, one step and whole sequences.

The reference recurrence, for every time step t (all tensors elementwise):

    i  <- alpha * i + x                  (only with a synaptic current; else the input is x)
    u  <- beta * v + i                   (u: membrane before the spike; IAF has beta = 1)
    th <- threshold + adapt_scale * a    (ALIF; else th = threshold)
    s  <- u >= th                        (or floor(u / th) spikes for u > 0 with `multi_spike`)
    v  <- u - amount * s                 ("subtract"; amount = th unless given)
       |  u * (s == 0)                   ("zero")  |  u  ("none")
    v  <- max(v, threshold_low)          (as relu(v - low) + low, like Sinabs' min_v_mem)
    a  <- adapt_decay * a + s            (ALIF)

With `reset_delay` (snnTorch's default) the subtraction of a spike happens at the next step,
undecayed: u <- beta * v + x - amount * (v >= threshold), v <- u.

The spike's derivative is the surrogate's at u - th. `neuron_sequence` runs the recurrence over
T steps, through the fused kernel (one autograd node, analytic backward) where it applies and
through `neuron_loop` (autograd over `neuron_step`) elsewhere; both give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from eventsnn.nn.surrogate import FastSigmoid, Surrogate

RESET_MODES = ("subtract", "zero", "none")


class NeuronConfigError(ValueError):
    """A neuron parameter is out of range or two options do not go together."""


@dataclass(frozen=True)
class NeuronConfig:
    """The fixed (non-learnable) settings of a neuron's recurrence; see the module docstring."""

    threshold: float = 1.0
    reset: str = "subtract"
    reset_amount: float | None = None
    threshold_low: float | None = None
    multi_spike: bool = False
    reset_delay: bool = False
    detach_reset: bool = False
    adapt_decay: float | None = None
    adapt_scale: float = 0.0
    surrogate: Surrogate = field(default_factory=FastSigmoid)

    def __post_init__(self) -> None:
        if self.reset not in RESET_MODES:
            raise NeuronConfigError(f"reset must be one of {RESET_MODES}, got {self.reset!r}")
        if self.reset_delay and (
            self.reset != "subtract"
            or self.multi_spike
            or self.adaptive
            or self.threshold_low is not None
        ):
            raise NeuronConfigError(
                "reset_delay (snnTorch's delayed subtraction) needs reset='subtract', "
                "single spikes, no adaptation and no threshold_low"
            )
        if self.multi_spike and self.threshold <= 0:
            raise NeuronConfigError("multi_spike needs a positive threshold")

    @property
    def adaptive(self) -> bool:
        """True for ALIF neurons (threshold adaptation)."""
        return self.adapt_decay is not None


class NeuronState(NamedTuple):
    """Neuron state: membrane v, synaptic current i and adaptation a (None when unused)."""

    v: torch.Tensor
    i: torch.Tensor | None = None
    a: torch.Tensor | None = None


def zero_state(
    shape: torch.Size | tuple[int, ...], like: torch.Tensor, synaptic: bool, adaptive: bool
) -> NeuronState:
    """A resting state of the given per-step shape, on the device and dtype of `like`."""

    def zeros() -> torch.Tensor:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)

    return NeuronState(zeros(), zeros() if synaptic else None, zeros() if adaptive else None)


class _Spike(torch.autograd.Function):
    """Heaviside (or multi-spike count) forward, surrogate derivative at u - th backward."""

    @staticmethod
    def forward(ctx, u, theta, multi_spike: bool, surrogate: Surrogate):  # noqa: D102
        ctx.save_for_backward(u, theta)
        ctx.surrogate = surrogate
        if multi_spike:
            return (u > 0).to(u.dtype) * torch.div(u, theta, rounding_mode="trunc")
        return (u >= theta).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        u, theta = ctx.saved_tensors
        g = grad * ctx.surrogate.derivative(u - theta)
        g_theta = (-g).sum_to_size(theta.shape) if ctx.needs_input_grad[1] else None
        return g, g_theta, None, None


def spike(
    u: torch.Tensor, theta: torch.Tensor, surrogate: Surrogate, multi_spike: bool = False
) -> torch.Tensor:
    """Spikes where u >= theta (or floor(u/theta) of them), with the surrogate's gradient."""
    theta = torch.as_tensor(theta, dtype=u.dtype, device=u.device)
    return _Spike.apply(u, theta, multi_spike, surrogate)


def neuron_step(
    x: torch.Tensor,
    state: NeuronState,
    beta: torch.Tensor,
    alpha: torch.Tensor | None,
    cfg: NeuronConfig,
) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
    """One time step of the recurrence: (spikes, membrane u before reset, new state)."""
    if alpha is not None:
        i = alpha * state.i + x
        drive = i
    else:
        i, drive = None, x
    theta = torch.as_tensor(cfg.threshold, dtype=x.dtype, device=x.device)
    if cfg.adaptive:
        theta = theta + cfg.adapt_scale * state.a
    amount = theta if cfg.reset_amount is None else cfg.reset_amount
    if cfg.reset_delay:
        pending = spike(state.v, theta, cfg.surrogate)
        if cfg.detach_reset:
            pending = pending.detach()
        u = beta * state.v + drive - amount * pending
        s = spike(u, theta, cfg.surrogate)
        return s, u, NeuronState(u, i, None)
    u = beta * state.v + drive
    s = spike(u, theta, cfg.surrogate, cfg.multi_spike)
    fired = s.detach() if cfg.detach_reset else s
    if cfg.reset == "subtract":
        v = u - amount * fired
    elif cfg.reset == "zero":
        if cfg.multi_spike:
            fired = spike(u, theta, cfg.surrogate)
            fired = fired.detach() if cfg.detach_reset else fired
        v = u * (1 - fired)
    else:
        v = u
    if cfg.threshold_low is not None:
        v = torch.relu(v - cfg.threshold_low) + cfg.threshold_low
    a = cfg.adapt_decay * state.a + s if cfg.adaptive else None
    return s, u, NeuronState(v, i, a)


def neuron_loop(
    x: torch.Tensor,
    state: NeuronState,
    beta: torch.Tensor,
    alpha: torch.Tensor | None,
    cfg: NeuronConfig,
) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
    """The reference: `neuron_step` over the T steps of x (T, B, ...), autograd through each."""
    spikes, membrane = [], []
    for x_t in x:
        s, u, state = neuron_step(x_t, state, beta, alpha, cfg)
        spikes.append(s)
        membrane.append(u)
    return torch.stack(spikes), torch.stack(membrane), state


def neuron_sequence(
    x: torch.Tensor,
    state: NeuronState,
    beta: torch.Tensor,
    alpha: torch.Tensor | None,
    cfg: NeuronConfig,
    overwrite_input: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
    """The recurrence over x (T, B, ...): (spikes, membrane before reset, final state).

    Runs the fused kernel (one pass over memory forward and backward) where it applies, else
    `neuron_loop`. beta and alpha broadcast against one step's shape (B, ...) without B.
    overwrite_input lets the fused kernel store the membrane in x's memory (x is then that
    membrane): only for an x that nothing else reads, such as a synapse's fresh output.
    """
    from eventsnn.nn import kernels  # the fused kernels import numba: load them on first use

    if kernels.applies(x, cfg):
        return kernels.fused_sequence(x, state, beta, alpha, cfg, overwrite_input)
    return neuron_loop(x, state, beta, alpha, cfg)


def recurrent_loop(
    x: torch.Tensor,
    state: NeuronState,
    last_spikes: torch.Tensor,
    weight: torch.Tensor,
    beta: torch.Tensor,
    alpha: torch.Tensor | None,
    cfg: NeuronConfig,
) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
    """The recurrence with lateral weights: step t's input is x_t + weight @ spikes_{t-1}.

    weight is (F, F) over one sample's flattened features; last_spikes are the spikes of the step
    before x[0]. The spikes of the last step are the last of the returned spikes.
    """
    spikes, membrane = [], []
    s = last_spikes
    for x_t in x:
        lateral = (s.flatten(1) @ weight.t()).view_as(x_t)
        s, u, state = neuron_step(x_t + lateral, state, beta, alpha, cfg)
        spikes.append(s)
        membrane.append(u)
    return torch.stack(spikes), torch.stack(membrane), state
