"""An STDP classifier in the pipelines: batch and stream read it out window by window as it
predicts offline."""

import h5py
import numpy as np
import pytest
import torch

from eventsnn.checkpoint import read_checkpoint, save, write_checkpoint
from eventsnn.data import ConfigError
from eventsnn.encoding import to_frame
from eventsnn.events import make_events, write
from eventsnn.inference.predictor import WindowPredictor
from eventsnn.models.stdp import STDPClassifier
from eventsnn.streaming.runner import StreamRunner, softmax
from pipelines import batch


@pytest.fixture
def stdp_model() -> STDPClassifier:
    return STDPClassifier(input_shape=[2, 8, 8], num_classes=3, n_neurons=10, time_steps=4)


def firing_model() -> STDPClassifier:
    """A small untrained STDP classifier whose neurons fire, with labels assigned."""
    torch.manual_seed(0)
    model = STDPClassifier(
        input_shape=[2, 8, 8], num_classes=3, n_neurons=10, time_steps=4, eval_time_steps=32,
        threshold=2.0, inhibition=0.5, v_min=None, winners=None, mean_weight=0.2,
    )  # fmt: skip
    model.assignments.copy_(torch.arange(10) % 3)
    return model.eval()


def test_batch_predictor_reads_out_the_stdp_layer():
    model = firing_model()
    x = torch.poisson(torch.full((5, 4, 2, 8, 8), 0.3))
    predictor = WindowPredictor(model)
    torch.manual_seed(2)  # the model draws its input spikes at random
    out = predictor.predict_step({"x": x, "windows": None, "finished": []}, 0)
    torch.manual_seed(2)
    counts = model(x)
    expected = model.assignment_scores(counts).softmax(-1)
    torch.testing.assert_close(out["probabilities"], expected)
    torch.testing.assert_close(out["spike_counts"], counts)
    torch.testing.assert_close(out["firing_rates"][:, 0], counts.mean(1) / 32)
    assert predictor.layer_names == ["excitatory"] and counts.sum() > 0


def test_batch_refuses_a_model_without_spiking_layers():
    with pytest.raises(ConfigError, match="^checkpoint: Sequential has no spiking layer"):
        WindowPredictor(torch.nn.Sequential(torch.nn.Flatten()))


def test_eventsnn_batch_runs_an_stdp_checkpoint(tmp_path):
    model = firing_model()
    checkpoint = tmp_path / "stdp.h5"
    save(model, checkpoint)
    stored = read_checkpoint(checkpoint)
    stored["datamodule_hyper_parameters"] = {
        "dataset": "NDigits",
        "dataset_options": {"duration_us": 20_000},
        "transform": [
            {
                "class_path": "eventsnn.encoding.transforms.ToFrame",
                "init_args": {"sensor_size": [8, 8, 2], "n_time_bins": 1},
            }
        ],
    }
    write_checkpoint(checkpoint, stored)
    rng = np.random.default_rng(3)
    for k in range(2):
        t = np.sort(rng.integers(0, 60_000, 2000))
        events = make_events(rng.integers(0, 8, 2000), rng.integers(0, 8, 2000), t, t % 2)
        write(tmp_path / "recordings" / f"r{k}.npy", events, (8, 8, 2))
    output = tmp_path / "results.h5"
    argv = ["batch", "--checkpoint", str(checkpoint), "--output", str(output), "--threads", "1"]
    argv += ["--inputs", str(tmp_path / "recordings"), "--progress", "false"]
    assert batch.main(argv) == 0
    with h5py.File(output) as results:
        assert results["recordings/n_windows"][()].tolist() == [3, 3]  # 60 ms in 20 ms windows
        probabilities = results["windows/probabilities"][()]
        assert probabilities.shape == (6, 3)  # three classes
        np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)


def test_stream_reads_out_each_window_as_the_model_predicts_it_offline():
    stdp_model = firing_model()
    rng = np.random.default_rng(0)
    n, step_us, window = 3000, 1000, 20
    t = np.sort(rng.integers(0, 75_000, n)) + 5_000
    events = make_events(rng.integers(0, 8, n), rng.integers(0, 8, n), t, rng.integers(0, 2, n))
    runner = StreamRunner(stdp_model, (8, 8, 2), step_us=step_us, window_steps=window)
    torch.manual_seed(1)  # the model draws its input spikes at random
    results = runner.feed(events[: n // 2]) + runner.feed(events[n // 2 :]) + runner.finish()
    frames = to_frame(events, (8, 8, 2), time_window=step_us, include_incomplete=True)
    frames = torch.from_numpy(frames.astype(np.float32))
    torch.manual_seed(1)
    assert len(results) == -(-len(frames) // window) == 4
    for k, result in enumerate(results):
        scores = stdp_model.eval().logits(frames[k * window : (k + 1) * window, None])[0]
        np.testing.assert_allclose(result.probabilities, softmax(scores.double().numpy()))
        assert result.events == int(frames[k * window : (k + 1) * window].sum())
        assert result.spike_counts.shape == (0,)  # no per-step output spikes: read per window
    assert np.ptp(np.stack([r.probabilities for r in results])) > 0.05  # real scores, not ties
