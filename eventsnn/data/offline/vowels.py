"""Vowels: formant-synthesised English vowels heard by a model cochlea, as SHD-like audio events.

Each recording is one of Peterson & Barney's (1952) ten vowels (/h_d/ words: heed, hid, head, had,
hod, hawed, hood, who'd, hud, heard), spoken by a random man, woman or child: the group's average
F0 and formants (P&B's table), moved by a random vocal-tract scale, per-formant jitter and F0
variation, 0.3-0.5 s long with a falling pitch, with white noise at a random SNR and a random level.
A Klatt-style source-filter synthesiser (glottal pulse train, cascade of formant resonators) makes
the sound; ``cochlea`` turns it into 64 channels of spikes (``sensor_size = (64, 1, 1)``).

Split: stratified by index as NDigits: within each vowel, every fifth recording is a test item.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from scipy import signal

from eventsnn.data.offline.cache import CachedEventDataset, GeneratedSet, stratified_test_mask
from eventsnn.data.offline.cochlea import Cochlea, erb_space

VOWELS = ("heed", "hid", "head", "had", "hod", "hawed", "hood", "who'd", "hud", "heard")

PETERSON_BARNEY = {
    # speaker group: one (F0, F1, F2, F3) row per vowel of VOWELS, in Hz (P&B 1952, Table II)
    "man": (
        (136, 270, 2290, 3010),
        (135, 390, 1990, 2550),
        (130, 530, 1840, 2480),
        (127, 660, 1720, 2410),
        (124, 730, 1090, 2440),
        (129, 570, 840, 2410),
        (137, 440, 1020, 2240),
        (141, 300, 870, 2240),
        (130, 640, 1190, 2390),
        (133, 490, 1350, 1690),
    ),
    "woman": (
        (235, 310, 2790, 3310),
        (232, 430, 2480, 3070),
        (223, 610, 2330, 2990),
        (210, 860, 2050, 2850),
        (212, 850, 1220, 2810),
        (216, 590, 920, 2710),
        (232, 470, 1160, 2680),
        (231, 370, 950, 2670),
        (221, 760, 1400, 2780),
        (218, 500, 1640, 1960),
    ),
    "child": (
        (272, 370, 3200, 3730),
        (269, 530, 2730, 3600),
        (260, 690, 2610, 3570),
        (251, 1010, 2320, 3320),
        (256, 1030, 1370, 3170),
        (263, 680, 1060, 3180),
        (276, 560, 1410, 3310),
        (274, 430, 1170, 3260),
        (261, 850, 1590, 3360),
        (261, 560, 1820, 2160),
    ),
}

SAMPLE_RATE = 16_000
N_CHANNELS = 64
SENSOR_SIZE = (N_CHANNELS, 1, 1)
_BANDWIDTHS_HZ = (60.0, 90.0, 150.0, 200.0)
_F4_ABOVE_F3 = 1.3


def glottal_source(f0_hz: np.ndarray, fs: float) -> np.ndarray:
    """A glottal pulse train following the pitch track ``f0_hz`` (one value per sample).

    Unit impulses at each period, low-passed for the source's spectral tilt (about -6 dB/octave
    after lip radiation).
    """
    phase = np.cumsum(f0_hz / fs)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    return signal.lfilter([1.0], [1.0, -0.95], pulses)


def formant_filter(source: np.ndarray, formants_hz: np.ndarray, fs: float) -> np.ndarray:
    """The vocal tract: a cascade of two-pole resonators at ``formants_hz`` (Klatt, 1980)."""
    denominator = np.array([1.0])
    for freq, bandwidth in zip(formants_hz, _BANDWIDTHS_HZ, strict=True):
        radius = np.exp(-np.pi * bandwidth / fs)
        pole_pair = [1.0, -2.0 * radius * np.cos(2.0 * np.pi * freq / fs), radius**2]
        denominator = np.convolve(denominator, pole_pair)
    return signal.lfilter([1.0], denominator, source)


def synthesise_vowel(
    vowel: int, rng: np.random.Generator, fs: float, snr_db: tuple[float, float]
) -> np.ndarray:
    """One utterance of ``vowel`` by a random speaker, with noise, at unit-ish RMS level."""
    group = ("man", "woman", "child")[rng.integers(3)]
    f0, *formants = PETERSON_BARNEY[group][vowel]
    tract_scale = np.exp(rng.normal(0.0, 0.05))
    formants = np.array(formants) * tract_scale * np.exp(rng.normal(0.0, 0.025, 3))
    formants = np.append(formants, formants[2] * _F4_ABOVE_F3)
    n = int(rng.uniform(0.3, 0.5) * fs)
    pitch = f0 * np.exp(rng.normal(0.0, 0.1)) * np.linspace(1.05, 0.9, n)
    voice = formant_filter(glottal_source(pitch, fs), formants, fs)
    ramp = min(n // 2, int(0.02 * fs))
    envelope = np.ones(n)
    envelope[:ramp] = envelope[-ramp:][::-1] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    voice *= envelope / np.sqrt(np.mean(voice**2))
    noise_rms = 10.0 ** (-rng.uniform(*snr_db) / 20.0)
    level = 10.0 ** (rng.uniform(-6.0, 6.0) / 20.0)
    return level * (voice + rng.normal(0.0, noise_rms, n))


def generate_vowels(
    samples_per_class: int, seed: int, snr_db: tuple[float, float], lif_gain: float
) -> GeneratedSet:
    """Synthesise and hear ``samples_per_class`` utterances of each vowel, interleaved by class."""
    labels = np.tile(np.arange(len(VOWELS)), samples_per_class)
    cochlea = Cochlea(SAMPLE_RATE, tuple(erb_space(100.0, 6000.0, N_CHANNELS)), lif_gain)
    recordings = []
    for index, vowel in enumerate(labels):
        rng = np.random.default_rng((seed, index))
        recordings.append(cochlea(synthesise_vowel(int(vowel), rng, SAMPLE_RATE, snr_db)))
    return GeneratedSet(recordings, labels, ~stratified_test_mask(labels))


class Vowels(CachedEventDataset):
    """SHD-like audio events (64 channels, 0.3-0.5 s) of ten formant-synthesised English vowels.

    Items are ``(events, label)`` with ``x`` = cochlear channel, ``y = 0``, ``p = 1``;
    ``transform`` / ``target_transform`` take tonic's transforms. Generated on first use and cached
    under ``root/Vowels`` as HDF5; a small ``samples_per_class`` makes a quick test set.
    """

    name = "Vowels"
    sensor_size = SENSOR_SIZE
    classes = list(VOWELS)

    def __init__(
        self,
        root: str | os.PathLike = "datasets",
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        *,
        samples_per_class: int = 200,
        seed: int = 0,
        snr_db: tuple[float, float] = (5.0, 25.0),
        lif_gain: float = 1500.0,
    ) -> None:
        params = {
            "samples_per_class": samples_per_class,
            "seed": seed,
            "snr_db": list(snr_db),
            "lif_gain": lif_gain,
        }
        super().__init__(
            root,
            train,
            transform,
            target_transform,
            params,
            lambda: generate_vowels(samples_per_class, seed, tuple(snr_db), lif_gain),
        )
