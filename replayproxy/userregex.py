"""Regular expressions from the user's configuration, run with a time limit.

A pattern such as ``(a+)+$`` backtracks catastrophically: on ``"a" * 40 + "!"`` the
standard library's ``re`` runs for longer than the universe has existed, and it cannot
be interrupted, so one hostile request would hang the proxy for good. Patterns the user
writes (``ignore_regex`` in matching, ``patterns`` in redaction, ``re:`` routes) are
therefore compiled with the ``regex`` module, whose matching takes a timeout: a call
that runs longer than ``TIMEOUT`` seconds stops with a ``ConfigError`` naming the
pattern, where it is configured and how to fix it. The request being handled gets that
one line as its error; every other request goes on. ``regex`` reads the same syntax as
``re`` (its version 0 behaviour, the default).

Built-in patterns stay on ``re``: they are written not to backtrack.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, cast

import regex

from replayproxy.errors import ConfigError

__all__ = ["TIMEOUT", "UserPattern"]

TIMEOUT = 0.5
"""Seconds one search, substitution or scan of a text may take (``regex`` checks the
clock every so often: a stopped call has taken a little longer)."""

_SHOWN = 60


def _shown(pattern: str) -> str:
    return repr(pattern) if len(pattern) <= _SHOWN else \
        f"{pattern[:_SHOWN]!r}… ({len(pattern)} characters)"


class UserPattern:
    """A user's regular expression (the parts of ``re.Pattern`` replayproxy uses).

    Args:
        pattern: the expression.
        where: where it is configured, for messages (``[match] ignore_regex``).
        timeout: seconds one call may take.

    Raises:
        re.error: ``pattern`` is not a valid regular expression.
    """

    __slots__ = ("_compiled", "pattern", "timeout", "where")

    def __init__(self, pattern: str, where: str = "", timeout: float = TIMEOUT) -> None:
        try:
            self._compiled = regex.compile(pattern)
        except regex.error as e:
            raise re.error(str(e)) from None
        self.pattern = pattern
        self.where = where
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"UserPattern({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserPattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def _stopped(self, text: str) -> ConfigError:
        where = f" ({self.where})" if self.where else ""
        return ConfigError(
            f"regular expression {_shown(self.pattern)}{where} ran longer than "
            f"{self.timeout:g} s on a text of {len(text)} characters and was stopped: it "
            "backtracks catastrophically; rewrite it without a repetition inside a "
            "repetition such as (a+)+ or (a|aa)+")

    def search(self, text: str) -> re.Match[str] | None:
        """The first match in ``text`` (a ``regex`` match, with ``re.Match``'s methods)."""
        try:
            return cast("re.Match[str] | None", self._compiled.search(text, timeout=self.timeout))
        except TimeoutError:
            raise self._stopped(text) from None

    def sub(self, repl: str | Callable[[re.Match[str]], str], text: str) -> str:
        """``text`` with every match replaced by ``repl``."""
        try:
            return self._compiled.sub(cast(Any, repl), text, timeout=self.timeout)
        except TimeoutError:
            raise self._stopped(text) from None

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        """Every match in ``text``; the time limit covers the whole scan."""
        try:
            yield from cast("Iterator[re.Match[str]]",
                            self._compiled.finditer(text, timeout=self.timeout))
        except TimeoutError:
            raise self._stopped(text) from None
