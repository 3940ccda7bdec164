"""Finding the recorded interaction that answers a request.

A request matches a recorded one when method, scheme, host, port and path are equal
(host case-insensitively), the query holds the same parameters in any order, and the
bodies are byte-equal.

The index is keyed by the always-exact fields (method, scheme, host, port, path), so
building it costs one tuple per interaction and a lookup does not depend on the size
of the cassette. Inside a bucket, entries are grouped by (query, body) the first time
the bucket is asked for.

Identical requests recorded several times are served in recorded order; once they are
used up the last one repeats, or, with ``strict``, the request counts as unmatched.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from replayproxy.core.model import Interaction, Request
from replayproxy.core.storage import CassetteFile
from replayproxy.errors import CassetteError

__all__ = ["ReplayIndex", "Served", "normalise_query"]

_Exact = tuple[str, str, str, int, str]
_Rest = tuple[tuple[tuple[str, str], ...], bytes]


def normalise_query(query: str) -> tuple[tuple[str, str], ...]:
    """Return the query's parameters sorted, so that their order does not matter."""
    if not query:
        return ()
    # surrogateescape keeps escapes that are not UTF-8 apart (%FF != %FE)
    return tuple(sorted(parse_qsl(query, keep_blank_values=True, errors="surrogateescape")))


def _exact(method: str, scheme: str, host: str, port: int, path: str) -> _Exact:
    return (method.upper(), scheme.lower(), host.lower(), int(port), path)


@dataclass(frozen=True, slots=True)
class Served:
    """A replayed interaction and where it stands in the cassette."""

    interaction: Interaction
    position: int
    """0-based index of the interaction in the cassette."""
    repeated: bool
    """True when the sequence was used up and the last response is repeated."""


class ReplayIndex:
    """Matches requests against one cassette and remembers what was served."""

    def __init__(self, cassette: CassetteFile, *, strict: bool = False) -> None:
        self.cassette = cassette
        self.strict = strict
        self.served: set[int] = set()
        self._buckets: dict[_Exact, list[int]] = {}
        self._groups: dict[_Exact, dict[_Rest, list[int]]] = {}
        self._cursor: dict[tuple[_Exact, _Rest], int] = {}
        for i, entry in enumerate(cassette.entries):
            try:
                q = entry[0]
                key = _exact(q[0], q[1], q[2], q[3], q[4])
            except (TypeError, IndexError, ValueError, AttributeError):
                # decoding raises the precise error, naming the file and position
                cassette.interaction(i)
                raise CassetteError(
                    f"cassette {cassette.name!r}: malformed interaction #{i + 1}"
                ) from None
            self._buckets.setdefault(key, []).append(i)

    def _group(self, key: _Exact) -> dict[_Rest, list[int]] | None:
        group = self._groups.get(key)
        if group is None:
            positions = self._buckets.get(key)
            if positions is None:
                return None
            group = {}
            for i in positions:
                q = self.cassette.entries[i][0]
                group.setdefault((normalise_query(q[5]), bytes(q[7])), []).append(i)
            self._groups[key] = group
        return group

    def match(self, request: Request) -> Served | None:
        """Return the interaction to serve for ``request``, or None if nothing matches."""
        key = _exact(request.method, request.scheme, request.host, request.port, request.path)
        group = self._group(key)
        if group is None:
            return None
        rest = (normalise_query(request.query), request.body)
        positions = group.get(rest)
        if not positions:
            return None
        cursor = self._cursor.get((key, rest), 0)
        if cursor < len(positions):
            self._cursor[(key, rest)] = cursor + 1
            position, repeated = positions[cursor], False
        elif self.strict:
            return None
        else:
            position, repeated = positions[-1], True
        self.served.add(position)
        return Served(self.cassette.interaction(position), position, repeated)

    def unused(self) -> list[int]:
        """Return the positions of interactions never served, in recorded order."""
        return [i for i in range(len(self.cassette)) if i not in self.served]
