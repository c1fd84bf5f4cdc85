"""An STDP classifier in the pipelines: streamed window by window as it predicts offline; batch
(not built yet for it) refuses it clearly instead of mis-reading it."""

import numpy as np
import pytest
import torch

from eventsnn.data import ConfigError
from eventsnn.encoding import to_frame
from eventsnn.events import make_events
from eventsnn.inference.predictor import WindowPredictor
from eventsnn.models.stdp import STDPClassifier
from eventsnn.streaming.runner import StreamRunner, softmax


@pytest.fixture
def stdp_model() -> STDPClassifier:
    return STDPClassifier(input_shape=[2, 8, 8], num_classes=3, n_neurons=10, time_steps=4)


def test_batch_refuses_a_model_without_spiking_layers(stdp_model):
    with pytest.raises(ConfigError, match="^checkpoint: STDPClassifier has no eventsnn.nn"):
        WindowPredictor(stdp_model)


def test_stream_reads_out_each_window_as_the_model_predicts_it_offline():
    torch.manual_seed(0)
    stdp_model = STDPClassifier(
        input_shape=[2, 8, 8], num_classes=3, n_neurons=10, time_steps=4, eval_time_steps=32,
        threshold=2.0, inhibition=0.5, v_min=None, winners=None, mean_weight=0.2,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    n, step_us, window = 3000, 1000, 20
    t = np.sort(rng.integers(0, 75_000, n)) + 5_000
    events = make_events(rng.integers(0, 8, n), rng.integers(0, 8, n), t, rng.integers(0, 2, n))
    stdp_model.assignments.copy_(torch.arange(10) % 3)  # as if labels had been assigned
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
