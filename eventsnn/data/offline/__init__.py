"""Offline event datasets, generated on first use with no download: NDigits and Vowels."""

from eventsnn.data.offline.ndigits import NDigits
from eventsnn.data.offline.vowels import Vowels

__all__ = ["NDigits", "Vowels"]
