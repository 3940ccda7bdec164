"""How the CLI talks: log lines on stderr as ``replayproxy: …``, counts worded for people,
and the report printed when a proxy run ends."""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any

from replayproxy.model import RecordMode

if TYPE_CHECKING:
    from replayproxy.decision.session import SessionSummary

log = logging.getLogger("replayproxy")

PREFIX = "replayproxy: "


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 interaction``, ``2 interactions``, ``0 secrets``; ``nouns`` for irregular
    plurals."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_LINE = 2000
"""A log message longer than this loses its middle (a 1 MB URL is not echoed whole)."""


def terminal_safe(text: str, limit: int = MAX_LINE) -> str:
    """``text`` as it may reach a terminal: control characters a client sent (escape
    sequences, carriage returns) shown as ``\\xNN``, and shortened to ``limit``."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if len(text) > limit:
        cut = len(text) - limit
        text = f"{text[:limit // 2]}…[{cut} characters]…{text[-limit // 2:]}"
    return text


class _Prefixed(logging.Formatter):
    """``replayproxy: MESSAGE``, once: a message that already names replayproxy (the
    unmatched text, written for a client's 502 body too) keeps its own prefix. Text that
    came from clients is made terminal-safe (``terminal_safe``)."""

    def format(self, record: logging.LogRecord) -> str:
        message = terminal_safe(super().format(record))
        return message if message.startswith(PREFIX) else PREFIX + message


def _not_reported_elsewhere(record: logging.LogRecord) -> bool:
    """Drop mitmproxy's own bind-failure lines (the message, then an empty one): the
    ProxyStartError we raise says the same on one line, with the fix."""
    if not record.name.startswith("mitmproxy"):
        return True
    message = record.getMessage()
    return bool(message.strip()) and "failed to listen" not in message


def setup_logging(quiet: bool) -> None:
    """Send replayproxy's log (and mitmproxy's errors) to stderr, one prefixed line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Prefixed("%(message)s"))
    handler.addFilter(_not_reported_elsewhere)
    ours = logging.getLogger("replayproxy")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.WARNING if quiet else logging.INFO)
    ours.propagate = False
    theirs = logging.getLogger("mitmproxy")
    theirs.handlers[:] = [handler]
    theirs.setLevel(logging.ERROR)
    theirs.propagate = False


def console() -> Any:
    """A rich console on stdout; in a CI log (not a terminal) long lines stay whole
    rather than being wrapped at 80 columns."""
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(soft_wrap=True)


def report_run(summary: SessionSummary, fail_on_unused: bool = False, *,
               command: bool = True) -> None:
    """Log what a proxy run did: counts, unmatched requests, leaks, unused recordings,
    failures (upstream, client trust), a bypassed proxy (``command``: a command ran)."""
    from replayproxy.cassette.view import summary_line
    from replayproxy.decision.verdict import BYPASS_CAUSES, bypassed
    from replayproxy.matching.diagnostics import render_candidates

    if summary.mode is RecordMode.ALL and summary.recorded == 0:
        if summary.connections == 0:
            log.warning(
                "nothing was recorded, cassette %s left as it was: no connection reached "
                "the proxy; does the command send its requests through "
                "HTTP_PROXY/HTTPS_PROXY?", summary.path)
        else:
            log.warning("nothing was recorded, cassette %s left as it was (%s reached the "
                        "proxy; see below)", summary.path,
                        plural(summary.requests, "request"))
    else:
        log.info("cassette %s: %d replayed, %d recorded", summary.path, summary.replayed,
                 summary.recorded)
    if command and bypassed(summary):
        log.error("no request reached the proxy although cassette %s has %s: the command "
                  "bypassed the proxy. Usual causes: %s", summary.cassette,
                  plural(summary.cassette_size, "interaction"), BYPASS_CAUSES)
    if summary.upstream_failures:
        log.error("%s failed upstream while recording (recorded as what the client got, "
                  "and replayed the same way):", plural(summary.upstream_failures.total,
                                                        "request"))
        for failure in summary.upstream_failures[:50]:
            log.error("  %s", failure.line)
        if summary.upstream_failures.total > 50:
            log.error("  … and %d more", summary.upstream_failures.total - 50)
    if summary.replayed_failures:
        log.warning("%s answered with a recorded upstream failure (the same 502, or no "
                    "answer for a timeout); re-record once the upstream works:",
                    plural(summary.replayed_failures.total, "request"))
        for failure in summary.replayed_failures[:20]:
            log.warning("  %s %s: %s", failure.request.method, failure.request.url,
                        failure.message)
    for refusal in summary.client_refusals[:20]:
        log.error("%s", refusal.line)
    if summary.unused_routes:
        log.warning("%s in the configuration matched no request in this run (check host, "
                    "port and path: a route is '[METHOD ]HOST[:PORT]/PATH', see "
                    "docs/matching.md#routes):",
                    plural(len(summary.unused_routes), "route"))
        for name in summary.unused_routes:
            log.warning("  %s", name)
    if summary.unmatched:
        log.warning("%s matched nothing in cassette %s:",
                    plural(summary.unmatched.total, "request"), summary.cassette)
        for unmatched in summary.unmatched[:50]:
            log.warning("  unmatched: %s %s", unmatched.request.method, unmatched.request.url)
            for line in render_candidates(list(unmatched.closest[:1])):
                log.warning("    %s", line)
        if summary.unmatched.total > 50:
            log.warning("  … and %d more", summary.unmatched.total - 50)
    if summary.unexpected_messages:
        log.warning("%s sent over a WebSocket %s not in cassette %s:",
                    plural(summary.unexpected_messages.total, "client message"),
                    "was" if summary.unexpected_messages.total == 1 else "were",
                    summary.cassette)
        for unexpected in summary.unexpected_messages[:50]:
            first, *rest = unexpected.message.splitlines()[:-1]
            log.warning("  unexpected: %s", first.removeprefix("replayproxy: "))
            for line in rest:
                log.warning("    %s", line.strip())
    if summary.leaks:
        verb = "written anyway (on_leak = \"warn\")" if summary.leaks_written else \
            "NOT written"
        log.error("%s still held secrets after redaction and %s %s:",
                  plural(summary.leaks.total, "interaction"),
                  "was" if summary.leaks.total == 1 else "were", verb)
        for request, findings in summary.leaks[:20]:
            log.error("  %s %s", request.method, request.url)
            for finding in findings[:5]:
                log.error("    %s: %s (%s)", finding.location, finding.rule, finding.excerpt)
        log.error("add a rule for them in [tool.replayproxy.redact] (see docs/redaction.md)")
    if summary.unused:
        level = logging.WARNING if fail_on_unused else logging.INFO
        log.log(level, "%s in cassette %s %s never used:",
                plural(len(summary.unused), "recorded interaction"), summary.cassette,
                "was" if len(summary.unused) == 1 else "were")
        for position, it in zip(summary.unused[:20], summary.unused_interactions, strict=False):
            log.log(level, "  %s", summary_line(position + 1, it) if it is not None
                    else f"#{position + 1} (a damaged entry)")
        if len(summary.unused) > 20:
            log.log(level, "  … and %d more", len(summary.unused) - 20)


def interrupted_note(name: str, journals: int) -> str:
    """What a read-only command says about an interrupted recording it left alone."""
    return (f"{PREFIX}cassette {name!r} also has an interrupted recording "
            f"({plural(journals, 'journal')}) that is not folded in and not shown here; "
            f"fold it in with `replayproxy replay -c {name} -- true`")
