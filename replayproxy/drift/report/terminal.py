"""The drift report in a terminal (rich): per endpoint its counts, then what to read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.console import Console
from rich.text import Text

from replayproxy.drift.findings import Severity
from replayproxy.drift.plan import Checked, DriftReport, Outcome
from replayproxy.drift.report.shared import (
    by_endpoint,
    count_text,
    findings_of,
    label,
    plural,
    status_text,
    summary_line,
)

__all__ = ["print_report"]

_STYLE = {Outcome.BREAKING: "bold red", Outcome.ERROR: "bold red", Outcome.CHANGED: "yellow",
          Outcome.PASSED: "green", Outcome.SKIPPED: "dim"}
_SEVERITY_STYLE = {Severity.BREAKING: "red", Severity.ADDITIVE: "yellow", Severity.NOISE: "dim"}


def _outcome_counts(checked: Iterable[Checked]) -> Text:
    counts = Counter(c.outcome for c in checked)
    text = Text()
    for o in Outcome:
        if counts[o]:
            if text:
                text.append(", ")
            text.append(count_text(counts[o], o), style=_STYLE[o])
    return text


def _interaction_line(c: Checked) -> Text:
    """``  stripe [3]  breaking  200 -> 200  GET https://...``: the URL last, as it may wrap;
    where it was sent, when another origin, on a line of its own."""
    line = Text("  ")
    line.append(label(c), style="dim")
    line.append("  ")
    line.append(c.outcome.value, style=_STYLE[c.outcome])
    if c.outcome not in (Outcome.SKIPPED, Outcome.ERROR):
        line.append(f"  {status_text(c.recorded)} -> {status_text(c.live)}", style="dim")
    line.append(f"  {c.method} {c.url}")
    if c.live_url and c.live_url != c.url:
        line.append(f"\n    sent to {c.live_url}", style="dim")
    return line


def print_report(console: Console, report: DriftReport, *, verbose: bool = False) -> None:
    """The terminal report: per endpoint its counts, then what is worth reading.

    Breaking (red) and additive (yellow) findings are listed under their interaction,
    errors with their message; noise and skipped requests are only counted unless
    ``verbose``, which also lists passing interactions. Styles only: a console that is
    not a terminal prints plain text. Ends with ``summary_line`` and the problems.
    """
    for endpoint, checked in by_endpoint(report.results):
        head = Text()
        head.append(endpoint, style="bold")
        head.append("  ")
        head.append_text(_outcome_counts(checked))
        noise = sum(1 for c in checked for f in c.findings if f.severity is Severity.NOISE)
        if noise and not verbose:
            head.append(f"  ({plural(noise, 'noise finding')})", style="dim")
        console.print(head, highlight=False)
        for c in checked:
            if c.outcome in (Outcome.PASSED, Outcome.SKIPPED) and not verbose:
                continue  # counted in the endpoint's line
            console.print(_interaction_line(c), highlight=False)
            if c.message:
                console.print(Text(f"    {c.message}", style=_STYLE[c.outcome]), highlight=False)
            severities = (*Severity,) if verbose else (Severity.BREAKING, Severity.ADDITIVE)
            for f in findings_of(c, *severities):
                console.print(Text(f"    {f.describe()}", style=_SEVERITY_STYLE[f.severity]),
                              highlight=False)
    code = report.exit_code()
    style = "bold red" if code else ("yellow" if report.counts()[Outcome.CHANGED] else "green")
    if report.results or report.problems:
        console.print()
    console.print(Text(summary_line(report), style=style), highlight=False)
    if report.updated:
        console.print(Text(f"re-recorded {plural(len(report.updated), 'interaction')}"),
                      highlight=False)
    for problem in report.problems:
        console.print(Text(f"problem: {problem}", style="red"), highlight=False)
