"""The project exception for a recipe that cannot work: names the config key that is wrong."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is wrong or does not fit the data; the message starts with its key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
