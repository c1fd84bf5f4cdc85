"""Apply STDP rules to named layers of any network, outside autograd, batch-vectorised.

`STDPLearner` hooks the named layers: while capturing, a forward pass records each layer's input
(pre-synaptic spikes) and output (post-synaptic spikes), time-first. `updates()` turns them into
traces and weight updates through the rules; `apply()` hands the updates to a torch optimizer (one
parameter group per layer: its learning rate, weight decay and schedule) and then enforces the
weight bounds and per-neuron normalization. The traces at the end of each window are the
learner's state (per sample, like a neuron's membrane: `eventsnn.nn.get_states` / `set_states`
read and write them, so checkpoints with states carry them); with ``carry_traces=True`` the next
window starts from them, so a recording fed in windows learns as one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from eventsnn.learning import kernels
from eventsnn.learning.errors import LearningError
from eventsnn.learning.homeostasis import normalization_factors
from eventsnn.learning.inhibition import channel_wta
from eventsnn.learning.stdp import ConvGeometry, PairSTDP, Reduce, Rule
from eventsnn.learning.traces import Traces, trace_decay, traces_before
from eventsnn.nn.state import StateError, Stateful


@dataclass(frozen=True)
class Plasticity:
    """How one layer learns: its rule, learning rate and per-epoch decay of it, weight bounds,
    per-neuron normalization total, weight decay, and (conv) a winner channel per position."""

    rule: Rule = field(default_factory=PairSTDP)
    lr: float = 1.0
    lr_decay: float = 1.0
    w_min: float = 0.0
    w_max: float = 1.0
    normalize: float | None = None
    weight_decay: float = 0.0
    channel_wta: bool = False

    def __post_init__(self) -> None:
        if self.w_min > self.w_max:
            raise LearningError(f"w_min {self.w_min} is above w_max {self.w_max}")
        if self.lr < 0 or self.lr_decay <= 0:
            raise LearningError(f"lr must be >= 0 and lr_decay > 0, got {self.lr}, {self.lr_decay}")


def learnable_weight(module: nn.Module, name: str) -> tuple[nn.Parameter, ConvGeometry | None]:
    """The weight STDP learns in ``module`` (its own, or its only Linear/Conv2d child's) and the
    convolution geometry (None for a linear weight)."""
    if isinstance(getattr(module, "weight", None), nn.Parameter):
        owner = module
    else:
        synapses = [m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        if len(synapses) != 1:
            raise LearningError(
                f"layer {name!r} ({type(module).__name__}) needs one weight to learn; "
                f"found {len(synapses)} Linear/Conv2d modules in it"
            )
        owner = synapses[0]
    weight = owner.weight
    if weight.ndim == 2:
        return weight, None
    if weight.ndim == 4 and isinstance(owner, nn.Conv2d):
        if isinstance(owner.padding, str) or owner.groups != 1:
            raise LearningError(
                f"layer {name!r}: conv STDP needs numeric padding and groups=1, "
                f"got padding={owner.padding!r}, groups={owner.groups}"
            )
        return weight, ConvGeometry(owner.stride, owner.padding, owner.dilation)  # type: ignore[arg-type]
    raise LearningError(
        f"layer {name!r} has a weight of shape {tuple(weight.shape)}: not linear/conv"
    )


def _whole(traces: Mapping[str, Traces]) -> dict[str, Tensor]:
    """Whole trace sequences, for rules that read them as tensors (no ``lazy_traces``)."""
    return {name: values.full for name, values in traces.items()}


def _state_key(layer: str, trace: str) -> str:
    # no dots: eventsnn.nn.set_states splits "<module path>.<state name>" at the last dot
    return f"{layer.replace('.', '/')}:{trace}"


class STDPLearner(Stateful, nn.Module):
    """Learns the weights of the named layers of ``network`` by their rules (see module doc)."""

    def __init__(
        self,
        network: nn.Module,
        plasticity: Mapping[str, Plasticity],
        *,
        dt: float = 1.0,
        reduce: Reduce = "mean",
        carry_traces: bool = False,
    ) -> None:
        super().__init__()
        if not plasticity:
            raise LearningError("STDPLearner needs at least one layer to learn")
        self.plasticity = dict(plasticity)
        self.reduce: Reduce = reduce
        self.carry_traces = carry_traces
        self.capturing = False
        modules = dict(network.named_modules())
        self._weights: dict[str, tuple[nn.Parameter, ConvGeometry | None]] = {}
        self._decays: dict[str, dict[str, float]] = {}
        self._captured: dict[str, tuple[Tensor, Tensor, kernels.Active | None]] = {}
        self._traces: dict[str, Tensor] = {}
        for name, spec in self.plasticity.items():
            if name not in modules:
                known = [n for n in modules if n]
                raise LearningError(f"no layer named {name!r} to learn; layers: {known}")
            self._weights[name] = learnable_weight(modules[name], name)
            self._weights[name][0].requires_grad_(False)
            self._decays[name] = {
                trace: trace_decay(tau, dt) for trace, (_, tau) in spec.rule.trace_taus().items()
            }
            modules[name].register_forward_hook(self._hook(name))

    def _hook(self, name: str) -> Callable:
        def capture(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if self.capturing:
                # a layer that found its input's active inputs (CompetitiveLayer) saves that work
                activity_of = getattr(module, "activity_of", None)
                active = activity_of(inputs[0]) if callable(activity_of) else None
                self._captured[name] = (inputs[0].detach(), output.detach(), active)

        return capture

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record the named layers' input and output spikes during the forward passes inside."""
        self.capturing = True
        try:
            yield
        finally:
            self.capturing = False

    def parameter_groups(self) -> list[dict]:
        """One optimizer parameter group per layer: its weight, lr and weight decay."""
        return [
            {"params": [self._weights[name][0]], "lr": spec.lr, "weight_decay": spec.weight_decay}
            for name, spec in self.plasticity.items()
        ]

    def lr_lambdas(self) -> list[Callable[[int], float]]:
        """Per-layer LR schedules for ``torch.optim.lr_scheduler.LambdaLR``: lr * lr_decay^epoch."""
        return [lambda epoch, d=spec.lr_decay: d**epoch for spec in self.plasticity.values()]

    def updates(self) -> dict[str, Tensor]:
        """The weight update of each layer for the captured window (and forget the capture)."""
        missing = [name for name in self.plasticity if name not in self._captured]
        if missing:
            raise LearningError(f"no activity captured for layer(s) {missing}: run a forward pass")
        out = {}
        for name, spec in self.plasticity.items():
            pre, post, pre_active = self._captured.pop(name)
            weight, conv = self._weights[name]
            if spec.channel_wta:
                if conv is None:
                    raise LearningError(f"layer {name!r}: channel_wta needs a conv layer")
                scores = torch.rand_like(post)
                post = torch.stack([channel_wta(p, s) for p, s in zip(post, scores, strict=True)])
            spikes = {"pre": pre.to(weight.dtype), "post": post.to(weight.dtype)}
            traces, before = {}, {}
            for trace, (side, _) in spec.rule.trace_taus().items():
                decay, key = self._decays[name][trace], _state_key(name, trace)
                initial = self._traces.get(key) if self.carry_traces else None
                if initial is not None and initial.shape != spikes[side].shape[1:]:
                    initial = None  # another batch size: a new recording
                active = pre_active if side == "pre" else None
                mode = spec.rule.trace_mode
                traces[trace] = Traces(spikes[side], decay, initial, mode, active)
                if spec.rule.reads_before:
                    before[trace] = traces_before(traces[trace].full, initial, decay)
            given = traces if getattr(spec.rule, "lazy_traces", False) else _whole(traces)
            out[name] = spec.rule.update(
                weight, spikes["pre"], spikes["post"], given, before, conv, self.reduce
            )
            for trace, values in traces.items():  # after the update, whose pass made them
                self._traces[_state_key(name, trace)] = values.last()
        return out

    def set_gradients(self, updates: Mapping[str, Tensor]) -> None:
        """Store ``-update`` as each weight's gradient, so that an optimizer step adds lr*update
        (into the gradient tensor already there when it fits: no new large tensor a step)."""
        for name, update in updates.items():
            weight = self._weights[name][0]
            grad = weight.grad
            same = (update.shape, update.dtype, update.device)
            if grad is not None and (grad.shape, grad.dtype, grad.device) == same:
                torch.neg(update, out=grad)
            else:
                weight.grad = -update

    @torch.no_grad()
    def constrain(self) -> None:
        """Clamp every learnt weight to its bounds, then normalize it per neuron where asked."""
        for name, spec in self.plasticity.items():
            weight = self._weights[name][0]
            weight.clamp_(spec.w_min, spec.w_max)
            if spec.normalize is not None:
                weight.mul_(normalization_factors(weight, spec.normalize))

    def reset_state(self) -> None:
        """Forget the traces: the next window starts from zero traces."""
        self._traces = {}

    def get_state(self) -> dict[str, Tensor]:
        """The traces at the end of the last window, keyed ``"<layer>:<trace>"``."""
        return dict(self._traces)

    def set_state(self, state: dict[str, Tensor]) -> None:
        """Continue from traces returned by `get_state`."""
        known = {_state_key(n, t) for n, decays in self._decays.items() for t in decays}
        unknown = sorted(set(state) - known)
        if unknown:
            raise StateError(f"no STDP trace named {unknown[0]!r}; traces: {sorted(known)}")
        self._traces = dict(state)
