"""Import and export (#15): a VCR.py cassette recorded by vcrpy itself and a HAR written
by mitmproxy's own HAR export replay through the proxy with curl; a cassette exported
as a VCR.py cassette replays in VCR.py with the upstream stopped."""

from __future__ import annotations

import json
import signal
import socket
import sys
from pathlib import Path

import pytest
import requests
import vcr

from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.model import RecordMode
from tests.factories import interaction
from tests.integration.support import (
    GZIP_PAYLOAD,
    JSON_BODY,
    PNG_BODY,
    CurlClient,
    assert_clean_error,
    background,
    cli,
    free_port,
    offline,
    wait_for,
)

MITMDUMP = Path(sys.executable).parent / "mitmdump"
ECHO_BODY = b'{"amount": 1200, "currency": "eur"}'


def _record_with_vcrpy(upstream, ca: Path, path: Path) -> list[requests.Response]:
    """vcrpy recording requests' calls to the upstream: its own YAML cassette."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca)
    with vcr.use_cassette(str(path), record_mode="all"):
        got = [session.get(upstream.url("/json")),
               session.get(upstream.url("/gzip"), headers={"Accept-Encoding": "gzip"}),
               session.get(upstream.url("/png")),
               session.post(upstream.url("/echo"), data=ECHO_BODY,
                            headers={"Content-Type": "application/json"})]
    session.close()
    return got


def test_a_vcrpy_cassette_imports_replays_with_curl_and_exports_back_to_vcrpy(
        https_upstream, upstream_ca, run_proxy, cassette_dir, cli_env, tmp_path):
    original = tmp_path / "vcr" / "test_shop.yaml"
    recorded = _record_with_vcrpy(https_upstream, upstream_ca.pem, original)
    assert "interactions:" in original.read_text()  # VCR.py wrote it

    imported = cli("import", "vcr", original, "-c", "shop", "-d", cassette_dir, env=cli_env)
    assert imported.returncode == 0, imported.stderr
    assert imported.stderr == (f"replayproxy: imported 4 interactions from {original} into "
                               f"{cassette_path(cassette_dir, 'shop')} (0 redacted)\n")

    with offline(https_upstream), run_proxy("shop", RecordMode.NONE) as p, \
            p.client("curl") as curl:
        json_ = curl.get(https_upstream.url("/json"))
        gz = curl.get(https_upstream.url("/gzip"), headers={"Accept-Encoding": "gzip"})
        png = curl.get(https_upstream.url("/png"))
        echo = curl.post(https_upstream.url("/echo"), ECHO_BODY,
                         {"Content-Type": "application/json"})
    assert [r.status for r in (json_, gz, png, echo)] == [200, 200, 200, 200]
    assert (json_.body, png.body) == (JSON_BODY, PNG_BODY)
    # VCR.py (through urllib3) stored the gzip body decoded, keeping its Content-Encoding
    # header: the import drops the header, so curl gets the body whole
    assert gz.body == GZIP_PAYLOAD and gz.header("content-encoding") is None
    assert gz.header("content-length") == str(len(GZIP_PAYLOAD))
    assert json.loads(echo.body) == json.loads(recorded[3].content)
    assert json_.header("x-upstream") == "json"

    exported = tmp_path / "back" / "shop.yaml"
    exported.parent.mkdir()
    out = cli("export", "vcr", "-c", "shop", exported, "-d", cassette_dir, env=cli_env)
    assert out.returncode == 0, out.stderr
    https_upstream.stop()

    session = requests.Session()
    session.trust_env = False
    session.verify = str(upstream_ca.pem)
    with vcr.use_cassette(str(exported), record_mode="none") as cassette:
        again = [session.get(https_upstream.url("/json")),
                 session.get(https_upstream.url("/gzip"), headers={"Accept-Encoding": "gzip"}),
                 session.get(https_upstream.url("/png")),
                 session.post(https_upstream.url("/echo"), data=ECHO_BODY,
                              headers={"Content-Type": "application/json"})]
        assert cassette.all_played
    session.close()
    assert [(r.status_code, r.content) for r in again] == \
        [(r.status_code, r.content) for r in recorded]
    assert again[0].headers["X-Upstream"] == "json"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_har_written_by_mitmproxy_imports_and_replays_with_curl(
        https_upstream, upstream_ca, proxy_ca, run_proxy, cassette_dir, cli_env, tmp_path):
    har = tmp_path / "mitm.har"
    port = free_port()
    cmd = [str(MITMDUMP), "-q", "--listen-host", "127.0.0.1", "-p", str(port),
           "--set", f"confdir={proxy_ca.directory}", "--set", f"hardump={har}",
           "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca.pem}"]
    with background(cmd, env=cli_env, stderr_path=tmp_path / "mitm.err") as bg:
        wait_for(lambda: _listening(port) or bg.proc.poll() is not None, timeout=30,
                 what="mitmdump to listen")
        assert bg.proc.poll() is None, (tmp_path / "mitm.err").read_text()
        client = CurlClient(f"http://127.0.0.1:{port}", proxy_ca.bundle, tmp_path)
        live = [client.get(https_upstream.url("/json")),
                client.get(https_upstream.url("/png")),
                client.get(https_upstream.url("/gzip"), headers={"Accept-Encoding": "gzip"})]
        bg.proc.send_signal(signal.SIGINT)  # mitmproxy writes the HAR when it stops
        assert bg.proc.wait(30) == 0, (tmp_path / "mitm.err").read_text()
    assert json.loads(har.read_text())["log"]["creator"]["name"] == "mitmproxy"

    imported = cli("import", "har", har, "-c", "browser", "-d", cassette_dir, env=cli_env)
    assert imported.returncode == 0, imported.stderr
    assert len(load_cassette(cassette_path(cassette_dir, "browser"))) == 3

    with offline(https_upstream), run_proxy("browser", RecordMode.NONE) as p, \
            p.client("curl") as curl:
        replayed = [curl.get(https_upstream.url("/json")), curl.get(https_upstream.url("/png")),
                    curl.get(https_upstream.url("/gzip"))]
    assert [r.status for r in replayed] == [200, 200, 200]
    assert replayed[0].body == live[0].body == JSON_BODY
    assert replayed[1].body == live[1].body == PNG_BODY  # binary: base64 in the HAR
    # HAR holds decoded bodies: the gzip body comes back decoded, its length right
    assert live[2].header("content-encoding") == "gzip"
    assert replayed[2].body == GZIP_PAYLOAD
    assert replayed[2].header("content-length") == str(len(GZIP_PAYLOAD))
    assert replayed[2].header("content-encoding") is None

    exported = tmp_path / "out.har"
    out = cli("export", "har", "-c", "browser", exported, "-d", cassette_dir, env=cli_env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(exported.read_text())
    assert doc["log"]["version"] == "1.2"
    png = doc["log"]["entries"][1]["response"]["content"]
    assert png["encoding"] == "base64" and png["mimeType"] == "image/png"


# -- bad input ---------------------------------------------------------------------------


def _vcr_text(**override: object) -> str:
    from vcr.serializers import yamlserializer

    doc: dict[str, object] = {"version": 1, "interactions": [
        {"request": {"method": "GET", "uri": "https://api.example.com/a", "body": None,
                     "headers": {}},
         "response": {"status": {"code": 200, "message": "OK"}, "headers": {},
                      "body": {"string": "a"}}},
        {"request": {"method": "GET", "uri": "https://api.example.com/b", "body": None,
                     "headers": {}}},
    ]}
    doc.update(override)
    return yamlserializer.serialize(doc)


def test_import_of_malformed_yaml_names_the_file_and_line(tmp_path, cli_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("interactions:\n  - request: {method: GET\n")
    proc = cli("import", "vcr", bad, "-c", "x", "-d", tmp_path / "c", env=cli_env)
    assert_clean_error(proc, str(bad), "is not valid YAML (line 3")
    assert proc.returncode == 2
    assert not (tmp_path / "c").exists()


def test_import_of_an_unsupported_vcr_version_says_which(tmp_path, cli_env):
    bad = tmp_path / "v2.yaml"
    bad.write_text(_vcr_text(version=2))
    proc = cli("import", "vcr", bad, "-c", "x", "-d", tmp_path / "c", env=cli_env)
    assert_clean_error(proc, str(bad), "version 2", "reads version 1")


def test_import_of_a_bad_entry_names_it_and_skip_bad_imports_the_rest(tmp_path, cli_env):
    bad = tmp_path / "half.yaml"
    bad.write_text(_vcr_text())
    cdir = tmp_path / "c"
    proc = cli("import", "vcr", bad, "-c", "x", "-d", cdir, env=cli_env)
    assert_clean_error(proc, f"{bad}: interaction #2 has no response", "--skip-bad")
    assert not cassette_path(cdir, "x").exists()
    ok = cli("import", "vcr", bad, "-c", "x", "-d", cdir, "--skip-bad", env=cli_env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.splitlines() == [
        f"replayproxy: {bad}: skipped interaction #2 has no response",
        f"replayproxy: imported 1 interaction from {bad} into {cassette_path(cdir, 'x')} "
        "(0 redacted, 1 skipped)"]
    assert [it.request.path for it in load_cassette(cassette_path(cdir, "x")).interactions()] \
        == ["/a"]


def test_import_of_malformed_har_and_an_entry_without_response(tmp_path, cli_env):
    cdir = tmp_path / "c"
    broken = tmp_path / "broken.har"
    broken.write_text('{"log": {"entries": [')
    assert_clean_error(cli("import", "har", broken, "-c", "x", "-d", cdir, env=cli_env),
                       str(broken), "is not valid JSON (line 1")
    half = tmp_path / "half.har"
    half.write_text(json.dumps({"log": {"entries": [
        {"request": {"method": "GET", "url": "https://api.example.com/a"}},
        {"request": {"method": "GET", "url": "https://api.example.com/b"},
         "response": {"status": 200, "content": {"text": "b"}}}]}}))
    assert_clean_error(cli("import", "har", half, "-c", "x", "-d", cdir, env=cli_env),
                       f"{half}: entry #1 has no response", "--skip-bad")
    ok = cli("import", "har", half, "-c", "x", "-d", cdir, "--skip-bad", env=cli_env)
    assert ok.returncode == 0, ok.stderr
    [it] = load_cassette(cassette_path(cdir, "x")).interactions()
    assert (it.request.path, it.response.body) == ("/b", b"b")


def test_import_redacts_secrets_and_refuses_what_the_rules_miss(tmp_path, cli_env):
    from vcr.serializers import yamlserializer

    token = "Bearer abcdefgh12345678"
    doc = {"version": 1, "interactions": [{
        "request": {"method": "GET", "uri": "https://api.example.com/me", "body": None,
                    "headers": {"Authorization": [token]}},
        "response": {"status": {"code": 200, "message": "OK"}, "headers": {},
                     "body": {"string": "ok"}}}]}
    src = tmp_path / "secret.yaml"
    src.write_text(yamlserializer.serialize(doc))
    cdir = tmp_path / "c"
    ok = cli("import", "vcr", src, "-c", "clean", "-d", cdir, env=cli_env)
    assert ok.returncode == 0 and "(1 redacted)" in ok.stderr, ok.stderr
    stored = cassette_path(cdir, "clean").read_bytes()
    assert b"abcdefgh12345678" not in stored and b"<redacted:authorization:" in stored

    config = tmp_path / "replayproxy.toml"
    config.write_text("[redact]\ndefaults = false\n")
    refused = cli("import", "vcr", src, "-c", "dirty", "-d", cdir, "--config", config,
                  env=cli_env)
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert refused.stderr.splitlines()[-1].startswith(
        f"replayproxy: error: {src}: 1 secret left after redaction, the first in entry #1, "
        "request header Authorization")
    assert not cassette_path(cdir, "dirty").exists()


def test_export_over_an_existing_file_asks_for_force(tmp_path, cli_env):
    cdir = tmp_path / "c"
    save_cassette(cassette_path(cdir, "x"), [interaction("/a")])
    target = tmp_path / "out.har"
    target.write_text("keep me")
    proc = cli("export", "har", "-c", "x", target, "-d", cdir, env=cli_env)
    assert_clean_error(proc, f"{target} already exists", "--force")
    assert target.read_text() == "keep me"
    forced = cli("export", "har", "-c", "x", target, "-d", cdir, "--force", env=cli_env)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(target.read_text())["log"]["entries"][0]["request"]["url"].endswith("/a")
    again = cli("import", "har", target, "-c", "x", "-d", cdir, env=cli_env)
    assert_clean_error(again, "cassette 'x' already exists", "--force")


@pytest.mark.parametrize("kind", ["vcr", "har"])
def test_import_of_a_missing_file_is_one_line(tmp_path, cli_env, kind):
    missing = tmp_path / f"nope.{kind}"
    assert_clean_error(cli("import", kind, missing, "-c", "x", "-d", tmp_path, env=cli_env),
                       str(missing), "does not exist")


def test_import_over_an_interrupted_recording_is_refused(tmp_path, cli_env):
    src = tmp_path / "a.yaml"
    src.write_text(_vcr_text(interactions=[]))
    cdir = tmp_path / "c"
    cdir.mkdir()
    (cdir / ".x.cassette.4242.journal").write_bytes(b"")  # left by a killed recording
    proc = cli("import", "vcr", src, "-c", "x", "-d", cdir, "--force", env=cli_env)
    assert_clean_error(proc, "interrupted recording", "replayproxy replay -c x -- true")
    assert not cassette_path(cdir, "x").exists()
