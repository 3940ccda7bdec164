"""The ``replayproxy`` command: parse, call the core and the runtime, print.

Messages of replayproxy itself go to stderr, so a wrapped command's stdout passes
through untouched. Every ``ReplayproxyError`` becomes one line
``replayproxy: error: …`` and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from replayproxy.cassette.journal import (
    pending_journals,
    recover_journals,
    unrecovered_cassettes,
)
from replayproxy.cassette.store import (
    cassette_info,
    cassette_path,
    list_cassettes,
    load_cassette,
    save_cassette,
)
from replayproxy.cassette.view import format_size, render_interaction, summary_line
from replayproxy.config import Settings, home_dir, load_settings
from replayproxy.decision.session import CassetteSession, Replay, SessionSummary, Unmatched
from replayproxy.drift.plan import (
    Checked,
    DriftConfig,
    DriftReport,
    parse_origin,
    parse_rate,
)
from replayproxy.environment import export_lines
from replayproxy.errors import CassetteError, CommandError, ConfigError, ReplayproxyError
from replayproxy.faults.plan import FaultPlan
from replayproxy.faults.spec import parse_fault
from replayproxy.faults.values import duration_seconds
from replayproxy.matching.diagnostics import render_candidates
from replayproxy.matching.rules import compile_json_path, extend_rule
from replayproxy.model import RecordMode, request_from_cli
from replayproxy.redaction.redactor import Redactor, load_key
from replayproxy.redaction.scan import scan_interaction, scan_path

app = typer.Typer(
    name="replayproxy",
    help="Record HTTP(S) traffic into cassettes and replay it offline, for any client.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
cassette_app = typer.Typer(help="Look at the cassettes in a cassette directory.",
                           no_args_is_help=True, rich_markup_mode=None)
app.add_typer(cassette_app, name="cassette")
drift_app = typer.Typer(rich_markup_mode=None)
app.add_typer(drift_app, name="drift")

log = logging.getLogger("replayproxy")

P = ParamSpec("P")
R = TypeVar("R")

def _version(value: bool) -> None:
    if value:
        from replayproxy import __version__

        typer.echo(f"replayproxy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Record HTTP(S) traffic into cassettes and replay it offline, for any client."""


# -- shared options (declared once) -----------------------------------------------------

CassetteName = Annotated[str, typer.Option("--cassette", "-c", help="Cassette name.",
                                           show_default=False)]
CassetteDir = Annotated[
    Path | None,
    typer.Option("--cassette-dir", "-d", envvar="REPLAYPROXY_CASSETTE_DIR", show_default=False,
                 help="Directory holding the cassettes [default: cassette_dir from the "
                 "configuration, else ./cassettes]."),
]
Config = Annotated[
    Path | None,
    typer.Option("--config", show_default=False,
                 help="Configuration file [default: ./replayproxy.toml, else "
                 "[tool.replayproxy] in ./pyproject.toml]."),
]
IgnoreQuery = Annotated[
    list[str] | None,
    typer.Option("--ignore-query", show_default=False, metavar="NAME",
                 help="Query parameter never compared (repeatable)."),
]
IgnoreHeader = Annotated[
    list[str] | None,
    typer.Option("--ignore-header", show_default=False, metavar="NAME",
                 help="Header never compared (repeatable)."),
]
MatchHeader = Annotated[
    list[str] | None,
    typer.Option("--match-header", show_default=False, metavar="NAME",
                 help="Header that must equal the recording; '*' for all (repeatable)."),
]
IgnoreJson = Annotated[
    list[str] | None,
    typer.Option("--ignore-json", show_default=False, metavar="PATH",
                 help="JSON path in request bodies never compared, e.g. $.nonce "
                 "(repeatable)."),
]
Faults = Annotated[
    list[str] | None,
    typer.Option("--fault", show_default=False, metavar="SPEC",
                 help="Inject a fault: KIND[=VALUE][,OPTION=VALUE...][@ROUTE], e.g. "
                 "'status=503,first=2@POST */v1/charges' (repeatable; see docs/faults.md)."),
]
FailOnUnused = Annotated[
    bool,
    typer.Option("--fail-on-unused", help="Exit non-zero when recorded interactions were "
                 "never used (stale cassette entries)."),
]
UpstreamCA = Annotated[
    Path | None,
    typer.Option("--upstream-ca", help="PEM CA certificate to trust for upstream servers "
                 "(e.g. a local sandbox), besides the public roots."),
]
CADir = Annotated[
    Path | None,
    typer.Option("--ca-dir", envvar="REPLAYPROXY_CA_DIR", show_default=False,
                 help="Directory of the proxy's CA [default: ~/.replayproxy/ca]."),
]
Port = Annotated[int, typer.Option("--port", "-p", help="Proxy port on 127.0.0.1; 0 picks a "
                                   "free one.")]
