"""save / load_model / load_weights: rebuild from the file alone, neuron states mid-sequence,
only trusted classes, and errors that name path and key while leaving the model unchanged."""

import sys

import h5py
import pytest
import pytorch_lightning as pl
import torch

from eventsnn.checkpoint import (
    CheckpointError,
    describe,
    load_model,
    load_weights,
    read_checkpoint,
    save,
    write_checkpoint,
)
from eventsnn.checkpoint.plugin import class_path
from eventsnn.models import SpikingClassifier
from eventsnn.nn import LAYERS, build, get_states, reset_states


class SpikingNet(pl.LightningModule):
    """A builder network in a LightningModule: what checkpoints hold."""

    def __init__(self, network: list, input_shape: list[int]):
        super().__init__()
        self.save_hyperparameters()
        self.net = build(network, input_shape)

    def forward(self, x):
        return self.net(x)


SPECS = {
    "conv-lif-maxpool-linear-lif": (
        [{"conv": {"out": 4, "kernel": 3}}, {"lif": {"beta": 0.8}}, {"maxpool": 2}, "flatten"]
        + [{"linear": {"out": 5}}, {"lif": {"beta": 0.9}}],
        [2, 10, 10],
    ),
    "crop-sumpool-iaf-relu-dropout-quantize": (
        [{"crop": {"top": 1, "left": 2}}, {"sumpool": 3}, {"conv": {"out": 3, "kernel": 1}}]
        + [{"iaf": {}}, "flatten", "relu", {"dropout": {"p": 0.3}}, {"linear": {"out": 4}}]
        + ["quantize", {"neuromorphic_relu": {}}, {"linear": {"out": 4}}, {"iaf": {}}],
        [2, 10, 10],
    ),
    "spiking-maxpool-alif-recurrent": (
        [{"conv": {"out": 3, "kernel": 3, "padding": 1}}, {"alif": {}}, {"spiking_maxpool": 2}]
        + ["flatten", {"linear": {"out": 6}}, {"lif": {"recurrent": True}}]
        + [{"linear": {"out": 3}}, {"alif": {"recurrent": True}}],
        [2, 10, 10],
    ),
}


def layer_names(spec):
    return {entry if isinstance(entry, str) else next(iter(entry)) for entry in spec}


def test_the_specs_cover_every_layer_the_builder_makes():
    covered = set().union(*(layer_names(spec) for spec, _ in SPECS.values()))
    assert covered == set(LAYERS)


def strong_input(shape, steps=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, 2, *shape, generator=gen) < 0.4).float() * 3.0


@pytest.mark.parametrize("name", sorted(SPECS))
def test_states_saved_mid_sequence_continue_exactly_after_load_model(tmp_path, name):
    spec, shape = SPECS[name]
    torch.manual_seed(0)
    model = SpikingNet(spec, shape).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(2.0)  # enough activity that every layer's state matters
    x = strong_input(shape)
    with torch.no_grad():
        reset_states(model)
        model(x[:5])
        save(model, tmp_path / "mid.h5", states=True)
        continued = model(x[5:])
        loaded = load_model(tmp_path / "mid.h5", allowed_classes=[SpikingNet])
        resumed = loaded(x[5:])
        reset_states(loaded)
        from_rest = loaded(x[5:])
    assert isinstance(loaded, SpikingNet) and not loaded.training
    assert torch.equal(resumed, continued)
    assert continued.sum() > 0
    assert not torch.equal(from_rest, continued)  # the states carried something


def test_spiking_classifier_round_trips_by_its_eventsnn_class_path(tmp_path):
    spec, shape = SPECS["conv-lif-maxpool-linear-lif"]
    torch.manual_seed(0)
    model = SpikingClassifier(spec, shape, readout="max_membrane", label_smoothing=0.1)
    save(model, tmp_path / "clf.h5", states=False)
    loaded = load_model(tmp_path / "clf.h5")
    assert type(loaded) is SpikingClassifier
    assert loaded.hparams["readout"] == "max_membrane" and loaded.hparams["label_smoothing"] == 0.1
    x = strong_input(shape, steps=6)
    with torch.no_grad():
        assert torch.equal(loaded.logits(x), model.eval().logits(x))


class WithFunction(pl.LightningModule):
    """A module whose hyper-parameters hold a function (no pickle-free way to store it)."""

    def __init__(self, transform=None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, 2)


def test_a_callable_hyper_parameter_is_refused_naming_it(tmp_path):
    model = WithFunction(transform=lambda x: x * 2)
    with pytest.raises(CheckpointError, match="hyper_parameters/transform: cannot store"):
        save(model, tmp_path / "clf.h5", states=False)
    assert not (tmp_path / "clf.h5").exists()


def saved_net(tmp_path, **changes):
    spec, shape = SPECS["conv-lif-maxpool-linear-lif"]
    model = SpikingNet(spec, shape)
    save(model, tmp_path / "net.h5", states=False)
    checkpoint = read_checkpoint(tmp_path / "net.h5") | changes
    write_checkpoint(tmp_path / "net.h5", checkpoint)
    return tmp_path / "net.h5", checkpoint


