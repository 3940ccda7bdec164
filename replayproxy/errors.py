"""The exceptions replayproxy raises on purpose.

Every message says what happened, why, and what to do, on one line, so a front end
can print it as is::

    ReplayproxyError            (base, not raised directly)
    ├── ConfigError             a flag, option or configuration value is wrong
    ├── CassetteError           a cassette is missing, corrupt, or of an unknown version
    ├── ProxyStartError         the proxy could not start (port taken, CA unreadable)
    ├── CommandError            the command to run under the proxy could not be started
    ├── FaultControlError       the fault control API refused a request
    └── LiveError               a live call of the drift check failed (DNS, TLS, timeout)

Messages name the settings a user can change as ``{setting}`` fields, not as one front
end's spelling: the CLI says ``--cassette-dir``, a mitmdump user
``--set replayproxy_cassette_dir``, the pytest plugin ``--replayproxy-cassette-dir``.
``str(error)`` words them neutrally (``cassette_dir``); a front end calls
``error.render(words)`` with its own (see ``CLI_WORDS`` and ``MITMPROXY_WORDS``).
The CLI catches ``ReplayproxyError`` in one place, prints ``replayproxy: error: …`` and
exits with ``exit_code``; the mitmproxy addon turns it into ``OptionsError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CLI_WORDS",
    "MITMPROXY_WORDS",
    "CassetteError",
    "CommandError",
    "ConfigError",
    "FaultControlError",
    "LiveError",
    "ProxyStartError",
    "ReplayproxyError",
    "word_settings",
]

SETTINGS = ("cassette_dir", "config", "db", "upstream_ca", "ca_dir", "port", "reverse",
            "timeout", "record_mode", "cassette", "fault", "fail_on_unused",
            "upstream_proxy", "upstream_insecure", "pace", "engine", "workers")
"""The settings a message may name as ``{field}``; other braces are left as they are."""

_FIELD = re.compile(r"\{(" + "|".join(SETTINGS) + r")\}")

CLI_WORDS: Mapping[str, str] = {
    "cassette_dir": "--cassette-dir", "config": "--config", "db": "--db",
    "upstream_ca": "--upstream-ca", "ca_dir": "--ca-dir", "port": "--port",
    "reverse": "--reverse", "timeout": "--timeout", "record_mode": "--record-mode",
    "cassette": "-c", "fault": "--fault", "fail_on_unused": "--fail-on-unused",
    "upstream_proxy": "--upstream-proxy", "upstream_insecure": "--upstream-insecure",
    "pace": "--pace",
    "engine": "--engine",
    "workers": "--workers",
}
"""How the ``replayproxy`` command names each setting."""

MITMPROXY_WORDS: Mapping[str, str] = {
    "cassette_dir": "--set replayproxy_cassette_dir",
    "config": "--set replayproxy_config", "record_mode": "--set replayproxy_record_mode",
    "cassette": "--set replayproxy_cassette",
    "upstream_ca": "--set ssl_verify_upstream_trusted_ca", "ca_dir": "--set confdir",
    "port": "--listen-port", "reverse": "--mode reverse:URL",
    "fault": "--set replayproxy_fault", "pace": "--set replayproxy_pace",
}
"""How a mitmdump user sets them (settings not listed keep their neutral name)."""


def word_settings(text: str, words: Mapping[str, str]) -> str:
    """``text`` with each ``{setting}`` field worded as ``words`` says (else neutrally)."""
    return _FIELD.sub(lambda m: words.get(m.group(1), m.group(1)), text)


class ReplayproxyError(Exception):
    """Base class of every error replayproxy raises on purpose.

    Args:
        message: one line; ``{cassette_dir}`` and the other names in ``SETTINGS`` stand
            for the setting, worded by the front end that shows the message.
        **fields: structured facts about the error (a path, a name, a URL) for callers
            that act on them rather than print them; kept in ``fields``.
    """

    exit_code = 2

    def __init__(self, message: str, **fields: Any) -> None:
        if type(self) is ReplayproxyError:
            raise TypeError("raise a subclass of ReplayproxyError, not the base class")
        self.template = message
        self.fields: dict[str, Any] = fields
        super().__init__(self.render({}))

    def render(self, words: Mapping[str, str]) -> str:
        """The message with the settings named as ``words`` says (else neutrally)."""
        return word_settings(self.template, words)


class ConfigError(ReplayproxyError):
    """A flag, option or configuration value is invalid."""


class CassetteError(ReplayproxyError):
    """A cassette file is missing, corrupt, truncated or of an unknown format version."""


class ProxyStartError(ReplayproxyError):
    """The proxy could not start listening."""


class CommandError(ReplayproxyError):
    """The command to run under the proxy could not be started."""

    exit_code = 127


class FaultControlError(ReplayproxyError):
    """The fault control API refused a request (a bad spec, an unknown rule id)."""


class LiveError(ReplayproxyError):
    """A live call of the drift check failed before a response; the message names the
    cause. ``unreachable``: the host itself could not be reached (so its other requests
    are not tried)."""

    def __init__(self, message: str, *, unreachable: bool, **fields: Any) -> None:
        super().__init__(message, unreachable=unreachable, **fields)

    @property
    def unreachable(self) -> bool:
        return bool(self.fields["unreachable"])
