"""A silicon-cochlea model: sound -> gammatone filterbank -> hair cells -> LIF spikes -> events.

The filterbank is scipy's 4th-order gammatone filters at ERB-spaced centre frequencies (Glasberg &
Moore); each channel is half-wave rectified and compressed (a power law, like the cochlea's
compression), then drives a leaky integrate-and-fire neuron. Spikes become audio events in tonic's
convention (``x`` = channel, ``y = 0``, ``p = 1``), as in the Spiking Heidelberg Digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np
from scipy import signal

from eventsnn.events.core import EVENT_DTYPE


def erb_space(low_hz: float, high_hz: float, n: int) -> np.ndarray:
    """``n`` centre frequencies from ``low_hz`` to ``high_hz``, evenly spaced in ERB-rate."""
    rate = np.linspace(_erb_rate(low_hz), _erb_rate(high_hz), n)
    return (10.0 ** (rate / 21.4) - 1.0) / 0.00437


def _erb_rate(hz: float) -> float:
    """Glasberg & Moore's ERB-rate (number of ERBs below ``hz``)."""
    return 21.4 * np.log10(1.0 + 0.00437 * hz)


def gammatone_coefficients(fs: float, centres_hz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scipy's IIR gammatone filter ``(b, a)`` of each centre, stacked by channel, a[:, 0] == 1.

    ``b`` is zero-padded to the length of ``a``.
    """
    pairs = [signal.gammatone(centre, "iir", fs=fs) for centre in centres_hz]
    b = np.zeros((len(pairs), len(pairs[0][1])))
    for row, (numerator, _) in enumerate(pairs):
        b[row, : len(numerator)] = numerator
    a = np.array([denominator for _, denominator in pairs])
    return b / a[:, :1], a / a[:, :1]


@numba.njit(cache=True)
def _filter_rows(x, b, a):
    """``scipy.signal.lfilter(b[i], a[i], x)`` for every row ``i`` (a[:, 0] == 1), in one compiled
    pass (direct form II transposed): faster than a Python loop of lfilter calls."""
    n_rows, order = b.shape[0], b.shape[1] - 1
    out = np.empty((n_rows, x.shape[0]))
    state = np.zeros(order)
    for row in range(n_rows):
        state[:] = 0.0
        for k in range(x.shape[0]):
            y = b[row, 0] * x[k] + state[0]
            for j in range(order - 1):
                state[j] = b[row, j + 1] * x[k] + state[j + 1] - a[row, j + 1] * y
            state[order - 1] = b[row, order] * x[k] - a[row, order] * y
            out[row, k] = y
    return out


@numba.njit(cache=True)
def _hair_cell_lif(motion, exponent, decay, gain, threshold):
    """Rectify and compress each row of ``motion`` and feed it to a LIF neuron (reset by
    subtraction); return the channel and sample index of every spike."""
    n_channels, n_samples = motion.shape
    channels = []
    steps = []
    for c in range(n_channels):
        v = 0.0
        for k in range(n_samples):
            v *= decay
            if motion[c, k] > 0.0:
                v += gain * motion[c, k] ** exponent
            if v >= threshold:
                v -= threshold
                channels.append(c)
                steps.append(k)
    return np.array(channels, dtype=np.int64), np.array(steps, dtype=np.int64)


@dataclass(frozen=True)
class Cochlea:
    """Sound sampled at ``fs`` -> audio events, one channel per gammatone centre frequency.

    Each hair cell's drive ``max(motion, 0) ** exponent`` charges a LIF neuron by ``gain * drive
    / fs`` per sample; the membrane decays with ``tau_s`` and fires at 1 (reset by subtraction).
    """

    fs: float
    centres_hz: tuple[float, ...]
    gain: float
    tau_s: float = 0.005
    exponent: float = 0.3

    @cached_property
    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """The filterbank's ``(b, a)``, designed once."""
        return gammatone_coefficients(self.fs, np.array(self.centres_hz))

    def motion(self, sound: np.ndarray) -> np.ndarray:
        """Basilar-membrane motion ``(channels, samples)`` of ``sound``."""
        return _filter_rows(np.asarray(sound, dtype=np.float64), *self.coefficients)

    def __call__(self, sound: np.ndarray) -> np.ndarray:
        """Sorted audio events (``x`` = channel, ``y = 0``, ``p = 1``) of ``sound``."""
        decay = float(np.exp(-1.0 / (self.fs * self.tau_s)))
        channels, steps = _hair_cell_lif(
            self.motion(sound), self.exponent, decay, self.gain / self.fs, 1.0
        )
        order = np.argsort(steps, kind="stable")
        events = np.zeros(len(order), dtype=EVENT_DTYPE)
        events["x"] = channels[order]
        events["t"] = np.round(steps[order] * (1e6 / self.fs)).astype(np.int64)
        events["p"] = True
        return events
