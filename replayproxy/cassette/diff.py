"""What differs between two cassettes, or two recordings of one request.

``diff_cassettes(old, new)`` pairs interactions by request line (method, URL): the n-th
``GET /v1/cart`` of one with the n-th of the other, so a request sent twice pairs in
order. Unpaired interactions are removed or added; paired ones are ``compare``-d:

- request and response headers, by name (case-insensitive, repeated values together);
- status, reason and HTTP version; trailers; where a response was cut off; WebSocket
  messages (direction, kind, content) and how the socket closed;
- bodies decoded (gzip, br...) first; JSON compared as JSON (deepdiff), one ``Change``
  per path (``response body $.items[0].amount``); other text as a line diff; binary by
  size and digest. The same content encoded into other bytes (gzip of another time) is
  one ``body bytes`` change.

Times (when recorded, how fast, when each streamed chunk or WebSocket message came)
are not content and are not compared. Nothing here
raises on bad bodies. ``replayproxy.cassette.quiet`` judges the changes of a
re-recording; ``render_diff`` words them for ``replayproxy cassette diff``.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from replayproxy.codec import decode_body
from replayproxy.matching.diagnostics import json_path_of
from replayproxy.model import Headers, Interaction, Request, WebSocketLog

__all__ = ["CassetteDiff", "Change", "Pair", "compare", "diff_cassettes", "pair_up",
           "render_diff", "request_line"]

_SHOWN = 120
"""Characters of a value shown in a change."""


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two interactions."""

    where: str
    """``status``, ``response header Date``, ``request body $.items[2].id``,
    ``response body`` (text or binary), ``response body bytes`` (same content)."""
    old: Any = None
    """The old value (None: absent): a header's values as a list, a JSON value, text."""
    new: Any = None
    lines: tuple[str, ...] = ()
    """A line diff of text bodies (``-old``/``+new`` lines)."""

    @property
    def pattern(self) -> str:
        """``where`` with array positions as ``[*]``: the same place in every element."""
        return re.sub(r"\[\d+\]", "[*]", self.where)

    @property
    def key(self) -> str | None:
        """The header name or the last JSON key, lower case (None for a whole body)."""
        if " header " in self.where:
            return self.where.split(" header ", 1)[1].lower()
        m = re.search(r"\.([^.\[\]]+)(?:\[\*\]|\[\d+\])*$", self.where)
        if m and " body $" in self.where:
            return m.group(1)
        return None

    def describe(self) -> str:
        """``response header Date: 'Mon, …' -> 'Tue, …'``."""
        if self.lines:
            return f"{self.where}:"
        return f"{self.where}: {_show(self.old)} -> {_show(self.new)}"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = ", ".join(value)
    else:
        text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = repr(text) if isinstance(value, str | list) else text
    return text if len(text) <= _SHOWN else text[:_SHOWN - 1] + "…"


def request_line(q: Request) -> tuple[str, str]:
    """What pairs interactions: method and URL."""
    return q.method.upper(), q.url


# -- headers and bodies ----------------------------------------------------------------


