"""Competitive layer, rate encoder and STDPClassifier: dynamics, homeostasis, training."""

import csv

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from eventsnn.checkpoint import load_model, save
from eventsnn.data.errors import ConfigError
from eventsnn.learning.competitive import CompetitiveLayer
from eventsnn.models.stdp import RateEncoder, STDPClassifier


def reference_competitive(current, threshold, beta, inhibition, v_min, winners):
    """Plain loop: LIF with per-neuron threshold, reset to zero, inhibition of the step before."""
    v = torch.zeros_like(current[0])
    last = torch.zeros_like(current[0])
    out = []
    for x in current:
        v = beta * v + x - inhibition * (last.sum(-1, keepdim=True) - last)
        s = (v >= threshold).to(v.dtype)
        if winners is not None and s.sum() > 0:
            masked = torch.where(s > 0, v, torch.tensor(-torch.inf, dtype=v.dtype))
            keep = torch.zeros_like(s).scatter_(-1, masked.topk(winners, -1).indices, 1.0)
            s = s * keep
        v = torch.where(v >= threshold, torch.zeros_like(v), v)
        if v_min is not None:
            v = v.clamp(min=v_min)
        out.append(s)
        last = s
    return torch.stack(out)


@pytest.mark.parametrize("winners", [None, 1])
def test_competitive_layer_matches_a_per_neuron_threshold_loop(winners):
    torch.manual_seed(0)
    layer = CompetitiveLayer(
        12, 5, beta=0.9, threshold=2.0, inhibition=0.7, winners=winners, theta_plus=0.0
    ).double()
    layer.theta.copy_(torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0]))
    layer.eval()
    x = (torch.rand(40, 3, 12) < 0.4).double()
    current = x @ layer.weight.t()
    threshold = 2.0 + layer.theta
    # inhibition and the lower bound act in the scaled units the layer integrates in
    gain = 2.0 / threshold
    expected = reference_competitive(current * gain, 2.0, 0.9, 0.7 * gain, None, winners)
    got = layer(x)
    torch.testing.assert_close(got, expected)
    assert got.sum() > 0
    if winners == 1:
        assert got.sum(-1).max() <= 1


def test_theta_rises_per_spike_in_training_and_stays_in_eval():
    torch.manual_seed(1)
    layer = CompetitiveLayer(8, 4, threshold=0.5, theta_plus=0.25, reduce="sum")
    x = (torch.rand(20, 3, 8) < 0.5).float()
    layer.eval()
    layer(x)
    assert layer.theta.abs().sum() == 0
    layer.train()
    counts = layer(x).sum((0, 1))
    torch.testing.assert_close(layer.theta, 0.25 * counts)
    assert "theta" in layer.state_dict()


def test_rate_encoder_counts_follow_the_rates():
    torch.manual_seed(2)
    frames = torch.rand(3, 4, 2, 6, 6) * 5
    regular = RateEncoder(200, 0.3, pool=2, coding="regular")
    rates = regular.rates(frames)
    assert rates.shape == (4, 2 * 3 * 3)
    assert rates.amax(1).tolist() == pytest.approx([0.3] * 4)
    counts = regular(frames).sum(0)
    assert ((counts - rates * 200).abs() <= 1.0 + 1e-4).all()
    poisson = RateEncoder(4000, 0.3, coding="poisson")(frames).mean(0)
    torch.testing.assert_close(poisson, RateEncoder(1, 0.3).rates(frames), atol=0.05, rtol=0)
    with pytest.raises(ConfigError, match="coding"):
        RateEncoder(10, 0.3, coding="burst")


