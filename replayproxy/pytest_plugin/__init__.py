"""The pytest plugin: record and replay a test's HTTP(S) traffic through replayproxy.

Loaded through the ``pytest11`` entry point. A test asks for the ``replayproxy``
fixture, or carries ``@pytest.mark.replayproxy(...)``; the first such test of a session
(of an xdist worker) starts one proxy (``replayproxy.ProxyRun``), and each such test
then switches it to its own cassette (``ProxyRun.use_cassette``) and sets the proxy's
environment (``HTTPS_PROXY``, the CA variables...) in ``os.environ`` while it runs, so
the test's clients and the subprocesses it starts go through the proxy. See
docs/pytest.md.

Precedence, for each setting: a ``--replayproxy-*`` option on the command line (or in
``addopts``) > the test's marker > ``[tool.replayproxy]`` / ``[tool.replayproxy.pytest]``
in the configuration file > the defaults (record mode ``none``, cassettes in
``<rootdir>/cassettes``). Fault rules add up: the file's, then the options', then the
marker's.

Loading the plugin imports nothing heavy: the proxy run (and mitmproxy) is imported
when the first test uses it.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from replayproxy.config import Settings, load_settings, parse_settings
from replayproxy.errors import ReplayproxyError, word_settings
from replayproxy.model import RecordMode

if TYPE_CHECKING:
    from replayproxy.decision.requestlog import SentRequest
    from replayproxy.decision.session import SessionSummary
    from replayproxy.faults.control import FaultControl
    from replayproxy.matching.rules import MatchConfig
    from replayproxy.pytest_plugin.network import NetworkGuard
    from replayproxy.run import ProxyRun

__all__ = ["MARKER_ARGUMENTS", "PYTEST_WORDS", "Replayproxy", "default_cassette_name"]

MARKER_ARGUMENTS = ("cassette", "record_mode", "faults", "match")
"""What ``@pytest.mark.replayproxy(...)`` accepts (the cassette also positionally)."""

PYTEST_WORDS: Mapping[str, str] = {
    "cassette_dir": "--replayproxy-cassette-dir", "config": "--replayproxy-config",
    "upstream_ca": "--replayproxy-upstream-ca", "ca_dir": "--replayproxy-ca-dir",
    "record_mode": "--replayproxy-record-mode", "cassette": "the marker's cassette=",
    "fault": "--replayproxy-fault", "fail_on_unused": "fail_on_unused in the configuration",
    "upstream_proxy": "--replayproxy-upstream-proxy",
    "upstream_insecure": "--replayproxy-upstream-insecure",
}
"""How the plugin names each setting in error messages."""

_PROXY_MODULES = r"(mitmproxy|mitmproxy_rs|OpenSSL)(\.|$)"
"""Modules warning from the proxy's thread (pyOpenSSL's "Passing pyOpenSSL X509 objects is
deprecated", raised from mitmproxy 11's TLS code, is attributed to mitmproxy)."""

_OFFLINE = ("the test replays (record mode none) and may reach only the proxy; send the "
            "client through HTTP_PROXY/HTTPS_PROXY (set for this test), or allow the host "
            "with --replayproxy-allowed-hosts")


def _fail(message: str) -> None:
    """Fail the running test with one line (no traceback of the plugin)."""
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


def _words(error: ReplayproxyError) -> str:
    return "replayproxy: " + error.render(PYTEST_WORDS)


