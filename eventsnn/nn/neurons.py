"""IAF, LIF and ALIF neuron modules: parameters and state around `functional.neuron_sequence`.

Input is time-first (T, B, ...) in multi-step mode (the default) or one step (B, ...) with
`step_mode="single"`; either way the state stays on the module between calls, so feeding a
sequence in chunks gives exactly the output of one call. `eventsnn.nn.reset_states(model)` puts
every neuron of a model back at rest. With `record_membrane=True` a neuron keeps the membrane of
its last call in `v_trace` (same shape as its output, before reset, differentiable) for readouts
that use the membrane potential.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eventsnn.nn.errors import ShapeError
from eventsnn.nn.functional import (
    NeuronConfig,
    NeuronConfigError,
    NeuronState,
    neuron_sequence,
    recurrent_loop,
    zero_state,
)
from eventsnn.nn.state import StateError, Stateful
from eventsnn.nn.surrogate import Surrogate, surrogate

STEP_MODES = ("multi", "single")
Decay = float | Sequence[float] | torch.Tensor


def _decay_tensor(name: str, value: Decay) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=torch.get_default_dtype()).clone()
    if not bool(((tensor >= 0) & (tensor <= 1)).all()):
        raise NeuronConfigError(f"{name} must lie in [0, 1], got {value!r}")
    return tensor


def _surrogate_of(spec: str | dict | Surrogate) -> Surrogate:
    if isinstance(spec, dict):
        params = dict(spec)
        return surrogate(params.pop("name", "fast_sigmoid"), **params)
    return surrogate(spec)


class SpikingNeuron(Stateful, nn.Module):
    """Common base of IAF, LIF and ALIF: holds decays, config and state; see the module doc.

    beta/alpha may be scalars or tensors broadcasting against one sample's shape (e.g. (C, 1, 1)
    for one decay per channel); `learn_beta`/`learn_alpha` make them parameters. `alpha` adds a
    synaptic current state. `recurrent_features` adds lateral weights over that many features
    (one sample's flattened size); those run through the unfused loop. `overwrite_input` lets
    the neuron keep its membrane in its input's memory (the input then holds the membrane): set
    it only where nothing else reads the input, as `build` does after a conv or linear layer.
    """

    def __init__(
        self,
        *,
        beta: Decay = 1.0,
        learn_beta: bool = False,
        alpha: Decay | None = None,
        learn_alpha: bool = False,
        threshold: float = 1.0,
        reset: str = "subtract",
        reset_amount: float | None = None,
        threshold_low: float | None = None,
        multi_spike: bool = False,
        reset_delay: bool = False,
        detach_reset: bool = False,
        adapt_decay: float | None = None,
        adapt_scale: float = 0.0,
        surrogate: str | dict | Surrogate = "fast_sigmoid",
        recurrent_features: int | None = None,
        step_mode: str = "multi",
        record_membrane: bool = False,
        overwrite_input: bool = False,
    ) -> None:
        super().__init__()
        if step_mode not in STEP_MODES:
            raise NeuronConfigError(f"step_mode must be one of {STEP_MODES}, got {step_mode!r}")
        self.config = NeuronConfig(
            threshold=float(threshold),
            reset=reset,
            reset_amount=reset_amount,
            threshold_low=threshold_low,
            multi_spike=multi_spike,
            reset_delay=reset_delay,
            detach_reset=detach_reset,
            adapt_decay=adapt_decay,
            adapt_scale=float(adapt_scale),
            surrogate=_surrogate_of(surrogate),
        )
        self._register_decay("beta", beta, learn_beta)
        if alpha is None:
            self.alpha = None
        else:
            self._register_decay("alpha", alpha, learn_alpha)
        self.recurrent = (
            nn.Linear(recurrent_features, recurrent_features, bias=False)
            if recurrent_features
            else None
        )
        self.step_mode = step_mode
        self.record_membrane = record_membrane
        self.overwrite_input = overwrite_input
        self.v_trace: torch.Tensor | None = None
        self._state: NeuronState | None = None
        self._last_spikes: torch.Tensor | None = None

    def _register_decay(self, name: str, value: Decay, learn: bool) -> None:
        tensor = _decay_tensor(name, value)
        if learn:
            self.register_parameter(name, nn.Parameter(tensor))
        else:
            self.register_buffer(name, tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes for input currents x: (T, B, ...) multi-step, (B, ...) single-step."""
        seq = x.unsqueeze(0) if self.step_mode == "single" else x
        if seq.dim() < 2:
            raise ShapeError(f"{type(self).__name__} needs (T, B, ...) input, got {tuple(x.shape)}")
        state = self._state_for(seq)
        beta = self.beta.to(seq.dtype)
        alpha = None if self.alpha is None else self.alpha.to(seq.dtype)
        if self.recurrent is None:
            spikes, membrane, state = neuron_sequence(
                seq, state, beta, alpha, self.config, self.overwrite_input
            )
        else:
            last = self._last_spikes
            if last is None or last.shape != seq.shape[1:]:
                last = torch.zeros_like(seq[0])
            spikes, membrane, state = recurrent_loop(
                seq, state, last, self.recurrent.weight.to(seq.dtype), beta, alpha, self.config
            )
            self._last_spikes = spikes[-1]
        self._state = state
        if self.step_mode == "single":
            spikes, membrane = spikes[0], membrane[0]
        self.v_trace = membrane if self.record_membrane else None
        return spikes

    def _state_for(self, seq: torch.Tensor) -> NeuronState:
        state = self._state
        step_shape = seq.shape[1:]
        if (
            state is None
            or state.v.shape != step_shape
            or state.v.device != seq.device
            or state.v.dtype != seq.dtype
        ):
            state = zero_state(step_shape, seq, self.alpha is not None, self.config.adaptive)
            self._last_spikes = None
        return state

    def reset_state(self) -> None:
        """Back to rest; the next call starts from zero state shaped for its input."""
        self._state = None
        self._last_spikes = None
        self.v_trace = None

    def get_state(self) -> dict[str, torch.Tensor]:
        """{"v": membrane, "i": synaptic current, "a": adaptation, "s": last spikes} as present."""
        if self._state is None:
            return {}
        out = {k: v for k, v in self._state._asdict().items() if v is not None}
        if self._last_spikes is not None:
            out["s"] = self._last_spikes
        return out

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a state returned by `get_state` (same batch shape as the next input)."""
        unknown = set(state) - {"v", "i", "a", "s"}
        if "v" not in state or unknown:
            raise StateError(f"neuron state needs 'v' and only v, i, a, s; got {sorted(state)}")
        if (self.alpha is not None) != ("i" in state) or self.config.adaptive != ("a" in state):
            raise StateError(
                f"{type(self).__name__} state needs "
                f"{['v'] + ['i'] * (self.alpha is not None) + ['a'] * self.config.adaptive}, "
                f"got {sorted(state)}"
            )
        self._state = NeuronState(state["v"], state.get("i"), state.get("a"))
        self._last_spikes = state.get("s")

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """A neuron keeps the shape of its input."""
        return tuple(input_shape)

    def extra_repr(self) -> str:
        cfg = self.config
        parts = [f"threshold={cfg.threshold}", f"reset={cfg.reset!r}"]
        if self.beta.numel() == 1:
            parts.insert(0, f"beta={float(self.beta):g}")
        parts += [
            f"{name}={getattr(cfg, name)!r}"
            for name in ("reset_amount", "threshold_low", "adapt_decay")
            if getattr(cfg, name) is not None
        ]
        parts += [
            name for name in ("multi_spike", "reset_delay", "detach_reset") if getattr(cfg, name)
        ]
        parts.append(f"surrogate={cfg.surrogate!r}")
        if self.step_mode != "multi":
            parts.append(f"step_mode={self.step_mode!r}")
        return ", ".join(parts)


class IAF(SpikingNeuron):
    """Integrate-and-fire: v <- v + x, no leak. `multi_spike=True` gives Sinabs' default IAF."""

    def __init__(self, threshold: float = 1.0, **kwargs) -> None:
        super().__init__(beta=1.0, threshold=threshold, **kwargs)


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire: v <- beta*v + x (beta = exp(-dt/tau_mem))."""

    def __init__(self, beta: Decay = 0.9, threshold: float = 1.0, **kwargs) -> None:
        super().__init__(beta=beta, threshold=threshold, **kwargs)


class ALIF(SpikingNeuron):
    """Adaptive LIF: each spike raises the threshold by adapt_scale, decaying by adapt_decay."""

    def __init__(
        self,
        beta: Decay = 0.9,
        threshold: float = 1.0,
        adapt_decay: float = 0.95,
        adapt_scale: float = 1.8,
        **kwargs,
    ) -> None:
        if not 0 <= adapt_decay <= 1:
            raise NeuronConfigError(f"adapt_decay must lie in [0, 1], got {adapt_decay!r}")
        super().__init__(
            beta=beta,
            threshold=threshold,
            adapt_decay=adapt_decay,
            adapt_scale=adapt_scale,
            **kwargs,
        )
