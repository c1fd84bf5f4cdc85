"""Event sources and the stateful stream runner.

    from eventsnn.streaming import StreamRunner, UdpSource
    runner = StreamRunner("run/best.h5", sensor_size=(34, 34, 2), step_us=1000)
    with UdpSource("udp://127.0.0.1:7777", format="t64_x16_y16_on8") as source:
        runner.run(source, on_result=lambda r: print(r.as_dict()))

Sources yield ``Packet``s (events with their arrival time): ``UdpSource`` (faery's two UDP
formats, aestream's SPIF words), ``ReplaySource`` (any event file, paced or as fast as possible),
``StdinSource`` (faery's CSV or binary records) and ``IteratorSource`` (any Python iterable of
event arrays). ``StepBinner`` turns them into time-step frames equal to the offline encoding;
``StreamRunner`` runs the network with carried state; ``StreamLog`` writes results to HDF5.
"""

from eventsnn.streaming.binning import StepBatch, StepBinner
from eventsnn.streaming.log import StreamLog, read_log
from eventsnn.streaming.packets import DECODERS, PacketError, make_decoder
from eventsnn.streaming.replay import ReplaySource, paced
from eventsnn.streaming.runner import RunnerStats, StreamResult, StreamRunner
from eventsnn.streaming.sources import IteratorSource, Packet, SourceStats, StreamError
from eventsnn.streaming.stdin import StdinSource
from eventsnn.streaming.udp import UdpSource

__all__ = [
    "DECODERS",
    "IteratorSource",
    "Packet",
    "PacketError",
    "ReplaySource",
    "RunnerStats",
    "SourceStats",
    "StdinSource",
    "StepBatch",
    "StepBinner",
    "StreamError",
    "StreamLog",
    "StreamResult",
    "StreamRunner",
    "UdpSource",
    "make_decoder",
    "paced",
    "read_log",
]
