"""Quiet re-records (#15), seen in git: a re-record against an unchanged API that sends
a fresh Date and request id leaves the cassette byte-identical (no diff); one that
changed a field shows just that field in `git diff`; `--no-keep` rewrites everything."""

from __future__ import annotations

import email.utils
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path
from tests.integration.support import QuietHandler, Upstream, cli_bytes
from tests.integration.test_git_review import git, git_env


class _Orders(QuietHandler):
    """An API answering every call with a fresh Date, X-Request-Id and request_id."""

    amount = 1200
    clock = itertools.count()
    lock = threading.Lock()

    def date_time_string(self, timestamp: float | None = None) -> str:
        with self.lock:
            tick = next(self.clock)
        return email.utils.formatdate(time.time() + 60 * tick, usegmt=True)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.count_request("GET", self.path)
        if self.path == "/v1/orders/ord_1":
            doc = {"id": "ord_1", "amount": type(self).amount, "currency": "eur",
                   "request_id": f"req_{uuid.uuid4().hex[:16]}"}
        else:
            doc = {"id": "cus_1", "name": "Ada", "request_id": str(uuid.uuid4())}
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Request-Id", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def orders(upstream_ca) -> Iterator[Upstream]:
    server = Upstream(upstream_ca.server_context, _Orders)
    _Orders.amount = 1200
    try:
        yield server
    finally:
        server.stop()


def _record(orders: Upstream, tmp_path: Path, env: dict[str, str], upstream_pem: Path,
            *extra: str) -> None:
    urls = [orders.url("/v1/customers/cus_1"), orders.url("/v1/orders/ord_1")]
    script = "; ".join(f"curl -sS --max-time 30 -o /dev/null {u}" for u in urls)
    done = cli_bytes("record", "-c", "orders", "--cassette-dir", tmp_path / "cassettes",
                     "--upstream-ca", upstream_pem, *extra, "--", "sh", "-c", script,
                     env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert b"2 recorded" in done.stderr, done.stderr.decode()


def test_rerecords_in_git_show_only_real_changes(orders, upstream_ca, cli_env, tmp_path):
    env = git_env(cli_env, tmp_path / "githome")
    (tmp_path / "githome").mkdir()
    git(tmp_path, env, "init", "-q", "-b", "main")
    setup = cli_bytes("git-setup", "--repo", tmp_path, env=env)
    assert setup.returncode == 0, setup.stderr
    path = cassette_path(tmp_path / "cassettes", "orders")

    _record(orders, tmp_path, env, upstream_ca.pem)
    git(tmp_path, env, "add", ".gitattributes", "cassettes")
    git(tmp_path, env, "commit", "-qm", "record")
    recorded = path.read_bytes()

    # the API did not change; it answered with a fresh Date and fresh request ids
    _record(orders, tmp_path, env, upstream_ca.pem)
    assert orders.hits("/v1/orders/ord_1") == 2
    assert path.read_bytes() == recorded
    assert git(tmp_path, env, "status", "--porcelain", "cassettes") == ""
    assert git(tmp_path, env, "diff") == ""

    # the API changed one field
    _Orders.amount = 1500
    _record(orders, tmp_path, env, upstream_ca.pem)
    diff = git(tmp_path, env, "diff", "cassettes")
    changed = [line for line in diff.splitlines() if line.startswith(("-", "+"))
               and not line.startswith(("---", "+++"))]
    assert changed == ['-      "amount": 1200,', '+      "amount": 1500,'], diff
    assert "/tmp" not in diff
    git(tmp_path, env, "commit", "-qam", "amount changed")

    # --no-keep rewrites every interaction: the fresh Date and ids show
    _record(orders, tmp_path, env, upstream_ca.pem, "--no-keep")
    rewritten = git(tmp_path, env, "diff", "cassettes")
    assert "X-Request-Id" in rewritten and "Date:" in rewritten
    assert '"amount": 1500' not in "".join(
        line for line in rewritten.splitlines() if line.startswith(("-", "+")))
