"""Record modes exactly as VCR.py 9 (#12), checked against vcrpy itself.

The same requests go through VCR.py (``vcr.use_cassette`` around requests, no proxy)
and through replayproxy (requests via the real proxy), each against its own local
upstream that numbers its answers (``/a#1``, ``/b#2``, ...). The answers the client got
tell what was replayed and what was fetched; the cassettes afterwards must hold the
same interactions in the same order.

One deliberate difference: once a recorded sequence is used up, replay-only modes
(``none``, and ``once`` on an existing cassette) repeat its last answer in replayproxy
(``on_exhausted = "repeat"``) where VCR.py raises; ``--strict`` gives VCR.py's
behaviour, so the comparison runs with ``strict`` in those modes.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.model import RecordMode
from tests.integration.support import assert_clean_error, cli

vcr = pytest.importorskip("vcr")
yaml = pytest.importorskip("yaml")

pytestmark = pytest.mark.slow

SETUP = ["/a", "/b", "/a"]
RUN = ["/a", "/a", "/a", "/c", "/c"]
ERR = "ERR"


class Numbering(http.server.ThreadingHTTPServer):
    """Answers ``PATH#N``, N counting every request it served."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.count = 0
        self.lock = threading.Lock()

    def next(self) -> int:
        with self.lock:
            self.count += 1
            return self.count

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Numbering

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body = f"{self.path}#{self.server.next()}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def numbering() -> Iterator[Any]:
    servers: list[Numbering] = []

    def make() -> Numbering:
        server = Numbering()
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def _through_vcr(path: Path, mode: str, base: str, paths: list[str]) -> list[str]:
    got = []
    with vcr.use_cassette(str(path), record_mode=mode):
        for p in paths:
            try:
                got.append(requests.get(base + p, timeout=10).text)
            except vcr.errors.CannotOverwriteExistingCassetteException:
                got.append(ERR)
    return got


def _vcr_cassette(path: Path, base: str) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text())
    return [(i["request"]["method"] + " " + i["request"]["uri"].replace(base, ""),
             i["response"]["body"]["string"]) for i in data["interactions"]]


def _through_proxy(run_proxy: Any, mode: RecordMode, base: str, paths: list[str],
                   strict: bool) -> list[str]:
    got = []
    with run_proxy("modes", mode, strict=strict) as p, p.client("requests") as c:
        for path in paths:
            resp = c.get(base + path)
            unmatched = resp.header("X-Replayproxy") == "unmatched"
            got.append(ERR if unmatched else resp.body.decode())
    return got


def _proxy_cassette(cassette_dir: Path, base: str, name: str = "modes"
                    ) -> list[tuple[str, str]]:
    path = cassette_path(cassette_dir, name)
    if not path.exists():
        return []
    return [(f"{it.request.method} {it.request.url.replace(base, '')}",
             it.response.body.decode()) for it in load_cassette(path).interactions()]


# mode none on a missing cassette is not compared: VCR.py raises per request, replayproxy
# refuses to start (tested in test_cli_errors)
@pytest.mark.parametrize(("mode", "existing"), [
    ("none", True), ("once", True), ("new_episodes", True), ("all", True),
    ("once", False), ("new_episodes", False), ("all", False),
], ids=lambda v: v if isinstance(v, str) else ("existing" if v else "missing"))
def test_record_mode_as_vcrpy(mode, existing, run_proxy, cassette_dir, numbering, tmp_path):
    vcr_server, proxy_server = numbering(), numbering()
    vcr_path = tmp_path / "vcr" / "modes.yaml"
    strict = mode in ("none", "once")

    if existing:
        vcr_setup = _through_vcr(vcr_path, "all", vcr_server.base, SETUP)
        proxy_setup = _through_proxy(run_proxy, RecordMode.ALL, proxy_server.base, SETUP,
                                     False)
        assert vcr_setup == proxy_setup == ["/a#1", "/b#2", "/a#3"]
    vcr_got = _through_vcr(vcr_path, mode, vcr_server.base, RUN)
    proxy_got = _through_proxy(run_proxy, RecordMode(mode), proxy_server.base, RUN, strict)

    # what was replayed (an earlier number) and what was fetched (a new one)
    assert proxy_got == vcr_got
    assert proxy_server.count == vcr_server.count
    # the resulting cassette: the same interactions in the same order
    assert _proxy_cassette(cassette_dir, proxy_server.base) == \
        _vcr_cassette(vcr_path, vcr_server.base)


def test_the_expected_vcrpy_behaviour(numbering, tmp_path):
    """What the comparison above relies on, spelled out (VCR.py 9.x)."""
    server = numbering()
    path = tmp_path / "c.yaml"
    _through_vcr(path, "all", server.base, SETUP)
    assert _through_vcr(path, "new_episodes", server.base, RUN) == [
        "/a#1", "/a#3", "/a#4", "/c#5", "/c#5"]  # past the sequence: fetched, then replayed
    path2 = tmp_path / "d.yaml"
    _through_vcr(path2, "all", server.base, SETUP)
    _through_vcr(path2, "all", server.base, ["/a"])
    assert [body for _, body in _vcr_cassette(path2, server.base)] == ["/b#7", "/a#9"]


@pytest.mark.parametrize("fresh", [False, True], ids=["all", "all --fresh"])
def test_fresh_starts_the_cassette_afresh(fresh, numbering, cli_env, tmp_path):
    server = numbering()
    cdir = tmp_path / "cassettes"

    def record(*paths: str, extra: tuple[str, ...] = ()) -> None:
        script = "; ".join(f"curl -sS {server.base}{p}" for p in paths)
        proc = cli("record", "-c", "f", "--cassette-dir", cdir, *extra, "--", "sh", "-c",
                   script, env=cli_env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr

    record("/a", "/b")
    record("/c", extra=("--fresh",) if fresh else ())
    urls = [u for u, _ in _proxy_cassette(cdir, server.base, "f")]
    assert urls == (["GET /c"] if fresh else ["GET /a", "GET /b", "GET /c"])


def test_fresh_with_replay_is_one_line(cli_env, tmp_path, numbering):
    server = numbering()
    cdir = tmp_path / "cassettes"
    cli("record", "-c", "f", "--cassette-dir", cdir, "--", "curl", "-sS", server.base + "/a",
        env=cli_env, cwd=tmp_path)
    proc = cli("replay", "-c", "f", "--cassette-dir", cdir, "--fresh", "--", "true",
               env=cli_env, cwd=tmp_path)
    assert_clean_error(proc, "starting afresh records", "--record-mode all")
