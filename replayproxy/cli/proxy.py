"""The commands that run a proxy: ``record``, ``replay``, ``serve``, and the two that
describe one, ``env`` and ``ca``.

mitmproxy (about 0.6 s to import) is imported inside the functions that start a
proxy, so the other commands and ``--help`` never load it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from replayproxy.cli.options import (
    CADir,
    CassetteDir,
    CassetteName,
    Command,
    Config,
    Engine,
    FailOnUnused,
    Faults,
    IgnoreHeader,
    IgnoreJson,
    IgnoreQuery,
    Keep,
    MatchHeader,
    Matching,
    Pace,
    Port,
    Quiet,
    Reverse,
    Strict,
    UpstreamCA,
    UpstreamInsecure,
    UpstreamProxy,
    catch_errors,
    mode_option,
)
from replayproxy.cli.output import log, plural, report_run, setup_logging, warn_relaxed
from replayproxy.cli.prune import note_replay
from replayproxy.errors import CommandError, ConfigError
from replayproxy.model import RecordMode

if TYPE_CHECKING:
    from replayproxy.run import ProxyRun

_EXAMPLES = {RecordMode.ALL: "record", RecordMode.NONE: "replay"}


def _run_dir() -> Path:
    from replayproxy.config import home_dir

    return home_dir() / "run"


@dataclass(frozen=True)
class Upstream:
    """The flags saying how upstreams are reached: trust, egress proxy, reverse."""

    ca: list[Path] | None = None
    insecure: bool = False
    proxy: str | None = None
    reverse: list[str] | None = None


def _proxy_run(matching: Matching, name: str, mode: RecordMode, faults: list[str] | None, *,
               ca_dir: Path | None, upstream: Upstream, port: int,
               fresh: bool = False, keep: bool = True,
               pace: float | None = None, engine: str = "auto", workers: int = 1,
               quiet: bool = False) -> ProxyRun:
    """The proxy run for a command, its cassette opened (the engine not started yet).
    ``keep`` False (``--no-keep``): a re-recording rewrites every interaction."""
    from replayproxy.run import ProxyRun

    settings = matching.settings()
    if not keep:
        settings = replace(settings, quiet=replace(settings.quiet, keep=False))
    warn_relaxed(settings)
    run = ProxyRun(name, mode, settings=settings, faults=faults or (),
                   upstream_ca=upstream.ca or (), upstream_insecure=upstream.insecure,
                   upstream_proxy=upstream.proxy, ca_dir=ca_dir, port=port,
                   reverse=upstream.reverse or (), freeze_gc=True, fresh=fresh,
                   report=True, pace=pace, engine=engine, workers=workers,
                   configure=partial(setup_logging, quiet))
    run.choose_engine()  # opens the cassette; a wrong --engine or --workers fails here
    return run


def _describe_start(run: ProxyRun) -> None:
    session = run.session
    assert session is not None
    verb = {RecordMode.ALL: "recording", RecordMode.NONE: "replaying (offline)",
            RecordMode.NEW_EPISODES: "replaying and recording new requests"}[session.mode]
    log.info("%s cassette %s on the %s engine (%s) via proxy %s", verb, session.path,
             run.engine_used, run.engine_reason, run.proxy_url)
    if run.workers > 1:
        from replayproxy.workers import WorkerPool

        pool = run.proxy
        assert isinstance(pool, WorkerPool)
        log.info("%d workers on that port (PIDs %s)", run.workers,
                 ", ".join(str(w.pid) for w in pool.workers))
    for target, local in run.reverse_urls.items():
        log.info("reverse proxy for %s at %s", target, local)
    if run.pipeline is not None and len(run.pipeline.faults):
        log.info("faults: %s", "; ".join(f.text for f in run.pipeline.faults.list()))
    if session.summary.recovered:
        log.warning("recovered %s from an interrupted recording of %s",
                    plural(session.summary.recovered, "interaction"), session.name)


def _finish(run: ProxyRun, command_exit: int, *, command: bool) -> None:
    """Report the run and exit with its verdict (the exit rules are the core's)."""
    from replayproxy.errors import CLI_WORDS, word_settings

    summary = run.stop()
    assert summary is not None
    report_run(summary, run.settings.fail_on_unused, command=command)
    for number, pid, served in run.worker_summaries:
        log.info("worker %d (PID %d): %s on %s", number, pid,
                 plural(served.requests, "request"), plural(served.connections, "connection"))
    note_replay(summary.path, summary.mode is RecordMode.NONE, summary.requests,
                summary.cassette_size, summary.unused)
    for name, named in run.session_summaries.items():
        log.info("session %s:", name)
        report_run(named, run.settings.fail_on_unused, command=False)
        note_replay(named.path, named.mode is RecordMode.NONE, named.requests,
                    named.cassette_size, named.unused)
    verdict = run.verdict(command_exit, command=command)
    for reason in verdict.reasons:
        log.warning("exiting with 1: %s%s", "the command passed but " if command else "",
                    word_settings(reason, CLI_WORDS))
    raise typer.Exit(verdict.exit_code)


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
          upstream: Upstream, ca_dir: Path | None, port: int, quiet: bool,
          faults: list[str] | None = None, fresh: bool = False, keep: bool = True,
          pace: float | None = None, engine: str = "auto") -> None:
    """Run ``cmd`` under a proxy for cassette ``name``, then exit with its code."""
    setup_logging(quiet)
    if not cmd:
        verb = _EXAMPLES.get(mode, "replay")
        raise ConfigError("no command given: put it after `--`, e.g. "
                          f"replayproxy {verb} -c {name} -- pytest")
    run = _proxy_run(matching, name, mode, faults, ca_dir=ca_dir, upstream=upstream,
                     port=port, fresh=fresh, keep=keep, pace=pace,
                     engine=engine)
    with run:  # stopped (and the cassette written) however the block ends
        _describe_start(run)
        rc = _run_child(cmd, run.environment())
    _finish(run, rc, command=True)


