"""``replayproxy drift`` and ``replayproxy drift history``: re-send recorded requests to
the live API, report where it drifted, and keep the runs in a history database.

httpx, sqlite-utils, rich and deepdiff are imported inside the commands."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from replayproxy.cli.options import (
    CassetteDir,
    Config,
    Matching,
    UpstreamCA,
    UpstreamInsecure,
    UpstreamProxy,
    catch_errors,
    check_json_path_flags,
    redactor,
)
from replayproxy.cli.output import console
from replayproxy.errors import CLI_WORDS, ConfigError

if TYPE_CHECKING:
    from replayproxy.config import Settings
    from replayproxy.drift.plan import DriftConfig, DriftReport


def _pairs(flag: str, values: list[str] | None, example: str) -> list[tuple[str, str]]:
    out = []
    for value in values or ():
        key, sep, target = value.partition("=")
        if not sep or not key.strip() or not target.strip():
            raise ConfigError(f"{flag} {value!r}: write it as {example}")
        out.append((key.strip(), target.strip()))
    return out


def _drift_config(base: DriftConfig, *, credential: list[str] | None,
                  origin: list[str] | None, ignore: list[str] | None, allow_unsafe: bool,
                  concurrency: int | None, rate: str | None, timeout: str | None,
                  repeat: bool | None) -> DriftConfig:
    """The configuration's drift settings with the flags applied (flags win)."""
    from replayproxy.drift.plan import parse_origin, parse_rate
    from replayproxy.faults.values import duration_seconds

    changes: dict[str, Any] = {}
    creds = _pairs("--credential", credential, "--credential authorization=API_TOKEN")
    if creds:
        changes["credentials"] = (*creds, *base.credentials)
    origins = _pairs("--origin", origin,
                     "--origin https://api.example.com=http://127.0.0.1:8080")
    try:
        if origins:
            changes["origins"] = (*((parse_origin("--origin", a), parse_origin("--origin", b))
                                    for a, b in origins), *base.origins)
        if rate is not None:
            changes["rate"] = parse_rate("--rate", rate)
        if timeout is not None:
            changes["timeout"] = duration_seconds("--timeout", timeout)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    check_json_path_flags("--ignore", [p for p in ignore or () if p.strip().startswith("$")],
                           "$.meta.request_id")
    if ignore:
        changes["ignore"] = (*base.ignore, *ignore)
    if concurrency is not None:
        if concurrency < 1:
            raise ConfigError(f"--concurrency must be 1 or more, got {concurrency}")
        changes["concurrency"] = concurrency
    if allow_unsafe:
        changes["allow_unsafe"] = True
    if repeat is not None:
        changes["repeat"] = repeat
    return replace(base, **changes)


def _history_database(db: Path | None, settings: Settings) -> tuple[Path, bool, str | None]:
    """The drift history database: --db, else the configuration's, else
    ``.replayproxy/history.db`` in the project directory (the configuration file's, else
    the current one); whether it is that default; a warning (a history still at the old
    default, in the cassette directory)."""
    from replayproxy.config import project_dir
    from replayproxy.drift.history import default_database

    if db is not None:
        return db, False, None
    if settings.drift.database:
        return Path(settings.drift.database), False, None
    path, warning = default_database(project_dir(settings),
                                     Path(settings.cassette_dir or "cassettes"))
    return path, path.name == "history.db", warning


