"""STDP learning: rules as pure functions, traces, competition, homeostasis and a learner that
applies rules to named layers of a network."""

from eventsnn.learning.competitive import CompetitiveLayer
from eventsnn.learning.errors import LearningError
from eventsnn.learning.homeostasis import (
    adaptive_threshold_step,
    adaptive_threshold_window,
    normalize_weights,
)
from eventsnn.learning.inhibition import channel_wta, kwta, lateral_inhibition
from eventsnn.learning.learner import Plasticity, STDPLearner
from eventsnn.learning.stdp import (
    ConvGeometry,
    DiehlCookSTDP,
    PairSTDP,
    Rule,
    TripletSTDP,
    correlate,
    diehl_cook_stdp,
    pair_stdp,
    soft_bound_factors,
    triplet_stdp,
)
from eventsnn.learning.traces import trace_decay, trace_sequence, trace_step, traces_before

__all__ = [
    "CompetitiveLayer",
    "ConvGeometry",
    "DiehlCookSTDP",
    "LearningError",
    "PairSTDP",
    "Plasticity",
    "Rule",
    "STDPLearner",
    "TripletSTDP",
    "adaptive_threshold_step",
    "adaptive_threshold_window",
    "channel_wta",
    "correlate",
    "diehl_cook_stdp",
    "kwta",
    "lateral_inhibition",
    "normalize_weights",
    "pair_stdp",
    "soft_bound_factors",
    "trace_decay",
    "trace_sequence",
    "trace_step",
    "traces_before",
    "triplet_stdp",
]