def wrapping_command(name: str, default_mode: RecordMode, doc: str) -> Callable[..., None]:
    """``record`` or ``replay``: the same command with another default mode."""

    def command(
        cassette: CassetteName,
        cmd: Command = None,
        cassette_dir: CassetteDir = None,
        record_mode: Annotated[RecordMode, mode_option()] = default_mode,
        config: Config = None,
        upstream_ca: UpstreamCA = None,
        upstream_insecure: UpstreamInsecure = False,
        upstream_proxy: UpstreamProxy = None,
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
        pace: Pace = None,
        quiet: Quiet = False,
        fresh: Annotated[bool, typer.Option(
            "--fresh", help="Start the cassette afresh: record everything and replace the "
            "whole cassette (mode all otherwise keeps recorded interactions the run did "
            "not request again, as VCR.py does).")] = False,
        keep: Keep = True,
        engine: Engine = "auto",
    ) -> None:
        matching = Matching(config, cassette_dir, strict, fail_on_unused, ignore_query,
                            ignore_header, match_header, ignore_json)
        _wrap(cmd, name=cassette, matching=matching, mode=record_mode,
              upstream=Upstream(upstream_ca, upstream_insecure, upstream_proxy, reverse),
              ca_dir=ca_dir, port=port, quiet=quiet, faults=fault, fresh=fresh, keep=keep,
              pace=pace, engine=engine)

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
    upstream_insecure: UpstreamInsecure = False,
    upstream_proxy: UpstreamProxy = None,
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
    pace: Pace = None,
    quiet: Quiet = False,
    keep: Keep = True,
    engine: Engine = "auto",
    workers: Annotated[int, typer.Option(
        "--workers", "-w", metavar="N",
        help="Answer from N fast-engine processes on one port (SO_REUSEPORT), for load "
        "testing: replay only; at most 4 per CPU and 64 in all; one summary and control "
        "API (see docs/proxy.md#several-workers-serve---workers-n).")] = 1,
) -> None:
    """Run the proxy until interrupted; print the `export` lines for a shell.

    Paste the lines into another shell (or run `eval "$(replayproxy env)"`) and run
    anything there. Ctrl-C stops the proxy and writes the cassette.
    """
    from replayproxy.environment import export_lines

    setup_logging(quiet)
    matching = Matching(config, cassette_dir, strict, fail_on_unused, ignore_query,
                        ignore_header, match_header, ignore_json)
    run = _proxy_run(matching, cassette, record_mode, fault, ca_dir=ca_dir,
                     upstream=Upstream(upstream_ca, upstream_insecure, upstream_proxy,
                                       reverse), port=port, keep=keep, pace=pace,
                     engine=engine, workers=workers, quiet=quiet)
    state = _run_dir() / f"serve-{os.getpid()}.json"
    stop = threading.Event()
    try:
        with run:
            _describe_start(run)
            env = run.environment()
            assert run.session is not None
            _write_private(state, json.dumps({"pid": os.getpid(), "cassette": cassette,
                                              "mode": run.session.mode.value, "env": env}))
            for line in export_lines(env):
                typer.echo(line)
            log.info("press Ctrl-C to stop and write the cassette")
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, lambda *_: stop.set())
            while not stop.wait(0.5):
                if run.poll_workers():  # a worker is gone: the verdict says which
                    break
    finally:
        with contextlib.suppress(FileNotFoundError):
            state.unlink()
    _finish(run, 0, command=False)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (it holds the control token), in a
    directory only its owner can list."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


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
    from replayproxy.clients import NODE_PRELOAD, TRUSTSTORE_PASSWORD
    from replayproxy.engines.mitm.ca import ensure_ca

    authority = ensure_ca(ca_dir)
    if path_only:
        typer.echo(str(authority.cert))
        return
    cert, bundle, store = authority.cert, authority.bundle, authority.truststore
    url = "http://127.0.0.1:PORT"
    if store is not None:
        java_file = f"{store} (PKCS12, password {TRUSTSTORE_PASSWORD}: JDK roots + this CA)"
        java = f"""\
  Java            export JAVA_TOOL_OPTIONS="-Djavax.net.ssl.trustStore={store} \\
                    -Djavax.net.ssl.trustStoreType=PKCS12 \\
                    -Djavax.net.ssl.trustStorePassword={TRUSTSTORE_PASSWORD} \\
                    -Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=PORT \\
                    -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=PORT -Dhttp.nonProxyHosts="
                  (no root, the JDK's own store untouched; Java ignores HTTPS_PROXY)"""
    else:
        java_file = "not made: no keytool (put a JDK's bin on PATH or set JAVA_HOME)"
        java = """\
  Java            needs a trust store: install a JDK (keytool) and run `replayproxy ca` again"""
    typer.echo(f"""\
CA certificate: {cert}
CA key:         {authority.key} (owner-only; keep it private)
Trust bundle:   {bundle} (this CA + the roots already trusted here)
wgetrc:         {authority.wgetrc}
Java store:     {java_file}

`replayproxy record`, `replay` and `serve` set all of the below for the command they run
(docs/clients.md). To set a client up yourself (PORT: the proxy's port):
  curl            export CURL_CA_BUNDLE={bundle}   (or curl --cacert {cert})
  wget            export WGETRC={authority.wgetrc}   (GnuTLS builds ignore SSL_CERT_FILE)
  Python requests export REQUESTS_CA_BUNDLE={bundle}
  Python httpx, urllib, Go, Ruby, OpenSSL
                  export SSL_CERT_FILE={bundle}
  pip             export PIP_CERT={bundle}   (a cert in pip.conf beats the others)
  aiohttp         ignores HTTPS_PROXY unless the code says ClientSession(trust_env=True)
                  (or passes proxy=): no variable can change that
  npm, pnpm       export npm_config_cafile={bundle} \\
                    npm_config_proxy={url} npm_config_https_proxy={url}
  Node.js         export NODE_EXTRA_CA_CERTS={cert}
                  Node before 24 ignores HTTPS_PROXY (http, https, fetch):
                  export NODE_OPTIONS="--require {NODE_PRELOAD}" NODE_USE_ENV_PROXY=1
{java}
  gRPC            export GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={bundle}
  Debian/Ubuntu   sudo cp {cert} /usr/local/share/ca-certificates/replayproxy.crt \\
                    && sudo update-ca-certificates
  macOS           sudo security add-trusted-cert -d -r trustRoot \\
                    -k /Library/Keychains/System.keychain {cert}

Loopback hosts: Go and Ruby never use a proxy for 127.0.0.1 or localhost, whatever
NO_PROXY says (Ruby not for any name that resolves to loopback either); Java neither,
unless http.nonProxyHosts is emptied as above. Reach a local sandbox by a name that
resolves elsewhere (a container's name, this machine's address), or serve it with
`--reverse URL` and give the client the local base URL instead.""")
