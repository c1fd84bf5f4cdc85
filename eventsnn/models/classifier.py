"""`SpikingClassifier`: a spiking network from a YAML layer list, trained with surrogate gradients.

The network comes from `eventsnn.nn.build(network, input_shape)`; batches are time-first
``(T, B, *input_shape)``. The readout turns the output layer's spikes (``count``) or membrane
(``max_membrane``, ``mean_membrane``) into logits for cross entropy. Optional firing-rate
regularization adds ``firing_rate_reg`` times the mean firing rate of every spiking layer.
``tbptt_steps`` trains long recordings by truncated BPTT: each window of that many steps gets its
own loss and optimizer step, and the neuron state is carried to the next window but detached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from eventsnn.checkpoint import check_state_dict
from eventsnn.data.errors import ConfigError
from eventsnn.models.readout import READOUTS
from eventsnn.nn import SpikingNeuron, build, detach_states, reset_states
from eventsnn.nn.analysis import Analyzer


def _adam(params: Any) -> torch.optim.Optimizer:
    """The optimizer when the recipe names none (kept out of the hyper-parameters: a function
    cannot be stored in a pickle-free checkpoint)."""
    return torch.optim.Adam(params, lr=1e-3)


class SpikingClassifier(pl.LightningModule):
    """Surrogate-gradient classifier over a built spiking network; see the module docstring.

    Logs ``{train,val,test}_loss`` and ``_acc`` and, in evaluation, the firing rate of each
    spiking layer (``rate/<index>``, spikes per neuron per step) and ``synops`` (synaptic
    operations per sample, as Sinabs' SNNAnalyzer). ``predict_step`` returns class probabilities.
    """

    def __init__(
        self,
        network: list[Any],
        input_shape: list[int],
        readout: str = "count",
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        firing_rate_reg: float = 0.0,
        tbptt_steps: int | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        # a recipe gives the optimizer and scheduler as class-path dicts, which a checkpoint
        # stores; a Python callable (a partial, a function) cannot be, so it stays out of them
        given = {"optimizer": optimizer, "lr_scheduler": lr_scheduler}
        self.save_hyperparameters(ignore=[name for name, value in given.items() if callable(value)])
        if readout not in READOUTS:
            raise ConfigError(
                "model.readout", f"unknown readout {readout!r}; known: {list(READOUTS)}"
            )
        self.net = build(network, input_shape)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.readout_fn, self.reads_membrane = READOUTS[readout]
        neurons = [i for i, m in enumerate(self.net) if isinstance(m, SpikingNeuron)]
        if not neurons:
            raise ConfigError("model.network", "the network has no spiking layer")
        self.output_index = neurons[-1]
        self.net[self.output_index].record_membrane = self.reads_membrane
        self._rates: list[torch.Tensor] = []
        if firing_rate_reg:
            for i in neurons:
                self.net[i].register_forward_hook(self._record_rate)
        self.optimizer_factory = optimizer or _adam
        self.scheduler_factory = lr_scheduler
        self.automatic_optimization = tbptt_steps is None

    @property
    def num_classes(self) -> int:
        """Size of the network's output."""
        return int(self.net.output_shape[-1])

    def _record_rate(self, _: torch.nn.Module, __: Any, spikes: torch.Tensor) -> None:
        self._rates.append(spikes.mean())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output activity (T, B, classes): spikes, or the membrane for membrane readouts.

        Continues from the network's current state: call `eventsnn.nn.reset_states` between
        independent samples (the training and evaluation steps do).
        """
        spikes = self.net(x)
        return self.net[self.output_index].v_trace if self.reads_membrane else spikes

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (B, classes) for a batch (T, B, ...), starting from rest."""
        reset_states(self.net)
        self._rates.clear()
        return self.readout_fn(self(x))

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        if self.hparams.firing_rate_reg and self._rates:
            loss = loss + self.hparams.firing_rate_reg * torch.stack(self._rates).mean()
        return loss

    def _log_step(
        self, stage: str, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, **extra: float
    ) -> None:
        acc = (logits.argmax(-1) == y).float().mean()
        options = {"on_step": stage == "train", "on_epoch": True, "batch_size": len(y)}
        self.log(f"{stage}_loss", loss, prog_bar=True, **options)
        self.log(f"{stage}_acc", acc, prog_bar=True, **options)
        for name, value in extra.items():
            self.log(name, value, **options)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        """Cross entropy on the readout; by truncated BPTT windows when ``tbptt_steps`` is set."""
        x, y = batch
        if self.automatic_optimization:
            logits = self.logits(x)
            loss = self._loss(logits, y)
        else:
            loss, logits = self._tbptt_step(x, y)
        self._log_step("train", loss, logits, y)
        return loss

    def _tbptt_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step per window of ``tbptt_steps``; logits from all windows' activity."""
        optimizer = self.optimizers()
        reset_states(self.net)
        activities, losses = [], []
        for window in torch.split(x, self.hparams.tbptt_steps, dim=0):
            self._rates.clear()
            activity = self(window)
            loss = self._loss(self.readout_fn(activity), y)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            detach_states(self.net)
            activities.append(activity.detach())
            losses.append(loss.detach())
        return torch.stack(losses).mean(), self.readout_fn(torch.cat(activities))

    def on_train_epoch_end(self) -> None:
        """Step the LR scheduler once per epoch under manual optimization (TBPTT)."""
        scheduler = self.lr_schedulers()
        if not self.automatic_optimization and scheduler is not None:
            scheduler.step()

    def _eval_step(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        with Analyzer(self.net) as activity:
            logits = self.logits(x)
        rates = {f"rate/{name}": rate for name, rate in activity.firing_rates().items()}
        synops = activity.synops()["total"]
        self._log_step(stage, self._loss(logits, y), logits, y, synops=synops, **rates)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        """Loss, accuracy and firing rates on the validation split."""
        self._eval_step("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        """Loss, accuracy and firing rates on the test split."""
        self._eval_step("test", batch)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse weights that do not fit before Lightning copies any: a bad resume leaves the
        model as it was."""
        source = (self._trainer.ckpt_path if self._trainer else None) or "checkpoint"
        check_state_dict(self, checkpoint["state_dict"], source)

    def predict_step(self, batch: Sequence[torch.Tensor] | torch.Tensor, _: int) -> torch.Tensor:
        """Class probabilities (B, classes) of a batch (or of ``(x, y)`` batches)."""
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return self.logits(x).softmax(-1)

    def configure_optimizers(self) -> Any:
        """The optimizer from the recipe and, when given, its LR scheduler (stepped per epoch)."""
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
