"""What each endpoint of a run saw: requests, how they were answered, how long they took.

The pipeline counts every request it plans, by its exact method and URL (a dictionary
increment: cheap on the hot path); ``endpoints`` folds those into endpoints for the run
report (``GET api.example.com/v1/charges/{id}``). A run with very many distinct URLs keeps
the first ``MAX_KEYS`` and counts the rest under one ``(other URLs)`` row, so memory stays
bounded in a long-running proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from replayproxy.model import Request

__all__ = ["OTHER", "EndpointStats", "Tally"]

OTHER = "(other URLs)"
"""The endpoint of the requests beyond ``Tally.MAX_KEYS`` distinct URLs."""

_Key = tuple[str, str, str, int, str]


@dataclass(slots=True)
class EndpointStats:
    """Counts and time for one endpoint (or one URL)."""

    requests: int = 0
    replayed: int = 0
    recorded: int = 0
    unmatched: int = 0
    faults: int = 0
    seconds: float = 0.0
    """Time from each request's arrival to its answer, added up."""

    def add(self, other: EndpointStats) -> None:
        self.requests += other.requests
        self.replayed += other.replayed
        self.recorded += other.recorded
        self.unmatched += other.unmatched
        self.faults += other.faults
        self.seconds += other.seconds


_OTHER_KEY: _Key = ("", "", "", 0, OTHER)


class Tally:
    """Per-URL counts of one session; see the module's docstring."""

    MAX_KEYS = 10_000

    __slots__ = ("_by_url",)

    def __init__(self) -> None:
        self._by_url: dict[_Key, EndpointStats] = {}

    def _stats(self, request: Request) -> EndpointStats:
        key = (request.method, request.scheme, request.host, request.port, request.path)
        stats = self._by_url.get(key)
        return stats if stats is not None else self._new(key)

    def _new(self, key: _Key) -> EndpointStats:
        """The counts of a URL not seen yet (``(other URLs)``' beyond ``MAX_KEYS``)."""
        if len(self._by_url) >= self.MAX_KEYS:
            key = _OTHER_KEY
            stats = self._by_url.get(key)
            if stats is not None:
                return stats
        stats = self._by_url[key] = EndpointStats()
        return stats

    def planned(self, request: Request, how: str, *, fault: bool = False) -> None:
        """Count ``request``, planned as ``how``: ``replayed``, ``forwarded`` (recorded
        once it comes back: ``recorded``), ``unmatched`` or ``fault`` (a fault answered
        it); ``fault``: a fault changes its response (latency, a slow body...)."""
        stats = self._stats(request)
        stats.requests += 1
        if how == "replayed":
            stats.replayed += 1
        elif how == "unmatched":
            stats.unmatched += 1
        if fault or how == "fault":
            stats.faults += 1

    def recorded(self, request: Request) -> None:
        self._stats(request).recorded += 1

    def finished(self, request: Request, seconds: float) -> None:
        """Add the time ``request`` took to be answered."""
        self._stats(request).seconds += max(0.0, seconds)

    def add(self, other: Tally) -> None:
        """Add ``other``'s counts to these (another process's, serving the same run),
        URL by URL; URLs beyond ``MAX_KEYS`` are counted under ``(other URLs)``."""
        for key, stats in other._by_url.items():
            mine = self._by_url.get(key)
            (mine if mine is not None else self._new(key)).add(stats)

    def endpoints(self, endpoint_of: Callable[[Request], str]) -> dict[str, EndpointStats]:
        """The counts by endpoint, ``endpoint_of`` naming the endpoint of a request."""
        out: dict[str, EndpointStats] = {}
        for (method, scheme, host, port, path), stats in self._by_url.items():
            name = OTHER if path == OTHER and not method else endpoint_of(
                Request(method, scheme, host, port, path))
            out.setdefault(name, EndpointStats()).add(stats)
        return out

    def __len__(self) -> int:
        return len(self._by_url)
