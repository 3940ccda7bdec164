"""The exceptions replayproxy raises on purpose.

Every message says what happened, why, and what to do, on one line, so the CLI
can print it as is::

    ReplayproxyError            (base, not raised directly)
    ├── ConfigError             a flag, option or configuration value is wrong
    ├── CassetteError           a cassette is missing, corrupt, or of an unknown version
    ├── ProxyStartError         the proxy could not start (port taken, CA unreadable)
    └── CommandError            the command to run under the proxy could not be started

The CLI catches ``ReplayproxyError`` in one place, prints ``replayproxy: error: …``
and exits non-zero; the mitmproxy addon turns it into ``OptionsError``.
"""

from __future__ import annotations

__all__ = [
    "CassetteError",
    "CommandError",
    "ConfigError",
    "ProxyStartError",
    "ReplayproxyError",
]


class ReplayproxyError(Exception):
    """Base class of every error replayproxy raises on purpose."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        if type(self) is ReplayproxyError:
            raise TypeError("raise a subclass of ReplayproxyError, not the base class")
        super().__init__(message)


class ConfigError(ReplayproxyError):
    """A flag, option or configuration value is invalid."""


class CassetteError(ReplayproxyError):
    """A cassette file is missing, corrupt, truncated or of an unknown format version."""


class ProxyStartError(ReplayproxyError):
    """The proxy could not start listening."""


class CommandError(ReplayproxyError):
    """The command to run under the proxy could not be started."""

    exit_code = 127