Reverse = Annotated[
    str | None,
    typer.Option("--reverse", help="Also serve this upstream (e.g. https://api.example.com) "
                 "on a local port as a plain base URL, for clients that ignore proxy "
                 "variables; printed as REPLAYPROXY_REVERSE_URL."),
]
Strict = Annotated[bool, typer.Option("--strict", help="Once a recorded sequence of identical "
                                      "requests is used up, treat more as unmatched instead "
                                      "of repeating the last response.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only warnings and errors.")]
Command = Annotated[
    list[str] | None,
    typer.Argument(help="The command to run under the proxy, after `--`.", show_default=False),
]
_CMD_CONTEXT = {"allow_interspersed_args": False, "ignore_unknown_options": True}


def _mode_option() -> Any:
    return typer.Option(
        "--record-mode",
        "-m",
        help="once: record if the cassette is missing, else replay; new_episodes: replay "
        "what matches, record the rest; all: record everything; none: replay only.",
        case_sensitive=False,
    )


# -- plumbing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Matching:
    """The matching-related flags of a command, to merge over the configuration file."""

    config: Path | None = None
    cassette_dir: Path | None = None
    strict: bool = False
    fail_on_unused: bool = False
    ignore_query: list[str] | None = None
    ignore_header: list[str] | None = None
    match_header: list[str] | None = None
    ignore_json: list[str] | None = None

    def settings(self) -> Settings:
        """The configuration file's settings with these flags applied."""
        settings = load_settings(self.config)
        flags: dict[str, Any] = {}
        for key, values in (("ignore_query", self.ignore_query),
                            ("ignore_headers", self.ignore_header),
                            ("headers", self.match_header),
                            ("ignore_json", self.ignore_json)):
            if values:
                flags[key] = values
        _check_json_path_flags("--ignore-json", self.ignore_json or [], "$.nonce")
        match = settings.match
        if flags:
            match = replace(match, base=extend_rule(match.base, "command line", **flags))
        return replace(
            settings,
            cassette_dir=str(self.cassette_dir or settings.cassette_dir or "cassettes"),
            strict=self.strict or settings.strict,
            fail_on_unused=self.fail_on_unused or settings.fail_on_unused,
            match=match,
        )

    def cassette_directory(self) -> Path:
        """The cassette directory: the flag, else the configuration, else ./cassettes."""
        return Path(self.settings().cassette_dir or "cassettes")

    def session(self, name: str, mode: RecordMode) -> tuple[CassetteSession, Settings]:
        """Open cassette ``name`` with the merged settings."""
        settings = self.settings()
        assert settings.cassette_dir is not None
        session = CassetteSession(settings.cassette_dir, name, mode, strict=settings.strict,
                                  match=settings.match, redactor=_redactor(settings))
        return session, settings


def _check_json_path_flags(flag: str, paths: list[str], example: str) -> None:
    """Raise a ConfigError naming ``flag`` and an example for a path that does not parse."""
    for path in paths:
        try:
            compile_json_path(path)
        except ValueError as e:
            raise ConfigError(f"{flag}: {e}; write e.g. {flag} '{example}'") from None


def _errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn replayproxy errors into one line on stderr and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ReplayproxyError as e:
            typer.echo(f"replayproxy: error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


def _not_reported_elsewhere(record: logging.LogRecord) -> bool:
    """Drop mitmproxy's own bind-failure lines (the message, then an empty one): the
    ProxyStartError we raise says the same on one line, with the fix."""
    if not record.name.startswith("mitmproxy"):
        return True
    message = record.getMessage()
    return bool(message.strip()) and "failed to listen" not in message


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("replayproxy: %(message)s"))
    handler.addFilter(_not_reported_elsewhere)
    ours = logging.getLogger("replayproxy")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.WARNING if quiet else logging.INFO)
    ours.propagate = False
    theirs = logging.getLogger("mitmproxy")
    theirs.handlers[:] = [handler]
    theirs.setLevel(logging.ERROR)
    theirs.propagate = False


