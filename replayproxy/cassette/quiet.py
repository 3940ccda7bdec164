"""Quiet re-records: keep what was recorded wherever a re-recording differs only in
values that change on every call.

A re-recorded interaction is compared with the recorded one for the same request line
(``replayproxy.cassette.diff.compare``). Each difference is *noise* when:

- it is in a header that changes on every call (``Date``, ``ETag``, ``Set-Cookie``,
  ``Content-Length``, request ids, traces: the drift check's list), or both values look
  like ids or timestamps;
- it is a JSON value whose key looks volatile (``id``, ``*_id``, ``created``, ``*_at``,
  ``request_id``...) or whose old and new values both do (uuids, ISO or HTTP dates,
  epoch seconds, prefixed ids: the drift check's ``looks_volatile``);
- both values are placeholders of the same redaction rule (a rotated token);
- it is the same content encoded into other bytes (gzip of another time);
- its place is listed in the configuration (``volatile``, and ``[drift] ignore``: JSON
  paths such as ``$.meta.request_id`` or ``$.items[*].id``, and header names);
- or it was *learned*: two responses to the same request (method, URL and body) within
  the old cassette, or within the re-recording, differ there, as the drift check learns
  from a request sent twice.

An interaction whose differences are all noise is kept as it was recorded, bytes and
all, so a re-record against an unchanged API leaves the cassette byte-identical. One
with a real difference is written with its noise undone (``merge``): header values and
JSON string or number values that are noise get their recorded values back, so a review
shows only the real change. ``Quiet(keep=False)`` keeps nothing: every interaction is
written as re-recorded.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from replayproxy.cassette.diff import Change, compare, request_line
from replayproxy.codec import content_encodings
from replayproxy.drift.compare import looks_volatile, volatile_header
from replayproxy.model import Headers, Interaction, Request, Response
from replayproxy.redaction.secrets import PLACEHOLDER

__all__ = ["Quiet", "stabilise"]


def _path_regex(path: str) -> re.Pattern[str]:
    """A configured JSON path (``$.a[*].b``, ``$..request_id``, ``$.meta.*``) as a regex
    over the places ``compare`` names (``$.a[3].b``)."""
    out = re.escape(path.strip())
    out = out.replace(r"\[\*\]", r"\[\d+\]").replace(r"\.\*", r"\.[^.\[]+")
    out = out.replace(r"\$\.\.", r"\$(?:.*\.)?")
    return re.compile(out + r"(?:[.\[].*)?")


@dataclass(frozen=True, slots=True)
class Quiet:
    """How a re-recording is written. ``ignore``: JSON paths (``$...``) and header names
    whose values change on every call, from the configuration."""

    keep: bool = True
    ignore: tuple[str, ...] = ()

    def noise(self, change: Change, learned: frozenset[str] = frozenset()) -> bool:
        """Whether ``change`` is a value that changes on every call."""
        if change.where.endswith(" body bytes") or change.pattern in learned:
            return True
        side, _, rest = change.where.partition(" ")
        if rest.startswith("header "):
            name = rest[len("header "):].lower()
            if (volatile_header(name) and name != "content-type") or name in self._headers():
                return True
            return change.old is not None and change.new is not None and \
                len(change.old) == len(change.new) and all(
                    _volatile_value(a, b) for a, b in zip(change.old, change.new, strict=True))
        if rest.startswith("body $"):
            path = rest[len("body "):]
            if any(p.fullmatch(path) for p in self._paths()):
                return True
            if change.old is None or change.new is None:
                return False  # a key or item added or removed: the shape changed
            key = change.key
            return (key is not None and looks_volatile(key, None)) or \
                _volatile_value(change.old, change.new)
        return False

    def _headers(self) -> frozenset[str]:
        return frozenset(i.strip().lower() for i in self.ignore if not i.strip().startswith("$"))

    def _paths(self) -> list[re.Pattern[str]]:
        return [_path_regex(i) for i in self.ignore if i.strip().startswith("$")]

    def learn(self, interactions: Iterable[Interaction]) -> frozenset[str]:
        """The places (``Change.pattern``) where two responses to the same request
        differ: volatile, as the drift check learns from a request sent twice. Only
        header values and JSON values are learned: a whole body, a status, is never a
        value that changes on every call."""
        groups: dict[tuple[str, str, bytes], list[Interaction]] = defaultdict(list)
        for it in interactions:
            groups[(*request_line(it.request), it.request.body)].append(it)
        learned: set[str] = set()
        for group in groups.values():
            for a, b in zip(group, group[1:], strict=False):
                learned.update(c.pattern for c in compare(a, b)
                               if c.where.startswith(("response header ", "response body $")))
        return frozenset(learned)


def _volatile_value(old: Any, new: Any) -> bool:
    if isinstance(old, str) and isinstance(new, str):
        a, b = PLACEHOLDER.fullmatch(old.strip()), PLACEHOLDER.fullmatch(new.strip())
        if a and b and a.group(1) == b.group(1):
            return True
        if PLACEHOLDER.search(old) and PLACEHOLDER.sub("", old) == PLACEHOLDER.sub("", new):
            return True  # "Bearer <redacted:…>" with another hash
    return looks_volatile(None, old) and looks_volatile(None, new)


# -- merging ---------------------------------------------------------------------------


def _restore_headers(headers: Headers, old: Headers, names: set[str]) -> Headers:
    """``headers`` with the values of ``names`` (lower case) taken from ``old`` where
    both have as many of them."""
    olds: dict[str, list[str]] = defaultdict(list)
    news: dict[str, int] = defaultdict(int)
    for k, v in old:
        olds[k.lower()].append(v)
    for k, _ in headers:
        news[k.lower()] += 1
    seen: dict[str, int] = defaultdict(int)
    out = []
    for k, v in headers:
        lower = k.lower()
        if lower in names and len(olds[lower]) == news[lower]:
            v = olds[lower][seen[lower]]
        seen[lower] += 1
        out.append((k, v))
    return tuple(out)


def _encodings(value: Any) -> list[bytes]:
    return [json.dumps(value, ensure_ascii=a).encode() for a in (False, True)]


def _restore_body(body: bytes, headers: Headers, changes: list[Change]) -> bytes:
    """``body`` (JSON, not content-encoded) with each noise value written back as
    recorded, where the new value occurs exactly once as JSON text."""
    if content_encodings(headers):
        return body
    for c in changes:
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool)
                   for v in (c.old, c.new)):
            continue
        for new_text, old_text in zip(_encodings(c.new), _encodings(c.old), strict=True):
            if body.count(new_text) == 1:
                body = body.replace(new_text, old_text)
                break
    return body


def _fit_length(headers: Headers, body: bytes, before: bytes) -> Headers:
    """A Content-Length that described ``before`` now describes ``body``."""
    if len(body) == len(before):
        return headers
    return tuple((k, str(len(body)) if k.lower() == "content-length" and v == str(len(before))
                  else v) for k, v in headers)


def merge(old: Interaction, new: Interaction, noise: list[Change]) -> Interaction:
    """``new`` with the ``noise`` changes undone: header values and JSON values as
    ``old`` had them (times are ``new``'s; a streamed or cut response body stays as it
    came, since its chunks count its bytes)."""
    sides: list[Request | Response] = []
    for side, recorded, part in (("request", old.request, new.request),
                                 ("response", old.response, new.response)):
        names = {c.where.split(" header ", 1)[1].lower() for c in noise
                 if c.where.startswith(f"{side} header ")}
        headers = _restore_headers(part.headers, recorded.headers, names)
        # a streamed or cut body keeps its bytes: its chunks count them
        body = part.body if side == "response" and (new.chunks or new.cut) else \
            _restore_body(part.body, part.headers,
                          [c for c in noise if c.where.startswith(f"{side} body $")])
        sides.append(replace(part, headers=_fit_length(headers, body, part.body), body=body))
    request, response = sides
    assert isinstance(request, Request) and isinstance(response, Response)
    return replace(new, request=request, response=response)


def stabilise(quiet: Quiet, old: Sequence[Interaction], new: Sequence[Interaction]
              ) -> list[int | Interaction]:
    """For each of ``new``, in order: the position of the ``old`` interaction to keep in
    its place (all its differences are noise), or the interaction to write (``merge``-d
    with the old one it replaces, when it has one)."""
    if not quiet.keep:
        return list(new)
    learned = quiet.learn(old) | quiet.learn(new)  # never old against new: that is the change
    waiting: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, it in enumerate(old):
        waiting[request_line(it.request)].append(i)
    out: list[int | Interaction] = []
    for it in new:
        queue = waiting.get(request_line(it.request))
        if not queue:
            out.append(it)
            continue
        i = queue.pop(0)
        changes = compare(old[i], it)
        noise = [c for c in changes if quiet.noise(c, learned)]
        out.append(i if len(noise) == len(changes) else merge(old[i], it, noise))
    return out
