"""SpikingClassifier: readouts, membrane readout, rate regularization, TBPTT, predictions."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from eventsnn.data.errors import ConfigError
from eventsnn.models import SpikingClassifier, max_membrane, mean_membrane, spike_count

LEAKY_OUT = [{"flatten": None}, {"linear": {"out": 2, "bias": False}}]


def classifier(**kwargs) -> SpikingClassifier:
    torch.manual_seed(0)
    options = {"network": LEAKY_OUT + [{"lif": {"beta": 0.5}}], "input_shape": [3]}
    return SpikingClassifier(**{**options, **kwargs})


def test_readouts_reduce_over_time():
    activity = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[1.0, 3.0]]])  # (T=3, B=1, C=2)
    assert spike_count(activity).tolist() == [[2.0, 3.0]]
    assert max_membrane(activity).tolist() == [[1.0, 3.0]]
    assert mean_membrane(activity).tolist() == [[pytest.approx(2 / 3), 1.0]]


def test_membrane_readout_is_the_hand_computed_leaky_membrane():
    model = classifier(
        network=LEAKY_OUT + [{"lif": {"beta": 0.5, "threshold": 1e6}}], readout="max_membrane"
    )
    with torch.no_grad():
        model.net[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]))
    x = torch.tensor([[[2.0, 0, 0]], [[0, 0, 0]], [[1.0, 0, 4.0]]])  # (T=3, B=1, 3)
    # v0 = [2, 0], v1 = [1, 0], v2 = [0.5 + 1, -4]: max over time [2, 0]; mean [1.5, -4/3]
    assert model.logits(x).tolist() == [[2.0, 0.0]]
    model.readout_fn = mean_membrane
    assert model.logits(x)[0].tolist() == pytest.approx([1.5, -4 / 3])


def test_unknown_readout_names_the_key():
    with pytest.raises(ConfigError, match=r"^model\.readout: unknown readout 'sum'"):
        classifier(readout="sum")


def test_firing_rate_regularization_adds_the_mean_rate():
    plain, regular = classifier(), classifier(firing_rate_reg=0.5)
    regular.load_state_dict(plain.state_dict())
    with torch.no_grad():
        plain.net[1].weight.fill_(1.0)
        regular.net[1].weight.fill_(1.0)
    x = torch.zeros(4, 2, 3)
    x[0, :, 0] = 1.0  # v = 1 at t=0: one spike (reset to 0) per neuron in four steps, rate 1/4
    y = torch.tensor([0, 1])
    difference = regular._loss(regular.logits(x), y) - plain._loss(plain.logits(x), y)
    assert difference.item() == pytest.approx(0.5 * 0.25)


def test_tbptt_with_one_window_equals_full_backprop_and_steps_once_per_window():
    x = torch.rand(6, 4, 3) * 2
    y = torch.tensor([0, 1, 0, 1])
    sgd = partial(torch.optim.SGD, lr=0.5)
    full, one_window = classifier(optimizer=sgd), classifier(optimizer=sgd, tbptt_steps=6)
    one_window.load_state_dict(full.state_dict())
    loss = full._loss(full.logits(x), y)
    optimizer = full.configure_optimizers()
    loss.backward()
    optimizer.step()

    steps = []
    window_optimizer = one_window.configure_optimizers()
    window_optimizer.register_step_post_hook(lambda *_: steps.append(1))
    one_window.optimizers = lambda: window_optimizer
    one_window.manual_backward = lambda loss: loss.backward()
    one_window._tbptt_step(x, y)
    assert torch.allclose(full.net[1].weight, one_window.net[1].weight)
    assert steps == [1]

    three_windows = copy.deepcopy(one_window)
    three_windows.hparams.tbptt_steps = 2
    window_optimizer = three_windows.configure_optimizers()
    window_optimizer.register_step_post_hook(lambda *_: steps.append(1))
    three_windows.optimizers = lambda: window_optimizer
    three_windows.manual_backward = lambda loss: loss.backward()
    _, logits = three_windows._tbptt_step(x, y)
    assert steps == [1, 1, 1, 1] and logits.shape == (4, 2)


def test_predict_step_gives_class_probabilities():
    probabilities = classifier().predict_step((torch.rand(5, 3, 3), torch.zeros(3)), 0)
    assert probabilities.shape == (3, 2)
    assert torch.allclose(probabilities.sum(-1), torch.ones(3))


def test_a_python_optimizer_does_not_stop_the_checkpoint(tmp_path):
    from eventsnn.checkpoint import load_model, save

    model = classifier(optimizer=partial(torch.optim.SGD, lr=0.1))
    optimizers = model.configure_optimizers()
    optimizer = optimizers if isinstance(optimizers, torch.optim.Optimizer) else optimizers[0]
    assert isinstance(getattr(optimizer, "optimizer", optimizer), torch.optim.SGD)
    save(model, tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
