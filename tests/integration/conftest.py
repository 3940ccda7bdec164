"""Integration fixtures: local upstreams, the in-process proxy, the CLI's environment.

mitmproxy allows one master per process, so the proxy fixture is a function-scoped
factory that runs one proxy at a time and stops whatever is left in teardown.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from replayproxy.config import Settings, load_settings
from replayproxy.decision.session import CassetteSession, SessionSummary
from replayproxy.engines.fast.server import FastProxy
from replayproxy.engines.mitm.ca import CA, ensure_ca
from replayproxy.engines.mitm.master import Proxy
from replayproxy.model import RecordMode
from replayproxy.run import ProxyRun
from tests.conftest import UpstreamCA
from tests.integration.support import CLIENTS, Client, Upstream, base_env

# mitmproxy 11.0.2 hands pyOpenSSL X509/PKey objects to pyOpenSSL, which now warns
# "Passing pyOpenSSL X509 objects is deprecated". Warning filters are process-wide, so
# under filterwarnings=error that warning becomes an exception inside the in-process
# proxy's thread and breaks every TLS handshake. Ignore exactly that warning here
# (a mark, so it wins over the ini "error" filter pytest installs per test).
# mitmproxy 12 passes cryptography objects and never triggers it (measured: the
# integration tests pass on 12 with this mark turned into "error"); Python 3.12 and
# mitmproxy 12 need no other filter.
_MITMPROXY_WARNING = "ignore:Passing pyOpenSSL:DeprecationWarning"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings(_MITMPROXY_WARNING))


@pytest.fixture
def https_upstream(upstream_ca: UpstreamCA) -> Iterator[Upstream]:
    """An HTTPS upstream on 127.0.0.1 with the trustme CA; stopped in teardown."""
    server = Upstream(upstream_ca.server_context)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_upstream() -> Iterator[Upstream]:
    """The same upstream over plain HTTP."""
    server = Upstream(None)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["https", "http"])
def upstream(request: pytest.FixtureRequest, upstream_ca: UpstreamCA) -> Iterator[Upstream]:
    """Both kinds, so forward-proxy tests cover CONNECT tunnels and plain HTTP."""
    server = Upstream(upstream_ca.server_context if request.param == "https" else None)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def proxy_ca(proxy_ca_dir: Path) -> CA:
    """The replayproxy CA, in a temporary directory (never ~/.replayproxy)."""
    return ensure_ca(proxy_ca_dir)


@dataclass
class RunningProxy:
    run: ProxyRun
    workdir: Path
    summary: SessionSummary | None = None

    @property
    def proxy(self) -> Proxy | FastProxy:
        return self.run.proxy

    @property
    def session(self) -> CassetteSession:
        assert self.run.session is not None
        return self.run.session

    @property
    def url(self) -> str:
        return self.run.proxy_url

    def client(self, kind: str) -> Client:
        """A client of ``kind`` (curl, requests, httpx) using this proxy and its CA."""
        return CLIENTS[kind](self.url, self.proxy.ca.bundle, self.workdir)


ProxyFactory = Callable[..., contextlib.AbstractContextManager[RunningProxy]]


@pytest.fixture
def cassette_dir(tmp_path: Path) -> Path:
    return tmp_path / "cassettes"


@pytest.fixture
def run_proxy(proxy_ca: CA, upstream_ca: UpstreamCA, cassette_dir: Path, tmp_path: Path,
              caplog: pytest.LogCaptureFixture) -> Iterator[ProxyFactory]:
    """``with run_proxy("name", RecordMode.ALL, strict=False, reverse=None, config=None,
    faults=(), engine="auto")``

    ``config`` is a replayproxy.toml or pyproject.toml whose matching settings the
    session uses, as ``--config`` would. ``engine`` as ``ProxyRun``'s: by default a
    replay runs on the fast engine, a recording on mitmproxy.

    A ``ProxyRun`` as the CLI builds it (trusting the upstream CA, no control API), and
    on exit stops it (``p.summary``), then fails if the proxy logged an error
    (mitmproxy logs exceptions in addons and carries on).
    """
    @contextlib.contextmanager
    def factory(name: str, mode: RecordMode, *, strict: bool = False,
                reverse: str | None = None, config: Path | None = None,
                faults: tuple[str, ...] = (), engine: str = "auto"
                ) -> Iterator[RunningProxy]:
        settings = load_settings(config) if config is not None else Settings()
        run = ProxyRun(name, mode, cassette_dir=cassette_dir, settings=settings, faults=faults,
                       strict=strict or settings.strict, reverse=reverse,
                       upstream_ca=upstream_ca.pem, ca_dir=proxy_ca.directory, control=False,
                       upstream_proxy="none",  # whatever HTTPS_PROXY this machine has
                       engine=engine)
        workdir = tmp_path / "clients"
        workdir.mkdir(exist_ok=True)
        rp = RunningProxy(run, workdir)
        with serving(rp, caplog):
            yield rp

    yield factory


@contextlib.contextmanager
def serving(running: Any, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Start ``running.run``; on exit stop it into ``running.summary``, then fail if the
    proxy logged an error (mitmproxy logs an exception in an addon and carries on)."""
    try:
        running.run.start()
        yield
    finally:
        running.summary = running.run.stop()
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records
              if r.levelno >= logging.ERROR
              and r.name.split(".")[0] in ("mitmproxy", "asyncio", "replayproxy")]
    assert not errors, "the proxy logged errors:\n" + "\n".join(errors)


@pytest.fixture
def cli_env(proxy_ca_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Environment for `python -m replayproxy`: no proxies, temporary CA dir and home."""
    return base_env(REPLAYPROXY_CA_DIR=str(proxy_ca_dir),
                    REPLAYPROXY_HOME=str(tmp_path / "home"))
