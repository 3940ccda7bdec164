"""The exit rules of a proxy run, written once for every front end.

A run "passes" when the command under the proxy passed (or, for a proxy served until
stopped, always) and replayproxy itself found nothing wrong. Anything replayproxy finds
turns a passing run into exit code 1, with a reason a front end can print:

- a request matched nothing in the cassette (replay is incomplete), or a WebSocket
  client sent a message the recording does not have;
- an interaction still held a secret after redaction and was not written (the
  cassette is missing it);
- recorded interactions were never used and ``fail_on_unused`` is set;
- an upstream failed while recording (refused, DNS, TLS, reset, timeout): the cassette
  holds what the client got (a 502, or no answer), rarely what a test meant to record;
- a client refused the proxy's certificate (it does not trust the replayproxy CA);
- a replay in which no request reached the proxy while the cassette has interactions:
  the command bypassed the proxy.

A failing command keeps its own exit code.
"""

from __future__ import annotations

from dataclasses import dataclass

from replayproxy.decision.session import SessionSummary
from replayproxy.model import RecordMode

__all__ = ["BYPASS_CAUSES", "Verdict", "bypassed", "verdict"]

BYPASS_CAUSES = (
    "the client ignores HTTP_PROXY/HTTPS_PROXY (Node's https and fetch, Java, aiohttp "
    "without trust_env); loopback hosts (127.0.0.1, localhost) bypass proxies in Go, Ruby "
    "and Java whatever NO_PROXY says; or NO_PROXY/no_proxy names the host "
    "(see docs/clients.md)"
)
"""The usual reasons a command's requests never reach the proxy."""


def bypassed(summary: SessionSummary) -> bool:
    """True for a replay in which nothing reached the proxy although the cassette has
    interactions to serve (a run that folded in an interrupted recording, as
    ``replayproxy replay -c NAME -- true`` is advised to, did its job, even if the
    journal turned out damaged and was set aside)."""
    return (summary.mode is RecordMode.NONE and summary.cassette_size > 0
            and summary.requests == 0 and not summary.client_refusals
            and not summary.recovered and not summary.journals)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A run's exit code and why replayproxy failed a run whose command passed (each
    reason may name a setting as a field: see ``errors.word_settings``)."""

    exit_code: int
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def verdict(summary: SessionSummary, *, command_exit: int = 0,
            fail_on_unused: bool = False, command: bool = True) -> Verdict:
    """Judge a run from its summary and the exit code of the command it served
    (0 for a proxy served until stopped, ``command=False``: nothing reaching it is then
    no sign of a bypass)."""
    if command_exit != 0:
        return Verdict(command_exit)
    reasons = []
    if summary.unmatched:
        reasons.append("some requests were unmatched")
    if summary.unexpected_messages:
        reasons.append("some WebSocket messages were unexpected")
    if summary.leaks and not summary.leaks_written:
        reasons.append("interactions holding secrets were not recorded")
    if summary.unused and fail_on_unused:
        reasons.append("recorded interactions were never used ({fail_on_unused})")
    if summary.upstream_failures:
        n = summary.upstream_failures.total
        reasons.append(f"{n} upstream request{'s' if n != 1 else ''} failed while recording "
                       "(kept in the cassette as what the client got)")
    if summary.client_refusals:
        reasons.append("a client refused the proxy's certificate (it does not trust the "
                       "replayproxy CA)")
    if summary.errors:
        n = summary.errors.total
        reasons.append(f"replayproxy could not answer {n} request{'s' if n != 1 else ''} "
                       f"({summary.errors[0]})")
    if command and bypassed(summary):
        reasons.append("no request reached the proxy: the command bypassed it")
    return Verdict(1 if reasons else 0, tuple(reasons))