# -- options ----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replayproxy", "record and replay HTTP(S) with replayproxy")
    add = group.addoption
    add("--replayproxy-record-mode", choices=[m.value for m in RecordMode], default=None,
        help="when to record: once (what is missing), new_episodes, all, none (replay "
             "only, offline; the default). Wins over markers and the configuration file.")
    add("--replayproxy-cassette-dir", default=None, metavar="DIR",
        help="directory of the cassettes [default: cassette_dir of the configuration, "
             "else <rootdir>/cassettes]")
    add("--replayproxy-config", default=None, metavar="FILE",
        help="configuration file [default: replayproxy.toml, else pyproject.toml, in "
             "the rootdir]")
    add("--replayproxy-upstream-ca", action="append", default=None, metavar="PEM",
        help="trust this CA for upstream servers while recording (repeatable)")
    add("--replayproxy-upstream-insecure", action="store_true", default=None,
        help="do not verify upstream certificates (a throwaway sandbox)")
    add("--replayproxy-upstream-proxy", default=None, metavar="URL",
        help="HTTP proxy to record through, or 'none' [default: HTTPS_PROXY]")
    add("--replayproxy-ca-dir", default=None, metavar="DIR",
        help="the proxy's CA directory [default: $REPLAYPROXY_CA_DIR, else "
             "~/.replayproxy/ca]")
    add("--replayproxy-fault", action="append", default=None, metavar="SPEC",
        help="inject a fault in every test: KIND[=VALUE][,OPTION=VALUE...][@ROUTE] "
             "(repeatable; see docs/faults.md)")
    add("--replayproxy-strict", action="store_true", default=None,
        help="count requests beyond a recorded sequence as unmatched")
    add("--replayproxy-allowed-hosts", action="append", default=None, metavar="HOSTS",
        help="HOST or HOST:PORT (comma-separated, repeatable) a replaying test may "
             "connect to directly besides the proxy")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "replayproxy(cassette=None, record_mode=None, faults=(), match=None): record and "
        "replay this test's HTTP(S) traffic through replayproxy (see docs/pytest.md)")
    config.stash[_STATE] = _State(config)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "replayproxy-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.stop()


# -- what the options, the file and a marker say ---------------------------------------


@dataclass(frozen=True)
class _Options:
    """The session's settings, from the command line and the configuration file."""

    settings: Settings
    record_mode: RecordMode | None
    """From the command line only (it wins over markers)."""
    default_mode: RecordMode
    """From the file, else ``none``."""
    cassette_dir: Path
    upstream_ca: tuple[Path, ...]
    upstream_insecure: bool
    upstream_proxy: str | None
    ca_dir: Path | None
    faults: tuple[str, ...]
    strict: bool
    allowed_hosts: tuple[tuple[str, int | None], ...]


def _read_options(config: pytest.Config) -> _Options:
    """Raise ``pytest.UsageError`` naming what is wrong."""
    from replayproxy.faults.spec import parse_fault
    from replayproxy.pytest_plugin.network import parse_hosts

    def opt(name: str) -> Any:
        return config.getoption(f"replayproxy_{name}")

    try:
        path = opt("config")
        settings = load_settings(Path(path) if path else None, directory=config.rootpath)
        base = settings.source.parent if settings.source else config.rootpath
        plug = settings.pytest

        def here(value: str) -> Path:
            return (base / Path(value).expanduser()).resolve()

        for spec in opt("fault") or ():
            try:
                parse_fault(spec)
            except ValueError as e:
                raise ValueError(f"--replayproxy-fault {spec!r}: {e}") from None
        mode = opt("record_mode")
        cassette_dir = opt("cassette_dir")
        ca_dir = opt("ca_dir") or (here(plug.ca_dir) if plug.ca_dir else None)
        hosts = parse_hosts(opt("allowed_hosts") or plug.allowed_hosts)
        return _Options(
            settings=settings,
            record_mode=RecordMode.parse(mode) if mode else None,
            default_mode=RecordMode.parse(plug.record_mode or "none"),
            cassette_dir=Path(cassette_dir).resolve() if cassette_dir else here(
                settings.cassette_dir or "cassettes"),
            upstream_ca=tuple(Path(p).resolve() for p in opt("upstream_ca"))
            if opt("upstream_ca") else tuple(here(p) for p in plug.upstream_ca),
            upstream_insecure=bool(opt("upstream_insecure") or plug.upstream_insecure),
            upstream_proxy=opt("upstream_proxy") or plug.upstream_proxy,
            ca_dir=Path(ca_dir).resolve() if ca_dir else None,
            faults=tuple(opt("fault") or ()),
            strict=bool(opt("strict") or settings.strict),
            allowed_hosts=tuple(hosts),
        )
    except ReplayproxyError as e:
        raise pytest.UsageError(_words(e)) from None
    except ValueError as e:
        raise pytest.UsageError(f"replayproxy: {e}") from None


