"""A proxy run: the public API that ``record``, ``replay``, ``serve``, the tests and the
benchmarks all use, so a run is composed in exactly one place.

::

    from replayproxy import ProxyRun

    with ProxyRun("stripe", "none", cassette_dir="cassettes") as run:
        subprocess.run(["pytest", "tests/payments"], env={**os.environ, **run.environment()})
    print(run.summary.replayed, run.verdict().exit_code)

A run opens the cassette, builds the decision pipeline (cassette + faults), starts an
engine (the fast one, or mitmproxy: see ``choose_engine``) on its own thread and the
fault control API, and on exit stops both and folds what was recorded into the cassette.
It is also a plain object: ``start()`` and ``stop()`` do the same as entering and
leaving the ``with`` block.

The engine (mitmproxy) is imported by ``start()``, not by importing this module.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from replayproxy.cassette.store import cassette_path, check_cassette_dir
from replayproxy.config import Settings, home_dir, load_settings, project_dir
from replayproxy.decision.pipeline import Pipeline
from replayproxy.decision.requestlog import Numbering, RequestLog
from replayproxy.decision.session import CassetteSession, SessionSummary
from replayproxy.decision.sessions import Sessions, SessionSettings, session_url
from replayproxy.decision.verdict import Verdict, verdict
from replayproxy.decision.workers import check_workers, merge_summaries
from replayproxy.errors import ConfigError
from replayproxy.faults.plan import FaultPlan
from replayproxy.faults.spec import FaultSpec, parse_fault
from replayproxy.matching.rules import MatchConfig
from replayproxy.model import RecordMode
from replayproxy.redaction.redactor import Redactor, load_key
from replayproxy.report import default_database, new_suite
from replayproxy.streams import parse_pace
from replayproxy.upstream import Egress, egress_from, read_pem_ca, reverse_spec

if TYPE_CHECKING:
    from replayproxy.engines.fast.server import FastProxy
    from replayproxy.engines.mitm.ca import CA
    from replayproxy.engines.mitm.master import Proxy
    from replayproxy.faults.control import ControlServer, FaultControl
    from replayproxy.workers import WorkerPool

__all__ = ["ProxyRun", "SharedPort"]


@dataclass(frozen=True)
class SharedPort:
    """How a worker of a run served by several processes (``ProxyRun(workers=N)``)
    runs: the fast engine, bound with ``SO_REUSEPORT`` to ports the other workers share
    (the proxy port, then ``reverse_ports``), its requests numbered from a counter they
    share (``numbers``), no named sessions (each worker would open its own)."""

    reverse_ports: tuple[int, ...] = ()
    numbers: Numbering | None = None


def _no_named_sessions(name: str, own: SessionSettings) -> Pipeline:
    from replayproxy.decision.sessions import SessionRefused

    raise SessionRefused(f"session {name!r}: named sessions are not served by a proxy of "
                         "several workers (serve --workers N); use --workers 1")


def _project(settings: Settings) -> Path:
    """The project directory: the configuration file's, else the current one."""
    return settings.source.parent if settings.source is not None else Path.cwd()

log = logging.getLogger("replayproxy")