def _run_dir() -> Path:
    return home_dir() / "run"


def _redactor(settings: Settings) -> Redactor:
    return Redactor(settings.redact, load_key(home_dir()))


@contextlib.contextmanager
def _running_proxy(session: CassetteSession, settings: Settings, faults: list[str] | None, *,
                   ca_dir: Path | None, upstream_ca: Path | None, port: int,
                   reverse: str | None) -> Iterator[tuple[Any, dict[str, str]]]:
    """Run the proxy (with the cassette and fault addons) and the fault control API.

    Yields the proxy and the environment a child needs. Closes the session on exit.
    """
    # imported here: mitmproxy takes ~0.6 s to import, which `cassette ls` should not pay
    from replayproxy.engines.mitm.cassette import CassetteAddon
    from replayproxy.engines.mitm.faults import FaultAddon, FaultResponses
    from replayproxy.engines.mitm.master import Proxy, ensure_ca
    from replayproxy.faults.control import ControlServer

    plan = FaultPlan(settings.faults)
    for spec in faults or ():
        try:
            plan.add(parse_fault(spec))
        except ValueError as e:
            raise ConfigError(f"--fault {spec!r}: {e}") from None
    if upstream_ca is not None and not upstream_ca.is_file():
        raise ConfigError(f"--upstream-ca {upstream_ca} does not exist: pass a PEM CA file")
    lock = threading.Lock()
    proxy = Proxy([FaultAddon(plan, lock), CassetteAddon(session), FaultResponses()],
                  ca=ensure_ca(ca_dir),
                  port=port, reverse=reverse, upstream_ca=upstream_ca)
    control = ControlServer(plan, lock)
    try:
        proxy.start()
        control.start()
        # what exists now (mitmproxy, the loaded cassette) lives until exit: keep it out of
        # the collector's full passes, which otherwise stall every connection for ~60 ms
        gc.collect()
        gc.freeze()
        env = {"REPLAYPROXY_CONTROL_URL": control.url, **proxy.environment()}
        if len(plan):
            log.info("faults: %s", "; ".join(f.text for f in plan.list()))
        yield proxy, env
    finally:
        control.stop()
        proxy.stop()


def _describe_start(session: CassetteSession, proxy: Any) -> None:
    verb = {RecordMode.ALL: "recording", RecordMode.NONE: "replaying (offline)",
            RecordMode.NEW_EPISODES: "replaying and recording new requests"}[session.mode]
    log.info("%s cassette %s via proxy %s", verb, session.path, proxy.proxy_url)
    if proxy.reverse_url:
        log.info("reverse proxy for %s at %s", proxy.reverse, proxy.reverse_url)
    if session.summary.recovered:
        log.warning("recovered %d interactions from an interrupted recording of %s",
                    session.summary.recovered, session.name)


def _report(summary: SessionSummary, fail_on_unused: bool = False) -> None:
    if summary.mode is RecordMode.ALL and summary.recorded == 0:
        log.warning(
            "nothing was recorded, cassette %s left as it was: does the command send its "
            "requests through HTTP_PROXY/HTTPS_PROXY?", summary.path)
    else:
        log.info("cassette %s: %d replayed, %d recorded", summary.path, summary.replayed,
                 summary.recorded)
    if summary.unmatched:
        log.warning("%d request(s) matched nothing in cassette %s:", len(summary.unmatched),
                    summary.cassette)
        for unmatched in summary.unmatched[:50]:
            log.warning("  unmatched: %s %s", unmatched.request.method, unmatched.request.url)
            for line in render_candidates(list(unmatched.closest[:1])):
                log.warning("    %s", line)
        if len(summary.unmatched) > 50:
            log.warning("  … and %d more", len(summary.unmatched) - 50)
    if summary.leaks:
        verb = "written anyway (on_leak = \"warn\")" if summary.leaks_written else \
            "NOT written"
        log.error("%d interaction(s) still held secrets after redaction and were %s:",
                  len(summary.leaks), verb)
        for request, findings in summary.leaks[:20]:
            log.error("  %s %s", request.method, request.url)
            for finding in findings[:5]:
                log.error("    %s: %s (%s)", finding.location, finding.rule, finding.excerpt)
        log.error("add a rule for them in [tool.replayproxy.redact] (see docs/redaction.md)")
    if summary.unused:
        level = logging.WARNING if fail_on_unused else logging.INFO
        log.log(level, "%d recorded interaction(s) in cassette %s were never used:",
                len(summary.unused), summary.cassette)
        for position, it in zip(summary.unused[:20], summary.unused_interactions, strict=False):
            log.log(level, "  %s", summary_line(position + 1, it))
        if len(summary.unused) > 20:
            log.log(level, "  … and %d more", len(summary.unused) - 20)