@dataclass(frozen=True)
class _Marker:
    """What a test's marker asks for (validated at collection)."""

    cassette: str | None = None
    record_mode: RecordMode | None = None
    faults: tuple[str, ...] = ()
    match: MatchConfig | None = None


def _read_marker(item: pytest.Item) -> _Marker:
    """The test's ``replayproxy`` marker, checked; ``pytest.UsageError`` naming the test
    and the problem."""
    from replayproxy.cassette.store import validate_cassette_name
    from replayproxy.faults.spec import parse_fault

    mark = item.get_closest_marker("replayproxy")
    if mark is None:
        return _Marker()
    where = f"{item.nodeid}: @pytest.mark.replayproxy"
    kwargs = dict(mark.kwargs)
    if len(mark.args) > 1 or (mark.args and "cassette" in kwargs):
        raise pytest.UsageError(f"{where}: give the cassette once, as the only positional "
                                "argument or as cassette=")
    if mark.args:
        kwargs["cassette"] = mark.args[0]
    unknown = sorted(set(kwargs) - set(MARKER_ARGUMENTS))
    if unknown:
        raise pytest.UsageError(f"{where}: unknown argument {', '.join(unknown)}; allowed: "
                                f"{', '.join(MARKER_ARGUMENTS)}")
    try:
        cassette = kwargs.get("cassette")
        if cassette is not None:
            if not isinstance(cassette, str):
                raise ValueError(f"cassette must be a name (a string), got {cassette!r}")
            validate_cassette_name(cassette)
        mode = kwargs.get("record_mode")
        faults = kwargs.get("faults", ())
        faults = (faults,) if isinstance(faults, str) else tuple(faults)
        for spec in faults:
            parse_fault(spec)
        match = kwargs.get("match")
        if match is not None:
            table = {"matchers": list(match)} if isinstance(match, list | tuple) else match
            if not isinstance(table, dict):
                raise ValueError("match must be a [match] table as a dict (such as "
                                 '{"ignore_json": ["$.request_id"]}) or a list of matchers')
            match = parse_settings({"match": table}, section="").match
        return _Marker(cassette, RecordMode.parse(str(mode)) if mode is not None else None,
                       tuple(str(f) for f in faults), match)
    except ReplayproxyError as e:
        raise pytest.UsageError(f"{where}: {e.render(PYTEST_WORDS)}") from None
    except (ValueError, TypeError) as e:
        raise pytest.UsageError(f"{where}: {e}") from None


def default_cassette_name(nodeid: str) -> str:
    """The cassette of a test without ``cassette=``: its module and name, as one safe
    name (``tests/test_pay.py::TestX::test_y[a]`` -> ``tests.test_pay.TestX.test_y-a``)."""
    path, _, test = nodeid.partition("::")
    name = f"{path.removesuffix('.py').replace('/', '.')}.{test.replace('::', '.')}"
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", name)
    name = re.sub(r"\.{2,}", ".", name).strip(".-") or "test"
    if len(name) > 200:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{name[:187]}-{digest}"
    return name


# -- collection -------------------------------------------------------------------------


