"""Activity of a network by forward hooks: synaptic operations (SynOps) and firing rates.

    with Analyzer(net) as stats:
        net(x)                      # any number of calls
    stats.synops()                  # {layer name: SynOps per sample}, as Sinabs' SNNAnalyzer
    stats.firing_rates()            # {neuron name: spikes per neuron per time step}

A synaptic operation is one input spike reaching one target: an input of value s at a position
with k targets costs |s| * k. Conv fan-outs come from the layer's geometry (borders included).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eventsnn.nn.neurons import SpikingNeuron


def fanout_map(layer: nn.Module, step_shape: tuple[int, ...]) -> torch.Tensor:
    """How many targets each input position of one sample (step_shape) has in `layer`."""
    if isinstance(layer, nn.Linear):
        return torch.full(step_shape, float(layer.out_features))
    # the fan-out is the input gradient of a conv with all-ones weights: autograd must run even
    # when called under no_grad or Lightning's inference mode (validation, test)
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.zeros((1, *step_shape), requires_grad=True)
        ones = torch.ones(layer.weight.shape)
        out = F.conv2d(x, ones, None, layer.stride, layer.padding, layer.dilation, layer.groups)
        (grad,) = torch.autograd.grad(out.sum(), x)
    return grad[0]


class Analyzer:
    """Records SynOps of every Conv2d/Linear and spikes of every neuron while attached."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._fanouts: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}
        self.reset()
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                self._handles.append(module.register_forward_hook(self._synapse_hook(name)))
            elif isinstance(module, SpikingNeuron):
                self._handles.append(module.register_forward_hook(self._neuron_hook(name)))

    def reset(self) -> None:
        """Forget what was recorded so far."""
        self._synops: dict[str, float] = {}
        self._samples: dict[str, int] = {}
        self._spikes: dict[str, torch.Tensor] = {}
        self._steps: dict[str, int] = {}

    def _synapse_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0].detach()
            per_sample = 1 if isinstance(module, nn.Linear) else 3
            step_shape = tuple(x.shape[-per_sample:])
            n_samples = x.shape[-per_sample - 1] if x.dim() > per_sample else 1
            key = (name, step_shape)
            if key not in self._fanouts:
                self._fanouts[key] = fanout_map(module, step_shape).to(x.device, x.dtype)
            activity = x.abs().reshape(-1, *step_shape).sum(0)
            ops = float((activity * self._fanouts[key]).sum())
            self._synops[name] = self._synops.get(name, 0.0) + ops
            self._samples[name] = self._samples.get(name, 0) + n_samples

        return hook

    def _neuron_hook(self, name: str):
        def hook(module: SpikingNeuron, inputs: tuple, output: torch.Tensor) -> None:
            spikes = output.detach()
            if module.step_mode == "single":
                spikes = spikes.unsqueeze(0)
            per_neuron = spikes.sum((0, 1))
            steps = spikes.shape[0] * spikes.shape[1]
            if name in self._spikes and self._spikes[name].shape == per_neuron.shape:
                per_neuron = per_neuron + self._spikes[name]
                steps += self._steps[name]
            self._spikes[name] = per_neuron
            self._steps[name] = steps

        return hook

    def synops(self) -> dict[str, float]:
        """SynOps per sample (summed over its time steps) of each synapse layer, and "total"."""
        out = {name: ops / self._samples[name] for name, ops in self._synops.items()}
        out["total"] = sum(out.values())
        return out

    def neuron_firing_rates(self) -> dict[str, torch.Tensor]:
        """Spikes per step of each neuron (shape of one sample), averaged over samples and time."""
        return {name: s / self._steps[name] for name, s in self._spikes.items()}

    def firing_rates(self) -> dict[str, float]:
        """Mean spikes per neuron per time step of each neuron layer."""
        return {name: float(r.mean()) for name, r in self.neuron_firing_rates().items()}

    def remove(self) -> None:
        """Detach the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