@contextlib.contextmanager
def _forward_signals(child: subprocess.Popen[bytes]) -> Iterator[None]:
    """Let the child handle Ctrl-C itself; pass SIGTERM/SIGHUP on to it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run_child(cmd: list[str], env: dict[str, str]) -> int:
    try:
        child = subprocess.Popen(cmd, env={**os.environ, **env})
    except FileNotFoundError:
        raise CommandError(
            f"command not found: {cmd[0]!r}; check the command after `--` and your PATH"
        ) from None
    except PermissionError:
        raise CommandError(f"command {cmd[0]!r} is not executable; check its permissions") \
            from None
    except OSError as e:
        raise CommandError(f"cannot run {cmd[0]!r}: {e.strerror}") from None
    with _forward_signals(child):
        rc = child.wait()
    return 128 - rc if rc < 0 else rc


def _wrap(cmd: list[str] | None, *, name: str, matching: _Matching, mode: RecordMode,
          upstream_ca: Path | None, ca_dir: Path | None, port: int, reverse: str | None,
          quiet: bool, faults: list[str] | None = None) -> None:
    """Run ``cmd`` under a proxy for cassette ``name``, then exit with its code."""
    _setup_logging(quiet)
    if not cmd:
        raise ConfigError("no command given: put it after `--`, e.g. "
                          f"replayproxy replay -c {name} -- pytest")
    session, settings = matching.session(name, mode)
    try:
        with _running_proxy(session, settings, faults, ca_dir=ca_dir,
                            upstream_ca=upstream_ca, port=port, reverse=reverse) as (proxy, env):
            _describe_start(session, proxy)
            rc = _run_child(cmd, env)
    finally:
        summary = session.close()
    _report(summary, settings.fail_on_unused)
    if rc == 0 and summary.unmatched:
        log.warning("exiting with 1: the command passed but some requests were unmatched")
        rc = 1
    if rc == 0 and summary.leaks and not summary.leaks_written:
        log.warning("exiting with 1: interactions holding secrets were not recorded")
        rc = 1
    if rc == 0 and summary.unused and settings.fail_on_unused:
        log.warning("exiting with 1: recorded interactions were never used (--fail-on-unused)")
        rc = 1
    raise typer.Exit(rc)


# -- commands ---------------------------------------------------------------------------


def _wrapping_command(name: str, default_mode: RecordMode, doc: str) -> None:
    """Register ``record`` or ``replay``: the same command with another default mode."""

    def command(
        cassette: CassetteName,
        cmd: Command = None,
        cassette_dir: CassetteDir = None,
        record_mode: Annotated[RecordMode, _mode_option()] = default_mode,
        config: Config = None,
        upstream_ca: UpstreamCA = None,
        ca_dir: CADir = None,
        port: Port = 0,
        reverse: Reverse = None,
        strict: Strict = False,
        ignore_query: IgnoreQuery = None,
        ignore_header: IgnoreHeader = None,
        match_header: MatchHeader = None,
        ignore_json: IgnoreJson = None,
        fail_on_unused: FailOnUnused = False,
        fault: Faults = None,
        quiet: Quiet = False,
    ) -> None:
        matching = _Matching(config, cassette_dir, strict, fail_on_unused, ignore_query,
                             ignore_header, match_header, ignore_json)
        _wrap(cmd, name=cassette, matching=matching, mode=record_mode,
              upstream_ca=upstream_ca, ca_dir=ca_dir, port=port, reverse=reverse,
              quiet=quiet, faults=fault)

    command.__name__ = name
    command.__doc__ = doc
    app.command(name, context_settings=_CMD_CONTEXT)(_errors(command))


_wrapping_command("record", RecordMode.ALL, """\
    Run CMD through the proxy and record its HTTP(S) traffic into a cassette.

    Example: replayproxy record -c stripe -- pytest tests/payments
    """)
_wrapping_command("replay", RecordMode.NONE, """\
    Run CMD through the proxy, answering its requests from a cassette, offline.

    Unmatched requests get 502 with `X-Replayproxy: unmatched`; if there were any,
    the exit code is non-zero even when CMD passed.

    Example: replayproxy replay -c stripe -- pytest tests/payments
    """)


@app.command()
@_errors
def serve(
    cassette: CassetteName,
    cassette_dir: CassetteDir = None,
    record_mode: Annotated[RecordMode, _mode_option()] = RecordMode.ONCE,
    config: Config = None,
    upstream_ca: UpstreamCA = None,
    ca_dir: CADir = None,
    port: Port = 0,
    reverse: Reverse = None,
    strict: Strict = False,
    ignore_query: IgnoreQuery = None,
    ignore_header: IgnoreHeader = None,
    match_header: MatchHeader = None,
    ignore_json: IgnoreJson = None,
    fail_on_unused: FailOnUnused = False,
    fault: Faults = None,
    quiet: Quiet = False,
) -> None:
    """Run the proxy until interrupted; print the `export` lines for a shell.

    Paste the lines into another shell (or run `eval "$(replayproxy env)"`) and run
    anything there. Ctrl-C stops the proxy and writes the cassette.
    """
    _setup_logging(quiet)
    matching = _Matching(config, cassette_dir, strict, fail_on_unused, ignore_query,
                         ignore_header, match_header, ignore_json)
    session, settings = matching.session(cassette, record_mode)
    state = _run_dir() / f"serve-{os.getpid()}.json"
    stop = threading.Event()
    try:
        with _running_proxy(session, settings, fault, ca_dir=ca_dir,
                            upstream_ca=upstream_ca, port=port, reverse=reverse) as (proxy, env):
            _describe_start(session, proxy)
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"pid": os.getpid(), "cassette": session.name,
                                         "mode": session.mode.value, "env": env}))
            for line in export_lines(env):
                typer.echo(line)
            log.info("press Ctrl-C to stop and write the cassette")
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, lambda *_: stop.set())
            while not stop.wait(0.5):
                pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            state.unlink()
        summary = session.close()
    _report(summary, settings.fail_on_unused)
    raise typer.Exit(1 if summary.unmatched or (summary.unused and settings.fail_on_unused)
                     else 0)


def _running_servers() -> list[dict[str, Any]]:
    found = []
    for f in sorted(_run_dir().glob("serve-*.json"), key=lambda p: p.stat().st_mtime):
        try:
            info = json.loads(f.read_text())
            os.kill(int(info["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError, OSError):
            with contextlib.suppress(OSError):
                f.unlink()  # left by a server that died
            continue
        found.append(info)
    return found


@app.command()
@_errors
def explain(
    cassette: CassetteName,
    url: Annotated[str, typer.Option("--url", "-u", help="The request's absolute URL.",
                                     show_default=False)],
    method: Annotated[str, typer.Option("--method", "-X", help="HTTP method.")] = "GET",
    body: Annotated[str | None, typer.Option("--body", "-b", show_default=False,
                                             help="Request body; @FILE reads a file.")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", "-H", show_default=False,
                                                     help="'Name: value' (repeatable).")] = None,
    cassette_dir: CassetteDir = None,
    config: Config = None,
    ignore_query: IgnoreQuery = None,
    ignore_header: IgnoreHeader = None,
    match_header: MatchHeader = None,
    ignore_json: IgnoreJson = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the analysis as "
                                              "JSON.")] = False,
) -> None:
    """Say, offline, whether a request would match the cassette, and if not, why.

    Exit code 0 when it matches, 1 when it does not.

    Example: replayproxy explain -c stripe -X POST -u https://api.stripe.com/v1/charges
    -H 'Content-Type: application/json' --body @charge.json
    """
    matching = _Matching(config, cassette_dir, False, False, ignore_query, ignore_header,
                         match_header, ignore_json)
    session, _ = matching.session(cassette, RecordMode.NONE)
    request = request_from_cli(method, url, header or [], _read_body(body))
    decision = session.decide(request)
    if isinstance(decision, Replay):
        served = decision.served
        if json_output:
            typer.echo(json.dumps({"match": True, "interaction": served.position + 1}))
        else:
            typer.echo(f"matches {summary_line(served.position + 1, served.interaction)}")
        return
    assert isinstance(decision, Unmatched)
    typer.echo(decision.as_json_bytes().decode() if json_output else decision.message.rstrip())
    raise typer.Exit(1)


def _read_body(body: str | None) -> bytes:
    if body is None:
        return b""
    if body.startswith("@"):
        try:
            return Path(body[1:]).read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read --body {body}: {e.strerror}; give @PATH to a "
                              "readable file, or the body itself") from None
    return body.encode("utf-8")


@app.command()
@_errors
def scan(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Cassettes, VCR.py YAML or HAR files, or directories [default: the cassette "
        "directory].", show_default=False)] = None,
    cassette_dir: CassetteDir = None,
    config: Config = None,
) -> None:
    """Scan cassettes (and VCR.py YAML, HAR files) for secrets; exit 1 on any finding.

    Usable as a pre-commit hook or a CI step: replayproxy scan cassettes/
    """
    settings = _Matching(config, cassette_dir).settings()
    targets = paths or [Path(settings.cassette_dir or "cassettes")]
    count = 0
    for target in targets:
        for finding in scan_path(target, settings.redact):
            typer.echo(finding.describe())
            count += 1
    if count:
        typer.echo(f"replayproxy: {count} secret(s) found; redact them with `replayproxy "
                   "redact -c NAME` or add a rule to [tool.replayproxy.redact]", err=True)
        raise typer.Exit(1)
    typer.echo(f"replayproxy: no secrets found in {', '.join(map(str, targets))}", err=True)


@app.command()
@_errors
def redact(
    cassette: CassetteName,
    cassette_dir: CassetteDir = None,
    config: Config = None,
) -> None:
    """Apply the current redaction rules to an existing cassette, in place (atomically).

    Example: replayproxy redact -c stripe
    """
    settings = _Matching(config, cassette_dir).settings()
    path = cassette_path(settings.cassette_dir or "cassettes", cassette)
    recover_journals(path)
    redactor = _redactor(settings)
    originals = list(load_cassette(path, cassette).interactions())
    redacted = [redactor.redact(it) for it in originals]
    changed = sum(a != b for a, b in zip(originals, redacted, strict=True))
    leaks = [f for i, it in enumerate(redacted)
             for f in scan_interaction(it, settings.redact, str(path), i + 1)]
    if leaks:
        for finding in leaks:
            typer.echo(finding.describe(), err=True)
        raise CassetteError(f"{len(leaks)} secret(s) in {path} are not covered by any "
                            "redaction rule; add rules to [tool.replayproxy.redact] and run "
                            "again (the cassette was not changed)")
    if changed:
        save_cassette(path, redacted)
    typer.echo(f"replayproxy: {changed} of {len(redacted)} interactions redacted in {path}",
               err=True)


@app.command("env")
@_errors
def env_command(
    pid: Annotated[int | None, typer.Option(help="PID of the `serve` to describe "
                                            "[default: the newest].")] = None,
) -> None:
    """Print the `export` lines for a running `replayproxy serve`.

    Example: eval "$(replayproxy env)"
    """
    servers = _running_servers()
    if pid is not None:
        servers = [s for s in servers if s["pid"] == pid]
    if not servers:
        raise ConfigError("no `replayproxy serve` is running"
                          + (f" with PID {pid}" if pid else "")
                          + "; start one with `replayproxy serve -c NAME`")
    chosen = servers[-1]
    if len(servers) > 1:
        others = ", ".join(str(s["pid"]) for s in servers[:-1])
        typer.echo(f"# also running: PID {others} (choose with --pid)", err=True)
    typer.echo(f"# replayproxy serve PID {chosen['pid']}, cassette {chosen['cassette']} "
               f"({chosen['mode']})")
    for line in export_lines(chosen["env"]):
        typer.echo(line)


@app.command()
@_errors
def ca(
    ca_dir: CADir = None,
    path_only: Annotated[bool, typer.Option("--path", help="Print only the certificate "
                                            "path.")] = False,
) -> None:
    """Show where the proxy's CA certificate is and how to trust it."""
    from replayproxy.engines.mitm.master import ensure_ca

    authority = ensure_ca(ca_dir)
    if path_only:
        typer.echo(str(authority.cert))
        return
    cert, bundle = authority.cert, authority.bundle
    typer.echo(f"""\
CA certificate: {cert}
CA key:         {authority.key} (owner-only; keep it private)
Trust bundle:   {bundle} (this CA + the roots already trusted here)

`replayproxy record/replay` set all of the below for the command they run.
To trust the CA yourself:
  curl            export CURL_CA_BUNDLE={bundle}   (or curl --cacert {cert})
  Python requests export REQUESTS_CA_BUNDLE={bundle}
  Python httpx, urllib, Ruby, OpenSSL
                  export SSL_CERT_FILE={bundle}
  Node.js         export NODE_EXTRA_CA_CERTS={cert}
  Java            keytool -importcert -noprompt -alias replayproxy -file {cert} \\
                    -keystore "$JAVA_HOME/lib/security/cacerts" -storepass changeit
  Go              export SSL_CERT_FILE={bundle}
  Debian/Ubuntu   sudo cp {cert} /usr/local/share/ca-certificates/replayproxy.crt \\
                    && sudo update-ca-certificates
  macOS           sudo security add-trusted-cert -d -r trustRoot \\
                    -k /Library/Keychains/System.keychain {cert}""")


