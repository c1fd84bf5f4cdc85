"""Offline event datasets, generated on first use with no download: NDigits and Vowels."""

from eventsnn.data.offline.ndigits import NDigits

__all__ = ["NDigits"]
