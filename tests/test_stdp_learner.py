"""STDPLearner on named layers: captured activity, rule updates, optimizer steps, constraints."""

import pytest
import torch
from torch import nn

from eventsnn.learning.errors import LearningError
from eventsnn.learning.learner import Plasticity, STDPLearner
from eventsnn.learning.stdp import ConvGeometry, PairSTDP, correlate, pair_stdp
from eventsnn.learning.traces import trace_decay, trace_sequence
from eventsnn.nn import get_states, set_states


class Spiking(nn.Module):
    """A synapse followed by a hard threshold: post spikes for pre spikes (T, B, ...)."""

    def __init__(self, synapse: nn.Module) -> None:
        super().__init__()
        self.synapse = synapse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[0]
        return (self.synapse(x.flatten(0, 1)) > 0.2).float().unflatten(0, (steps, -1))


def spikes(*shape: int, seed: int = 0, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p).float()


RULE = PairSTDP(a_plus=0.1, a_minus=0.05, tau_plus=5.0, tau_minus=8.0)


def make_linear(**plasticity) -> tuple[nn.Sequential, STDPLearner]:
    torch.manual_seed(0)
    net = nn.Sequential(Spiking(nn.Linear(6, 4, bias=False)))
    learner = STDPLearner(net, {"0": Plasticity(rule=RULE, **plasticity)}, reduce="sum")
    return net, learner


def test_linear_update_equals_the_rule_on_the_captured_spikes():
    net, learner = make_linear()
    pre = spikes(10, 3, 6)
    with learner.capture():
        post = net(pre)
    update = learner.updates()["0"]
    expected = pair_stdp(
        net[0].synapse.weight, pre, post,
        trace_sequence(pre, trace_decay(5.0)), trace_sequence(post, trace_decay(8.0)),
        a_plus=0.1, a_minus=0.05, reduce="sum",
    )  # fmt: skip
    assert post.sum() > 0
    torch.testing.assert_close(update, expected)
    assert not net[0].synapse.weight.requires_grad


def test_optimizer_step_adds_lr_times_update_then_bounds_hold():
    net, learner = make_linear(lr=0.5, w_min=-0.3, w_max=0.3)
    weight = net[0].synapse.weight
    before = weight.detach().clone()
    optimizer = torch.optim.SGD(learner.parameter_groups(), lr=1.0)
    with learner.capture():
        net(spikes(10, 3, 6))
    update = learner.updates()["0"]
    learner.set_gradients({"0": update})
    optimizer.step()
    torch.testing.assert_close(weight.detach(), before + 0.5 * update)
    learner.set_gradients({"0": torch.full_like(update, 100.0)})
    optimizer.step()
    learner.constrain()
    assert weight.max() == pytest.approx(0.3) and weight.min() >= -0.3


def test_normalization_and_weight_decay():
    net, learner = make_linear(lr=0.1, normalize=2.5, weight_decay=0.2)
    weight = net[0].synapse.weight
    weight.data.abs_()
    optimizer = torch.optim.SGD(learner.parameter_groups(), lr=1.0)
    before = weight.detach().clone()
    learner.set_gradients({"0": torch.zeros_like(weight)})
    optimizer.step()
    torch.testing.assert_close(weight.detach(), before * (1 - 0.1 * 0.2))  # decay: lr * wd
    learner.constrain()
    torch.testing.assert_close(weight.sum(1), torch.full((4,), 2.5))


def test_per_layer_lr_schedule():
    net = nn.Sequential(Spiking(nn.Linear(6, 4)), Spiking(nn.Linear(4, 3)))
    learner = STDPLearner(
        net,
        {"0": Plasticity(rule=RULE, lr=1.0, lr_decay=0.5), "1": Plasticity(rule=RULE, lr=0.2)},
    )
    optimizer = torch.optim.SGD(learner.parameter_groups(), lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learner.lr_lambdas())
    for _ in range(3):
        optimizer.step()
        schedule.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.125, 0.2])


