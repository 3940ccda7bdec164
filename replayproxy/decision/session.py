"""One cassette in use by a proxy run: decides, per request, replay or record.

The session is plain Python: the mitmproxy addon turns a flow into a ``Request``,
asks ``decide``, and carries out the answer (serve the recorded response, let the
request go upstream and ``record`` the result, or answer "unmatched").
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from replayproxy.cassette.journal import Journal, pending_journals, recover_journals
from replayproxy.cassette.quiet import Quiet
from replayproxy.cassette.store import CassetteFile, cassette_path, load_cassette
from replayproxy.codec import decoded_over
from replayproxy.decision.failures import (
    ClientRefusal,
    UpstreamFailure,
    is_upstream_failure,
    recorded_cause,
)
from replayproxy.decision.tally import Tally
from replayproxy.decision.websocket import Conversation, UnexpectedMessage, WebSocketFaults
from replayproxy.errors import CassetteError
from replayproxy.matching.diagnostics import Candidate, render_candidates
from replayproxy.matching.index import ReplayIndex, Served
from replayproxy.matching.rules import MatchConfig
from replayproxy.model import Interaction, RecordMode, Request
from replayproxy.redaction.big import BIG_BODY, redact_big, scan_big_interaction
from replayproxy.redaction.redactor import Redactor
from replayproxy.redaction.scan import Finding, scan_interaction
from replayproxy.routes import Route
from replayproxy.streams import BodyFile

__all__ = ["CassetteSession", "Forward", "Replay", "SessionSummary", "Unmatched"]


@dataclass(frozen=True, slots=True)
class Replay:
    """Answer with a recorded interaction."""

    served: Served


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the request upstream and record what comes back."""


@dataclass(frozen=True, slots=True)
class Unmatched:
    """Nothing in the cassette matches, and this mode may not go upstream."""

    cassette: str
    request: Request
    closest: tuple[Candidate, ...] = ()

    @property
    def message(self) -> str:
        """Plain text for the client and the log: what was asked, what came closest."""
        lines = [
            f"replayproxy: no recorded interaction in cassette {self.cassette!r} matches "
            f"{self.request.method} {self.request.url} "
            f"(request body {len(self.request.body)} bytes).",
            *render_candidates(list(self.closest)),
            f"Re-record with `replayproxy record -c {self.cassette} -- CMD`, or add the "
            "missing requests with `--record-mode new_episodes`.",
        ]
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict[str, Any]:
        """The same as a JSON document, for clients that accept JSON."""
        return {
            "error": "unmatched",
            "cassette": self.cassette,
            "request": {"method": self.request.method, "url": self.request.url},
            "closest": [
                {
                    "interaction": c.position + 1,
                    "method": c.interaction.request.method,
                    "url": c.interaction.request.url,
                    "differences": [d.as_json() for d in c.differences],
                }
                for c in self.closest
            ],
            "hint": f"re-record with `replayproxy record -c {self.cassette} -- CMD`, or use "
            "--record-mode new_episodes",
        }

    def as_json_bytes(self) -> bytes:
        """``as_json`` encoded, indented for people reading it in a client log."""
        return json.dumps(self.as_json(), indent=2, ensure_ascii=False).encode("utf-8")


Decision = Replay | Forward | Unmatched

T = TypeVar("T")


class Capped(list[T]):
    """A list of a run's events that keeps the first ``limit`` and counts the rest: a
    long run (a soak, a serve left up for days) must not keep every unmatched request
    in memory. ``total`` is how many there were."""

    limit = 200

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def append(self, item: T) -> None:
        if len(self) < self.limit:
            super().append(item)
        else:
            self.dropped += 1

    @property
    def total(self) -> int:
        return len(self) + self.dropped

_CACHED_BODY = 64 * 1024


