"""The drift report as one self-contained HTML page (no external resources, no script).

The recorded and live responses side by side, bodies decoded and diffed line by line,
the lines a finding points at marked. The style sheet is ``style.css`` in this package.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from replayproxy.cassette.view import format_size
from replayproxy.codec import content_encodings, decode_body
from replayproxy.drift.clean import mask_shapes
from replayproxy.drift.compare import Path, json_path
from replayproxy.drift.findings import Finding, Severity
from replayproxy.drift.plan import Checked, DriftReport, Outcome
from replayproxy.drift.report.shared import (
    by_endpoint,
    count_text,
    counts_text,
    label,
    plural,
    run_seconds,
    status_text,
    summary_line,
    when,
)
from replayproxy.model import Response, header_value

__all__ = ["html"]


@cache
def _css() -> str:
    """The page's style sheet, ``style.css`` shipped in this package."""
    return "\n" + resources.files(__package__).joinpath("style.css").read_text("utf-8")

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
    """One side for the page. Both responses were redacted before the report was made;
    a credential shape left (redaction rules switched off) is masked all the same."""
    shown = _shown_unmasked(response, with_body)
    shown.head = [mask_shapes(line) for line in shown.head]
    shown.body = [mask_shapes(line) for line in shown.body]
    return shown


def _shown_unmasked(response: Response, with_body: bool) -> _Shown:
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
    status = f"{status_text(checked.recorded)} → {status_text(checked.live)}"
    if checked.outcome is Outcome.SKIPPED:
        status = status_text(checked.recorded)
    out = [f'<details class="card k-{o}" id="{anchor}"'
           f'{" open" if checked.outcome in _OPEN else ""}><summary>'
           f'<span class="badge o-{o}">{escape(o)}</span>'
           f'<span class="method">{escape(checked.method)}</span>'
           f'<span class="url" title="{escape(checked.url)}">{escape(checked.url)}</span>'
           f'<span class="pills">{_severity_pills(checked.findings)}</span>'
           f'<span class="status">{escape(status)}</span>'
           f'<span class="where">{escape(label(checked))}</span></summary>'
           '<div class="card-body">']
    facts = [f"<span>cassette <code>{escape(checked.cassette)}</code> · interaction "
             f"{checked.number}</span>", f"<span>key <code>{escape(checked.key)}</code></span>"]
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
    return "".join(f'<span class="pill o-{o.value}">{escape(count_text(counts[o], o))}</span>'
                   for o in Outcome if counts[o])


def _endpoint_title(endpoint: str) -> str:
    method, _, rest = endpoint.partition(" ")
    return (f'<span class="method">{escape(method)}</span>'
            f'<span class="path">{escape(rest or method)}</span>')


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
    title = f"replayproxy drift: {counts_text(report)}"
    badges = "".join(
        f'<span class="badge big o-{o.value}{"" if counts[o] else " zero"}">'
        f"{escape(count_text(counts[o], o))}</span>"
        for o in (Outcome.BREAKING, Outcome.CHANGED, Outcome.PASSED, Outcome.ERROR,
                  Outcome.SKIPPED))
    cassettes = " ".join(f"<code>{escape(c)}</code>" for c in report.cassettes)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{escape(title)}</title><style>{_css()}</style></head><body><main>",
           "<header><h1>API drift report</h1>",
           f'<div class="meta">Started {escape(when(report.started_at))} · '
           f"{run_seconds(report):.1f} s · {escape(plural(len(report.cassettes), 'cassette'))}"
           f"{': ' + cassettes if cassettes else ''}</div>",
           f'<div class="badges">{badges}</div>',
           f'<div class="verdict">{escape(verdict)} (exit code {code})</div></header>']
    if report.problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in report.problems)
        out.append(f'<section class="box problems"><h2>Problems</h2><ul>{items}</ul></section>')
    if report.updated:
        items = "".join(f"<li><code>{escape(k)}</code></li>" for k in report.updated)
        out.append(f'<section class="box"><h2>Re-recorded '
                   f"{plural(len(report.updated), 'interaction')}</h2><ul>{items}</ul></section>")
    groups = by_endpoint(report.results)
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
