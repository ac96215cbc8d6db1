"""Error types for people: each names the file or field and the problem."""

from __future__ import annotations


class AVRSPError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(AVRSPError, ValueError):
    """A configuration value is invalid or a config file cannot be read."""


class WeightsError(AVRSPError):
    """A weights file is missing, unreadable or does not fit the model."""


class InputError(AVRSPError, ValueError):
    """An input array, file or video cannot be used as given."""