def _uses_plugin(item: pytest.Item) -> bool:
    return "replayproxy" in getattr(item, "fixturenames", ()) or \
        item.get_closest_marker("replayproxy") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[_STATE]
    for item in items:
        if not _uses_plugin(item):
            continue
        state.options()  # a bad option or configuration file stops the run here
        item.stash[_MARKER] = _read_marker(item)
        names = getattr(item, "fixturenames", None)
        if isinstance(names, list) and "replayproxy" not in names:
            names.insert(0, "replayproxy")  # before the test's other fixtures


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    # Inside pytest's own catch_warnings for the test (its filters, the suite's
    # filterwarnings = error among them), warnings from the proxy's thread are ignored:
    # warning filters are process-wide, and an error raised in the proxy's TLS code
    # would break every handshake.
    if _uses_plugin(item) or item.config.stash[_STATE].run is not None:
        warnings.filterwarnings("ignore", module=_PROXY_MODULES)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    test = item.stash.get(_TEST, None)
    failure: str | None
    try:
        result = yield
    except Exception as e:
        # a blocked connection or an unmatched request is usually why the test failed:
        # say so rather than leave the client's error (a 502, a refused connection) alone
        cause = test.cause() if test is not None else None
        if cause is None:
            raise
        failure = f"{cause}\n(the test then failed with {type(e).__name__}: {str(e)[:300]})"
    else:
        failure = test.check() if test is not None else None
        if failure is None:
            return result
    _fail(failure)
    return None


# -- the proxy of the session -----------------------------------------------------------


class _State:
    """The plugin's state in one pytest process: its options and its one proxy run."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._options: _Options | None = None
        self.run: ProxyRun | None = None
        self.environ: dict[str, str] = {}
        self.suite = _suite(config)
        """The runs of this pytest session in the runs database (shared by xdist workers)."""
        self._reporting = True

    def report(self, summary: SessionSummary, test: str, outcome: str,
               started: float) -> None:
        """Keep one test's run in the runs database (``replayproxy report``); a database
        that cannot be written is one warning, and no more tries."""
        from replayproxy.config import project_dir
        from replayproxy.report import default_database

        db = default_database(project_dir(self.options().settings))
        if db is None or not self._reporting:
            return
        from replayproxy.report.runs import record_session

        try:
            record_session(db, summary, suite=self.suite, started=started,
                           finished=time.time(), test=test, outcome=outcome)
        except ReplayproxyError as e:
            self._reporting = False
            warnings.warn(f"replayproxy: the tests' runs are not kept for `replayproxy "
                          f"report`: {_words(e)}", stacklevel=1)

    def options(self) -> _Options:
        if self._options is None:
            self._options = _read_options(self.config)
        return self._options

    def use(self, cassette: str, mode: RecordMode, marker: _Marker) -> ProxyRun:
        """The session's proxy, serving ``cassette`` (started by the first test)."""
        opts = self.options()
        faults = (*opts.faults, *marker.faults)
        match = marker.match or opts.settings.match
        if self.run is not None:
            self.run.use_cassette(cassette, mode, faults=faults, match=match,
                                  strict=opts.strict)
            return self.run
        from replayproxy.run import ProxyRun

        run = ProxyRun(cassette, mode, cassette_dir=opts.cassette_dir,
                       settings=replace(opts.settings, match=match), faults=faults,
                       strict=opts.strict, upstream_ca=list(opts.upstream_ca),
                       upstream_insecure=opts.upstream_insecure,
                       upstream_proxy=opts.upstream_proxy, ca_dir=opts.ca_dir)
        with warnings.catch_warnings():
            # mitmproxy's dependencies warn when imported (ldap3, passlib): not the
            # suite's business, whatever its filters
            warnings.simplefilter("ignore")
            run.start()
        self.run = run
        self.environ = run.environment()
        return run

    def stop(self) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            try:
                run.stop()
            except ReplayproxyError as e:
                warnings.warn(_words(e), stacklevel=1)


_STATE = pytest.StashKey[_State]()
_MARKER = pytest.StashKey[_Marker]()
_OUTCOME = pytest.StashKey[str]()


def _suite(config: pytest.Config) -> str:
    """One suite id for a whole pytest run: the controller's, handed to xdist workers."""
    from replayproxy.report import new_suite

    workerinput = getattr(config, "workerinput", None)
    if isinstance(workerinput, dict) and isinstance(workerinput.get("replayproxy_suite"), str):
        return str(workerinput["replayproxy_suite"])
    return new_suite()


