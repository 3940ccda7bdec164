"""The values inside a fault rule: durations, sizes, rates, numbers and headers.

Each parser takes the option's name (``key``) and its text, and raises
``BadValue(key, message)`` with one line naming the option, what is wrong and
what is allowed; ``replayproxy.faults.spec`` turns it into the rule's ``ValueError``.
``duration_seconds`` is the same duration grammar for settings outside fault rules.
"""

from __future__ import annotations

import json
import math
import re

from replayproxy.model import Headers

__all__ = [
    "BadValue",
    "body_headers",
    "byte_rate",
    "duration",
    "duration_seconds",
    "header",
    "number",
    "positive_int",
    "probability",
    "size",
    "whole_number",
]


class BadValue(Exception):
    """A bad part of a spec: the option (or table key) and what is wrong."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


_DURATION = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(ms|s|m|min|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+)(b|kb|kib|mb|mib)?")
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def duration(key: str, text: str, *, positive: bool = False) -> float:
    """``300ms``, ``1.5s``, ``2m``/``2min``, ``1h`` in seconds; never negative."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m:
        hint = " (a duration needs a unit)" if re.fullmatch(r"[+-]?[\d.]+", text.strip()) else ""
        raise BadValue(key, f"{key}={text!r} is not a duration{hint}; write e.g. 300ms, "
                            "1.5s or 2m")
    seconds = float(m[1]) * _DURATION_UNITS[m[2]]
    if seconds < 0:
        raise BadValue(key, f"{key} must not be negative, got {text!r}")
    if positive and seconds == 0:
        raise BadValue(key, f"{key} must be more than 0, got {text!r}")
    return seconds


def duration_seconds(name: str, text: str) -> float:
    """``300ms``, ``1.5s``, ``2m``, ``1h`` in seconds, more than 0, for settings elsewhere.

    Raises:
        ValueError: naming ``name`` and showing valid examples.
    """
    try:
        return duration(name, text, positive=True)
    except BadValue as e:
        raise ValueError(e.message) from None


def size(key: str, text: str) -> int:
    """A byte count: ``100``, ``100b``, ``4kb`` (1024 bytes a kb), ``1mb``."""
    m = _SIZE.fullmatch(text.strip().lower())
    if not m:
        raise BadValue(key, f"{key}={text!r} is not a size; write a whole number of bytes "
                            "such as 100, 4kb or 1mb")
    return int(m[1]) * _SIZE_UNITS[m[2]]


def byte_rate(key: str, text: str) -> int:
    """Bytes per second: ``100``, ``512b/s``, ``1kb/s``."""
    raw = text.strip().lower()
    raw = raw.removesuffix("/s")
    m = _SIZE.fullmatch(raw)
    rate = int(m[1]) * _SIZE_UNITS[m[2]] if m else 0
    if rate <= 0:
        raise BadValue(key, f"{key}={text!r} is not a rate; write bytes per second such as "
                            "100, 512b/s or 1kb/s (more than 0)")
    return rate


def probability(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise BadValue(key, f"{key} must be a probability from 0 to 1, got {text!r}")
    return value


def number(key: str, text: str, *, below_one: bool = False) -> float:
    """A non-negative finite number (below 1 when ``below_one``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    upper = 1.0 if below_one else math.inf
    if not 0.0 <= value < upper:
        allowed = "from 0 up to (not including) 1" if below_one else "0 or more"
        raise BadValue(key, f"{key} must be a number {allowed}, got {text!r}")
    return value


def positive_int(key: str, text: str) -> int:
    if not re.fullmatch(r"\+?\d+", text.strip()) or int(text) < 1:
        raise BadValue(key, f"{key} must be a whole number of 1 or more, got {text!r}")
    return int(text)


def whole_number(key: str, text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise BadValue(key, f"{key} must be a whole number, got {text!r}")
    return int(text)


def header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not _TOKEN.fullmatch(name.strip()) or any(c in value for c in "\r\n\0"):
        raise BadValue("header", f"header={text!r} is not a header; write header=Name:Value")
    return name.strip(), value.strip()


def body_headers(body: bytes, headers: list[tuple[str, str]]) -> Headers:
    """Add a Content-Type for a given body when none was given."""
    if body and not any(n.lower() == "content-type" for n, _ in headers):
        try:
            json.loads(body)
            is_json = body.lstrip()[:1] in (b"{", b"[")
        except ValueError:
            is_json = False
        headers.append(("Content-Type",
                        "application/json" if is_json else "text/plain; charset=utf-8"))
    return tuple(headers)