def test_conv_layer_learns_with_shared_kernel():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
    net = nn.Sequential(Spiking(conv))
    learner = STDPLearner(net, {"0": Plasticity(rule=RULE)}, reduce="mean")
    pre = spikes(6, 2, 2, 9, 9, seed=3)
    with learner.capture():
        post = net(pre)
    update = learner.updates()["0"]
    geometry = ConvGeometry((2, 2), (1, 1), (1, 1))
    pre_trace = trace_sequence(pre, trace_decay(5.0))
    post_trace = trace_sequence(post, trace_decay(8.0))
    expected = 0.1 * correlate(post, pre_trace, conv.weight.shape, geometry) - 0.05 * correlate(
        post_trace, pre, conv.weight.shape, geometry
    )
    torch.testing.assert_close(update, expected)


def test_channel_wta_limits_learning_to_one_channel_per_position():
    torch.manual_seed(2)
    conv = nn.Conv2d(1, 4, 1, bias=False)
    conv.weight.data.fill_(1.0)  # every channel fires wherever the input does
    net = nn.Sequential(Spiking(conv))
    rule = PairSTDP(a_plus=1.0, a_minus=0.0)
    learner = STDPLearner(net, {"0": Plasticity(rule=rule, channel_wta=True)}, reduce="sum")
    pre = torch.zeros(1, 1, 1, 2, 2)
    pre[0, 0, 0, 0, 0] = 1.0
    with learner.capture():
        net(pre)
    update = learner.updates()["0"].flatten()
    assert sorted(update.tolist()) == [0.0, 0.0, 0.0, 1.0]  # one winner learns, the rest do not


def test_carried_traces_make_windows_add_up_to_one_run():
    net, learner = make_linear()
    learner.carry_traces = True
    pre = spikes(24, 2, 6, seed=5)
    with learner.capture():
        net(pre)
    whole = learner.updates()["0"]
    learner.reset_state()
    total = torch.zeros_like(whole)
    for window in pre.split(7):
        with learner.capture():
            net(window)
        total += learner.updates()["0"]
    torch.testing.assert_close(total, whole)


def test_traces_are_state_for_checkpoints():
    net, learner = make_linear()
    with learner.capture():
        net(spikes(5, 2, 6))
    learner.updates()
    saved = get_states(learner)
    assert set(saved) == {"0:pre", "0:post"} and saved["0:pre"].shape == (2, 6)
    learner.reset_state()
    assert get_states(learner) == {}
    set_states(learner, saved)
    torch.testing.assert_close(get_states(learner)["0:post"], saved["0:post"])


def test_unknown_layers_and_missing_activity_are_named():
    net = nn.Sequential(Spiking(nn.Linear(6, 4)))
    with pytest.raises(LearningError, match="no layer named 'conv1'"):
        STDPLearner(net, {"conv1": Plasticity()})
    learner = STDPLearner(net, {"0": Plasticity()})
    with pytest.raises(LearningError, match="no activity captured"):
        learner.updates()
    with pytest.raises(LearningError, match="w_min"):
        Plasticity(w_min=1.0, w_max=0.0)
    two = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
    with pytest.raises(LearningError, match="found 2"):
        STDPLearner(two, {"0": Plasticity()})


def test_stdp_conv_block_mixes_with_a_gradient_readout():
    from eventsnn.nn import LIF, Flatten, Linear, reset_states, spiking_conv2d

    torch.manual_seed(4)
    block = spiking_conv2d(2, 4, 3, LIF(beta=0.9, threshold=0.5))
    net = nn.Sequential(block, Flatten(), Linear(4 * 6 * 6, 3))
    learner = STDPLearner(net, {"0": Plasticity(rule=RULE, channel_wta=True)})
    optimizer = torch.optim.SGD(learner.parameter_groups(), lr=1.0)
    readout_optimizer = torch.optim.SGD(net[2].parameters(), lr=0.1)
    conv_before = block.synapse.weight.detach().clone()
    readout_before = net[2].weight.detach().clone()
    x = spikes(5, 2, 2, 8, 8, seed=6, p=0.5)
    with learner.capture():
        logits = net(x).sum(0)
    assert block.neuron.get_state()  # the block ran its LIF neurons
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 2]))
    loss.backward()
    assert block.synapse.weight.grad is None  # STDP layers stay out of autograd
    readout_optimizer.step()
    learner.set_gradients(learner.updates())
    optimizer.step()
    assert not torch.equal(block.synapse.weight, conv_before)
    assert not torch.equal(net[2].weight, readout_before)
    reset_states(net)