@dataclass(slots=True)
class SessionSummary:
    """What happened during a run, for the end-of-run report."""

    cassette: str
    path: Path
    mode: RecordMode
    replayed: int = 0
    recorded: int = 0
    recovered: int = 0
    errors: Capped[str] = field(default_factory=Capped)
    """Requests replayproxy could not answer (a damaged cassette entry, an internal
    error): each answered 500, and the run fails."""
    journals: int = 0
    """Journals of interrupted recordings found when the run started (folded in, or set
    aside if damaged)."""
    unmatched: Capped[Unmatched] = field(default_factory=Capped)
    unexpected_messages: Capped[UnexpectedMessage] = field(default_factory=Capped)
    """WebSocket client messages the recording did not have where they came."""
    unused: list[int] = field(default_factory=list)
    """Positions of recorded interactions never served."""
    unused_interactions: list[Interaction | None] = field(default_factory=list)
    """The first 100 of ``unused``, decoded (None: a damaged entry)."""
    leaks: Capped[tuple[Request, list[Finding]]] = field(default_factory=Capped)
    """Interactions in which secrets remained after redaction, with what was found."""
    leaks_written: bool = False
    """True when they were written anyway (``on_leak = "warn"``)."""
    requests: int = 0
    """Requests that reached the proxy and were asked about (0: the command bypassed it)."""
    connections: int = 0
    """Client connections the proxy accepted."""
    cassette_size: int = 0
    """Interactions in the cassette when the run started."""
    upstream_failures: Capped[UpstreamFailure] = field(default_factory=Capped)
    """Requests whose upstream failed while recording (kept as the client's 502)."""
    replayed_failures: Capped[UpstreamFailure] = field(default_factory=Capped)
    """Recorded upstream failures that replay answered again."""
    client_refusals: Capped[ClientRefusal] = field(default_factory=Capped)
    """Clients that refused the proxy's certificate."""
    unused_routes: list[str] = field(default_factory=list)
    """Configured routes (``[[match.routes]]``, ``[[redact.routes]]``) that no request of
    the run fell under, as ``match route 'PATTERN'``."""
    tally: Tally = field(default_factory=Tally)
    """Requests per URL and how they were answered, for the run report."""


