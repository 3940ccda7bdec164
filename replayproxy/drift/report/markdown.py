"""The drift report as Markdown: a pull-request comment, short even for big runs.

Rows are capped per endpoint and identical findings of several interactions folded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from replayproxy.drift.findings import Finding, Severity
from replayproxy.drift.plan import DriftReport, Outcome
from replayproxy.drift.report.shared import (
    by_endpoint,
    findings_of,
    label,
    plural,
    run_text,
    status_text,
)

__all__ = ["markdown"]

_MD_ROWS = 20
"""Table rows per endpoint before ``… and N more``: a comment stays readable."""
_MD_ENDPOINTS = 25
_MD_LIST = 20


def _md_escape(text: str) -> str:
    """Text safe in a table cell: no HTML, no cell break, no line break."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "\\|")
    return re.sub(r"\r\n|\r|\n", "<br>", text)


def _md_code(text: str, cell: bool = True) -> str:
    """A code span (``[*]`` and ``_`` stay literal) fenced longer than any backtick run;
    in a table ``|`` is escaped even there (GitHub splits cells before code spans)."""
    text = re.sub(r"\r\n|\r|\n", " ", text)
    if cell:
        text = text.replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_table(findings: Sequence[Finding], limit: int = _MD_ROWS) -> list[str]:
    """A findings table, identical findings of several interactions as one row ``×N``."""
    rows = Counter((f.severity, f.kind, f.location, f.recorded_text, f.live_text)
                   for f in findings)
    ordered = sorted(rows.items(), key=lambda kv: kv[0][0].rank)
    out = ["| Severity | Kind | Where | Recorded | Live |", "| --- | --- | --- | --- | --- |"]
    for (severity, kind, where, rec, live), n in ordered[:limit]:
        sev = f"**{severity}**" if severity is Severity.BREAKING else str(severity)
        times = f" ×{n}" if n > 1 else ""
        out.append(f"| {sev} | {_md_code(kind)} | {_md_code(where)}{times} | "
                   f"{_md_code(rec)} | {_md_code(live)} |")
    if len(ordered) > limit:
        out.append(f"| … and {len(ordered) - limit} more | | | | |")
    return out


def _md_section(title: str, report: DriftReport, outcome: Outcome,
                severities: tuple[Severity, ...]) -> list[str]:
    groups = [(ep, [c for c in checked if c.outcome is outcome])
              for ep, checked in by_endpoint(report.results)]
    groups = [(ep, checked) for ep, checked in groups if checked]
    if not groups:
        return []
    out = [f"### {title} ({sum(len(c) for _, c in groups)})", ""]
    for endpoint, checked in groups[:_MD_ENDPOINTS]:
        labels = ", ".join(
            _md_code(f"{label(c)} {status_text(c.recorded)}→{status_text(c.live)}", False)
            for c in checked[:8])
        more = f" and {len(checked) - 8} more" if len(checked) > 8 else ""
        out += [f"#### {_md_code(endpoint, False)}", "",
                f"{plural(len(checked), 'interaction')}: {labels}{more}", ""]
        out += _md_table([f for c in checked for f in findings_of(c, *severities)])
        out.append("")
    if len(groups) > _MD_ENDPOINTS:
        out += [f"… and {len(groups) - _MD_ENDPOINTS} more endpoints "
                "(see the HTML or JSON report).", ""]
    return out


def markdown(report: DriftReport) -> str:
    """A pull-request comment: verdict, counts, breaking and changed endpoints as tables.

    Findings are deduplicated per endpoint and capped at ``_MD_ROWS`` rows; errors are
    listed with their message; skipped requests and noise are folded in ``<details>``
    (noise never fails a check, but shows what was ignored as volatile).
    """
    counts = report.counts()
    incomplete = bool(report.problems or counts[Outcome.ERROR])
    if counts[Outcome.BREAKING]:
        verdict = "❌ breaking API drift" + (" (check incomplete)" if incomplete else "")
    elif incomplete:
        verdict = "⚠️ drift check incomplete"
    elif counts[Outcome.CHANGED]:
        verdict = "🟡 additive API drift only"
    else:
        verdict = "✅ no API drift"
    parts = [f"**{counts[Outcome.BREAKING]} breaking**", f"{counts[Outcome.CHANGED]} changed",
             f"{counts[Outcome.PASSED]} passed",
             (f"**{plural(counts[Outcome.ERROR], 'error')}**" if counts[Outcome.ERROR]
              else "0 errors"), f"{counts[Outcome.SKIPPED]} skipped"]
    out = [f"## replayproxy drift: {verdict}", "",
           f"{' · '.join(parts)} — {run_text(report)}", ""]
    if report.problems:
        out += ["**Problems**", ""]
        out += [f"- {_md_escape(p)}" for p in report.problems]
        out.append("")
    if report.updated:
        out += [f"Re-recorded {plural(len(report.updated), 'interaction')} (`--update`).", ""]
    out += _md_section("Breaking", report, Outcome.BREAKING,
                       (Severity.BREAKING, Severity.ADDITIVE))
    out += _md_section("Changed (additive only)", report, Outcome.CHANGED, (Severity.ADDITIVE,))
    errors = [r for r in report.results if r.outcome is Outcome.ERROR]
    if errors:
        out += [f"### Errors ({len(errors)})", ""]
        out += [f"- {_md_code(label(c), False)} {_md_code(f'{c.method} {c.url}', False)}: "
                f"{_md_escape(c.message)}" for c in errors[:_MD_LIST]]
        if len(errors) > _MD_LIST:
            out.append(f"- … and {len(errors) - _MD_LIST} more")
        out.append("")
    skipped = Counter(r.message for r in report.results if r.outcome is Outcome.SKIPPED)
    if skipped:
        out += [f"<details><summary>Skipped: {sum(skipped.values())}</summary>", ""]
        out += [f"- {_md_escape(reason or '(no reason given)')} ×{n}"
                for reason, n in skipped.most_common(_MD_LIST)]
        out += ["", "</details>", ""]
    noise = Counter((f.kind, f.location) for r in report.results
                    for f in r.findings if f.severity is Severity.NOISE)
    if noise:
        out += [f"<details><summary>Noise: {plural(sum(noise.values()), 'finding')} "
                "(volatile values, never fail)</summary>", "",
                "| Kind | Where | Count |", "| --- | --- | --- |"]
        out += [f"| {_md_code(kind)} | {_md_code(where)} | {n} |"
                for (kind, where), n in noise.most_common(_MD_ROWS)]
        if len(noise) > _MD_ROWS:
            out.append(f"| … and {len(noise) - _MD_ROWS} more | | |")
        out += ["", "</details>", ""]
    return "\n".join(out).rstrip("\n") + "\n"
