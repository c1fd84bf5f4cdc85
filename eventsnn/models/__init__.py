"""LightningModules: surrogate-gradient and STDP classifiers."""

from eventsnn.models.classifier import SpikingClassifier
from eventsnn.models.readout import READOUTS, max_membrane, mean_membrane, spike_count

__all__ = ["READOUTS", "SpikingClassifier", "max_membrane", "mean_membrane", "spike_count"]
