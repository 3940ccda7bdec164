"""The commands that run a proxy: ``record``, ``replay``, ``serve``, and the two that
describe one, ``env`` and ``ca``.

mitmproxy (about 0.6 s to import) is imported inside the functions that start a
proxy, so the other commands and ``--help`` never load it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from replayproxy.cli.options import (
    CADir,
    CassetteDir,
    CassetteName,
    Command,
    Config,
    FailOnUnused,
    Faults,
    IgnoreHeader,
    IgnoreJson,
    IgnoreQuery,
    MatchHeader,
    Matching,
    Port,
    Quiet,
    Reverse,
    Strict,
    UpstreamCA,
    catch_errors,
    mode_option,
)
from replayproxy.cli.output import log, plural, report_run, setup_logging
from replayproxy.errors import CommandError, ConfigError
from replayproxy.model import RecordMode

if TYPE_CHECKING:
    from replayproxy.config import Settings
    from replayproxy.decision.session import CassetteSession

_EXAMPLES = {RecordMode.ALL: "record", RecordMode.NONE: "replay"}


def _run_dir() -> Path:
    from replayproxy.config import home_dir

    return home_dir() / "run"


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
    from replayproxy.faults.plan import FaultPlan, parse_fault

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
        log.warning("recovered %s from an interrupted recording of %s",
                    plural(session.summary.recovered, "interaction"), session.name)


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


def _wrap(cmd: list[str] | None, *, name: str, matching: Matching, mode: RecordMode,
          upstream_ca: Path | None, ca_dir: Path | None, port: int, reverse: str | None,
          quiet: bool, faults: list[str] | None = None) -> None:
    """Run ``cmd`` under a proxy for cassette ``name``, then exit with its code."""
    setup_logging(quiet)
    if not cmd:
        verb = _EXAMPLES.get(mode, "replay")
        raise ConfigError("no command given: put it after `--`, e.g. "
                          f"replayproxy {verb} -c {name} -- pytest")
    session, settings = matching.session(name, mode)
    try:
        with _running_proxy(session, settings, faults, ca_dir=ca_dir,
                            upstream_ca=upstream_ca, port=port, reverse=reverse) as (proxy, env):
            _describe_start(session, proxy)
            rc = _run_child(cmd, env)
    finally:
        summary = session.close()
    report_run(summary, settings.fail_on_unused)
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


def wrapping_command(name: str, default_mode: RecordMode, doc: str) -> Callable[..., None]:
    """``record`` or ``replay``: the same command with another default mode."""

    def command(
        cassette: CassetteName,
        cmd: Command = None,
        cassette_dir: CassetteDir = None,
        record_mode: Annotated[RecordMode, mode_option()] = default_mode,
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
        matching = Matching(config, cassette_dir, strict, fail_on_unused, ignore_query,
                            ignore_header, match_header, ignore_json)
        _wrap(cmd, name=cassette, matching=matching, mode=record_mode,
              upstream_ca=upstream_ca, ca_dir=ca_dir, port=port, reverse=reverse,
              quiet=quiet, faults=fault)

    command.__name__ = name
    command.__doc__ = doc
    return catch_errors(command)


record = wrapping_command("record", RecordMode.ALL, """\
    Run CMD through the proxy and record its HTTP(S) traffic into a cassette.

    Example: replayproxy record -c stripe -- pytest tests/payments
    """)
replay = wrapping_command("replay", RecordMode.NONE, """\
    Run CMD through the proxy, answering its requests from a cassette, offline.

    Unmatched requests get 502 with `X-Replayproxy: unmatched`; if there were any,
    the exit code is non-zero even when CMD passed.

    Example: replayproxy replay -c stripe -- pytest tests/payments
    """)


@catch_errors
def serve(
    cassette: CassetteName,
    cassette_dir: CassetteDir = None,
    record_mode: Annotated[RecordMode, mode_option()] = RecordMode.ONCE,
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
    from replayproxy.environment import export_lines

    setup_logging(quiet)
    matching = Matching(config, cassette_dir, strict, fail_on_unused, ignore_query,
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
    report_run(summary, settings.fail_on_unused)
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


@catch_errors
def env_command(
    pid: Annotated[int | None, typer.Option(
        metavar="PID", show_default=False,
        help="PID of the `serve` to describe [default: the newest].")] = None,
) -> None:
    """Print the `export` lines for a running `replayproxy serve`.

    Example: eval "$(replayproxy env)"
    """
    from replayproxy.environment import export_lines

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


@catch_errors
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