class _XdistHooks:
    """pytest-xdist's hooks, registered only when it is installed."""

    @staticmethod
    def pytest_configure_node(node: Any) -> None:
        """Give each worker the controller's suite id."""
        state = node.config.stash.get(_STATE, None)
        if state is not None:
            node.workerinput["replayproxy_suite"] = state.suite


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        item.stash[_OUTCOME] = report.outcome
    return report


# -- one test ---------------------------------------------------------------------------


class Replayproxy:
    """The ``replayproxy`` fixture: this test's cassette, faults, requests and variables.

    While the test runs, ``os.environ`` holds the proxy's variables (``environ``), so
    clients made during the test, and subprocesses, go through the proxy.
    """

    def __init__(self, run: ProxyRun, cassette: str, environ: Mapping[str, str],
                 fail_on_unused: bool) -> None:
        self.run = run
        """The session's ``ProxyRun`` (see docs/api.md)."""
        self.cassette = cassette
        """This test's cassette."""
        assert run.session is not None
        self.mode: RecordMode = run.session.mode
        """The record mode in effect (``once`` resolved: ``all`` or ``none``)."""
        self.environ: dict[str, str] = dict(environ)
        """The proxy's variables (set in ``os.environ`` during the test)."""
        self.guard: NetworkGuard | None = None
        self._start = run.requests.next_seq
        self._fail_on_unused = fail_on_unused
        self._variables: Any = None

    @property
    def recording(self) -> bool:
        """True when this test's requests go upstream and are recorded."""
        return self.mode in (RecordMode.ALL, RecordMode.NEW_EPISODES)

    @property
    def proxy_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.run.proxy_url

    @property
    def control_url(self) -> str | None:
        return self.run.control_url

    @property
    def control_token(self) -> str | None:
        return self.run.control_token

    @property
    def faults(self) -> FaultControl:
        """Add, list and clear faults while the test runs (``faults.add("status=503@*")``);
        the next test starts without them."""
        return self.run.fault_control()

    def requests(self, method: str | None = None, url: str | None = None
                 ) -> list[SentRequest]:
        """What the code sent through the proxy during this test, oldest first, filtered
        by method and URL glob (``url="*/v1/payment_intents"``: any host, any query).
        Each has ``method``, ``url``, ``headers``, ``header(name)``, ``body`` and
        ``json``."""
        return self.run.requests.select(self._start, method, url)

    def assert_requested(self, method: str | None = None, url: str | None = None, *,
                         json: Any = ..., headers: Mapping[str, str] | None = None,
                         body: bytes | str | None = None, times: int | None = None) -> None:
        """Assert that ``method url`` was sent ``times`` times (None: at least once;
        0: never) with ``json`` (the keys given, at any depth), ``headers`` and ``body``;
        the failure lists every request of the test and how each differs."""
        __tracebackhide__ = True
        from replayproxy.decision.requestlog import verify

        options: dict[str, Any] = {"headers": headers, "body": body, "times": times}
        if json is not ...:
            options["json"] = json
        problem = verify(self.requests(), method, url, **options)
        if problem:
            raise AssertionError(problem)

    def variable(self, name: str, factory: Callable[[], Any]) -> Any:
        """A value made by ``factory`` and stored with the cassette while recording, read
        back on replay (a fresh customer name, an idempotency key)."""
        __tracebackhide__ = True
        from replayproxy.cassette.variables import RecordedVariables

        try:
            if self._variables is None:
                self._variables = RecordedVariables(self.run.cassette_dir, self.cassette,
                                                    self.mode)
            return self._variables.get(name, factory)
        except ReplayproxyError as e:
            message = _words(e)
        _fail(message)

    # -- the plugin's side -------------------------------------------------------------

    def cause(self) -> str | None:
        """A blocked connection, else the first unmatched request, if any."""
        if self.guard is not None and self.guard.blocked:
            hosts = ", ".join(self.guard.blocked)
            return (f"replayproxy: the test connected directly to {hosts}, not through the "
                    f"proxy: {_OFFLINE}")
        session = self.run.session
        if session is not None and session.summary.unmatched:
            return self._unmatched(session.summary)
        return None

    def _unmatched(self, summary: SessionSummary) -> str:
        first = summary.unmatched[0].message.replace(
            "Re-record with `replayproxy record -c", "Record it with "
            "--replayproxy-record-mode=once (after deleting the cassette) or new_episodes, "
            "or `replayproxy record -c")
        return (f"replayproxy: cassette {self.cassette!r} ({summary.path}): "
                f"{summary.unmatched.total} unmatched request(s)\n{first.rstrip()}")

    def check(self) -> str | None:
        """What replayproxy found wrong with this test's traffic, once it passed."""
        from replayproxy.decision.verdict import verdict

        cause = self.cause()
        if cause is not None:
            return cause
        summary = self.save()
        judged = verdict(summary, fail_on_unused=self._fail_on_unused)
        if judged.passed:
            return None
        return (f"replayproxy: cassette {self.cassette!r} ({summary.path}): "
                + "; ".join(word_settings(r, PYTEST_WORDS) for r in judged.reasons))

    def save(self) -> SessionSummary:
        """Write what the test recorded into its cassette: an empty cassette when it
        recorded nothing, so that replaying the test finds one."""
        from replayproxy.cassette.store import save_cassette

        summary = self.run.flush()
        if self.recording and not summary.path.exists():
            save_cassette(summary.path, [])
        return summary


