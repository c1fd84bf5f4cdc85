"""eventsnn: neuromorphic sensor events into decisions with spiking neural networks."""

__version__ = "0.1.0"