@pytest.mark.parametrize("coding", ["poisson", "regular"])
def test_rate_encoder_evaluates_a_sample_alike_in_any_batch_and_trains_on_fresh_draws(coding):
    """Out of training, a sample's spikes depend on the sample only (not on its batch, its
    place in it, or the global random state), so batch results do not depend on batching."""
    frames = torch.rand(3, 6, 2, 6, 6, generator=torch.Generator().manual_seed(3)) * 5
    encoder = RateEncoder(50, 0.3, coding=coding).eval()
    torch.manual_seed(0)
    spikes = encoder(frames)
    torch.manual_seed(1)
    torch.testing.assert_close(encoder(frames[:, [4, 1]]), spikes[:, [4, 1]], rtol=0, atol=0)
    assert not torch.equal(spikes[:, 0], spikes[:, 1])  # samples differ: their own draws
    with encoder.fresh():  # frozen training epochs: evaluation's presentation, new draws
        assert not torch.equal(encoder(frames), encoder(frames))
    torch.testing.assert_close(encoder(frames), spikes, rtol=0, atol=0)
    encoder.train()
    assert not torch.equal(encoder(frames), encoder(frames))


def two_pattern_loader(n: int, seed: int) -> DataLoader:
    """Frames (T=1) of two classes: events on the left or on the right half of a 2x8x8 sensor."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=gen)
    frames = torch.rand(n, 1, 2, 8, 8, generator=gen) * 0.2
    for i, label in enumerate(labels):
        frames[i, 0, :, :, 4 * label : 4 * label + 4] += 3.0
    data = TensorDataset(frames, labels)
    return DataLoader(data, batch_size=8, collate_fn=lambda b: collate(b))


def collate(batch):
    frames = torch.stack([f for f, _ in batch], 1)  # time-first (T, B, ...)
    return frames, torch.stack([y for _, y in batch])


def small_model(**overrides) -> STDPClassifier:
    options = dict(
        input_shape=[2, 8, 8], num_classes=2, n_neurons=6, time_steps=24, pool=1,
        max_rate=0.4, threshold=4.0, inhibition=4.0, v_min=-4.0, theta_plus=0.5,
        eta_post=0.01, x_tar=0.5, stdp_epochs=2, readout_lr=0.1, rf_png="rf.png", mean_weight=0.05,
    )  # fmt: skip
    options.update(overrides)
    return STDPClassifier(**options)


@pytest.mark.slow
def test_classifier_learns_two_patterns_and_checkpoints(tmp_path):
    pl.seed_everything(0)
    model = small_model()
    trainer = pl.Trainer(
        max_epochs=4, logger=pl.loggers.CSVLogger(tmp_path), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    train, val = two_pattern_loader(64, 0), two_pattern_loader(32, 1)
    trainer.fit(model, train, val)
    run = tmp_path / "lightning_logs" / "version_0"
    assert (run / "rf.png").stat().st_size > 0
    epochs = list(csv.DictReader((run / "metrics.csv").open()))
    first_val = next(float(r["val_assign_acc"]) for r in epochs if r["val_assign_acc"])
    assert first_val >= 0.9  # validation already uses the first epoch's label assignment
    assert bool(model.readout_trained)  # epochs 3-4 trained the readout on frozen counts
    assert {0, 1} <= set(model.assignments.tolist())  # both classes own neurons
    assert model.excitatory.theta.sum() > 0
    weights = model.excitatory.weight
    assert weights.min() >= 0 and weights.max() <= 1
    torch.testing.assert_close(weights.sum(1), torch.full((6,), 0.05 * 128))
    result = trainer.test(model, two_pattern_loader(32, 2), verbose=False)[0]
    assert result["test_assign_acc"] >= 0.9
    assert result["test_readout_acc"] >= 0.9

    path = tmp_path / "stdp.h5"
    save(model, path, states=True)
    loaded = load_model(path)
    for key in ("excitatory.theta", "excitatory.weight", "assignments", "readout_trained"):
        torch.testing.assert_close(loaded.state_dict()[key], model.state_dict()[key])
    saved_traces = model.learner.get_state()
    assert saved_traces and set(loaded.learner.get_state()) == set(saved_traces)
    for key, trace in saved_traces.items():
        torch.testing.assert_close(loaded.learner.get_state()[key], trace)
    frames, labels = next(iter(two_pattern_loader(16, 3)))
    assert (loaded.logits(frames).argmax(1) == labels).float().mean() >= 0.9


def test_bad_configuration_names_the_key():
    with pytest.raises(ConfigError, match="model.input_shape"):
        small_model(input_shape=[8, 8])
    with pytest.raises(ConfigError, match="model.stdp_epochs"):
        small_model(stdp_epochs=0)
