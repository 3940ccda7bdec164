"""The drift history for people (a rich table, then what is new, resolved and still
present) and for tools (``history_json``); ``replayproxy.drift.history`` reads it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from replayproxy.drift.findings import Severity
from replayproxy.drift.history import ERROR, SEVERITY_RANK, History, HistoryItem, RunSummary
from replayproxy.drift.plan import iso_time

__all__ = ["history_json", "render_history"]


_STYLE = {ERROR: "bold red", Severity.BREAKING.value: "red",
          Severity.ADDITIVE.value: "yellow", Severity.NOISE.value: "dim"}


def _when(iso: str) -> str:
    """``2025-01-31 14:05`` from the stored ISO time, UTC."""
    return iso.replace("T", " ")[:16]


def _short_list(names: Sequence[str], keep: int = 2) -> str:
    shown = ", ".join(names[:keep])
    return shown + (f" +{len(names) - keep} more" if len(names) > keep else "")


def _counts_line(items: Sequence[HistoryItem]) -> str:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.severity] = counts.get(item.severity, 0) + 1
    ranked = sorted(counts, key=lambda s: SEVERITY_RANK.get(s, 99))
    parts = [f"{sev} {counts[sev]}" for sev in ranked]
    return f"{len(items)}" + (f" ({', '.join(parts)})" if parts else "")


def _item_text(item: HistoryItem, latest: int | None, resolved: bool = False) -> Text:
    text = Text("  ")
    text.append(f"{item.severity:<9}", style="green" if resolved else
                _STYLE.get(item.severity, ""))
    text.append(f" {item.describe()}")
    text.append(f"\n            {item.cassette}  {item.interaction}", style="dim")
    if not resolved and latest is not None and item.first_run != latest:
        text.append(f"  (back: first seen in run {item.first_run} on {_when(item.first_seen)}"
                    f", seen in {item.times_seen} runs)", style="dim")
    return text


def render_history(console: Console, history: History) -> None:
    """Recent runs as a table, then what is new, resolved and still present."""
    if history.latest is None:
        which = (f" for {', '.join(history.cassettes)}" if history.cassettes else "")
        console.print(Text(f"No drift runs recorded{which} in {history.database}."))
        return
    # short headers and light borders: the table fits 80 columns with a cassette name
    table = Table(title=f"Drift runs ({history.database})", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  collapse_padding=True)
    for name in ("Run", "When (UTC)", "Cassettes"):
        table.add_column(name, overflow="ellipsis", no_wrap=name != "Cassettes")
    for name in ("Checked", "Break", "Chg", "Pass", "Err", "Skip", "Exit"):
        table.add_column(name, justify="right")
    for run in history.runs:
        table.add_row(str(run.id), _when(run.started_at), Text(_short_list(run.cassettes)),
                      str(run.checked), str(run.breaking), str(run.changed), str(run.passed),
                      str(run.errors), str(run.skipped),
                      Text(str(run.exit_code), style="red" if run.exit_code else "green"))
    console.print(table)

    if history.previous is None:
        heading = f"New in run {history.latest} (no earlier run of these cassettes)"
    else:
        heading = f"New since run {history.previous}"
    console.print(Text(f"\n{heading}: {len(history.new)}", style="bold"))
    for item in history.new:
        console.print(_item_text(item, history.latest))
    if history.previous is not None:
        console.print(Text(f"\nResolved since run {history.previous}: "
                           f"{len(history.resolved)}", style="bold"))
        for item in history.resolved:
            console.print(_item_text(item, history.latest, resolved=True))
    console.print(Text(f"\nStill present: {_counts_line(history.ongoing)}", style="bold"))


def history_json(history: History) -> dict[str, object]:
    """A JSON-safe dict for ``replayproxy drift history --json``."""
    return {"format": "replayproxy-drift-history", "version": 1,
            "database": str(history.database), "cassettes": list(history.cassettes),
            "latest": history.latest, "previous": history.previous,
            "runs": [_run_json(r) for r in history.runs],
            "new": [_item_json(i) for i in history.new],
            "resolved": [_item_json(i) for i in history.resolved],
            "ongoing": [_item_json(i) for i in history.ongoing]}


def _json_time(stored: str | None) -> str | None:
    """A stored time as every JSON output shows times: ``2026-12-06T11:19:53Z``."""
    if stored is None:
        return None
    try:
        return iso_time(datetime.fromisoformat(stored).timestamp())
    except ValueError:
        return stored


def _run_json(run: RunSummary) -> dict[str, object]:
    return {"id": run.id, "started_at": _json_time(run.started_at),
            "finished_at": _json_time(run.finished_at), "cassettes": list(run.cassettes),
            "counts": {"checked": run.checked, "breaking": run.breaking,
                       "changed": run.changed, "passed": run.passed, "error": run.errors,
                       "skipped": run.skipped},
            "problems": list(run.problems), "exit_code": run.exit_code}


def _item_json(item: HistoryItem) -> dict[str, object]:
    return {"fingerprint": item.fingerprint, "severity": item.severity, "kind": item.kind,
            "location": item.location, "cassette": item.cassette,
            "interaction": item.interaction, "endpoint": item.endpoint,
            "recorded": item.recorded, "live": item.live,
            "first_seen": _json_time(item.first_seen), "last_seen": _json_time(item.last_seen),
            "first_run": item.first_run, "last_run": item.last_run,
            "times_seen": item.times_seen}
