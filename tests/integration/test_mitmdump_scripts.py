"""`addons/record.py` and `addons/replay.py` loaded by plain mitmdump, as a mitmproxy
user would: `mitmdump -s addons/record.py --set replayproxy_cassette=NAME ...`; and the
same scripts shipped inside the package (``replayproxy.engines.mitm.scripts``), which is
what a user who installed the wheel loads."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.engines.mitm import scripts
from tests.integration.support import (
    GZIP_BODY,
    JSON_BODY,
    CurlClient,
    background,
    free_port,
    wait_for,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).parent / "mitmdump"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _script(where: str, name: str) -> Path:
    return REPO / "addons" / f"{name}.py" if where == "repository" else scripts.path(name)


def _mitmdump(script: Path, port: int, cdir: Path, ca_dir: Path, *extra: str) -> list[str]:
    return [str(MITMDUMP), "-q", "-s", str(script),
            "--listen-host", "127.0.0.1", "-p", str(port),
            "--set", f"confdir={ca_dir}",
            "--set", "replayproxy_cassette=dumped",
            "--set", f"replayproxy_cassette_dir={cdir}", *extra]


@pytest.mark.parametrize("where", ["repository", "package"])
def test_record_and_replay_scripts_in_mitmdump(where, https_upstream, proxy_ca, upstream_ca,
                                               cli_env, tmp_path):
    cdir = tmp_path / "cassettes"
    urls = [https_upstream.url("/json"), https_upstream.url("/gzip")]

    port = free_port()
    cmd = _mitmdump(_script(where, "record"), port, cdir, proxy_ca.directory,
                    "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca.pem}",
                    "--set", "connection_strategy=lazy")
    with background(cmd, env=cli_env, stderr_path=tmp_path / "rec.err") as bg:
        wait_for(lambda: _listening(port) or bg.proc.poll() is not None, timeout=30,
                 what="mitmdump to listen")
        assert bg.proc.poll() is None, (tmp_path / "rec.err").read_text()
        client = CurlClient(f"http://127.0.0.1:{port}", proxy_ca.bundle, tmp_path)
        recorded = [client.get(u, headers={"Accept-Encoding": "gzip"}) for u in urls]
        bg.proc.send_signal(signal.SIGINT)
        assert bg.proc.wait(30) == 0, (tmp_path / "rec.err").read_text()
    assert [r.body for r in recorded] == [JSON_BODY, GZIP_BODY]
    cassette = load_cassette(cassette_path(cdir, "dumped"))
    assert [it.request.url for it in cassette.interactions()] == urls

    connections = https_upstream.connections
    port = free_port()
    # no connection_strategy=lazy here: the replay addon switches mitmproxy to it itself,
    # so an HTTPS tunnel does not connect upstream
    cmd = _mitmdump(_script(where, "replay"), port, cdir, proxy_ca.directory)
    with background(cmd, env=cli_env, stderr_path=tmp_path / "rep.err") as bg:
        wait_for(lambda: _listening(port) or bg.proc.poll() is not None, timeout=30,
                 what="mitmdump to listen")
        assert bg.proc.poll() is None, (tmp_path / "rep.err").read_text()
        client = CurlClient(f"http://127.0.0.1:{port}", proxy_ca.bundle, tmp_path)
        replayed = [client.get(u, headers={"Accept-Encoding": "gzip"}) for u in urls]
        missing = client.get(https_upstream.url("/png"))
        bg.proc.send_signal(signal.SIGINT)
        bg.proc.wait(30)
    assert [r.comparable() for r in replayed] == [r.comparable() for r in recorded]
    assert missing.status == 502 and missing.header("x-replayproxy") == "unmatched"
    assert https_upstream.connections == connections


def test_replay_script_with_missing_cassette_fails_at_start(proxy_ca, cli_env, tmp_path):
    port = free_port()
    cmd = _mitmdump(scripts.path("replay"), port, tmp_path / "empty", proxy_ca.directory)
    with background(cmd, env=cli_env, stderr_path=tmp_path / "err") as bg:
        bg.proc.wait(30)
        out = b"".join(bg.proc.stdout.readlines()).decode() if bg.proc.stdout else ""
    output = out + (tmp_path / "err").read_text()
    assert bg.proc.returncode != 0
    # our one-line message, as mitmproxy's OptionsError (mitmproxy's script loader adds
    # its own traceback to any error raised while a script is configured; not ours)
    assert "OptionsError: cassette 'dumped' does not exist in" in output
    assert "record it first with `replayproxy record -c dumped" in output
    assert not _listening(port)


def test_replay_script_with_a_bad_pace_fails_at_start(proxy_ca, cli_env, tmp_path):
    port = free_port()
    cmd = _mitmdump(scripts.path("replay"), port, tmp_path / "empty", proxy_ca.directory,
                    "--set", "replayproxy_pace=-2")
    with background(cmd, env=cli_env, stderr_path=tmp_path / "err") as bg:
        bg.proc.wait(30)
        out = b"".join(bg.proc.stdout.readlines()).decode() if bg.proc.stdout else ""
    output = out + (tmp_path / "err").read_text()
    assert bg.proc.returncode != 0
    assert "OptionsError: replayproxy_pace: the pace should be a number from 0" in output
    assert not _listening(port)


@pytest.mark.parametrize("name", ["nope", "__init__", "_private"])
def test_an_unknown_shipped_script_is_named(name):
    with pytest.raises(ValueError, match="use 'record' or 'replay'"):
        scripts.path(name)
