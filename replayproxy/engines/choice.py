"""Which engine serves a proxy run: the fast one whenever it can, else mitmproxy.

Pure: read before either engine is imported, so the run can say which and why.
"""

from __future__ import annotations

from collections.abc import Iterable

from replayproxy.cassette.store import CassetteFile
from replayproxy.errors import ConfigError
from replayproxy.faults.effects import Respond
from replayproxy.faults.spec import FaultKind, FaultSpec
from replayproxy.model import RecordMode

__all__ = ["ENGINES", "FAST_FAULTS", "FAST_FEATURES", "choose_engine",
           "fast_engine_can_serve"]

ENGINES = ("auto", "fast", "mitmproxy")

FAST_FAULTS = frozenset({
    FaultKind.LATENCY, FaultKind.STATUS, FaultKind.RESET, FaultKind.TIMEOUT,
    FaultKind.TRUNCATE, FaultKind.CORRUPT, FaultKind.SLOW_BODY, FaultKind.RATE_LIMIT,
    FaultKind.REFUSE_CONNECT})
"""The fault kinds the fast engine carries out."""

FAST_FEATURES: frozenset[str] = frozenset()
"""Cassette features (``CassetteFile.features``, format version 2) the fast engine
serves: none yet. ``h2`` (exchanges recorded over HTTP/2) goes to mitmproxy too, so a
client is answered over the protocol it recorded with (``decision.alpn``); streamed-body
pacing (``chunks``), a ``cut``, ``trailers`` and ``websocket`` records need mitmproxy."""


def fast_engine_can_serve(mode: RecordMode, cassette: CassetteFile | None,
                          faults: Iterable[FaultSpec] = (), *,
                          mitmproxy_addons: bool = False) -> str | None:
    """None if the fast engine can serve this run, else why not (for the start line).

    Args:
        mode: the session's record mode (``once`` already resolved).
        cassette: the loaded cassette (None: none yet, a proxy of named sessions, each
            checked when it opens).
        faults: the run's fault rules at start.
        mitmproxy_addons: the run loads extra mitmproxy addons.
    """
    if mode is not RecordMode.NONE:
        return f"record mode {mode.value} sends requests upstream"
    if mitmproxy_addons:
        return "extra mitmproxy addons are loaded"
    others = sorted(set(cassette.features if cassette is not None else ()) - FAST_FEATURES)
    if others:
        return f"the cassette holds {', '.join(others)} records, served by mitmproxy only"
    for spec in faults:
        if spec.kind not in FAST_FAULTS or (isinstance(spec.params, Respond)
                                            and spec.params.trailers):
            return f"fault {spec.text!r} is carried out by mitmproxy only"
    return None


def choose_engine(wanted: str, reason_not_fast: str | None) -> tuple[str, str]:
    """The engine to run (``fast`` or ``mitmproxy``) and why, for ``wanted`` (one of
    ``ENGINES``).

    Raises:
        ConfigError: an unknown engine, or ``fast`` for a run it cannot serve.
    """
    if wanted not in ENGINES:
        raise ConfigError(f"unknown {{engine}} {wanted!r}: use one of {', '.join(ENGINES)}")
    if wanted == "mitmproxy":
        return "mitmproxy", "asked for"
    if wanted == "fast":
        if reason_not_fast is not None:
            raise ConfigError(f"{{engine}} fast cannot serve this run: {reason_not_fast}; "
                              "use {engine} mitmproxy (or auto)")
        return "fast", "asked for"
    if reason_not_fast is None:
        return "fast", "replay only, nothing it cannot serve"
    return "mitmproxy", reason_not_fast