def _write_report(path: Path, data: str | bytes) -> None:
    """Write a report file whole or not at all (temp file, then rename)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(raw)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"cannot write report {path}: {e.strerror}; check the directory "
                          "exists and is writable") from None


def _write_reports(report: DriftReport, outputs: dict[str, Path | None]) -> list[str]:
    from replayproxy.drift import report as drift_report

    render: dict[str, Callable[[DriftReport], str | bytes]] = {
        "json": drift_report.write_json, "junit": drift_report.junit_xml,
        "markdown": drift_report.markdown, "html": drift_report.html}
    failures = []
    for kind, path in outputs.items():
        if path is not None:
            try:
                _write_report(path, render[kind](report))
            except ConfigError as e:
                failures.append(e.render(CLI_WORDS))
    return failures


DriftCassettes = Annotated[
    list[str] | None,
    typer.Option("--cassette", "-c", show_default=False, metavar="NAME",
                 help="Cassette to check (repeatable)."),
]
HistoryCassettes = Annotated[
    list[str] | None,
    typer.Option("--cassette", "-c", show_default=False, metavar="NAME",
                 help="List only runs that checked this cassette (repeatable) [default: "
                 "all runs]."),
]


DriftDb = Annotated[
    Path | None,
    typer.Option(metavar="FILE", show_default=False,
                 help="History database [default: database from the configuration, else "
                 ".replayproxy/history.db next to the configuration file (or here), "
                 "git-ignored]."),
]


@catch_errors
def drift(
    ctx: typer.Context,
    cassette: DriftCassettes = None,
    cassette_dir: CassetteDir = None,
    config: Config = None,
    upstream_ca: UpstreamCA = None,
    upstream_insecure: UpstreamInsecure = False,
    upstream_proxy: UpstreamProxy = None,
    allow_unsafe: Annotated[bool, typer.Option(
        "--allow-unsafe", help="Also re-send POST, PUT, PATCH, DELETE... (they may change "
        "data on the live service).")] = False,
    credential: Annotated[list[str] | None, typer.Option(
        "--credential", metavar="KEY=ENV_VAR", show_default=False,
        help="Put the value of ENV_VAR where the cassette holds a placeholder; KEY is the "
        "placeholder, the header holding it or its rule, e.g. authorization=API_TOKEN "
        "(repeatable).")] = None,
    origin: Annotated[list[str] | None, typer.Option(
        "--origin", metavar="RECORDED=LIVE", show_default=False,
        help="Send requests recorded for one origin to another, e.g. "
        "https://api.example.com=https://sandbox.example.com (repeatable).")] = None,
    ignore: Annotated[list[str] | None, typer.Option(
        "--ignore", metavar="PATH|HEADER", show_default=False,
        help="JSON path ($.meta.request_id) or header name never compared (repeatable).")]
        = None,
    concurrency: Annotated[int | None, typer.Option(
        metavar="N", help="Requests in flight at once [default: 4].", show_default=False)] = None,
    rate: Annotated[str | None, typer.Option(
        metavar="RATE", show_default=False,
        help="At most this many requests per host, e.g. 5/s or 120/min [default: no "
        "limit].")] = None,
    timeout: Annotated[str | None, typer.Option(
        metavar="DURATION", show_default=False,
        help="Timeout of each live call, e.g. 10s [default: 10s].")] = None,
    repeat: Annotated[bool | None, typer.Option(
        "--repeat/--no-repeat", show_default=False,
        help="Send each safe request twice to learn which values change on every call "
        "[default: --repeat].")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", metavar="FILE", show_default=False, help="Write the report as JSON.")]
        = None,
    junit: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False,
        help="Write a JUnit XML report (a test case per interaction) for CI.")] = None,
    markdown: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False,
        help="Write a Markdown report, e.g. for a pull-request comment.")] = None,
    html: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False,
        help="Write a self-contained HTML report with recorded and live side by side.")]
        = None,
    db: DriftDb = None,
    history: Annotated[bool, typer.Option(
        "--history/--no-history", help="Store this run in the history database.")] = True,
    update: Annotated[bool, typer.Option(
        "--update", help="Re-record the interactions with breaking or additive drift "
        "(through the redaction rules).")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also list noise and skipped interactions.")] = False,
) -> None:
    """Re-send recorded requests to the live API and report where it drifted.

    Exit code: 0 no breaking drift, 1 breaking drift, 2 the check could not run
    (fully). Example: replayproxy drift -c stripe --junit drift.xml --html drift.html
    """
    if ctx.invoked_subcommand is not None:
        # `drift --cassette-dir X history`: what was given before the subcommand counts
        ctx.obj = {"cassette": cassette, "cassette_dir": cassette_dir, "config": config,
                   "db": db}
        return
    if not cassette:
        raise ConfigError("give the cassettes to check: replayproxy drift -c NAME [-c NAME ...]")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from replayproxy.drift.live import check, load_jobs, update_cassettes
    from replayproxy.drift.plan import Checked, DriftReport
    from replayproxy.drift.report.terminal import print_report

    outputs = {"json": json_out, "junit": junit, "markdown": markdown, "html": html}
    report = DriftReport(tuple(cassette))
    try:
        settings = Matching(config, cassette_dir).settings()
        recording_redactor = redactor(settings)
        dconfig = _drift_config(settings.drift, credential=credential, origin=origin,
                                ignore=ignore, allow_unsafe=allow_unsafe,
                                concurrency=concurrency, rate=rate, timeout=timeout,
                                repeat=repeat)
        from replayproxy.upstream import egress_from, read_pem_ca

        cas = [read_pem_ca(path) for path in upstream_ca or ()]
        egress = egress_from(upstream_proxy)
    except ConfigError as e:
        report.problems.append(e.render(CLI_WORDS))
        report.finished_at = time.time()
        failures = _write_reports(report, outputs)
        for failure in failures:
            typer.echo(f"replayproxy: error: {failure}", err=True)
        raise
    if upstream_insecure:
        typer.echo("replayproxy: live certificates are NOT verified (--upstream-insecure): "
                   "use it only for a throwaway sandbox; trust a private CA with "
                   "--upstream-ca instead", err=True)
    if egress:
        typer.echo(f"replayproxy: {egress.describe()}", err=True)
    directory = Path(settings.cassette_dir or "cassettes")
    jobs = load_jobs(directory, cassette, report)
    err = Console(stderr=True)
    with Progress(TextColumn("checking"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), console=err, transient=True,
                  disable=not err.is_terminal) as progress:
        task = progress.add_task("", total=len(jobs))

        def advance(result: Checked) -> None:
            progress.update(task, advance=1, description=f"{result.method} {result.url}"[:60])

        try:
            report.results, plans = check(jobs, dconfig, os.environ, upstream_cas=cas,
                                          upstream_insecure=upstream_insecure,
                                          egress=egress, on_result=advance,
                                          redactor=recording_redactor)
        except ssl.SSLError as e:
            names = " ".join(map(str, upstream_ca or ()))
            raise ConfigError(f"--upstream-ca {names}: not a valid PEM CA certificate ({e}); "
                              "pass the CA certificate in PEM form") from None
    report.finished_at = time.time()
    if update:
        update_cassettes(directory, report, jobs, plans, recording_redactor)
    if history:
        from replayproxy.config import project_dir
        from replayproxy.drift.history import DEFAULT_DATABASE, prepare_directory, record_run

        path, default, warning = _history_database(db, settings)
        if warning:
            typer.echo(f"replayproxy: warning: {warning}", err=True)
            if path.name != DEFAULT_DATABASE.name:  # still at the old place: ready to move
                with contextlib.suppress(ConfigError):
                    prepare_directory(project_dir(settings) / DEFAULT_DATABASE)
        created = not path.exists()
        try:
            record_run(path, report)
        except ConfigError as e:
            report.problems.append(e.render(CLI_WORDS))
        else:
            if created and default:
                typer.echo(f"replayproxy: drift history created at {path} (git-ignored; "
                           f'--db FILE or database = "..." to keep it elsewhere)', err=True)
    print_report(console(), report, verbose=verbose)
    problems = list(report.problems) + _write_reports(report, outputs)
    for problem in problems:
        typer.echo(f"replayproxy: error: {problem}", err=True)
    raise typer.Exit(2 if problems else report.exit_code())


@catch_errors
def drift_history(
    ctx: typer.Context,
    cassette: HistoryCassettes = None,
    cassette_dir: CassetteDir = None,
    config: Config = None,
    db: DriftDb = None,
    runs: Annotated[int, typer.Option(metavar="N", help="How many recent runs to list.")] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show recent drift runs and what is new, resolved or still present since the
    run before the last.

    Example: replayproxy drift history -c stripe (only the runs that checked stripe)
    """
    from replayproxy.drift.history import load_history
    from replayproxy.drift.report.history import history_json, render_history

    given = ctx.obj if isinstance(ctx.obj, dict) else {}
    cassette = cassette or given.get("cassette")
    cassette_dir = cassette_dir or given.get("cassette_dir")
    config = config or given.get("config")
    db = db or given.get("db")
    settings = Matching(config, cassette_dir).settings()
    found = load_history(_history_database(db, settings)[0], runs=runs,
                         cassettes=cassette or None)
    if json_out:
        typer.echo(json.dumps(history_json(found), indent=2, ensure_ascii=False))
    else:
        render_history(console(), found)
