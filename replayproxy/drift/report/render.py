"""Drift reports: one ``DriftReport`` for CI, a pull request, a browser and a terminal.

``junit_xml`` gives CI one test case per checked interaction: breaking drift is a
failure, an interaction that could not be checked and a problem of the run are errors,
a request not re-sent is skipped, so the usual test tab shows what broke. ``markdown``
is a pull-request comment, short even for big runs (rows capped per endpoint).
``html`` is one self-contained page (no external resources, no script) with the
recorded and live responses side by side, bodies decoded and diffed line by line.
``write_json`` is the machine-readable form and ``print_report`` the terminal view.

Every format groups interactions by ``Checked.endpoint`` (ids in paths folded), worst
first, because drift is a property of an endpoint: ten charges missing ``amount`` are
one change, not ten. Only the report is read, so one run can be written in every form.
"""

from __future__ import annotations

import difflib
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from rich.console import Console
from rich.text import Text

from replayproxy.cassette.view import format_size
from replayproxy.codec import content_encodings, decode_body
from replayproxy.drift.compare import Finding, Path, Severity, json_path
from replayproxy.drift.plan import Checked, DriftReport, Outcome
from replayproxy.model import Response, header_value

__all__ = ["html", "junit_xml", "markdown", "print_report", "summary_line", "write_json"]

_OUTCOME_RANK = {o: i for i, o in enumerate(Outcome)}


# -- shared -----------------------------------------------------------------------------


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _count(n: int, outcome: Outcome) -> str:
    """``2 breaking``, ``1 error``, ``3 errors``: outcomes are adjectives but for errors."""
    return _plural(n, "error") if outcome is Outcome.ERROR else f"{n} {outcome}"


def _duration(report: DriftReport) -> float:
    """Wall time of the run; 0 when it has not been finished (``finished_at`` unset)."""
    if not report.finished_at:
        return 0.0
    return max(0.0, report.finished_at - report.started_at)


def _counts_text(report: DriftReport) -> str:
    c = report.counts()
    return (f"{c[Outcome.BREAKING]} breaking, {c[Outcome.CHANGED]} changed, "
            f"{c[Outcome.PASSED]} passed, {_plural(c[Outcome.ERROR], 'error')}, "
            f"{c[Outcome.SKIPPED]} skipped")


def _run_text(report: DriftReport) -> str:
    return f"{_plural(len(report.cassettes), 'cassette')}, {_duration(report):.1f} s"


def summary_line(report: DriftReport) -> str:
    """``drift: 2 breaking, 1 changed, 5 passed, 0 errors, 1 skipped (3 cassettes, 4.2 s)``"""
    return f"drift: {_counts_text(report)} ({_run_text(report)})"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _by_endpoint(results: Iterable[Checked]) -> list[tuple[str, list[Checked]]]:
    """Endpoints worst first (then by name), their interactions worst first (then as run)."""
    groups: dict[str, list[Checked]] = {}
    for r in results:
        groups.setdefault(r.endpoint, []).append(r)
    for checked in groups.values():
        checked.sort(key=lambda c: _OUTCOME_RANK[c.outcome])
    return sorted(groups.items(), key=lambda kv: (_OUTCOME_RANK[kv[1][0].outcome], kv[0]))


def _findings(checked: Checked, *severities: Severity) -> list[Finding]:
    return sorted((f for f in checked.findings if f.severity in severities),
                  key=lambda f: f.severity.rank)


def _status(response: Response | None) -> str:
    return "—" if response is None else str(response.status)


def _label(checked: Checked) -> str:
    """``stripe [3]``: where the interaction is recorded."""
    return f"{checked.cassette} [{checked.index}]"


# -- JUnit XML --------------------------------------------------------------------------

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _x(text: str) -> str:
    """Text XML 1.0 can hold: ElementTree writes control characters as they are, which
    makes a document no parser accepts (a header value or body key can carry them)."""
    return _XML_ILLEGAL.sub("\ufffd", text)


def _finding_lines(checked: Checked) -> str:
    lines = [f.describe() for f in _findings(checked, *Severity)]
    lines.append(f"recorded: {checked.method} {checked.url} -> {_status(checked.recorded)}")
    if checked.live is not None or checked.live_url:
        lines.append(f"live: {checked.method} {checked.live_url or checked.url} -> "
                     f"{_status(checked.live)}")
    return _x("\n".join(lines))


def _testcase(suite: ET.Element, checked: Checked) -> None:
    case = ET.SubElement(suite, "testcase", classname=_x(f"drift.{checked.cassette}"),
                         name=_x(f"{checked.endpoint} [{checked.index}]"),
                         time=f"{checked.elapsed:.3f}")
    if checked.outcome is Outcome.BREAKING:
        broken = _findings(checked, Severity.BREAKING)
        first = broken[0].describe() if broken else checked.message
        failure = ET.SubElement(case, "failure", type="breaking",
                                message=_x(f"{len(broken)} breaking: {first}"))
        failure.text = _finding_lines(checked)
    elif checked.outcome is Outcome.ERROR:
        error = ET.SubElement(case, "error", type="error", message=_x(checked.message))
        error.text = _x(f"{checked.message}\n{checked.method} {checked.url}")
    elif checked.outcome is Outcome.SKIPPED:
        ET.SubElement(case, "skipped", message=_x(checked.message))
    elif checked.findings:  # changed, or passed with noise: shown, not failing
        ET.SubElement(case, "system-out").text = _finding_lines(checked)


