"""`STDPClassifier`: a Diehl & Cook (2015) network learnt by unsupervised STDP, then read out.

The network turns each sample's event frames ``(T', B, C, H, W)`` into per-pixel counts,
sum-pools them by ``pool``, scales each sample to a firing probability of at most ``max_rate`` per
step and draws input spikes over ``time_steps`` steps (``eval_time_steps`` when evaluating); a
`CompetitiveLayer` (LIF neurons with adaptive thresholds and lateral inhibition) learns the input
weights by the Diehl & Cook rule through an `STDPLearner`, outside autograd (manual optimization:
the STDP "gradient" is the rule's update, stepped by SGD so that the per-epoch learning-rate
schedule is a torch scheduler).

Training runs ``stdp_epochs`` of STDP, then the trainer's remaining epochs with it frozen. Every
training epoch sums each neuron's spikes per class; at its end each neuron is assigned the class it
fired most for (Diehl & Cook's label assignment), and a sample is predicted as the class whose
neurons fire most on average. In the frozen epochs a linear readout also learns by gradient on the
spike counts (``readout_lr``). Logged: ``{val,test}_acc`` (readout when it has been trained, else
assignment), ``*_assign_acc``, ``*_readout_acc``, weight statistics, theta, firing rates. At the
end of fit the receptive fields are saved as a PNG grid next to the logs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import xxhash
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn

from eventsnn.data.errors import ConfigError
from eventsnn.learning.competitive import CompetitiveLayer
from eventsnn.learning.learner import Plasticity, STDPLearner
from eventsnn.learning.stdp import DiehlCookSTDP

CODINGS = ("poisson", "regular")


class RateEncoder(nn.Module):
    """Event frames ``(T', B, C, H, W)`` -> spikes ``(T, B, C*H'*W')`` at rates set by the counts.

    Counts are summed over time, sum-pooled by ``pool`` and scaled per sample so the busiest input
    fires with probability ``max_rate`` per step. ``coding="poisson"`` draws independent Bernoulli
    spikes; ``"regular"`` fires evenly spaced spikes (an integrate-and-fire on the rate from a
    random phase), so counts vary by at most one spike and competition is less noisy. Out of
    training mode, presentations last ``eval_time_steps`` (longer: more spikes to count) and
    each sample's draws are seeded by its rates: a sample's spikes, and so its prediction, are
    the same in any batch, run or process (batch results must not depend on how windows were
    batched or shared out). Training draws afresh each time, also in eval mode under `fresh`
    (the frozen epochs, which present samples as evaluation does).
    """

    def __init__(
        self,
        time_steps: int,
        max_rate: float,
        pool: int = 1,
        coding: str = "poisson",
        eval_time_steps: int | None = None,
    ) -> None:
        super().__init__()
        if coding not in CODINGS:
            raise ConfigError("model.coding", f"unknown coding {coding!r}; known: {CODINGS}")
        if not 0 < max_rate <= 1 or time_steps < 1 or pool < 1:
            raise ConfigError(
                "model.max_rate",
                f"needs 0 < max_rate <= 1, time_steps >= 1, pool >= 1; got {max_rate}, "
                f"{time_steps}, {pool}",
            )
        self.time_steps, self.max_rate, self.pool, self.coding = time_steps, max_rate, pool, coding
        self.eval_time_steps = eval_time_steps or time_steps
        self.drawing_afresh = False

    @contextmanager
    def fresh(self) -> Iterator[None]:
        """Draw afresh in eval mode too, while in the block."""
        self.drawing_afresh = True
        try:
            yield
        finally:
            self.drawing_afresh = False

    def rates(self, frames: Tensor) -> Tensor:
        """Per-step firing probabilities ``(B, features)`` of a batch of frames."""
        counts = frames.sum(0)
        if self.pool > 1:
            counts = F.avg_pool2d(counts, self.pool, ceil_mode=True) * self.pool**2
        counts = counts.flatten(1)
        peak = counts.amax(1, keepdim=True).clamp(min=1e-12)
        return counts / peak * self.max_rate

    def forward(self, frames: Tensor) -> Tensor:
        """Input spikes for the batch (training: a fresh draw each call; else seeded draws)."""
        rates = self.rates(frames)
        time_steps = self.time_steps if self.training else self.eval_time_steps
        if self.coding == "poisson":
            draws = self._uniform(rates, time_steps)  # (time_steps, B, features)
            return (draws < rates).to(rates.dtype)
        steps = torch.arange(time_steps + 1, device=rates.device, dtype=rates.dtype)
        phase = self._uniform(rates, 1)[0]
        return (phase + rates * steps.view(-1, 1, 1)).floor().diff(dim=0)

    def _uniform(self, rates: Tensor, steps: int) -> Tensor:
        """U(0, 1) draws (steps, B, features): fresh in training, else each sample's from a
        generator seeded by its rates' bytes."""
        shape = (steps, *rates.shape)
        if self.training or self.drawing_afresh:
            return torch.rand(shape, device=rates.device, dtype=rates.dtype)
        draws = torch.empty((rates.shape[0], steps, rates.shape[1]), device=rates.device)
        generator = torch.Generator(device=rates.device)
        for sample, sample_rates in enumerate(rates.detach().float().cpu().numpy()):
            generator.manual_seed(xxhash.xxh3_64_intdigest(sample_rates.tobytes()))
            torch.rand(draws.shape[1:], generator=generator, out=draws[sample])
        return draws.to(rates.dtype).transpose(0, 1)


def pooled_shape(input_shape: tuple[int, int, int], pool: int) -> tuple[int, int, int]:
    """(C, H, W) after sum pooling by ``pool`` (partial windows kept)."""
    c, h, w = input_shape
    return c, math.ceil(h / pool), math.ceil(w / pool)


class STDPClassifier(pl.LightningModule):
    """Diehl & Cook network + label assignment (+ optional linear readout); see the module doc."""

    def __init__(
        self,
        input_shape: list[int],
        num_classes: int = 10,
        n_neurons: int = 400,
        time_steps: int = 64,
        eval_time_steps: int | None = 256,
        max_rate: float = 0.4,
        coding: str = "regular",
        pool: int = 1,
        beta: float = 0.95,
        threshold: float = 27.0,
        inhibition: float = 27.0,
        v_min: float | None = -27.0,
        winners: int | None = 1,
        theta_plus: float = 2.7,
        tau_theta: float = 4e4,
        weight_init: float = 0.3,
        mean_weight: float = 0.0125,
        eta_post: float = 0.002,
        x_tar: float = 0.8,
        tau_pre: float = 20.0,
        lr_decay: float = 1.0,
        reduce: str = "sum",
        stdp_epochs: int = 3,
        readout_lr: float = 0.01,
        rf_png: str | None = "receptive_fields.png",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if len(input_shape) != 3:
            raise ConfigError("model.input_shape", f"needs (C, H, W), got {list(input_shape)}")
        if stdp_epochs < 1:
            raise ConfigError("model.stdp_epochs", f"needs at least 1, got {stdp_epochs}")
        self.automatic_optimization = False
        self.input_shape = tuple(int(s) for s in input_shape)
        in_features = math.prod(pooled_shape(self.input_shape, pool))
        self.encoder = RateEncoder(time_steps, max_rate, pool, coding, eval_time_steps)
        self.excitatory = CompetitiveLayer(
            in_features, n_neurons, beta=beta, threshold=threshold, inhibition=inhibition,
            winners=winners, v_min=v_min, theta_plus=theta_plus,
            theta_decay=math.exp(-1.0 / tau_theta), weight_init=weight_init,
            normalize=mean_weight * in_features, reduce=reduce,
        )  # fmt: skip
        rule = DiehlCookSTDP(eta_post=eta_post, x_tar=x_tar, tau_pre=tau_pre)
        plasticity = Plasticity(
            rule=rule, lr=1.0, lr_decay=lr_decay, normalize=mean_weight * in_features
        )
        self.learner = STDPLearner(self, {"excitatory": plasticity}, reduce=reduce)
        self.readout = nn.Linear(n_neurons, num_classes)
        self.register_buffer("class_counts", torch.zeros(num_classes, n_neurons))
        self.register_buffer("class_samples", torch.zeros(num_classes))
        self.register_buffer("assignments", torch.full((n_neurons,), -1, dtype=torch.long))
        self.register_buffer("readout_trained", torch.tensor(False))

    @property
    def num_classes(self) -> int:
        """Number of classes the readouts score."""
        return self.readout.out_features

    @property
    def learning(self) -> bool:
        """True while the current epoch learns by STDP."""
        return self.current_epoch < self.hparams.stdp_epochs

    def forward(self, frames: Tensor) -> Tensor:
        """Spike counts ``(B, n_neurons)`` of the excitatory layer for a batch of frames."""
        return self.excitatory(self.encoder(frames)).sum(0)

    def assignment_scores(self, counts: Tensor) -> Tensor:
        """Mean spike count of each class's assigned neurons ``(B, classes)`` (0 with none)."""
        members = F.one_hot(self.assignments.clamp(min=0), self.num_classes).to(counts.dtype)
        members = members * (self.assignments >= 0).unsqueeze(1)
        return counts @ members / members.sum(0).clamp(min=1)

    def logits(self, frames: Tensor) -> Tensor:
        """Class scores: the linear readout's once trained, else the assignment scores."""
        counts = self(frames)
        return (
            self.readout(counts) if bool(self.readout_trained) else self.assignment_scores(counts)
        )

    def on_train_epoch_start(self) -> None:
        self.class_counts.zero_()
        self.class_samples.zero_()

    def training_step(self, batch: tuple[Tensor, Tensor], _: int) -> None:
        frames, labels = batch
        stdp_optimizer, readout_optimizer = self.optimizers()
        # frozen epochs run as evaluation does (theta fixed, evaluation-length presentations)
        self.excitatory.train(self.learning)
        self.encoder.train(self.learning)
        if self.learning:
            with self.learner.capture():
                counts = self(frames)
            # set_gradients overwrites the gradient each step: no zero_grad, no new large tensor
            self.learner.set_gradients(self.learner.updates())
            stdp_optimizer.step()
            self.learner.constrain()
        else:
            with torch.no_grad(), self.encoder.fresh():  # new draws every epoch, as in learning
                counts = self(frames)
            loss = F.cross_entropy(self.readout(counts), labels)
            readout_optimizer.zero_grad()
            self.manual_backward(loss)
            readout_optimizer.step()
            self.log(
                "train_readout_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels)
            )
        self.class_counts.index_add_(0, labels, counts)
        self.class_samples.index_add_(0, labels, torch.ones_like(labels, dtype=counts.dtype))
        options = {"on_step": False, "on_epoch": True, "batch_size": len(labels)}
        self.log("train_spikes_per_sample", counts.sum(1).mean(), **options)

    def _close_epoch(self) -> Tensor:
        """Assign labels from this epoch's class-wise firing (and mark a trained readout); returns
        which neurons fired. Idempotent, so validation (which Lightning runs before
        `on_train_epoch_end`) already sees this epoch's assignments."""
        rates = self.class_counts / self.class_samples.clamp(min=1).unsqueeze(1)
        fired = rates.sum(0) > 0
        if self.class_samples.sum() > 0:  # not before any training (sanity checks, resuming)
            self.assignments.copy_(torch.where(fired, rates.argmax(0), -1))
            if not self.learning:
                self.readout_trained.fill_(True)
        return fired

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING:
            self._close_epoch()

    def on_train_epoch_end(self) -> None:
        fired = self._close_epoch()
        weight, theta = self.excitatory.weight, self.excitatory.theta
        self.log_dict(
            {
                "weight_mean": weight.mean(),
                "weight_std": weight.std(),
                "weight_max": weight.max(),
                "theta_mean": theta.mean(),
                "theta_max": theta.max(),
                "neurons_assigned": fired.float().sum(),
            }
        )
        scheduler = self.lr_schedulers()
        if scheduler is not None and self.learning:
            scheduler.step()

    def _eval_step(self, stage: str, batch: tuple[Tensor, Tensor]) -> None:
        frames, labels = batch
        counts = self(frames)
        assign = (self.assignment_scores(counts).argmax(1) == labels).float().mean()
        options = {"on_step": False, "on_epoch": True, "batch_size": len(labels)}
        self.log(f"{stage}_assign_acc", assign, **options)
        accuracy = assign
        if bool(self.readout_trained):
            accuracy = (self.readout(counts).argmax(1) == labels).float().mean()
            self.log(f"{stage}_readout_acc", accuracy, **options)
        self.log(f"{stage}_acc", accuracy, prog_bar=True, **options)
        self.log(f"{stage}_spikes_per_sample", counts.sum(1).mean(), **options)
        self.log(f"{stage}_active_fraction", (counts.sum(0) > 0).float().mean(), **options)

    def validation_step(self, batch: tuple[Tensor, Tensor], _: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], _: int) -> None:
        self._eval_step("test", batch)

    def predict_step(self, batch: tuple[Tensor, Tensor] | Tensor, _: int) -> Tensor:
        frames = batch[0] if isinstance(batch, list | tuple) else batch
        return self.logits(frames).softmax(-1)

    def configure_optimizers(self) -> tuple[list, list]:
        stdp = torch.optim.SGD(self.learner.parameter_groups(), lr=1.0)
        readout = torch.optim.Adam(self.readout.parameters(), lr=self.hparams.readout_lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(stdp, self.learner.lr_lambdas())
        return [stdp, readout], [schedule]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["stdp_traces"] = self.learner.get_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.learner.set_state(dict(checkpoint.get("stdp_traces") or {}))

    def on_fit_end(self) -> None:
        if self.hparams.rf_png and self.trainer.is_global_zero:
            folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
            save_receptive_fields(
                self.excitatory.weight, self.encoder_shape, folder / self.hparams.rf_png
            )

    @property
    def encoder_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the excitatory layer's input."""
        return pooled_shape(self.input_shape, self.hparams.pool)


def save_receptive_fields(weight: Tensor, shape: tuple[int, int, int], path: Path) -> Path:
    """Save each neuron's input weights as an image tile (channels side by side) in a PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, h, w = shape
    tiles = weight.detach().cpu().view(-1, c, h, w).permute(0, 2, 1, 3).reshape(-1, h, c * w)
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    grid = torch.full((rows * (h + 1), columns * (c * w + 1)), float("nan"))
    for i, tile in enumerate(tiles):
        r, k = divmod(i, columns)
        grid[r * (h + 1) : r * (h + 1) + h, k * (c * w + 1) : k * (c * w + 1) + c * w] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(min(20, columns * c * 0.5 + 1), min(20, rows * 0.5 + 1)))
    ax.imshow(grid.numpy(), cmap="hot", interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"receptive fields of {len(tiles)} neurons ({c} channels side by side)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