@cassette_app.command("ls")
@_errors
def cassette_ls(cassette_dir: CassetteDir = None, config: Config = None) -> None:
    """List the cassettes: name, interactions, size."""
    cassette_dir = _Matching(config, cassette_dir).cassette_directory()
    files = list_cassettes(cassette_dir)
    # a first recording killed before it ended has left only its journal: show it too
    unrecovered = unrecovered_cassettes(cassette_dir)
    if not files and not unrecovered:
        typer.echo(f"no cassettes in {cassette_dir}", err=True)
        return
    width = max(len(n) for n in [f.stem for f in files] + unrecovered)
    for f in files:
        try:
            count = str(cassette_info(f))
        except CassetteError:
            count = "corrupt"
        pending = " (+ interrupted recording, recovered on next use)" if pending_journals(f) \
            else ""
        typer.echo(f"{f.stem:<{width}}  {count:>8} interactions  "
                   f"{format_size(f.stat().st_size):>9}{pending}")
    for name in unrecovered:
        typer.echo(f"{name:<{width}}  interrupted recording only, recovered on next use "
                   f"(e.g. replayproxy replay -c {name} -- CMD)")


@cassette_app.command("show")
@_errors
def cassette_show(
    name: Annotated[str, typer.Argument(help="Cassette name.")],
    cassette_dir: CassetteDir = None,
    config: Config = None,
    interaction: Annotated[int | None, typer.Option("--interaction", "-i",
                                                    help="Show only interaction N "
                                                    "(1-based).")] = None,
    brief: Annotated[bool, typer.Option("--brief", help="One line per interaction.")] = False,
    max_chars: Annotated[int, typer.Option(help="Cut bodies longer than this.")] = 4000,
) -> None:
    """Show a cassette's interactions, bodies decoded and pretty-printed."""
    cassette_dir = _Matching(config, cassette_dir).cassette_directory()
    path = cassette_path(cassette_dir, name)
    if not path.exists() and pending_journals(path):
        raise CassetteError(
            f"cassette {name!r} has only an interrupted recording so far (a journal in "
            f"{cassette_dir}): recover it with `replayproxy replay -c {name} -- true`, "
            "then show it again")
    cassette = load_cassette(path, name)
    numbers = range(1, len(cassette) + 1)
    if interaction is not None:
        if not 1 <= interaction <= len(cassette):
            raise ConfigError(f"cassette {name!r} has interactions 1 to {len(cassette)}; "
                              f"--interaction {interaction} is out of range")
        numbers = range(interaction, interaction + 1)
    typer.echo(f"# {cassette.path}: {len(cassette)} interactions")
    for n in numbers:
        it = cassette.interaction(n - 1)
        if brief:
            typer.echo(summary_line(n, it))
        else:
            for line in render_interaction(n, it, max_chars):
                typer.echo(line)
            typer.echo("")