class ProxyRun:
    """One proxy in front of a cassette (and any number of named sessions), with faults
    and a control API.

    Args:
        cassette: the cassette's name; None for a proxy that serves named sessions
            only (``session_url``, see ``decision.sessions``).
        mode: a ``RecordMode`` or its name: ``once`` (record if the cassette is
            missing, else replay), ``none`` (replay only, offline), ``new_episodes``,
            ``all`` (record everything).
        cassette_dir: directory of the cassettes [default: ``settings.cassette_dir``,
            else ``./cassettes``].
        settings: the configuration [default: ``config``'s, or the file found in the
            current directory (``replayproxy.toml``, else ``pyproject.toml``)].
        config: a configuration file to read when ``settings`` is not given.
        faults: fault rules added to the configuration's (spec strings, see
            docs/faults.md, or ``FaultSpec``).
        strict: count requests beyond a recorded sequence as unmatched [default: the
            configuration's].
        upstream_ca: PEM CAs (one path or several) to trust for upstream servers,
            besides this machine's trust: certifi, the system store, and
            ``SSL_CERT_FILE``/``SSL_CERT_DIR`` as they are when the run is made.
        upstream_insecure: do not verify upstream certificates at all (a throwaway
            sandbox); a warning is logged at start.
        upstream_proxy: the HTTP proxy to reach upstreams through while recording,
            ``http://[USER:PASSWORD@]HOST:PORT``; ``"none"`` goes direct [default:
            ``HTTPS_PROXY``/``HTTP_PROXY`` of this process's environment]. ``NO_PROXY``
            applies either way. Replay never connects anywhere.
        ca_dir: the proxy's CA directory [default: ``$REPLAYPROXY_CA_DIR``, else
            ``~/.replayproxy/ca``].
        host, port: where the proxy listens (port 0: a free one).
        reverse: upstream base URLs (one, or several) to also serve, each on its own
            port, as a plain base URL.
        control: start the fault control API (``control_url``).
        freeze_gc: once started, move everything that exists to the collector's
            permanent generation (a long-running proxy then never pauses ~60 ms for a
            full collection); for a process that only serves the proxy.
        addons: extra mitmproxy addons, loaded ahead of replayproxy's.
        fresh: start the cassette afresh: record everything and replace the whole
            cassette with it (mode ``all`` otherwise keeps the interactions the run did
            not request again, as VCR.py 9 does).
        report: record the run in the runs database (``replayproxy report``): True for
            the default one (``$REPLAYPROXY_REPORT_DB``, else
            ``.replayproxy/runs.db`` in the project directory), or its path.
        pace: how fast recorded streams (SSE, chunked, big bodies) are replayed: their
            recorded pacing times this; 0 as fast as possible, 1 real time [default: the
            configuration's, else 1].
        engine: ``auto`` (the fast engine whenever it can serve the run, see
            ``engines.choice``), ``fast`` or ``mitmproxy``.
        workers: engine processes serving the run on one port (``SO_REUSEPORT``), for
            load testing; more than 1: replay only, fast engine only, no named sessions
            (``decision.workers`` says why a run cannot have them). The summary, the run
            report and the control API cover them all; sequences and count-based faults
            are kept per worker.
        configure: with ``workers``: run first in each worker process (set up logging).
        shared: set by a run of several workers for each of its worker processes.

    Raises (from ``start``):
        CassetteError: replay-only and the cassette does not exist, or it is corrupt; or
            the cassette directory cannot hold cassettes (a file, a dangling symlink, a
            device; not writable when the run records).
        ConfigError: a fault spec, the upstream CA or another setting is invalid.
        ProxyStartError: the port is taken, or the proxy could not start.
    """

    def __init__(
        self,
        cassette: str | None,
        mode: RecordMode | str = RecordMode.ONCE,
        *,
        cassette_dir: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        config: str | os.PathLike[str] | None = None,
        faults: Sequence[str | FaultSpec] = (),
        strict: bool | None = None,
        upstream_ca: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        upstream_insecure: bool = False,
        upstream_proxy: str | None = None,
        ca_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        reverse: str | Sequence[str] | None = None,
        control: bool = True,
        freeze_gc: bool = False,
        addons: Sequence[Any] = (),
        fresh: bool = False,
        report: bool | str | os.PathLike[str] = False,
        pace: float | None = None,
        engine: str = "auto",
        workers: int = 1,
        configure: Callable[[], None] | None = None,
        shared: SharedPort | None = None,
    ) -> None:
        self.cassette = cassette
        self.engine = engine
        self.engine_used: str | None = None
        """``fast`` or ``mitmproxy``, once started."""
        self.engine_reason = ""
        """Why that engine (for the start line)."""
        try:
            self.mode = mode if isinstance(mode, RecordMode) else RecordMode.parse(mode)
        except ValueError as e:
            raise ConfigError(f"{{record_mode}}: {e}") from None
        self.settings = settings if settings is not None else load_settings(
            Path(config) if config is not None else None)
        self.cassette_dir = Path(cassette_dir or self.settings.cassette_dir or "cassettes")
        self.fault_specs = tuple(faults)
        self.strict = self.settings.strict if strict is None else strict
        cas = [upstream_ca] if isinstance(upstream_ca, (str, os.PathLike)) \
            else list(upstream_ca or ())
        self.upstream_cas = [Path(p) for p in cas]
        self.upstream_insecure = upstream_insecure
        self.upstream_proxy = upstream_proxy
        self._environ = dict(os.environ)  # trust and egress as they are now
        self.ca_dir = Path(ca_dir) if ca_dir is not None else None
        self.host = host
        self.port = port
        self.reverse = [reverse] if isinstance(reverse, str) else list(reverse or ())
        self.control = control
        self.freeze_gc = freeze_gc
        self.extra_addons = list(addons)
        self.egress: Egress | None = None
        """The egress proxy recording goes through (set by ``open``)."""
        self.fresh = fresh
        self.report_db: Path | None = None if report is False else (
            default_database(project_dir(self.settings)) if report is True else Path(report))
        self.suite = new_suite()
        """The suite id the run is recorded under in the runs database."""
        self._started = 0.0
        self._closed = False
        try:
            self.pace = self.settings.pace if pace is None else parse_pace(pace)
        except ValueError as e:
            raise ConfigError(f"{{pace}}: {e}") from None
        self.session: CassetteSession | None = None
        self.pipeline: Pipeline | None = None
        self.sessions: Sessions | None = None
        """The named sessions (set by ``open``)."""
        self.summary: SessionSummary | None = None
        """What happened to the run's own cassette, once the run has stopped."""
        self.session_summaries: dict[str, SessionSummary] = {}
        """What happened in each named session, once the run has stopped."""
        self.workers = workers
        self.configure = configure
        self.shared = shared
        self.worker_summaries: list[tuple[int, int, SessionSummary]] = []
        """Each worker's number, PID and summary, once a run of several has stopped."""
        self.worker_failures: list[str] = []
        """A line for each worker that stopped before it was asked to."""
        self._proxy: Proxy | FastProxy | WorkerPool | None = None
        self._control: ControlServer | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def open(self) -> CassetteSession | None:
        """Open the cassette and build the decision pipeline (``start`` does it too);
        None for a run of named sessions only.

        Separate so a front end can report what the run will do, and fail on a missing
        cassette, before the engine is imported.
        """
        if self.sessions is not None:
            return self.session
        faults = self._faults(self.fault_specs)
        for ca in self.upstream_cas:
            read_pem_ca(ca)
        self.egress = egress_from(self.upstream_proxy, self._environ)
        for target in self.reverse:
            reverse_spec(target)
        self._redactor = Redactor(self.settings.redact, load_key(home_dir()))
        if self.cassette is not None:
            self.session = self._new_session(self.cassette, self.mode, self.settings.match,
                                             self.strict, self.fresh)
            numbers = self.shared.numbers if self.shared is not None else None
            self.pipeline = Pipeline(self.session, faults, threading.Lock(),
                                     RequestLog(numbers))
        else:
            self._check_dir(None, self.mode, self.fresh)
        self.sessions = Sessions(self._open_session if self.shared is None
                                 else _no_named_sessions, self.pipeline, self.cassette)
        return self.session

    def _check_dir(self, cassette: str | None, mode: RecordMode, fresh: bool) -> None:
        """Stop here, before anything starts, if the cassette directory cannot hold the
        cassette (rather than dropping every interaction recorded)."""
        records = fresh or mode in (RecordMode.ALL, RecordMode.NEW_EPISODES) or (
            mode is RecordMode.ONCE and (
                cassette is None or not cassette_path(self.cassette_dir, cassette).exists()))
        check_cassette_dir(self.cassette_dir, write=records)

    def _new_session(self, cassette: str, mode: RecordMode, match: MatchConfig,
                     strict: bool, fresh: bool) -> CassetteSession:
        """Open the run's own cassette, after checking its directory can hold it."""
        self._check_dir(cassette, mode, fresh)
        return CassetteSession(self.cassette_dir, cassette, mode, strict=strict,
                               match=match, redactor=self._redactor, fresh=fresh,
                               quiet=self.settings.quiet)

    def use_cassette(self, cassette: str, mode: RecordMode | str | None = None, *,
                     faults: Sequence[str | FaultSpec] = (), match: MatchConfig | None = None,
                     strict: bool | None = None, fresh: bool = False) -> SessionSummary:
        """Serve ``cassette`` as the run's own cassette from now on, without restarting
        the proxy (the same URL, CA and control API): the cassette in use is closed
        first, what it recorded folded into its file, and its summary returned.

        ``mode`` [default: the run's], ``match`` [default: the configuration's] and
        ``strict`` [default: the run's] apply to the new cassette; its fault rules are
        the configuration's followed by ``faults``, replacing every rule added so far
        (through the control API too). A request still in flight while the cassette
        changes is decided by the new one; switch between tests, not during one. Named
        sessions (``session_url``) are not affected.

        Raises:
            CassetteError, ConfigError: as ``open`` does; the proxy then has no usable
                cassette (every request is answered from the closed one) until a
                ``use_cassette`` succeeds.
        """
        if self.pipeline is None or self.session is None or self.sessions is None:
            raise RuntimeError("the proxy run has no cassette of its own open: start() it "
                               "with one first")
        self._one_process("use_cassette")
        try:
            new_mode = self.mode if mode is None else (
                mode if isinstance(mode, RecordMode) else RecordMode.parse(mode))
        except ValueError as e:
            raise ConfigError(f"{{record_mode}}: {e}") from None
        plan = self._faults(faults)
        summary = self.session.close()  # before the new session reads the cassette
        session = self._new_session(cassette, new_mode,
                                    self.settings.match if match is None else match,
                                    self.strict if strict is None else strict, fresh)
        with self.pipeline.lock:
            self.pipeline.session = session
            self.pipeline.faults.clear()
            for spec in plan.list():
                self.pipeline.faults.add(spec)
        self.session, self.cassette = session, cassette
        self.sessions.default_name = cassette
        return summary

    def flush(self) -> SessionSummary:
        """Fold what the run's own cassette recorded so far into its file (the run goes
        on serving it) and return its summary so far, ``unused`` included."""
        if self.session is None:
            raise RuntimeError("the proxy run has no cassette of its own open")
        self._one_process("flush")
        return self.session.close()

    def _one_process(self, what: str) -> None:
        if self.workers > 1:
            raise RuntimeError(f"{what}: each of the run's {self.workers} workers holds the "
                               "cassette in its own process; use workers=1")

    def _faults(self, specs: Sequence[str | FaultSpec]) -> FaultPlan:
        faults = FaultPlan(self.settings.faults)
        for spec in specs:
            try:
                faults.add(parse_fault(spec) if isinstance(spec, str) else spec)
            except ValueError as e:
                raise ConfigError(f"{{fault}} {spec!r}: {e}", fault=str(spec)) from None
        return faults

    def _open_session(self, name: str, own: SessionSettings) -> Pipeline:
        """The pipeline of named session ``name``: the run's settings, ``own`` on top."""
        mode = RecordMode.parse(own.mode) if own.mode is not None else self.mode
        faults = self._faults([*self.fault_specs, *own.faults])
        session = CassetteSession(self.cassette_dir, name, mode,
                                  strict=self.strict if own.strict is None else own.strict,
                                  match=self.settings.match, redactor=self._redactor,
                                  quiet=self.settings.quiet)
        log.info("session %s opened (%s)", name, mode.value)
        return Pipeline(session, faults, threading.Lock())

    def choose_engine(self) -> tuple[str, str]:
        """The engine this run uses (``fast`` or ``mitmproxy``) and why; opens the
        cassette. Raises ConfigError for ``engine="fast"`` on a run it cannot serve, or
        for ``workers`` the run cannot have."""
        from replayproxy.engines.choice import choose_engine, fast_engine_can_serve

        session = self.open()
        if session is None or self.pipeline is None:
            why_not: str | None = ("a proxy of named sessions only, whose cassettes are not "
                                   "known yet")
        else:
            why_not = fast_engine_can_serve(session.mode, session.index.cassette,
                                            self.pipeline.faults.list(),
                                            mitmproxy_addons=bool(self.extra_addons))
        check_workers(self.workers, cpus=os.cpu_count(),
                      mode=session.mode if session is not None else self.mode,
                      engine=self.engine, why_not_fast=why_not,
                      reuse_port=hasattr(socket, "SO_REUSEPORT"))
        if self.shared is not None and why_not is not None:
            raise ConfigError(f"a worker runs the fast engine only, which cannot serve this "
                              f"run ({why_not})")
        return choose_engine("fast" if self.shared is not None else self.engine, why_not)

    def start(self) -> ProxyRun:
        """Open the cassette and start the proxy; return when it accepts connections."""
        from replayproxy.engines.mitm.ca import ensure_ca
        from replayproxy.faults.control import ControlServer

        self.engine_used, self.engine_reason = self.choose_engine()
        assert self.sessions is not None
        self._started = time.time()
        try:
            records = self.pipeline.records if self.pipeline is not None \
                else self.mode is not RecordMode.NONE
            proxy: Proxy | FastProxy | WorkerPool
            if self.workers > 1:
                from replayproxy.workers import WorkerPool

                proxy = WorkerPool(self._worker_args(), self.workers,
                                   ca=ensure_ca(self.ca_dir), host=self.host,
                                   port=self.port, reverse=self.reverse,
                                   configure=self.configure)
            elif self.engine_used == "fast":
                from replayproxy.engines.fast.server import FastProxy

                shared = self.shared
                proxy = FastProxy(self.pipeline, ca=ensure_ca(self.ca_dir), host=self.host,
                                  port=self.port, reverse=self.reverse,
                                  sessions=self.sessions, limits=self.settings.limits,
                                  reuse_port=shared is not None,
                                  reverse_ports=shared.reverse_ports if shared else ())
            else:
                from replayproxy.engines.mitm.addon import ReplayproxyAddon
                from replayproxy.engines.mitm.guard import OwnControl
                from replayproxy.engines.mitm.master import Proxy

                # first: a call to the control API through the proxy is never forwarded
                proxy = Proxy([OwnControl(lambda: self.control_url), *self.extra_addons,
                               ReplayproxyAddon(self.pipeline, sessions=self.sessions,
                                                pace=self.pace)],
                              ca=ensure_ca(self.ca_dir), host=self.host, port=self.port,
                              reverse=self.reverse, upstream_ca=self.upstream_cas,
                              upstream_insecure=self.upstream_insecure,
                              egress=self.egress, environ=self._environ,
                              limits=self.settings.limits)
            proxy.start()
            if self.upstream_insecure and records:
                log.warning("upstream certificates are NOT verified: anyone on the way "
                            "can read and change what is recorded; use it only for a "
                            "throwaway sandbox, and trust a private CA with its PEM file "
                            "instead")
            if self.egress and records:
                log.info("%s", self.egress.describe())
            self._proxy = proxy
            if self.control and self.workers > 1:
                from replayproxy.faults.control import WorkersControlServer

                self._control = WorkersControlServer(cast("WorkerPool", proxy).controls)
                self._control.start()
            elif self.control:
                single = cast("Proxy | FastProxy", proxy)
                self._control = ControlServer(self.pipeline, self.sessions,
                                              proxy_url=single.proxy_url,
                                              listen=single.add_listener)
                self._control.start()
        except BaseException:
            self.stop()
            raise
        if self.freeze_gc:
            # what exists now (mitmproxy, the loaded cassette) lives until exit: keep it
            # out of the collector's full passes, which otherwise stall every connection
            gc.collect()
            gc.freeze()
        return self

    def stop(self) -> SessionSummary | None:
        """Stop the proxy and the control API, write the cassette; return the summary.
        Idempotent."""
        if self._control is not None:
            self._control.stop()
            self._control = None
        if self._proxy is not None:
            proxy, self._proxy = self._proxy, None
            if self.workers > 1:  # a pool of workers: what each served
                pool = cast("WorkerPool", proxy)
                self.worker_summaries = pool.stop()
                self.worker_failures = list(pool.failures)
            else:
                proxy.stop()
        if self.sessions is not None and not self._closed:
            self._closed = True
            self.session_summaries = self.sessions.close_all()
            if self.session is not None:
                self.summary = self.session.close()
                if self.workers > 1:
                    self.summary = merge_summaries(
                        [self.summary, *(s for _, _, s in self.worker_summaries)],
                        self.session.decoded)
            self._record_report()
        return self.summary

    def _worker_args(self) -> dict[str, Any]:
        """What each worker of this run is made with (``ProxyRun`` keywords)."""
        assert self.session is not None
        return {"cassette": self.cassette, "mode": self.session.mode,
                "cassette_dir": self.cassette_dir, "settings": self.settings,
                "faults": self.fault_specs, "strict": self.strict, "ca_dir": self.ca_dir,
                "freeze_gc": self.freeze_gc, "pace": self.pace, "engine": "fast"}

    def poll_workers(self) -> list[str]:
        """With ``workers``: a line for each worker that stopped before it was asked
        to: stop the run then (a worker killed or crashed fails it, ``verdict`` says
        which); else empty."""
        if self.workers == 1 or self._proxy is None:
            return []
        return cast("WorkerPool", self._proxy).poll()

    def _record_report(self) -> None:
        """Store this run's sessions in the runs database; a failure is a warning."""
        if self.report_db is None or not self._started:
            return
        from replayproxy.report.runs import record_session

        finished = time.time()
        summaries = [self.summary] if self.summary is not None else []
        for summary in [*summaries, *self.session_summaries.values()]:
            try:
                record_session(self.report_db, summary, suite=self.suite,
                               started=self._started, finished=finished)
            except ConfigError as e:
                log.warning("the run was not recorded for `replayproxy report`: %s", e)
                return

    def __enter__(self) -> ProxyRun:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what clients need --------------------------------------------------------------

    @property
    def proxy(self) -> Proxy | FastProxy | WorkerPool:
        """The running engine (with ``workers``: the pool of worker processes)."""
        if self._proxy is None:
            raise RuntimeError("the proxy run is not started")
        return self._proxy

    @property
    def proxy_url(self) -> str:
        """``http://127.0.0.1:PORT``: the value for HTTP_PROXY and HTTPS_PROXY."""
        return self.proxy.proxy_url

    def session_url(self, name: str) -> str:
        """The proxy URL that selects session ``name`` (``http://NAME@127.0.0.1:PORT``);
        the session opens, with the run's settings, on its first request."""
        return session_url(self.proxy_url, name)

    @property
    def reverse_url(self) -> str | None:
        """The local base URL serving the first ``reverse`` upstream, if given."""
        return self.proxy.reverse_url

    @property
    def reverse_urls(self) -> dict[str, str]:
        """Each ``reverse`` upstream's base URL mapped to its local base URL."""
        return self.proxy.reverse_urls

    @property
    def control_url(self) -> str | None:
        """The fault control API's URL (``REPLAYPROXY_CONTROL_URL``), if started."""
        return self._control.url if self._control is not None else None

    @property
    def control_token(self) -> str | None:
        """The token the control API asks for (``REPLAYPROXY_CONTROL_TOKEN``)."""
        return self._control.token if self._control is not None else None

    def fault_control(self) -> FaultControl:
        """A client of this run's fault control API."""
        from replayproxy.faults.control import FaultControl

        if self._control is None:
            raise RuntimeError("the proxy run has no control API (control=False, or not "
                               "started)")
        return FaultControl(self._control.url, self._control.token)

    @property
    def requests(self) -> RequestLog:
        """What clients of the run's own cassette sent (see ``decision.requestlog``), also
        served by the control API at ``GET /requests`` (a named session's: its
        pipeline's ``requests``, ``GET /sessions/NAME/requests``)."""
        if self.pipeline is None:
            raise RuntimeError("the proxy run is not open: start() it first")
        if self.workers > 1:
            raise RuntimeError("the requests of a run of several workers are in theirs: "
                               "read them with GET /requests of the control API")
        return self.pipeline.requests

    @property
    def ca(self) -> CA:
        """The CA certificate, key and trust bundle clients are given."""
        return self.proxy.ca

    def environment(self) -> dict[str, str]:
        """The variables a child process needs: the control URL and token, then proxy,
        CA trust and each client's set-up (``REPLAYPROXY_URL`` last, see
        ``proxy_environment``)."""
        control = {"REPLAYPROXY_CONTROL_URL": self._control.url,
                   "REPLAYPROXY_CONTROL_TOKEN": self._control.token} \
            if self._control is not None else {}
        return {**control, **self.proxy.environment()}

    # -- the outcome --------------------------------------------------------------------

    def verdict(self, command_exit: int = 0, *, command: bool = True) -> Verdict:
        """The run's exit code given the command's (see ``decision.verdict``);
        ``command=False`` for a proxy served until stopped, with no command of its own."""
        if self.sessions is None or (self.summary is None and self.session is not None) \
                or self._proxy is not None:
            raise RuntimeError("the proxy run has not stopped yet")
        judged = [verdict(s, command_exit=command_exit,
                          fail_on_unused=self.settings.fail_on_unused, command=command)
                  for s in ([self.summary] if self.summary is not None else [])]
        for name, summary in self.session_summaries.items():
            # a named session is judged as a proxy served until stopped: nothing reaching
            # it is no sign of a bypass
            found = verdict(summary, command_exit=command_exit,
                            fail_on_unused=self.settings.fail_on_unused, command=False)
            judged.append(Verdict(found.exit_code, tuple(f"session {name}: {r}"
                                                         for r in found.reasons)))
        if self.worker_failures:
            judged.append(Verdict(command_exit or 1, tuple(self.worker_failures)))
        if not judged:
            return Verdict(command_exit)
        return Verdict(max(v.exit_code for v in judged),
                       tuple(r for v in judged for r in v.reasons))
