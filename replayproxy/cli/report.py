"""``replayproxy report``: endpoint coverage, slowest and flaky tests, from the runs
database that every ``record``, ``replay``, ``serve`` and pytest-plugin run writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from replayproxy.cli.options import Config, catch_errors

if TYPE_CHECKING:
    from replayproxy.report.runs import RunReport, RunRow


def _test_name(row: RunRow) -> str:
    return row.test or f"(run of {row.cassette})"


def _trend(row: RunRow) -> str:
    return " ".join(o.replace("passed:0", "ok").replace("failed:", "FAIL/") for o in row.outcomes)


def render_text(report: RunReport, *, markdown: bool = False) -> str:
    """The report as terminal text, or as Markdown (for a CI job summary)."""
    lines: list[str] = []
    h = "## " if markdown else ""
    lines.append(f"{'# ' if markdown else ''}replayproxy run report: last "
                 f"{report.suites} suite{'s' if report.suites != 1 else ''}")
    for name, endpoints in report.coverage.items():
        hit = sum(1 for n in endpoints.values() if n)
        lines += ["", f"{h}Coverage of cassette {name}: {hit} of {len(endpoints)} recorded "
                      f"endpoints exercised"]
        if markdown:
            lines += ["", "| endpoint | requests |", "|---|---:|"]
        for endpoint, count in endpoints.items():
            lines.append(f"| `{endpoint}` | {count or '**never**'} |" if markdown
                         else f"  {count or 'never':>6}  {endpoint}")
    for name, why in report.unreadable.items():
        lines += ["", f"cassette {name}: coverage not read: {why}"]
    lines += ["", f"{h}Slowest tests"]
    if markdown:
        lines += ["", "| test | cassette | runs | mean seconds |", "|---|---|---:|---:|"]
    for row in report.slowest:
        lines.append(f"| {_test_name(row)} | {row.cassette} | {row.runs} | "
                     f"{row.mean_seconds:.3f} |" if markdown
                     else f"  {row.mean_seconds:8.3f} s  {_test_name(row)} ({row.cassette}, "
                          f"{row.runs} run{'s' if row.runs != 1 else ''})")
    lines += ["", f"{h}Flaky tests"]
    if not report.flaky:
        lines.append("  none: every test had the same outcome and unmatched count in each run"
                     if not markdown else "None.")
    elif markdown:
        lines += ["", "| test | cassette | outcome:unmatched per run, oldest first |",
                  "|---|---|---|"]
    for row in report.flaky:
        lines.append(f"| {_test_name(row)} | {row.cassette} | {_trend(row)} |" if markdown
                     else f"  {_test_name(row)} ({row.cassette}): {_trend(row)}")
    return "\n".join(lines) + "\n"


@catch_errors
def report(
    db: Annotated[Path | None, typer.Option(
        "--db", metavar="FILE", show_default=False,
        help="The runs database [default: $REPLAYPROXY_REPORT_DB, else "
             ".replayproxy/runs.db in the project directory].")] = None,
    cassette: Annotated[str | None, typer.Option(
        "--cassette", "-c", metavar="NAME", show_default=False,
        help="Only the runs of this cassette.")] = None,
    suites: Annotated[int, typer.Option(
        "--suites", min=1, metavar="N",
        help="How many of the latest suites (CLI runs or pytest sessions) to look at.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print Markdown (for a CI job summary).")] = False,
    config: Config = None,
) -> None:
    """Print each cassette's endpoint coverage, the slowest tests and the flaky ones.

    Every record, replay and serve run, and every test run under the pytest plugin, is
    kept in the runs database; a flaky test is one whose outcome or unmatched count
    differs between the suites looked at.
    """
    from replayproxy.config import load_settings, project_dir
    from replayproxy.errors import ConfigError
    from replayproxy.report import ENV, default_database
    from replayproxy.report.runs import read_report

    if db is None:
        db = default_database(project_dir(load_settings(config)))
        if db is None:
            raise ConfigError(f"runs are not recorded here ({ENV}=off): pass --db FILE")
    found = read_report(db, suites=suites, cassette=cassette)
    typer.echo(found.as_json() if as_json else render_text(found, markdown=markdown), nl=False)
