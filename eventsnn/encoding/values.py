"""Dense values to spike trains (time first) in torch, on the values' device.

Random encoders draw from an optional `torch.Generator` (None: torch's global generator), so a
seeded generator gives the same spikes on every run; on CPU they equal Sinabs' layers after
`torch.manual_seed` with the same seed. Deterministic encoders follow snnTorch's `spikegen`.
"""

from __future__ import annotations

import torch


def _uniform(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None):
    """U[0, 1) float32 samples drawn on the generator's device, moved to like's device."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device).to(like.device)


def rate(
    values: torch.Tensor,
    tw: int = 100,
    max_rate: float = 1000,
    norm: float = 255.0,
    negative_spikes: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Poisson (Bernoulli per 1 ms step) spikes (tw, *values.shape), as Sinabs' Img2Spike.

    A value v fires with probability (|v| / norm) * (max_rate / 1000) per step; with
    negative_spikes, negative values give -1 spikes.
    """
    noise = _uniform((tw, *values.shape), values, generator)
    magnitude = values.abs() if negative_spikes else values
    spikes = (noise < (magnitude / norm) * (max_rate / 1000)).float()
    return spikes * values.sign().float() if negative_spikes else spikes


def signal_to_spike(
    signal: torch.Tensor,
    tw: int = 1,
    norm_level: float = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Analog channels (C, T) to spikes (tw * T, C), as Sinabs' Sig2Spike.

    Each sample is held for tw steps; a step fires when U[0, norm_level) < the signal.
    """
    channels, steps = signal.shape
    held = signal.reshape(-1, 1).repeat(1, tw).reshape(channels, -1).transpose(1, 0)
    noise = _uniform((tw * steps, channels), signal, generator) * norm_level
    return (noise < held).float()


def random_flicker(
    values: torch.Tensor, n_steps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Spikes (n_steps, *values.shape) where each step shows the input at a random brightness.

    Every step draws one threshold U[0, 1) shared by all inputs (a global flicker) and fires the
    inputs above it, so a value v in [0, 1] fires with probability v and spikes are correlated
    across inputs (unlike `rate`, whose inputs draw independently).
    """
    thresholds = _uniform((n_steps,), values, generator)
    return (values.unsqueeze(0) > thresholds.view(-1, *([1] * values.dim()))).float()


def delta(
    data: torch.Tensor, threshold: float = 0.1, padding: bool = False, off_spike: bool = False
) -> torch.Tensor:
    """Spike where a time-first signal rises by >= threshold from one step to the next.

    snnTorch's spikegen.delta: the first step compares with zeros (or with itself when
    padding); off_spike adds -1 where it falls by >= threshold.
    """
    previous = torch.cat((data[:1] if padding else torch.zeros_like(data[:1]), data[:-1]))
    change = data - previous
    spikes = (change >= threshold).to(data.dtype)
    return spikes - (change <= -threshold).to(data.dtype) if off_spike else spikes


def latency_times(
    data: torch.Tensor,
    num_steps: int,
    threshold: float = 0.01,
    tau: float = 1,
    first_spike_time: int = 0,
    normalize: bool = False,
    linear: bool = False,
    epsilon: float = 1e-7,
) -> torch.Tensor:
    """Spike time of each value in [0, 1] (large values fire early), snnTorch's latency_code.

    Linear: tau * (1 - v), capped at tau * (1 - threshold). Log (an RC neuron charging to v):
    tau * log(v / (v - threshold)), values below threshold saturating. normalize stretches the
    times over num_steps.
    """
    if not 0 < threshold < 1 or tau <= 0 or first_spike_time < 0:
        raise ValueError(
            f"need 0 < threshold < 1, tau > 0, first_spike_time >= 0; "
            f"got {threshold}, {tau}, {first_spike_time}"
        )
    if linear:
        if normalize:
            tau = num_steps - 1 - first_spike_time
        return torch.clamp_max(-tau * (data - 1), -tau * (threshold - 1)) + first_spike_time
    clamped = torch.clamp(data, threshold + epsilon)
    times = tau * torch.log(clamped / (clamped - threshold))
    if first_spike_time > 0:
        times += first_spike_time
    if normalize:
        shifted = times - first_spike_time
        times = shifted * (num_steps - first_spike_time - 1) / torch.max(shifted)
        times = times + first_spike_time
    return times


def latency(
    data: torch.Tensor,
    num_steps: int,
    threshold: float = 0.01,
    tau: float = 1,
    first_spike_time: int = 0,
    on_target: float = 1,
    off_target: float = 0,
    clip: bool = False,
    normalize: bool = False,
    linear: bool = False,
    epsilon: float = 1e-7,
) -> torch.Tensor:
    """One spike per value at its `latency_times` step: (num_steps, *data.shape).

    snnTorch's spikegen.latency with bypass=True (no interpolate): times past num_steps - 1 give
    no spike; clip removes the spikes of values below threshold; spikes are on_target, the rest
    off_target. Values must lie in [0, 1].
    """
    if data.numel() and (data.min() < 0 or data.max() > 1):
        raise ValueError(f"latency needs values in [0, 1], got [{data.min()}, {data.max()}]")
    times = latency_times(
        data, num_steps, threshold, tau, first_spike_time, normalize, linear, epsilon
    )
    step = torch.round(torch.clamp_max(times, num_steps - 1)).long().unsqueeze(0)
    spikes = torch.zeros((num_steps, *data.shape), dtype=torch.float, device=data.device)
    spikes = spikes.scatter(0, step, 1) * ~(torch.round(times).long() > num_steps - 1)
    if clip:
        spikes = spikes * ~(data < threshold)
    return torch.clamp(spikes * on_target, off_target)