def test_classes_outside_eventsnn_are_not_imported(tmp_path, monkeypatch):
    (tmp_path / "planted.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('ran').touch()\n"
        "import pytorch_lightning as pl\nclass Model(pl.LightningModule): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path, _ = saved_net(tmp_path, model_class="planted.Model")
    with pytest.raises(CheckpointError, match=f"{path}: model_class 'planted.Model' is neither"):
        load_model(path)
    assert not (tmp_path / "ran").exists() and "planted" not in sys.modules


@pytest.mark.parametrize(
    ("model_class", "message"),
    [
        ("eventsnn.events.core.Recording", "is not a LightningModule"),
        ("eventsnn.models.NoSuchModel", "cannot be found"),
        ("eventsnn.no_such_module.Model", "cannot be found"),
        (None, "model_class is missing"),
    ],
)
def test_unusable_model_classes_are_named(tmp_path, model_class, message):
    path, _ = saved_net(tmp_path, model_class=model_class)
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(path, allowed_classes=[SpikingNet])
    assert str(path) in str(error.value)


def test_a_hyper_parameter_the_class_no_longer_takes_is_named(tmp_path):
    spec, shape = SPECS["conv-lif-maxpool-linear-lif"]
    hparams = {"network": spec, "input_shape": shape, "old_option": 3}
    path, _ = saved_net(tmp_path, hyper_parameters=hparams)
    with pytest.raises(
        CheckpointError, match=f"{path}: hyper-parameter hyper_parameters/old_option"
    ):
        load_model(path, allowed_classes=[SpikingNet])


def test_lightning_cli_bookkeeping_hyper_parameters_are_ignored(tmp_path):
    spec, shape = SPECS["conv-lif-maxpool-linear-lif"]
    hparams = {
        "_instantiator": "pytorch_lightning.cli.instantiate_module",
        "_class_path": "elsewhere.Model",
        "network": spec,
        "input_shape": shape,
    }
    path, _ = saved_net(tmp_path, hyper_parameters=hparams)
    assert type(load_model(path, allowed_classes=[SpikingNet])) is SpikingNet


def test_the_lightning_cli_class_path_is_used_when_model_class_is_missing(tmp_path):
    spec, shape = SPECS["conv-lif-maxpool-linear-lif"]
    hparams = {"_class_path": class_path(SpikingNet), "network": spec, "input_shape": shape}
    path, _ = saved_net(tmp_path, hyper_parameters=hparams)
    write_checkpoint(path, {k: v for k, v in read_checkpoint(path).items() if k != "model_class"})
    assert type(load_model(path, allowed_classes=[SpikingNet])) is SpikingNet


def corrupt_state_dict(checkpoint, how):
    weights = dict(checkpoint["state_dict"])
    if how == "missing":
        del weights["net.4.weight"]
    elif how == "shape":
        weights["net.4.weight"] = torch.zeros(5, 3)
    else:
        weights["net.9.weight"] = torch.zeros(1)
    return weights


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", "state_dict/net.4.weight is missing"),
        ("shape", r"state_dict/net.4.weight has shape \(5, 3\), the model expects \(5, 64\)"),
        ("unexpected", "state_dict/net.9.weight is not in the model"),
    ],
)
def test_bad_weights_are_named_and_leave_the_model_unchanged(tmp_path, how, message):
    path, checkpoint = saved_net(tmp_path)
    write_checkpoint(path, checkpoint | {"state_dict": corrupt_state_dict(checkpoint, how)})
    spec, shape = SPECS["conv-lif-maxpool-linear-lif"]
    model = SpikingNet(spec, shape)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=message) as error:
        load_weights(model, path)
    assert str(path) in str(error.value)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    with pytest.raises(CheckpointError, match=message):
        load_model(path, allowed_classes=[SpikingNet])


def test_bad_neuron_states_are_named_and_leave_weights_and_states_unchanged(tmp_path):
    spec, shape = SPECS["conv-lif-maxpool-linear-lif"]
    model = SpikingNet(spec, shape)
    with torch.no_grad():
        model(strong_input(shape, steps=3))
    save(model, tmp_path / "net.h5")
    checkpoint = read_checkpoint(tmp_path / "net.h5")
    checkpoint["neuron_states"]["9.v"] = torch.zeros(1)
    checkpoint["state_dict"] = {k: v + 1 for k, v in checkpoint["state_dict"].items()}
    write_checkpoint(tmp_path / "net.h5", checkpoint)
    weights = {key: value.clone() for key, value in model.state_dict().items()}
    states = {key: value.clone() for key, value in get_states(model).items()}
    with pytest.raises(CheckpointError, match="neuron_states: state key '9.v'"):
        load_weights(model, tmp_path / "net.h5")
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert get_states(model).keys() == states.keys()
    assert all(torch.equal(v, states[k]) for k, v in get_states(model).items())


def test_describe_reads_the_layout_without_the_tensors(tmp_path):
    spec, shape = SPECS["conv-lif-maxpool-linear-lif"]
    model = SpikingNet(spec, shape)
    save(model, tmp_path / "net.h5")
    summary = describe(tmp_path / "net.h5")
    assert summary["model_class"].endswith("SpikingNet")
    # conv 2*4*3*3 + 4, linear 64*5 + 5, one beta per LIF layer: every value of the state dict
    assert summary["parameters"] == 76 + 325 + 2
    assert summary["tensors"] == 6 and summary["tensor_bytes"] == 4 * summary["parameters"]
    assert summary["epoch"] is None and summary["format_version"] == 1
    assert summary["contents"] == [
        "pytorch-lightning_version",
        "model_class",
        "hyper_parameters",
        "state_dict",
        "neuron_states",
    ]
    with h5py.File(tmp_path / "net.h5", "r") as file:
        assert file.attrs["hyper_parameters"].startswith('{"network": [{"conv"')
