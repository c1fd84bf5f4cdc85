"""Spiking layers in torch.nn style: neurons, synapses, pooling, a list-spec network builder.

Tensors are time-first, (T, B, ...). Neurons keep their state between calls; reset it with
`reset_states(model)`. See `eventsnn.nn.functional` for the neuron maths.
"""

from eventsnn.nn.analysis import Analyzer, fanout_map
from eventsnn.nn.builder import LAYERS, Network, build
from eventsnn.nn.errors import NetworkError, ShapeError, SpecError
from eventsnn.nn.functional import NeuronConfig, NeuronConfigError, NeuronState
from eventsnn.nn.layers import (
    Conv2d,
    Crop2d,
    Elementwise,
    Flatten,
    Img2Spike,
    Input,
    Linear,
    MaxPool2d,
    Sig2Spike,
    SpikingBlock,
    SpikingMaxPool2d,
    SumPool2d,
    fold_time,
    spiking_conv2d,
    spiking_linear,
)
from eventsnn.nn.neurons import ALIF, IAF, LIF, SpikingNeuron
from eventsnn.nn.quantize import (
    NeuromorphicReLU,
    Quantize,
    quantize,
    stochastic_rounding,
    threshold_reset,
    threshold_subtract,
)
from eventsnn.nn.state import (
    StateError,
    Stateful,
    detach_states,
    get_states,
    reset_states,
    set_states,
)
from eventsnn.nn.surrogate import Surrogate, SurrogateError, surrogate

__all__ = [
    "ALIF",
    "Analyzer",
    "NeuromorphicReLU",
    "Quantize",
    "Img2Spike",
    "Sig2Spike",
    "fanout_map",
    "quantize",
    "stochastic_rounding",
    "threshold_reset",
    "threshold_subtract",
    "IAF",
    "LAYERS",
    "LIF",
    "Conv2d",
    "Crop2d",
    "Elementwise",
    "Flatten",
    "Input",
    "Linear",
    "MaxPool2d",
    "Network",
    "NetworkError",
    "NeuronConfig",
    "NeuronConfigError",
    "NeuronState",
    "ShapeError",
    "SpecError",
    "SpikingBlock",
    "SpikingMaxPool2d",
    "SpikingNeuron",
    "StateError",
    "Stateful",
    "SumPool2d",
    "Surrogate",
    "SurrogateError",
    "build",
    "detach_states",
    "fold_time",
    "get_states",
    "reset_states",
    "set_states",
    "spiking_conv2d",
    "spiking_linear",
    "surrogate",
]
