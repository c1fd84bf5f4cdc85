"""Network builder: shapes, parameters, summary, errors naming the layer, step modes."""

import pytest
import torch

from eventsnn.nn import LIF, SpecError, build, reset_states
from eventsnn.nn.errors import ShapeError

REFERENCE = [
    {"conv": {"out": 12, "kernel": 5}},
    {"lif": {"beta": 0.9}},
    {"maxpool": 2},
    {"conv": {"out": 32, "kernel": 5}},
    {"lif": {"beta": 0.9}},
    {"maxpool": 2},
    {"flatten": {}},
    {"linear": {"out": 10}},
    {"lif": {"beta": 0.9, "record_membrane": True}},
]


def test_reference_network_shapes_parameters_and_summary():
    net = build(REFERENCE, (2, 34, 34))
    assert net.shapes == [
        (12, 30, 30),
        (12, 30, 30),
        (12, 15, 15),
        (32, 11, 11),
        (32, 11, 11),
        (32, 5, 5),
        (800,),
        (10,),
        (10,),
    ]
    assert net.output_shape == (10,)
    # conv1 12*2*5*5 + 12, conv2 32*12*5*5 + 32, linear 800*10 + 10
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == 612 + 9632 + 8010
    table = net.summary()
    assert "(32, 11, 11)" in table and "18,254" in table
    assert f"{12 * 30 * 30 + 32 * 11 * 11 + 10:,}" in table  # neuron total
    x = (torch.rand(4, 3, 2, 34, 34) < 0.2).float()
    out = net(x)
    assert out.shape == (4, 3, 10)
    assert net[-1].v_trace.shape == (4, 3, 10)


def test_single_steps_equal_the_sequence():
    torch.manual_seed(0)
    spec = [
        {"conv": {"out": 4, "kernel": 3}},
        {"iaf": {"threshold": 0.3}},
        "flatten",
        {"linear": {"out": 3}},
        {"lif": {"beta": 0.5, "threshold": 0.05}},
    ]
    net = build(spec, (1, 6, 6))
    x = torch.rand(6, 2, 1, 6, 6) * 2
    whole = net(x)
    assert whole.sum() > 0
    reset_states(net)
    steps = torch.stack([net(x_t) for x_t in x])
    assert torch.equal(whole, steps)


def test_parameters_flow_into_layers():
    net = build(
        [
            {"crop": {"top": 1, "bottom": 2, "left": 0, "right": 3}},
            {"sumpool": {"kernel": 2, "stride": 1}},
            {"alif": {"adapt_decay": 0.5, "threshold": 2.0, "surrogate": "arctan"}},
            {"spiking_maxpool": 2},
            {"dropout": {"p": 0.1}},
            {"relu": None},
        ],
        (2, 9, 10),
    )
    assert (
        net.shapes[0] == (2, 6, 7) and net.shapes[1] == (2, 5, 6) and net.output_shape == (2, 2, 3)
    )
    assert net[2].config.threshold == 2.0 and net[2].config.adapt_decay == 0.5
    assert isinstance(net[2], LIF.__mro__[1])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([{"conv": {"out": 4, "kernel": 3}}, {"lfi": {}}], r"layer 1: unknown layer 'lfi'"),
        ([{"conv": {"out": 4, "kernal": 3}}], r"layer 0 \(conv\): bad parameters .*kernal"),
        ([{"lif": {"beta": 2.0}}], r"layer 0 \(lif\): bad parameters .*beta"),
        ([{"linear": {"out": 3}}], r"layer 0 \(linear\).*flatten"),
        ([{"maxpool": 2}, {"maxpool": 4}], r"layer 1 \(maxpool\): output shape .* is empty"),
        ([{"conv": {"out": 4}, "lif": {}}], r"layer 0: a spec entry must be"),
        ({"conv": {}}, r"list of layers"),
    ],
)
def test_errors_name_the_layer_and_key(spec, message):
    with pytest.raises(SpecError, match=message):
        build(spec, (2, 6, 6))


def test_wrong_input_shape_names_both_shapes():
    net = build(["flatten"], (2, 3, 3))
    with pytest.raises(ShapeError, match=r"\(T, B, \*\(2, 3, 3\)\).*\(4, 1, 2, 3, 4\)"):
        net(torch.zeros(4, 1, 2, 3, 4))