class CassetteSession:
    """The state of one cassette during one run.

    ``redacted_cache``: how many distinct incoming requests keep their redacted form
    (0: none).

    Args:
        cassette_dir: directory of cassette files.
        name: cassette name (validated; see ``validate_cassette_name``).
        mode: the requested record mode; ``once`` becomes ``none`` when the cassette
            exists and ``all`` when it does not.
        strict: count requests beyond a recorded sequence as unmatched instead of
            repeating its last response.
        match: matchers and per-route rules (default: ``MatchConfig()``).
        redactor: redacts every interaction before it is written, and every incoming
            request before it is matched (default: the built-in rules, on).
        recover: fold an interrupted recording's journals into the cassette first (a
            write). False for read-only uses (``explain``): the cassette file is used
            as it is and nothing on disk changes; ``pending`` lists the journals left.
        fresh: start the cassette afresh: record everything (mode ``all``) and replace
            the whole cassette with it. Without it, ``all`` keeps the recorded
            interactions the run did not request again, as VCR.py 9 does.
        quiet: which re-recorded interactions keep their recorded bytes (default: those
            that differ only in values that change on every call; see
            ``replayproxy.cassette.quiet``).

    Raises:
        CassetteError: replay-only mode and the cassette does not exist, or it is corrupt.
    """

    redacted_cache = 4096

    def __init__(
        self,
        cassette_dir: str | os.PathLike[str],
        name: str,
        mode: RecordMode = RecordMode.NONE,
        *,
        strict: bool = False,
        match: MatchConfig | None = None,
        redactor: Redactor | None = None,
        recover: bool = True,
        fresh: bool = False,
        quiet: Quiet | None = None,
    ) -> None:
        self.name = name
        self.quiet = quiet or Quiet()
        self.path = cassette_path(cassette_dir, name)
        self.fresh = fresh
        if fresh:
            if mode is RecordMode.NONE:
                raise CassetteError(
                    f"cassette {name!r}: starting afresh records, which record mode none "
                    "never does: use {record_mode} all (the default of record)",
                    cassette=name)
            mode = RecordMode.ALL
        self.redactor = redactor or Redactor()
        match = match or MatchConfig()
        if self.redactor.config.same_value:
            match = replace(match, base=replace(
                match.base, redacted_same=self.redactor.config.same_value))
        # matches requests to requests (not to a cassette): which old interactions a
        # re-recording replaces
        self._rules = ReplayIndex(CassetteFile(name, ()), match)
        found = pending_journals(self.path)
        recovered = recover_journals(self.path, self._unrequested, self.quiet) \
            if recover and found else 0
        self.pending = [] if recover else found
        """Journals of an interrupted recording not folded in (``recover=False``)."""
        exists = self.path.exists()
        if mode is RecordMode.ONCE:
            mode = RecordMode.NONE if exists else RecordMode.ALL
        if mode is RecordMode.NONE and not exists and self.pending:
            raise CassetteError(
                f"cassette {name!r} has only an interrupted recording so far (a journal in "
                f"{self.path.parent}): fold it in with `replayproxy replay -c {name} -- true`",
                cassette=name, directory=str(self.path.parent))
        if mode is RecordMode.NONE and not exists:
            raise CassetteError(
                f"cassette {name!r} does not exist in {self.path.parent}: record it first "
                f"with `replayproxy record -c {name} -- CMD`, or check {{cassette_dir}}",
                cassette=name, directory=str(self.path.parent)
            )
        self.mode = mode
        cassette = (
            load_cassette(self.path, name)
            if exists and mode is not RecordMode.ALL
            else CassetteFile(name, ())
        )
        # VCR.py's new_episodes records a request beyond a recorded sequence (never
        # repeats), and, when the cassette existed, replays what this run recorded to
        # later identical requests
        self.index = ReplayIndex(cassette, match,
                                 strict=strict or mode is RecordMode.NEW_EPISODES)
        self._fresh: dict[Hashable, deque[tuple[Interaction, memoryview | None]]] | None = (
            {} if mode is RecordMode.NEW_EPISODES and exists else None)
        self.summary = SessionSummary(name, self.path, mode, recovered=recovered,
                                      journals=len(found) if recover else 0,
                                      cassette_size=len(cassette))
        self._journal: Journal | None = None
        self._redacted: dict[Request, Request] = {}
        # configured routes no request has fallen under yet (checked until each has)
        self._idle_routes: list[tuple[str, Route]] = [
            *((f"match route {r.text!r}", r) for r, _ in match.routes),
            *((f"redact route {r.text!r}", r) for r, _ in self.redactor.config.routes)]

    @property
    def records(self) -> bool:
        """True if this session may send requests upstream."""
        return self.mode in (RecordMode.ALL, RecordMode.NEW_EPISODES)

    def decide(self, request: Request) -> Decision:
        """Return what to do with ``request``."""
        self.note_request(request)
        if self.mode is RecordMode.ALL:
            return Forward()
        request = self._redact(request)
        served = self.index.match(request)
        if served is not None:
            self.summary.replayed += 1
            response = served.interaction.response
            if is_upstream_failure(response):
                self.summary.replayed_failures.append(
                    UpstreamFailure(request, recorded_cause(response)))
            return Replay(served)
        if self.mode is RecordMode.NEW_EPISODES:
            again = self._fresh.get(self._rules.identity(request)) if self._fresh else None
            if again:
                self.summary.replayed += 1
                it, view = again.popleft()
                return Replay(Served(it, len(self.index.cassette), False, view))
            return Forward()
        unmatched = Unmatched(self.name, request, tuple(self.index.closest(request)))
        self.summary.unmatched.append(unmatched)
        return unmatched

    def conversation(self, served: Served, request: Request, *, pace: float = 1.0,
                     faults: WebSocketFaults | None = None) -> Conversation:
        """The server's side of the recorded WebSocket ``served`` for the handshake
        ``request``, matched with the handshake's rule and redacted like it."""
        assert served.interaction.websocket is not None
        return Conversation(served.interaction.websocket, self.index.rule_for(request),
                            cassette=self.name, request=request, redactor=self.redactor,
                            pace=pace, faults=faults)

    def note_unexpected(self, unexpected: UnexpectedMessage) -> None:
        """Count a WebSocket client message the recording did not have (fails the run)."""
        self.summary.unexpected_messages.append(unexpected)

    def _redact(self, request: Request) -> Request:
        """The request as the cassette would hold it. Test suites send the same request
        many times (polls, retries, the same call in many tests) and redaction is two
        thirds of a decision, so the last ``redacted_cache`` distinct requests are kept:
        redaction is deterministic for a session (same rules, same key). Requests with
        bodies over 64 KiB are not kept, so the cache stays small."""
        kept = self.redacted_cache > 0 and len(request.body) <= _CACHED_BODY
        cached = self._redacted.get(request) if kept else None
        if cached is None:
            cached = self.redactor.redact_request(request)
            if kept:
                if len(self._redacted) >= self.redacted_cache:
                    self._redacted.clear()
                self._redacted[request] = cached
        return cached

    def record(self, interaction: Interaction, body: BodyFile | None = None
               ) -> list[Finding]:
        """Redact a completed interaction and store it; it is on disk when this returns.
        ``body``: its response body, when it is a big one kept in a file (the
        interaction's own is then empty): redacted, scanned and journaled from there, a
        window at a time (``redaction.big``).

        Returns what the scanner still found after redaction. With ``on_leak =
        "error"`` (the default) such an interaction is not written at all.
        """
        out: BodyFile | None = None
        made: BodyFile | None = None
        r = interaction.response
        if body is None and r.body and decoded_over(r.body, r.headers, BIG_BODY):
            # small on the wire, big decoded: redacted a window at a time as well
            body = made = BodyFile.new()
            made.write(r.body)
            interaction = replace(interaction, response=replace(r, body=b""))
        try:
            if body is not None:
                interaction, out = redact_big(self.redactor, interaction, body)
            else:
                interaction = self.redactor.redact(interaction)
            findings = self._scan(interaction, out)
            if findings:
                self.summary.leaks.append((interaction.request, findings))
                if self.redactor.config.on_leak != "warn":
                    return findings
                self.summary.leaks_written = True
            if self._journal is None:
                self._journal = Journal(self.path, replace=self.mode is RecordMode.ALL,
                                        keep_old=not self.fresh)
            start = self._journal.append(interaction, out)
            self.summary.recorded += 1
            if self._fresh is not None:
                view = self._journal.body(start, out.size) if out is not None else None
                self._fresh.setdefault(self._rules.identity(interaction.request),
                                       deque()).append((interaction, view))
            return findings
        finally:
            if out is not None and out is not body:
                out.close()
            if made is not None:
                made.close()

    def _scan(self, interaction: Interaction, body: BodyFile | None) -> list[Finding]:
        """What the scanner finds in a redacted interaction (and its big body)."""
        if not self.redactor.config.scan:
            return []
        number = self.summary.recorded + 1
        if body is None:
            return scan_interaction(interaction, self.redactor.config, str(self.path), number)
        return scan_big_interaction(interaction, body, self.redactor.config, str(self.path),
                                    number)

    def _unrequested(self, old: CassetteFile, new: CassetteFile) -> list[int]:
        """The old interactions that no newly recorded one matches (a re-recording in
        mode ``all`` keeps them, ahead of the new ones, as VCR.py 9 does)."""
        seen = {self._rules.identity(new.request(i)) for i in range(len(new))}
        return [i for i in range(len(old)) if self._rules.identity(old.request(i)) not in seen]

    def record_failure(self, interaction: Interaction, message: str,
                       body: BodyFile | None = None) -> list[Finding]:
        """Record an upstream failure as the answer the client got (``interaction``, its
        response marked, see ``decision.failures``) and list it in the summary with its
        cause, ``message`` (the engine's words); ``body``: see ``record``."""
        self.summary.upstream_failures.append(
            UpstreamFailure(self._redact(interaction.request), message))
        return self.record(interaction, body)

    def note_request(self, request: Request) -> None:
        """A request reached the proxy (``decide`` calls it; the pipeline too, for a
        request a fault answers without asking the cassette)."""
        self.summary.requests += 1
        if self._idle_routes:
            self._idle_routes = [(n, r) for n, r in self._idle_routes if not r.matches(request)]

    def note_connection(self) -> None:
        """A client connected to the proxy."""
        self.summary.connections += 1

    def note_refusal(self, host: str, message: str) -> None:
        """A client refused the proxy's certificate for ``host``."""
        refusal = ClientRefusal(host, message)
        if refusal not in self.summary.client_refusals and \
                len(self.summary.client_refusals) < 100:
            self.summary.client_refusals.append(refusal)

    def decoded(self, position: int) -> Interaction | None:
        """Interaction ``position``, or None if its entry is damaged (said when served)."""
        try:
            return self.index.cassette.interaction(position)
        except CassetteError:
            return None

    def close(self) -> SessionSummary:
        """Fold what was recorded into the cassette and return the run's summary."""
        if self._journal is not None:
            self._journal.commit(self._unrequested, self.quiet)
            self._journal = None
        if self.summary.requests:
            self.summary.unused_routes = [name for name, _ in self._idle_routes]
        if self.mode is not RecordMode.ALL:
            self.summary.unused = self.index.unused()
            self.summary.unused_interactions = [
                self.decoded(i) for i in self.summary.unused[:100]]
        return self.summary