_TEST = pytest.StashKey[Replayproxy]()


@pytest.fixture
def replayproxy(request: pytest.FixtureRequest) -> Iterator[Replayproxy]:
    """This test's replayproxy: its cassette served by the session's proxy, the proxy's
    environment in ``os.environ``, faults, the requests sent, recorded variables.

    Configured by ``@pytest.mark.replayproxy(cassette=..., record_mode=..., faults=...,
    match=...)`` and the ``--replayproxy-*`` options; see docs/pytest.md.
    """
    state = request.config.stash.get(_STATE, None)
    if state is None:
        pytest.exit("replayproxy: the replayproxy fixture is used but the plugin is not "
                    "loaded (its --replayproxy-* options are missing): load it with "
                    "-p replayproxy.pytest_plugin instead of importing the fixture",
                    returncode=pytest.ExitCode.USAGE_ERROR)
    node = request.node
    marker = node.stash.get(_MARKER, None) or _read_marker(node)
    opts = state.options()
    mode = opts.record_mode or marker.record_mode or opts.default_mode
    cassette = marker.cassette or default_cassette_name(node.nodeid)
    try:
        run = state.use(cassette, mode, marker)
    except ReplayproxyError as e:
        message = _words(e)
        if mode is RecordMode.NONE and "does not exist" in message:
            message += " (or record it here with --replayproxy-record-mode=once)"
    else:
        message = ""
    if message:
        _fail(message)
    test = Replayproxy(run, cassette, state.environ, opts.settings.fail_on_unused)
    saved = {k: os.environ.get(k) for k in test.environ}
    os.environ.update(test.environ)
    if not test.recording:
        from replayproxy.pytest_plugin.network import NetworkGuard

        allowed: list[tuple[str, int | None]] = list(opts.allowed_hosts)
        for url in (run.proxy_url, run.control_url, *run.reverse_urls.values()):
            if url:
                host, _, port = url.split("://", 1)[-1].rstrip("/").rpartition(":")
                allowed.append((host.strip("[]"), int(port)))
        test.guard = NetworkGuard(allowed, _OFFLINE)
        test.guard.install()
    node.stash[_TEST] = test
    started = time.time()
    try:
        yield test
    finally:
        if test.guard is not None:
            test.guard.uninstall()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        del node.stash[_TEST]
        try:
            summary = test.save()
        except ReplayproxyError as e:
            message = _words(e)
        else:
            message = ""
            state.report(summary, node.nodeid, node.stash.get(_OUTCOME, "failed"), started)
        if message:
            _fail(message)

