"""What every drift report shares: counts, the summary line, endpoint groups, labels.

Every format groups interactions by ``Checked.endpoint`` (ids in paths folded), worst
first, because drift is a property of an endpoint: ten charges missing ``amount`` are
one change, not ten. Only the report is read, so one run can be written in every form.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from replayproxy.drift.findings import Finding, Severity
from replayproxy.drift.plan import Checked, DriftReport, Outcome
from replayproxy.model import Response

__all__ = [
    "OUTCOME_RANK",
    "by_endpoint",
    "count_text",
    "counts_text",
    "findings_of",
    "label",
    "plural",
    "run_seconds",
    "run_text",
    "status_text",
    "summary_line",
    "when",
]

OUTCOME_RANK = {o: i for i, o in enumerate(Outcome)}


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 cassette``, ``2 cassettes``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def count_text(n: int, outcome: Outcome) -> str:
    """``2 breaking``, ``1 error``, ``3 errors``: outcomes are adjectives but for errors."""
    return plural(n, "error") if outcome is Outcome.ERROR else f"{n} {outcome}"


def run_seconds(report: DriftReport) -> float:
    """Wall time of the run; 0 when it has not been finished (``finished_at`` unset)."""
    if not report.finished_at:
        return 0.0
    return max(0.0, report.finished_at - report.started_at)


def counts_text(report: DriftReport) -> str:
    c = report.counts()
    return (f"{c[Outcome.BREAKING]} breaking, {c[Outcome.CHANGED]} changed, "
            f"{c[Outcome.PASSED]} passed, {plural(c[Outcome.ERROR], 'error')}, "
            f"{c[Outcome.SKIPPED]} skipped")


def run_text(report: DriftReport) -> str:
    return f"{plural(len(report.cassettes), 'cassette')}, {run_seconds(report):.1f} s"


def summary_line(report: DriftReport) -> str:
    """``drift: 2 breaking, 1 changed, 5 passed, 0 errors, 1 skipped (3 cassettes, 4.2 s)``"""
    return f"drift: {counts_text(report)} ({run_text(report)})"


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def by_endpoint(results: Iterable[Checked]) -> list[tuple[str, list[Checked]]]:
    """Endpoints worst first (then by name), their interactions worst first (then as run)."""
    groups: dict[str, list[Checked]] = {}
    for r in results:
        groups.setdefault(r.endpoint, []).append(r)
    for checked in groups.values():
        checked.sort(key=lambda c: OUTCOME_RANK[c.outcome])
    return sorted(groups.items(), key=lambda kv: (OUTCOME_RANK[kv[1][0].outcome], kv[0]))


def findings_of(checked: Checked, *severities: Severity) -> list[Finding]:
    return sorted((f for f in checked.findings if f.severity in severities),
                  key=lambda f: f.severity.rank)


def status_text(response: Response | None) -> str:
    return "—" if response is None else str(response.status)


def label(checked: Checked) -> str:
    """``stripe [3]``: where the interaction is recorded (numbered from 1, as
    ``replayproxy cassette show stripe -i 3`` shows it)."""
    return f"{checked.cassette} [{checked.number}]"