# -- drift ------------------------------------------------------------------------------


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
    _check_json_path_flags("--ignore", [p for p in ignore or () if p.strip().startswith("$")],
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


def _console() -> Any:
    """A rich console on stdout; in a CI log (not a terminal) long lines stay whole
    rather than being wrapped at 80 columns."""
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(soft_wrap=True)


def _history_database(db: Path | None, settings: Settings) -> Path:
    """The drift history database: --db, else the configuration's, else in the cassette
    directory."""
    from replayproxy.drift.history import DEFAULT_DATABASE

    return db or Path(settings.drift.database
                      or Path(settings.cassette_dir or "cassettes") / DEFAULT_DATABASE)


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
                failures.append(str(e))
    return failures


DriftCassettes = Annotated[
    list[str] | None,
    typer.Option("--cassette", "-c", show_default=False,
                 help="Cassette to check (repeatable)."),
]


DriftDb = Annotated[
    Path | None,
    typer.Option(metavar="FILE", show_default=False,
                 help="History database [default: database from the configuration, else "
                 "CASSETTE_DIR/.replayproxy.db]."),
]


@drift_app.callback(invoke_without_command=True)
@_errors
def drift(
    ctx: typer.Context,
    cassette: DriftCassettes = None,
    cassette_dir: CassetteDir = None,
    config: Config = None,
    upstream_ca: UpstreamCA = None,
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
        help="Requests in flight at once [default: 4].", show_default=False)] = None,
    rate: Annotated[str | None, typer.Option(
        help="At most this many requests per host, e.g. 5/s or 120/min [default: no "
        "limit].", show_default=False)] = None,
    timeout: Annotated[str | None, typer.Option(
        help="Timeout of each live call, e.g. 10s [default: 10s].", show_default=False)]
        = None,
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
    from replayproxy.drift.report.terminal import print_report

    outputs = {"json": json_out, "junit": junit, "markdown": markdown, "html": html}
    report = DriftReport(tuple(cassette))
    try:
        settings = _Matching(config, cassette_dir).settings()
        dconfig = _drift_config(settings.drift, credential=credential, origin=origin,
                                ignore=ignore, allow_unsafe=allow_unsafe,
                                concurrency=concurrency, rate=rate, timeout=timeout,
                                repeat=repeat)
        if upstream_ca is not None and not upstream_ca.is_file():
            raise ConfigError(f"--upstream-ca {upstream_ca} does not exist: pass a PEM CA file")
    except ConfigError as e:
        report.problems.append(str(e))
        report.finished_at = time.time()
        failures = _write_reports(report, outputs)
        for failure in failures:
            typer.echo(f"replayproxy: error: {failure}", err=True)
        raise
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
            report.results, plans = check(jobs, dconfig, os.environ, upstream_ca=upstream_ca,
                                          on_result=advance)
        except ssl.SSLError as e:
            raise ConfigError(f"--upstream-ca {upstream_ca}: not a PEM CA certificate ({e})") \
                from None
    report.finished_at = time.time()
    if update:
        update_cassettes(directory, report, jobs, plans, _redactor(settings))
    if history:
        from replayproxy.drift.history import record_run

        try:
            record_run(_history_database(db, settings), report)
        except ConfigError as e:
            report.problems.append(str(e))
    print_report(_console(), report, verbose=verbose)
    problems = list(report.problems) + _write_reports(report, outputs)
    for problem in problems:
        typer.echo(f"replayproxy: error: {problem}", err=True)
    raise typer.Exit(2 if problems else report.exit_code())


@drift_app.command("history")
@_errors
def drift_history(
    ctx: typer.Context,
    cassette: DriftCassettes = None,
    cassette_dir: CassetteDir = None,
    config: Config = None,
    db: DriftDb = None,
    runs: Annotated[int, typer.Option(help="How many recent runs to list.")] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show recent drift runs and what is new, resolved or still present since the
    run before the last.

    Example: replayproxy drift history -c stripe
    """

    from replayproxy.drift.history import load_history
    from replayproxy.drift.report.history import history_json, render_history

    given = ctx.obj if isinstance(ctx.obj, dict) else {}
    cassette = cassette or given.get("cassette")
    cassette_dir = cassette_dir or given.get("cassette_dir")
    config = config or given.get("config")
    db = db or given.get("db")
    settings = _Matching(config, cassette_dir).settings()
    found = load_history(_history_database(db, settings), runs=runs,
                         cassettes=cassette or None)
    if json_out:
        typer.echo(json.dumps(history_json(found), indent=2, ensure_ascii=False))
    else:
        render_history(_console(), found)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
