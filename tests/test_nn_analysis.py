"""SynOps and firing rates by hooks: hand-counted fan-outs, Sinabs' SNNAnalyzer."""

import pytest
import torch
from torch import nn

from eventsnn.nn import Analyzer, Conv2d, Linear, build, fanout_map


def test_conv_fanout_counts_targets_including_borders():
    conv = Conv2d(1, 2, 3)  # 4x4 -> 2x2 outputs, 2 channels
    fan = fanout_map(conv, (1, 4, 4))[0]
    # corner pixel feeds one output position, centre pixels all four; times 2 channels
    assert fan[0, 0] == 2 and fan[1, 1] == 8 and fan[0, 1] == 4
    assert float(fan.sum()) == 2 * 2 * 2 * 9  # outputs x kernel size
    assert torch.equal(fanout_map(Linear(5, 3), (5,)), torch.full((5,), 3.0))


def test_synops_and_rates_by_hand():
    net = build([{"linear": {"out": 3}}, {"lif": {"beta": 0.0, "threshold": 0.5}}], (4,))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
    x = torch.zeros(2, 5, 4)  # T=2, B=5
    x[0, :, 0] = 1.0  # every sample: one input spike at t0
    x[1, 0, :] = 1.0  # sample 0: four more at t1
    with Analyzer(net) as stats:
        out = net(x)
    # 5 + 4 input spikes, 3 targets each, over 5 samples
    assert stats.synops() == {"0": pytest.approx(9 * 3 / 5), "total": pytest.approx(9 * 3 / 5)}
    assert stats.firing_rates()["1"] == pytest.approx(float(out.mean()))
    assert stats.neuron_firing_rates()["1"].shape == (3,)
    assert not net[0]._forward_hooks  # removed on exit


def test_synops_match_sinabs_snn_analyzer():
    sinabs = pytest.importorskip("sinabs")
    torch.manual_seed(0)
    conv, lin = nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Linear(4 * 4 * 4, 5)
    peer_net = nn.Sequential(
        sinabs.layers.IAFSqueeze(batch_size=3),
        conv,
        sinabs.layers.IAFSqueeze(batch_size=3),
        nn.Flatten(),
        lin,
    )
    x = (torch.rand(3, 6, 2, 8, 8) < 0.3).float()  # Sinabs: (B, T, ...)
    peer = sinabs.SNNAnalyzer(peer_net)
    peer_net(x.flatten(0, 1))
    expected = peer.get_model_statistics()["synops"]
    ours_net = build(
        [
            {"iaf": {}},
            {"conv": {"out": 4, "kernel": 3, "stride": 2, "padding": 1}},
            {"iaf": {}},
            "flatten",
            {"linear": {"out": 5}},
        ],  # fmt: skip
        (2, 8, 8),
    )
    ours_net[1].load_state_dict(conv.state_dict())
    ours_net[4].load_state_dict(lin.state_dict())
    with Analyzer(ours_net) as stats:
        ours_net(x.transpose(0, 1))
    assert stats.synops()["total"] == pytest.approx(float(expected), rel=1e-5)


def test_fanout_and_synops_work_under_inference_mode():
    """Lightning validates under inference mode; the fan-out's autograd must still run."""
    layer = Conv2d(2, 3, 3, padding=1)
    with torch.inference_mode():
        inside = fanout_map(layer, (2, 5, 5))
    assert torch.equal(inside, fanout_map(layer, (2, 5, 5)))
    net = build([{"conv": {"out": 3, "kernel": 3}}, {"lif": {}}], (2, 6, 6))
    x = (torch.rand(4, 2, 2, 6, 6) < 0.3).float()
    with Analyzer(net) as plain:
        net(x)
    with torch.inference_mode(), Analyzer(net) as inference:
        net(x)
    assert inference.synops()["total"] == plain.synops()["total"] > 0