def _grouped(headers: Headers) -> dict[str, tuple[str, list[str]]]:
    """lower-case name -> (name as first seen, values in order)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), (name, []))[1].append(value)
    return out


def _header_changes(side: str, old: Headers, new: Headers, kind: str = "header"
                    ) -> list[Change]:
    a, b = _grouped(old), _grouped(new)
    out = []
    for lower in [*a, *(n for n in b if n not in a)]:
        va, vb = a.get(lower, ("", None))[1], b.get(lower, ("", None))[1]
        if va != vb:
            name = (a.get(lower) or b[lower])[0]
            out.append(Change(f"{side} {kind} {name}", va, vb))
    return out


_NOT_JSON = object()


def _json(data: bytes | None) -> Any:
    if data is None or data.lstrip()[:1] not in (b"{", b"["):
        return _NOT_JSON
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _json_changes(side: str, old: Any, new: Any) -> list[Change]:
    from deepdiff import DeepDiff  # ~100 ms to import: only when bodies differ

    diff = DeepDiff(old, new, view="tree", cache_size=0, ignore_private_variables=False)
    out = []
    for report in ("values_changed", "type_changes", "dictionary_item_added",
                   "dictionary_item_removed", "iterable_item_added", "iterable_item_removed"):
        for level in diff.get(report, ()):
            a = None if report.endswith("_added") else level.t1
            b = None if report.endswith("_removed") else level.t2
            out.append(Change(f"{side} body {json_path_of(level.path(output_format='list'))}",
                              a, b))
    return sorted(out, key=lambda c: c.where)


def _text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if all(c.isprintable() or c in "\r\n\t" for c in text[:2000]) else None


def _body_changes(side: str, old: bytes, old_headers: Headers, new: bytes,
                  new_headers: Headers) -> list[Change]:
    if old == new:
        return []
    a, b = decode_body(old, old_headers), decode_body(new, new_headers)
    if a is not None and a == b:
        return [Change(f"{side} body bytes", f"{len(old)} bytes", f"{len(new)} bytes")]
    ja, jb = _json(a), _json(b)
    if ja is not _NOT_JSON and jb is not _NOT_JSON:
        try:
            return _json_changes(side, ja, jb)
        except RecursionError:
            pass
    ta, tb = (_text(x) if x is not None else None for x in (a, b))
    if ta is not None and tb is not None:
        lines = tuple(line.rstrip("\n") for line in difflib.unified_diff(
            ta.splitlines(), tb.splitlines(), lineterm="", n=1))[2:]
        return [Change(f"{side} body", ta, tb, lines[:200])]
    return [Change(f"{side} body", _summary(old), _summary(new))]


def _summary(data: bytes) -> str:
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:12]}"


def compare(old: Interaction, new: Interaction) -> list[Change]:
    """The content differences between two interactions (see the module docstring)."""
    q, r, nq, nr = old.request, old.response, new.request, new.response
    out: list[Change] = []
    if request_line(q) != request_line(nq):
        out.append(Change("request", f"{q.method} {q.url}", f"{nq.method} {nq.url}"))
    out += _header_changes("request", q.headers, nq.headers)
    out += _body_changes("request", q.body, q.headers, nq.body, nq.headers)
    for where, a, b in (("status", r.status, nr.status), ("reason", r.reason, nr.reason),
                        ("response http version", r.http_version, nr.http_version)):
        if a != b:
            out.append(Change(where, a, b))
    out += _header_changes("response", r.headers, nr.headers)
    out += _body_changes("response", r.body, r.headers, nr.body, nr.headers)
    out += _header_changes("response", r.trailers, nr.trailers, "trailer")
    if old.cut != new.cut:
        out.append(Change("cut", old.cut or None, new.cut or None))
    out += _websocket_changes(old.websocket, new.websocket)
    return out


def _websocket_changes(old: WebSocketLog | None, new: WebSocketLog | None) -> list[Change]:
    """Messages (direction, kind, content; not their times) and how the socket closed."""
    if old == new:
        return []
    if old is None or new is None:
        return [Change("websocket", None if old is None else f"{len(old.messages)} messages",
                       None if new is None else f"{len(new.messages)} messages")]
    out = []
    for n, (a, b) in enumerate(itertools.zip_longest(old.messages, new.messages), 1):
        shown = [None if m is None else
                 f"{'client' if m.from_client else 'server'}: "
                 f"{m.content.decode('utf-8', 'replace') if m.is_text else _summary(m.content)}"
                 for m in (a, b)]
        if shown[0] != shown[1]:
            out.append(Change(f"websocket message {n}", shown[0], shown[1]))
    for what in ("close_code", "close_reason", "closed_by"):
        if getattr(old, what) != getattr(new, what):
            out.append(Change(f"websocket {what.replace('_', ' ')}", getattr(old, what),
                              getattr(new, what)))
    return out


# -- cassettes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pair:
    """Interaction ``old`` of one cassette and ``new`` of the other (0-based; None: no
    counterpart), with their changes."""

    old: int | None
    new: int | None
    changes: tuple[Change, ...] = ()


def pair_up(old: Sequence[Request], new: Sequence[Request]) -> list[tuple[int | None,
                                                                          int | None]]:
    """Pairs of positions, the n-th of a request line in ``old`` with its n-th in
    ``new``; in the order of ``new``, each unpaired old one where it stood."""
    waiting: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, q in enumerate(old):
        waiting[request_line(q)].append(i)
    paired: dict[int, int] = {}
    for j, q in enumerate(new):
        queue = waiting.get(request_line(q))
        if queue:
            paired[j] = queue.pop(0)
    used = set(paired.values())
    out: list[tuple[int | None, int | None]] = []
    unpaired_old = [k for k in range(len(old)) if k not in used]
    for j in range(len(new)):
        pos = paired.get(j)
        limit = pos if pos is not None else j + 1  # a removed one before an added one
        while unpaired_old and unpaired_old[0] < limit:
            out.append((unpaired_old.pop(0), None))
        out.append((pos, j))
    out += [(k, None) for k in unpaired_old]
    return out


@dataclass(slots=True)
class CassetteDiff:
    """Every pair of two cassettes; ``changed``, ``added``, ``removed`` select."""

    pairs: list[Pair] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return all(p.old is not None and p.new is not None and not p.changes
                   for p in self.pairs)

    def counts(self) -> tuple[int, int, int, int]:
        """``(added, removed, changed, unchanged)``."""
        added = sum(p.old is None for p in self.pairs)
        removed = sum(p.new is None for p in self.pairs)
        changed = sum(p.old is not None and p.new is not None and bool(p.changes)
                      for p in self.pairs)
        return added, removed, changed, len(self.pairs) - added - removed - changed


def diff_cassettes(old: Sequence[Interaction], new: Sequence[Interaction]) -> CassetteDiff:
    """How ``new`` differs from ``old`` (see the module docstring)."""
    out = CassetteDiff()
    for i, j in pair_up([it.request for it in old], [it.request for it in new]):
        changes = tuple(compare(old[i], new[j])) if i is not None and j is not None else ()
        out.pairs.append(Pair(i, j, changes))
    return out


def render_diff(diff: CassetteDiff, old: Sequence[Interaction], new: Sequence[Interaction],
                ) -> Iterator[str]:
    """The lines of ``replayproxy cassette diff``: one per added or removed interaction,
    and per changed one its changes, indented."""
    from replayproxy.cassette.view import summary_line

    for p in diff.pairs:
        if p.old is None and p.new is not None:
            yield "added   " + summary_line(p.new + 1, new[p.new])
        elif p.new is None and p.old is not None:
            yield "removed " + summary_line(p.old + 1, old[p.old])
        elif p.changes and p.old is not None and p.new is not None:
            moved = f" (was #{p.old + 1})" if p.old != p.new else ""
            yield "changed " + summary_line(p.new + 1, new[p.new]) + moved
            for change in p.changes:
                yield f"    {change.describe()}"
                for line in change.lines:
                    yield f"      {line}"
