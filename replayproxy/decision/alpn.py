"""Which application protocol (ALPN) the proxy picks for a client, given the cassette.

A client that opens TLS to the proxy offers protocols (httpx with ``http2=True``:
``http/1.1, h2``; curl: ``h2, http/1.1``; grpcio: ``grpc-exp, h2``). When the proxy is
already connected upstream it mirrors the upstream's choice; replay never connects, and
recording connects only once a request needs it, so nothing is known yet. mitmproxy then
takes the client's first offer, which puts httpx on HTTP/1.1 although a server (which
picks by its own preference) would have given it HTTP/2.

``AlpnPolicy`` decides instead:

- replaying a host the cassette holds: the protocol that was recorded for it (the
  requests' ``http_version``), so the client is answered over what it spoke then; a host
  recorded over both takes the client's most preferred of the two;
- recording (or a host the cassette does not hold): ``h2`` when the client offers it, as
  a server that speaks HTTP/2 would;
- otherwise: no opinion (the engine's default).
"""

from __future__ import annotations

from collections.abc import Sequence

from replayproxy.cassette.store import CassetteFile
from replayproxy.errors import CassetteError

__all__ = ["H2", "HTTP1", "AlpnPolicy", "choose_alpn", "protocol_of"]

H2 = "h2"
HTTP1 = "http/1.1"

_SAMPLE = 64
"""Interactions decoded per host to learn its protocol: enough to see both when both
were used, few enough for a cassette of 100,000 interactions."""


def protocol_of(http_version: str) -> str:
    """The ALPN name of an HTTP version as recorded (``HTTP/2.0`` -> ``h2``)."""
    return H2 if http_version.upper().startswith("HTTP/2") else HTTP1


def choose_alpn(offers: Sequence[str], recorded: frozenset[str], *, records: bool,
                http2: bool = True) -> str | None:
    """The protocol to pick from the client's ``offers`` (in its order of preference).

    Args:
        offers: what the client offered.
        recorded: the protocols recorded for this host (``h2``, ``http/1.1``); empty when
            the cassette does not hold the host.
        records: the run records (may reach the upstream).
        http2: HTTP/2 is enabled at all.

    Returns:
        One of ``offers``, or None to leave the choice to the engine.
    """
    allowed = [o for o in offers if o in (H2, HTTP1) and (http2 or o != H2)]
    if recorded:
        return next((o for o in allowed if o in recorded), None)
    if records and H2 in allowed:
        return H2
    return None


class AlpnPolicy:
    """``choose_alpn`` for the hosts of one cassette, learning each host's protocols once.

    Args:
        cassette: the cassette being replayed (or added to).
        records: the run records.
        http2: HTTP/2 is enabled.
    """

    def __init__(self, cassette: CassetteFile, *, records: bool, http2: bool = True) -> None:
        self.cassette = cassette
        self.records = records
        self.http2 = http2
        self._known: dict[tuple[str, int], frozenset[str]] = {}

    def recorded(self, host: str, port: int) -> frozenset[str]:
        """The protocols the cassette's requests to ``host:port`` went over."""
        key = (host.lower(), port)
        if key in self._known:
            return self._known[key]
        positions = [i for i, f in enumerate(self.cassette.fields)
                     if str(f[2]).lower() == key[0] and f[3] == port]
        found: set[str] = set()
        if positions and H2 not in self.cassette.features:
            found.add(HTTP1)  # a file with no HTTP/2 request: nothing to decode
        else:
            for i in positions[:_SAMPLE]:
                try:
                    found.add(protocol_of(self.cassette.interaction(i).request.http_version))
                except CassetteError:
                    continue  # a damaged entry says so when it is served
        self._known[key] = frozenset(found)
        return self._known[key]

    def choose(self, host: str, port: int, offers: Sequence[str]) -> str | None:
        """The protocol for a client of ``host:port`` offering ``offers`` (or None)."""
        return choose_alpn(offers, self.recorded(host, port), records=self.records,
                           http2=self.http2)
