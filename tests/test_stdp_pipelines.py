"""An STDP classifier given to the batch or stream pipeline is refused clearly, not mis-read."""

import pytest

from eventsnn.data import ConfigError
from eventsnn.inference.predictor import WindowPredictor
from eventsnn.models.stdp import STDPClassifier
from eventsnn.streaming import StreamError
from eventsnn.streaming.runner import ModelAdapter


@pytest.fixture
def stdp_model() -> STDPClassifier:
    return STDPClassifier(input_shape=[2, 8, 8], num_classes=3, n_neurons=10, time_steps=4)


def test_batch_refuses_a_model_without_spiking_layers(stdp_model):
    with pytest.raises(ConfigError, match="^checkpoint: STDPClassifier has no eventsnn.nn"):
        WindowPredictor(stdp_model)


def test_stream_refuses_a_module_it_cannot_read_out(stdp_model):
    with pytest.raises(StreamError, match="STDPClassifier cannot be streamed"):
        ModelAdapter(stdp_model)
