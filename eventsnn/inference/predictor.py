"""`WindowPredictor`: the LightningModule `Trainer.predict` runs over batches of encoded windows.

It wraps a trained classifier (any module with ``logits(x)``, e.g. `SpikingClassifier` or
`STDPClassifier`, or a plain spiking network read out by spike count) and returns per window: class
probabilities, predicted label, the output layer's spike counts and every spiking layer's firing
rate (spikes per neuron per time step), collected with forward hooks. With ``encode_only`` it
returns the encoded inputs.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from eventsnn.data.errors import ConfigError
from eventsnn.learning.competitive import CompetitiveLayer
from eventsnn.models.decisions import decide
from eventsnn.nn import SpikingNeuron, reset_states

SPIKING_LAYERS = (SpikingNeuron, CompetitiveLayer)
"""Modules whose output is spikes (T, B, ...): their counts and firing rates are reported."""


class WindowPredictor(pl.LightningModule):
    """Per-window outputs of `model` for the prediction writer; see the module docstring."""

    def __init__(self, model: nn.Module | None, encode_only: bool = False) -> None:
        super().__init__()
        if model is None and not encode_only:
            raise ValueError("WindowPredictor needs a model unless encode_only")
        self.model = model
        self.encode_only = encode_only
        self._spikes: list[torch.Tensor] = []
        neurons = [] if model is None else _spiking_layers(model)
        if model is not None and not neurons:
            raise ConfigError(
                "checkpoint",
                f"{type(model).__name__} has no spiking layer to read spike counts and firing "
                "rates from (batch runs SpikingClassifier and STDPClassifier models and "
                "eventsnn.nn spiking networks)",
            )
        self.layer_names = [name for name, _ in neurons]
        for _, module in neurons:
            module.register_forward_hook(self._keep_spikes)

    def _keep_spikes(self, _: nn.Module, __: Any, spikes: torch.Tensor) -> None:
        self._spikes.append(spikes.detach())

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """The batch's window and recording records, with the model's outputs per window."""
        out = {"windows": batch["windows"], "finished": batch["finished"]}
        x = batch["x"]
        if x is None:
            return out
        if self.encode_only:
            return {**out, "encoded": x.transpose(0, 1)}  # (B, T, ...)
        self._spikes.clear()
        logits = self._logits(x)
        probabilities = logits.float().softmax(-1)
        return {
            **out,
            "probabilities": probabilities,
            "predicted": torch.from_numpy(decide(probabilities.detach().cpu().numpy())),
            "spike_counts": self._spikes[-1].flatten(2).sum(0).float(),
            "firing_rates": torch.stack(
                [s.float().flatten(2).mean(dim=(0, 2)) for s in self._spikes], dim=1
            ),
        }

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (B, classes), from rest: the model's readout, else output spike counts."""
        logits_fn = getattr(self.model, "logits", None)
        if callable(logits_fn):
            return logits_fn(x)
        reset_states(self.model)
        return self.model(x).flatten(2).sum(0)


def _spiking_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every spiking neuron layer in forward order; names like ``1_lif``."""
    names = getattr(getattr(model, "net", None), "names", None)
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, SPIKING_LAYERS)]
    if names is not None and len(names) == len(model.net):
        index = {id(m): f"{i}_{n}" for i, (n, m) in enumerate(zip(names, model.net, strict=True))}
        return [(index.get(id(m), name), m) for name, m in found]
    return found