def _suite_counts(suite: ET.Element, tests: int, failures: int, errors: int, skipped: int,
                  seconds: float) -> None:
    for key, value in (("tests", tests), ("failures", failures), ("errors", errors),
                       ("skipped", skipped)):
        suite.set(key, str(value))
    suite.set("time", f"{seconds:.3f}")


def junit_xml(report: DriftReport) -> bytes:
    """JUnit XML: a test suite per cassette and a test case per checked interaction.

    Test cases are named ``GET host/v1/charges/{id} [3]`` (endpoint and interaction
    index) with class ``drift.CASSETTE``. Only breaking drift fails; additive and noise
    findings of passing cases go to ``system-out``. ``report.problems`` (a missing
    cassette) become errors in a suite named ``replayproxy drift``, so CI shows them.
    """
    stamp = datetime.fromtimestamp(report.started_at, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    root = ET.Element("testsuites", name="replayproxy drift")
    totals = Counter[str]()
    if report.problems:
        suite = ET.SubElement(root, "testsuite", name="replayproxy drift", timestamp=stamp)
        for i, problem in enumerate(report.problems, 1):
            short = problem if len(problem) <= 100 else problem[:99] + "…"
            case = ET.SubElement(suite, "testcase", classname="drift",
                                 name=_x(f"problem {i}: {short}"), time="0.000")
            ET.SubElement(case, "error", type="problem", message=_x(problem)).text = _x(problem)
        _suite_counts(suite, len(report.problems), 0, len(report.problems), 0, 0.0)
        totals.update(tests=len(report.problems), errors=len(report.problems))
    by_cassette: dict[str, list[Checked]] = {name: [] for name in report.cassettes}
    for r in report.results:
        by_cassette.setdefault(r.cassette, []).append(r)
    for cassette, checked in by_cassette.items():
        suite = ET.SubElement(root, "testsuite", name=_x(f"replayproxy drift: {cassette}"),
                              timestamp=stamp)
        for c in checked:
            _testcase(suite, c)
        outcomes = Counter(c.outcome for c in checked)
        _suite_counts(suite, len(checked), outcomes[Outcome.BREAKING], outcomes[Outcome.ERROR],
                      outcomes[Outcome.SKIPPED], sum(c.elapsed for c in checked))
        totals.update(tests=len(checked), failures=outcomes[Outcome.BREAKING],
                      errors=outcomes[Outcome.ERROR], skipped=outcomes[Outcome.SKIPPED])
    _suite_counts(root, totals["tests"], totals["failures"], totals["errors"],
                  totals["skipped"], _duration(report))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


# -- Markdown ---------------------------------------------------------------------------

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
              for ep, checked in _by_endpoint(report.results)]
    groups = [(ep, checked) for ep, checked in groups if checked]
    if not groups:
        return []
    out = [f"### {title} ({sum(len(c) for _, c in groups)})", ""]
    for endpoint, checked in groups[:_MD_ENDPOINTS]:
        labels = ", ".join(_md_code(f"{_label(c)} {_status(c.recorded)}→{_status(c.live)}", False)
                           for c in checked[:8])
        more = f" and {len(checked) - 8} more" if len(checked) > 8 else ""
        out += [f"#### {_md_code(endpoint, False)}", "",
                f"{_plural(len(checked), 'interaction')}: {labels}{more}", ""]
        out += _md_table([f for c in checked for f in _findings(c, *severities)])
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
             (f"**{_plural(counts[Outcome.ERROR], 'error')}**" if counts[Outcome.ERROR]
              else "0 errors"), f"{counts[Outcome.SKIPPED]} skipped"]
    out = [f"## replayproxy drift: {verdict}", "",
           f"{' · '.join(parts)} — {_run_text(report)}", ""]
    if report.problems:
        out += ["**Problems**", ""]
        out += [f"- {_md_escape(p)}" for p in report.problems]
        out.append("")
    if report.updated:
        out += [f"Re-recorded {_plural(len(report.updated), 'interaction')} (`--update`).", ""]
    out += _md_section("Breaking", report, Outcome.BREAKING,
                       (Severity.BREAKING, Severity.ADDITIVE))
    out += _md_section("Changed (additive only)", report, Outcome.CHANGED, (Severity.ADDITIVE,))
    errors = [r for r in report.results if r.outcome is Outcome.ERROR]
    if errors:
        out += [f"### Errors ({len(errors)})", ""]
        out += [f"- {_md_code(_label(c), False)} {_md_code(f'{c.method} {c.url}', False)}: "
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
        out += [f"<details><summary>Noise: {_plural(sum(noise.values()), 'finding')} "
                "(volatile values, never fail)</summary>", "",
                "| Kind | Where | Count |", "| --- | --- | --- |"]
        out += [f"| {_md_code(kind)} | {_md_code(where)} | {n} |"
                for (kind, where), n in noise.most_common(_MD_ROWS)]
        if len(noise) > _MD_ROWS:
            out.append(f"| … and {len(noise) - _MD_ROWS} more | | |")
        out += ["", "</details>", ""]
    return "\n".join(out).rstrip("\n") + "\n"


# -- HTML -------------------------------------------------------------------------------

_BODY_LIMIT = 20_000
"""Characters of a (pretty) body shown; the rest is cut with a note."""
_PAGE_BODY_BUDGET = 5_000_000
"""Body characters in one page; past it, bodies of passing interactions are left out so a
run of thousands of interactions still opens in a browser."""
_CONTEXT = 3
"""Unchanged lines kept around a change before the rest is folded away."""
_FOLD_MIN = 6
_FOLD_WHEN = 40
"""Only bodies longer than this many lines fold unchanged runs."""


@dataclass(slots=True)
class _Shown:
    """One side of the side-by-side view, as text lines."""

    head: list[str]
    body: list[str]
    placeholder: str = ""
    """Shown instead of the body: empty, binary, undecodable or left out."""
    meta: str = ""
    cut: int = 0
    """Characters of the body not shown."""
    paths: list[str] = field(default_factory=list)
    """The JSON path of each body line (JSON bodies only)."""


def _pretty(doc: Any) -> tuple[list[str], list[str]]:
    """``json.dumps(doc, indent=2)`` as lines, with the JSON path (``$.items[*].amount``,
    as in findings) each line shows, so a finding's lines can be found exactly."""
    lines: list[str] = []
    paths: list[str] = []

    def emit(value: Any, depth: int, prefix: str, path: Path, comma: str) -> None:
        pad, where = "  " * depth, json_path(path)
        children: list[tuple[str, Any, Path]]
        if isinstance(value, dict) and value:
            opening, closing = "{", "}"
            children = [(json.dumps(k, ensure_ascii=False) + ": ", v, (*path, k))
                        for k, v in value.items()]
        elif isinstance(value, list) and value:
            opening, closing = "[", "]"
            children = [("", v, (*path, None)) for v in value]
        else:
            lines.append(f"{pad}{prefix}{json.dumps(value, ensure_ascii=False)}{comma}")
            paths.append(where)
            return
        lines.append(f"{pad}{prefix}{opening}")
        paths.append(where)
        for i, (key, child, child_path) in enumerate(children):
            emit(child, depth + 1, key, child_path, "," if i < len(children) - 1 else "")
        lines.append(f"{pad}{closing}{comma}")
        paths.append(where)

    emit(doc, 0, "", (), "")
    return lines, paths


def _body_text(decoded: bytes, content_type: str) -> str | tuple[list[str], list[str]] | None:
    """The body for people: JSON pretty (indent 2) as lines and their paths, text as it
    is; None for binary."""
    start = decoded.lstrip()[:1]
    if "json" in content_type or start in (b"{", b"["):
        try:
            return _pretty(json.loads(decoded))
        except (ValueError, RecursionError):
            pass
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        if not content_type.startswith("text/"):
            return None
        text = decoded.decode("utf-8", "replace")
    if "\x00" in text[:4000]:
        return None
    sample = text[:2000]
    weird = sum(1 for ch in sample if not ch.isprintable() and ch not in "\r\n\t")
    if weird > len(sample) // 50:
        return None
    return text


def _shown(response: Response, with_body: bool) -> _Shown:
    head = [f"{response.http_version} {response.status} {response.reason}".rstrip()]
    head += [f"{name}: {value}" for name, value in response.headers]
    content_type = (header_value(response.headers, "content-type") or "").lower()
    encodings = content_encodings(response.headers)
    meta = [content_type.split(";")[0].strip() or "no content-type",
            format_size(len(response.body))]
    if encodings:
        meta.append(", ".join(encodings))
    shown = _Shown(head, [], meta=" · ".join(meta))
    if not response.body:
        shown.placeholder = "(empty body)"
        return shown
    if not with_body:
        shown.placeholder = "(body left out: the page is already large)"
        return shown
    decoded = decode_body(response.body, response.headers)
    if decoded is None:
        shown.placeholder = (f"({len(response.body)} bytes; could not undo "
                             f"{', '.join(encodings)})")
        return shown
    text = _body_text(decoded, content_type)
    if text is None:
        shown.placeholder = f"({len(decoded)} bytes of binary)"
        return shown
    if isinstance(text, tuple):
        lines, paths = text
        total = kept = 0
        for line in lines:
            total += len(line) + 1
            if total <= _BODY_LIMIT:
                kept += 1
        shown.body, shown.paths = lines[:kept], paths[:kept]
        room = _BODY_LIMIT - sum(len(line) + 1 for line in shown.body)
        if kept < len(lines) and room > 200:  # a long value: show its start
            shown.body.append(lines[kept][:room] + "…")
            shown.paths.append(paths[kept])
        shown.cut = max(0, total - sum(len(line) + 1 for line in shown.body))
        return shown
    if len(text) > _BODY_LIMIT:
        end = text.rfind("\n", 0, _BODY_LIMIT)
        end = end if end > _BODY_LIMIT // 2 else _BODY_LIMIT
        shown.cut = len(text) - end
        text = text[:end]
    shown.body = text.splitlines()
    return shown


@dataclass(slots=True)
class _Marks:
    """Where findings point, so the lines showing them can be highlighted."""

    status: Severity | None = None
    headers: dict[str, Severity] = field(default_factory=dict)
    paths: dict[str, Severity] = field(default_factory=dict)
    """``$.items[*].amount`` → severity: body lines showing that path."""

    @classmethod
    def of(cls, findings: Iterable[Finding]) -> _Marks:
        marks = cls()
        for f in sorted(findings, key=lambda f: f.severity.rank, reverse=True):
            if f.location == "status":
                marks.status = f.severity
            elif f.location.startswith("header "):
                marks.headers[f.location[len("header "):].lower()] = f.severity
            elif f.location.startswith("body $"):
                marks.paths[f.location[len("body "):]] = f.severity
        return marks

    def head(self, number: int, line: str) -> Severity | None:
        if number == 0:
            return self.status
        return self.headers.get(line.split(":", 1)[0].strip().lower())

    def body(self, paths: Sequence[str]) -> _Mark:
        """Marks the lines of a body whose ``paths`` are known (JSON), else none."""
        def mark(number: int, _line: str) -> Severity | None:
            return self.paths.get(paths[number]) if number < len(paths) else None
        return mark


_Mark = Callable[[int, str], Severity | None]


def _cell(number: int | None, text: str | None, kind: str, mark: Severity | None,
          right: bool = False) -> str:
    side = " r" if right else ""
    if text is None:
        return f'<td class="n none{side}"></td><td class="c none"></td>'
    hit = f" hit-{mark.value}" if mark else ""
    return (f'<td class="n{side}">{number}</td>'
            f'<td class="c {kind}{hit}">{escape(text) or " "}</td>')


@dataclass(slots=True)
class _Row:
    left: int | None
    right: int | None
    kind: str
    """``eq``, ``chg`` (the line changed), ``del`` (recorded only), ``add`` (live only)."""
    keep: bool = True


def _diff_rows(a: Sequence[str], b: Sequence[str], amark: _Mark, bmark: _Mark,
               fold: bool) -> str:
    """Aligned rows of two texts; unchanged runs of long texts fold into ``<details>``.

    Marked lines fold too: ``$.items[*].amount`` marks the line of every element, and
    what a finding is about shows in the changed lines, which never fold.
    """
    rows: list[_Row] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            n = i2 - i1
            for k in range(n):
                near = ((k < _CONTEXT and (i1 > 0 or j1 > 0))
                        or (n - k <= _CONTEXT and (i2 < len(a) or j2 < len(b))))
                rows.append(_Row(i1 + k, j1 + k, "eq", keep=near or not fold))
        else:
            for k in range(max(i2 - i1, j2 - j1)):
                left = i1 + k if i1 + k < i2 else None
                right = j1 + k if j1 + k < j2 else None
                rows.append(_Row(left, right, "chg" if tag == "replace" else tag[:3]))

    def render(row: _Row) -> str:
        lk = "del" if row.kind in ("chg", "del") else "eq"
        rk = "add" if row.kind in ("chg", "ins") else "eq"
        left = (_cell(None, None, "", None) if row.left is None else
                _cell(row.left + 1, a[row.left], lk, amark(row.left, a[row.left])))
        right = (_cell(None, None, "", None, True) if row.right is None else
                 _cell(row.right + 1, b[row.right], rk, bmark(row.right, b[row.right]), True))
        return f"<tr>{left}{right}</tr>"

    out: list[str] = []
    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and not rows[j].keep:
            j += 1
        if j - i >= _FOLD_MIN:
            inner = "".join(render(r) for r in rows[i:j])
            out.append(f'<tr class="fold"><td colspan="4"><details><summary>'
                       f"{j - i} unchanged lines</summary><table class=\"sbs\">{_COLS}"
                       f"<tbody>{inner}</tbody></table></details></td></tr>")
            i = j
        elif j > i:
            out += [render(r) for r in rows[i:j]]
            i = j
        else:
            out.append(render(rows[i]))
            i += 1
    return "".join(out)


def _one_side_rows(lines: Sequence[str], mark: _Mark, right: bool) -> str:
    """Rows of one response when the other is missing: nothing to diff against."""
    out = []
    for n, line in enumerate(lines):
        here = _cell(n + 1, line, "eq", mark(n, line), right)
        there = _cell(None, None, "", None, not right)
        out.append(f"<tr>{there}{here}</tr>" if right else f"<tr>{here}{there}</tr>")
    return "".join(out)


_COLS = '<colgroup><col class="ln"><col><col class="ln"><col></colgroup>'


def _note_cells(left: str, right: str) -> str:
    return (f'<td colspan="2" class="note">{escape(left)}</td>'
            f'<td colspan="2" class="note r">{escape(right)}</td>')


def _side_by_side(checked: Checked, with_body: bool) -> str:
    rec = _shown(checked.recorded, with_body) if checked.recorded else None
    live = _shown(checked.live, with_body) if checked.live else None
    marks = _Marks.of(checked.findings)
    empty = _Shown([], [])
    a, b = rec or empty, live or empty
    live_title = "Live"
    if checked.live_url and checked.live_url != checked.url:
        live_title += f" · {checked.live_url}"
    if live is None:
        live_title += " · no response"
    out = [f'<table class="sbs">{_COLS}<thead><tr><th colspan="2">Recorded · '
           f'{escape(checked.url)}</th><th colspan="2" class="r">{escape(live_title)}'
           "</th></tr></thead><tbody>"]
    out.append(f'<tr class="sec">{_note_cells("status and headers", "status and headers")}</tr>')
    if rec and live:
        out.append(_diff_rows(a.head, b.head, marks.head, marks.head, fold=False))
    else:
        out.append(_one_side_rows((rec or live or empty).head, marks.head, right=rec is None))
    metas = [f"body · {s.meta}" if s.meta else "" for s in (a, b)]
    out.append(f'<tr class="sec">{_note_cells(*metas)}</tr>')
    if a.placeholder or b.placeholder:
        out.append(f"<tr>{_note_cells(a.placeholder, b.placeholder)}</tr>")
    if rec and live and a.body and b.body:
        long = max(len(a.body), len(b.body)) > _FOLD_WHEN
        out.append(_diff_rows(a.body, b.body, marks.body(a.paths), marks.body(b.paths),
                              fold=long))
    else:
        if a.body:
            out.append(_one_side_rows(a.body, marks.body(a.paths), right=False))
        if b.body:
            out.append(_one_side_rows(b.body, marks.body(b.paths), right=True))
    if a.cut or b.cut:
        cut = [f"… {s.cut:,} more characters not shown" if s.cut else "" for s in (a, b)]
        out.append(f'<tr class="cut">{_note_cells(*cut)}</tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _findings_table(findings: Sequence[Finding]) -> str:
    rows = "".join(
        f'<tr class="f-{f.severity.value}"><td><span class="pill s-{f.severity.value}">'
        f"{escape(f.severity.value)}</span></td><td><code>{escape(f.kind.value)}</code></td>"
        f"<td><code>{escape(f.location)}</code></td>"
        f"<td><code>{escape(f.recorded_text)}</code></td>"
        f"<td><code>{escape(f.live_text)}</code></td></tr>"
        for f in sorted(findings, key=lambda f: f.severity.rank))
    return ('<table class="findings"><thead><tr><th>Severity</th><th>Kind</th><th>Where</th>'
            f"<th>Recorded</th><th>Live</th></tr></thead><tbody>{rows}</tbody></table>")


def _severity_pills(findings: Sequence[Finding]) -> str:
    counts = Counter(f.severity for f in findings)
    return "".join(f'<span class="pill s-{s.value}" title="{s.value} findings">'
                   f"{counts[s]} {s.value}</span>" for s in Severity if counts[s])


_OPEN = frozenset({Outcome.BREAKING, Outcome.ERROR, Outcome.CHANGED})
_BODIES_OPEN = frozenset({Outcome.BREAKING, Outcome.ERROR})


def _card(checked: Checked, anchor: str, with_body: bool) -> str:
    o = checked.outcome.value
    status = f"{_status(checked.recorded)} → {_status(checked.live)}"
    if checked.outcome is Outcome.SKIPPED:
        status = _status(checked.recorded)
    out = [f'<details class="card k-{o}" id="{anchor}"'
           f'{" open" if checked.outcome in _OPEN else ""}><summary>'
           f'<span class="badge o-{o}">{escape(o)}</span>'
           f'<span class="method">{escape(checked.method)}</span>'
           f'<span class="url" title="{escape(checked.url)}">{escape(checked.url)}</span>'
           f'<span class="pills">{_severity_pills(checked.findings)}</span>'
           f'<span class="status">{escape(status)}</span>'
           f'<span class="where">{escape(_label(checked))}</span></summary>'
           '<div class="card-body">']
    facts = [f"<span>cassette <code>{escape(checked.cassette)}</code> · interaction "
             f"{checked.index}</span>", f"<span>key <code>{escape(checked.key)}</code></span>"]
    if checked.live_url and checked.live_url != checked.url:
        facts.append(f"<span>sent to <code>{escape(checked.live_url)}</code></span>")
    if checked.elapsed:
        facts.append(f"<span>{checked.elapsed * 1000:.0f} ms</span>")
    if checked.repeated:
        facts.append("<span>sent twice to learn volatile values</span>")
    out.append(f'<div class="facts">{"".join(facts)}</div>')
    if checked.message:
        out.append(f'<div class="msg o-{o}">{escape(checked.message)}</div>')
    if checked.findings:
        out.append(_findings_table(checked.findings))
    if checked.recorded or checked.live:
        opened = " open" if checked.outcome in _BODIES_OPEN else ""
        out.append(f'<details class="bodies"{opened}><summary>Recorded and live responses'
                   f"</summary>{_side_by_side(checked, with_body)}</details>")
    out.append("</div></details>")
    return "".join(out)


def _outcome_pills(checked: Iterable[Checked]) -> str:
    counts = Counter(c.outcome for c in checked)
    return "".join(f'<span class="pill o-{o.value}">{escape(_count(counts[o], o))}</span>'
                   for o in Outcome if counts[o])


def _endpoint_title(endpoint: str) -> str:
    method, _, rest = endpoint.partition(" ")
    return (f'<span class="method">{escape(method)}</span>'
            f'<span class="path">{escape(rest or method)}</span>')


_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;
--breaking:#cf222e;--breaking-bg:#ffebe9;--error:#8250df;--error-bg:#fbefff;
--changed:#9a6700;--changed-bg:#fff8c5;--additive:#9a6700;--additive-bg:#fff8c5;
--passed:#1a7f37;--passed-bg:#dafbe1;--skipped:#59636e;--skipped-bg:#eff2f5;
--noise:#59636e;--noise-bg:#eff2f5;
--mono:ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,"Liberation Mono",
"DejaVu Sans Mono",monospace}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:var(--fg);font:14px/1.5 -apple-system,BlinkMacSystemFont,
"Segoe UI","Noto Sans",Helvetica,Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:24px;margin:0 0 4px;font-weight:600}
h2{font-size:16px;margin:0;font-weight:600}
code{font-family:var(--mono);font-size:12px}
header{border-bottom:1px solid var(--line);padding-bottom:16px;margin-bottom:20px}
.meta{color:var(--muted);margin-bottom:12px}
.meta code{background:var(--soft);padding:1px 5px;border-radius:4px}
.badges{display:flex;flex-wrap:wrap;gap:8px}
.badge,.pill{display:inline-block;border-radius:999px;font-weight:600;white-space:nowrap}
.badge{padding:1px 10px;font-size:12px;border:1px solid currentColor}
.badge.big{font-size:14px;padding:4px 14px}
.pill{padding:0 8px;font-size:12px;line-height:20px}
.o-breaking,.s-breaking{color:var(--breaking);background:var(--breaking-bg)}
.o-error{color:var(--error);background:var(--error-bg)}
.o-changed{color:var(--changed);background:var(--changed-bg)}
.s-additive{color:var(--additive);background:var(--additive-bg)}
.o-passed{color:var(--passed);background:var(--passed-bg)}
.o-skipped{color:var(--skipped);background:var(--skipped-bg)}
.s-noise{color:var(--noise);background:var(--noise-bg)}
.badge.zero{color:var(--muted);background:#fff;border-color:var(--line);font-weight:400}
.verdict{margin-top:12px;font-weight:600}
.box{border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:0 0 20px}
.box.problems{border-color:var(--breaking);background:var(--breaking-bg)}
.box h2{margin-bottom:6px}
.box ul{margin:0;padding-left:20px}
table.index{width:100%;border-collapse:collapse;margin:0 0 24px;font-size:13px}
table.index th,table.index td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left}
table.index th{color:var(--muted);font-weight:600;background:var(--soft)}
table.index td.num,table.index th.num{text-align:right;width:84px;font-variant-numeric:tabular-nums}
table.index td.num.zero{color:#afb8c1}
table.index a{color:var(--fg);text-decoration:none}
table.index a:hover{text-decoration:underline}
section.endpoint{margin:0 0 28px}
section.endpoint>h2{display:flex;align-items:center;gap:8px;padding:8px 0;
border-bottom:2px solid var(--line);margin-bottom:10px}
.endpoint-pills{margin-left:auto;display:flex;gap:6px}
.method{font-family:var(--mono);font-size:12px;font-weight:700;background:var(--fg);color:#fff;
border-radius:4px;padding:1px 6px;margin-right:6px}
h2 .method,summary .method{margin-right:0}
.path{font-family:var(--mono);font-size:14px;word-break:break-all}
details.card{border:1px solid var(--line);border-left:4px solid var(--line);border-radius:6px;
margin:0 0 10px;background:#fff}
details.card.k-breaking{border-left-color:var(--breaking)}
details.card.k-error{border-left-color:var(--error)}
details.card.k-changed{border-left-color:#d4a72c}
details.card.k-passed{border-left-color:var(--passed)}
details.card.k-skipped{border-left-color:#afb8c1}
details.card>summary{display:flex;align-items:center;gap:10px;padding:8px 12px;cursor:pointer;
list-style:none;background:var(--soft);border-radius:6px}
details.card[open]>summary{border-bottom:1px solid var(--line);border-radius:6px 6px 0 0}
details>summary::-webkit-details-marker{display:none}
details>summary::before{content:"\\25B8";color:var(--muted);font-size:12px;width:10px}
details[open]>summary::before{content:"\\25BE"}
.url{font-family:var(--mono);font-size:12px;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap;min-width:0;flex:1}
.pills{display:flex;gap:4px}
.status{font-family:var(--mono);font-size:12px;color:var(--muted);white-space:nowrap}
.where{color:var(--muted);font-size:12px;white-space:nowrap}
.card-body{padding:10px 12px 12px}
.facts{display:flex;flex-wrap:wrap;gap:4px 16px;color:var(--muted);font-size:12px;margin-bottom:8px}
.msg{border-radius:6px;padding:8px 12px;margin:0 0 10px;white-space:pre-wrap;
font-family:var(--mono);font-size:12px}
table.findings{width:100%;border-collapse:collapse;margin:0 0 10px;font-size:13px}
table.findings th,table.findings td{border:1px solid var(--line);padding:4px 8px;text-align:left;
vertical-align:top;overflow-wrap:anywhere}
table.findings th{background:var(--soft);font-weight:600;color:var(--muted)}
table.findings tr.f-noise td{color:var(--muted)}
details.bodies>summary{cursor:pointer;color:var(--muted);font-size:12px;font-weight:600;
padding:4px 0;list-style:none}
details.bodies>summary::before{margin-right:6px}
table.sbs{width:100%;table-layout:fixed;border-collapse:collapse;font-family:var(--mono);
font-size:12px;line-height:1.45}
details.bodies>table.sbs{border:1px solid var(--line);margin-top:4px}
table.sbs col.ln{width:3.6em}
table.sbs th{background:var(--soft);text-align:left;font-family:-apple-system,BlinkMacSystemFont,
"Segoe UI","Noto Sans",Helvetica,Arial,sans-serif;font-weight:600;padding:6px 8px;
border-bottom:1px solid var(--line);overflow-wrap:anywhere}
table.sbs .r{border-left:1px solid var(--line)}
table.sbs td{padding:0 8px;vertical-align:top}
table.sbs td.n{color:#8c959f;text-align:right;user-select:none;padding:0 6px}
table.sbs td.c{white-space:pre-wrap;overflow-wrap:anywhere}
table.sbs td.del{background:#ffebe9}
table.sbs td.add{background:#e6ffec}
table.sbs td.none,table.sbs td.n.none{
background:repeating-linear-gradient(135deg,#f6f8fa 0 6px,#fff 6px 12px)}
table.sbs td.hit-breaking{box-shadow:inset 3px 0 0 var(--breaking)}
table.sbs td.hit-additive{box-shadow:inset 3px 0 0 #d4a72c}
table.sbs td.hit-noise{box-shadow:inset 3px 0 0 #afb8c1}
table.sbs td.del.hit-breaking{background:#ffcecb}
table.sbs td.add.hit-breaking,table.sbs td.add.hit-additive{background:#aceebb}
table.sbs tr.sec td{background:var(--soft);color:var(--muted);font-size:11px;padding:3px 8px;
border-top:1px solid var(--line);border-bottom:1px solid var(--line)}
table.sbs td.note{color:var(--muted);font-style:italic;padding:3px 8px}
table.sbs tr.fold>td{padding:0;background:#f6f8fa}
table.sbs tr.fold summary{color:#0969da;font-size:11px;padding:2px 8px;cursor:pointer;
list-style:none;font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif}
table.sbs tr.fold summary::before{margin-right:4px}
table.sbs tr.fold table.sbs{background:#fff}
.empty{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:12px;margin-top:32px;border-top:1px solid var(--line);
padding-top:12px}
"""


def html(report: DriftReport) -> str:
    """One self-contained HTML page: counts, problems, an index, then a section per endpoint.

    Each interaction is a card (``<details>``: breaking, changed and errors open, the rest
    closed) with its findings and the recorded and live responses side by side: status
    line, headers and the decoded body (JSON indented), aligned by a line diff (removed
    red, added green), the lines at a finding's JSON path, header or status marked. No scripts,
    no external resources: the page can be kept as a CI artifact and opened offline.
    """
    counts = report.counts()
    code = report.exit_code()
    verdict = {0: "No breaking drift", 1: "Breaking drift found",
               2: "The check could not run fully"}.get(code, "")
    title = f"replayproxy drift: {_counts_text(report)}"
    badges = "".join(
        f'<span class="badge big o-{o.value}{"" if counts[o] else " zero"}">'
        f"{escape(_count(counts[o], o))}</span>"
        for o in (Outcome.BREAKING, Outcome.CHANGED, Outcome.PASSED, Outcome.ERROR,
                  Outcome.SKIPPED))
    cassettes = " ".join(f"<code>{escape(c)}</code>" for c in report.cassettes)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>",
           "<header><h1>API drift report</h1>",
           f'<div class="meta">Started {escape(_when(report.started_at))} · '
           f"{_duration(report):.1f} s · {escape(_plural(len(report.cassettes), 'cassette'))}"
           f"{': ' + cassettes if cassettes else ''}</div>",
           f'<div class="badges">{badges}</div>',
           f'<div class="verdict">{escape(verdict)} (exit code {code})</div></header>']
    if report.problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in report.problems)
        out.append(f'<section class="box problems"><h2>Problems</h2><ul>{items}</ul></section>')
    if report.updated:
        items = "".join(f"<li><code>{escape(k)}</code></li>" for k in report.updated)
        out.append(f'<section class="box"><h2>Re-recorded '
                   f"{_plural(len(report.updated), 'interaction')}</h2><ul>{items}</ul></section>")
    groups = _by_endpoint(report.results)
    if not groups:
        out.append('<p class="empty">No interaction was checked.</p>')
    else:
        heads = "".join(f'<th class="num">{o.value}</th>' for o in Outcome)
        rows = []
        for n, (endpoint, checked) in enumerate(groups):
            per = Counter(c.outcome for c in checked)
            cells = "".join(f'<td class="num{"" if per[o] else " zero"}">{per[o] or "·"}</td>'
                            for o in Outcome)
            rows.append(f'<tr><td><a href="#ep-{n}">{_endpoint_title(endpoint)}</a></td>'
                        f"{cells}</tr>")
        out.append(f'<table class="index"><thead><tr><th>Endpoint</th>{heads}</tr></thead>'
                   f"<tbody>{''.join(rows)}</tbody></table>")
    budget = _PAGE_BODY_BUDGET
    for n, (endpoint, checked) in enumerate(groups):
        out.append(f'<section class="endpoint" id="ep-{n}"><h2>{_endpoint_title(endpoint)}'
                   f'<span class="endpoint-pills">{_outcome_pills(checked)}</span></h2>')
        for k, c in enumerate(checked):
            size = sum(len(r.body) for r in (c.recorded, c.live) if r is not None)
            with_body = c.outcome in _OPEN or size <= budget
            budget -= min(size, 2 * _BODY_LIMIT)
            out.append(_card(c, f"ep-{n}-{k}", with_body))
        out.append("</section>")
    out.append(f"<footer>{escape(summary_line(report))} · generated by replayproxy</footer>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


# -- JSON -------------------------------------------------------------------------------


def write_json(report: DriftReport) -> str:
    """``report.as_json()`` indented, non-ASCII kept, ending in a newline."""
    return json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n"


# -- terminal ---------------------------------------------------------------------------

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
            text.append(_count(counts[o], o), style=_STYLE[o])
    return text


def _interaction_line(c: Checked) -> Text:
    """``  stripe [3]  breaking  200 -> 200  GET https://...``: the URL last, as it may wrap;
    where it was sent, when another origin, on a line of its own."""
    line = Text("  ")
    line.append(_label(c), style="dim")
    line.append("  ")
    line.append(c.outcome.value, style=_STYLE[c.outcome])
    if c.outcome not in (Outcome.SKIPPED, Outcome.ERROR):
        line.append(f"  {_status(c.recorded)} -> {_status(c.live)}", style="dim")
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
    for endpoint, checked in _by_endpoint(report.results):
        head = Text()
        head.append(endpoint, style="bold")
        head.append("  ")
        head.append_text(_outcome_counts(checked))
        noise = sum(1 for c in checked for f in c.findings if f.severity is Severity.NOISE)
        if noise and not verbose:
            head.append(f"  ({_plural(noise, 'noise finding')})", style="dim")
        console.print(head, highlight=False)
        for c in checked:
            if c.outcome in (Outcome.PASSED, Outcome.SKIPPED) and not verbose:
                continue  # counted in the endpoint's line
            console.print(_interaction_line(c), highlight=False)
            if c.message:
                console.print(Text(f"    {c.message}", style=_STYLE[c.outcome]), highlight=False)
            severities = (*Severity,) if verbose else (Severity.BREAKING, Severity.ADDITIVE)
            for f in _findings(c, *severities):
                console.print(Text(f"    {f.describe()}", style=_SEVERITY_STYLE[f.severity]),
                              highlight=False)
    code = report.exit_code()
    style = "bold red" if code else ("yellow" if report.counts()[Outcome.CHANGED] else "green")
    if report.results or report.problems:
        console.print()
    console.print(Text(summary_line(report), style=style), highlight=False)
    if report.updated:
        console.print(Text(f"re-recorded {_plural(len(report.updated), 'interaction')}"),
                      highlight=False)
    for problem in report.problems:
        console.print(Text(f"problem: {problem}", style="red"), highlight=False)
