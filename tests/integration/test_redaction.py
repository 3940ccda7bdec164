"""Redaction through the real proxy and the CLI (issue 5).

curl, requests and httpx send every kind of secret (Authorization, X-Api-Key, a query
api_key, JSON password/client_secret, form client_secret/refresh_token, cookies, a gzip
request body with a token, a provider key in a body) to an upstream that echoes them
all back in a gzip JSON response and issues secrets of its own. No secret may reach the
journal or the cassette; replaying with *other* tokens must match every request.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import msgpack
import pytest

from replayproxy.cassette.format import decode_interaction
from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.codec import decode_body
from replayproxy.model import Interaction, RecordMode, Request, Response, header_value
from replayproxy.redaction.scan import scan_path
from tests.conftest import UpstreamCA
from tests.integration.secret_upstream import ISSUED, SecretUpstream
from tests.integration.support import (
    Resp,
    assert_clean_error,
    background,
    base_env,
    cli,
    parse_exports,
    replayproxy_cmd,
)

pytestmark = pytest.mark.slow

CLIENT_KINDS = ["curl", "requests", "httpx"]


@pytest.fixture
def leaky(upstream_ca: UpstreamCA) -> Iterator[SecretUpstream]:
    """The echoing HTTPS upstream (secret_upstream.py)."""
    server = SecretUpstream(upstream_ca.server_context)
    try:
        yield server
    finally:
        server.stop()


def secrets(n: int) -> dict[str, str]:
    """Generation ``n`` of the client's secrets: 1 records, 2 replays (all different)."""
    return {
        "bearer": f"bearer-{n}-Zx81Qm0aTq",
        "x_api_key": f"xkey-{n}-Pq02LmVb9c",
        "query_key": f"qkey-{n}-Hs73Na1Wx0",
        "cookie": f"ck-{n}-Yt55Rb7Ea2",
        "password": f"pw-{n}-Kd39Vc0Zs8",
        "client_secret": f"cs-{n}-Wm41Oj6Tq3",
        "form_secret": f"fcs-{n}-Ln62Ux8Pe5",
        "refresh_token": f"rt-{n}-Bg17Ic4Mo9",
        "gzip_token": f"gzt-{n}-Qa90Se2Rd6",
        "stripe": f"sk_test_{n}Kw84Pz1Lm7Xc3Vb5",
        "basic": base64.b64encode(f"bob:pw-{n}-Kd39Vc0Zs8".encode()).decode(),
    }


def traffic(up: SecretUpstream, s: dict[str, str]) -> list[tuple[str, str, bytes | None,
                                                                  dict[str, str]]]:
    """(method, url, body, headers): one request per kind of secret."""
    return [
        ("GET", up.url(f"/v1/profile?api_key={s['query_key']}&page=1"), None,
         {"Authorization": f"Bearer {s['bearer']}", "X-Api-Key": s["x_api_key"],
          "Cookie": f"sid={s['cookie']}; theme=dark"}),
        ("POST", up.url("/v1/login"),
         json.dumps({"user": "bob", "password": s["password"], "client_secret": s["client_secret"],
                     "note": f"charge with {s['stripe']}"}).encode(),
         {"Content-Type": "application/json", "Authorization": f"Basic {s['basic']}"}),
        ("POST", up.url("/oauth/token"),
         f"grant_type=refresh_token&client_secret={s['form_secret']}"
         f"&refresh_token={s['refresh_token']}&scope=read".encode(),
         {"Content-Type": "application/x-www-form-urlencoded"}),
        ("POST", up.url("/v1/upload"),
         gzip.compress(json.dumps({"token": s["gzip_token"], "data": "payload"}).encode()),
         {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
    ]


def send(client, up: SecretUpstream, s: dict[str, str]) -> list[Resp]:
    return [client.request(method, url, body=body, headers=headers)
            for method, url, body, headers in traffic(up, s)]


def forms_of(values) -> list[bytes]:
    """Each secret as raw, URL-encoded and JSON-escaped bytes."""
    out = set()
    for v in values:
        out |= {v, quote(v, safe=""), quote_plus(v), json.dumps(v)[1:-1]}
    return sorted(x.encode() for x in out)


def cassette_bytes(path: Path) -> bytes:
    """The raw bytes of a cassette, plus every body in it decoded (gzip hides text)."""
    out = [path.read_bytes()]
    for it in load_cassette(path).interactions():
        for body, headers in ((it.request.body, it.request.headers),
                              (it.response.body, it.response.headers)):
            out.append(decode_body(body, headers) or body)
    return b"\n".join(out)


def journal_bytes(cassette_dir: Path, expected: int) -> bytes:
    """The raw bytes of the recording's journal, plus every body in it decoded."""
    [journal] = cassette_dir.glob(".*.journal")
    data = journal.read_bytes()
    unpacker = msgpack.Unpacker(raw=False, use_list=False)
    unpacker.feed(data)
    entries = list(unpacker)[1:]  # after the journal's header
    assert len(entries) == expected, "not every interaction is in the journal yet"
    out = [data]
    for entry in entries:
        it = decode_interaction(entry)
        for body, headers in ((it.request.body, it.request.headers),
                              (it.response.body, it.response.headers)):
            out.append(decode_body(body, headers) or body)
    return b"\n".join(out)


def assert_no_secret(data: bytes, values, where: str) -> None:
    for form in forms_of(values):
        assert form not in data, f"{form!r} found in the {where}"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "replayproxy.toml"
    path.write_text(text)
    return path


MATCH_SECRET_HEADERS = '[match]\nheaders = ["authorization", "x-api-key", "cookie"]\n'


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_no_secret_reaches_the_disk_and_fresh_tokens_replay(kind, leaky, run_proxy,
                                                            cassette_dir, tmp_path):
    config = write_config(tmp_path, MATCH_SECRET_HEADERS)  # secret headers are compared too
    old = secrets(1)
    with run_proxy("leaky", RecordMode.ALL, config=config) as p, p.client(kind) as client:
        recorded = send(client, leaky, old)
        journal = journal_bytes(cassette_dir, 4)  # written as each response went by
    assert [r.status for r in recorded] == [200] * 4
    # the client itself got the real thing: the upstream really echoes the secrets
    live = [json.loads(gzip.decompress(r.body)) for r in recorded]
    assert live[0]["authorization"] == f"Bearer {old['bearer']}"
    assert live[0]["cookie"] == f"sid={old['cookie']}; theme=dark"
    assert old["query_key"] in live[0]["query"] and old["password"] in live[1]["body"]
    assert old["refresh_token"] in live[2]["body"] and old["gzip_token"] in live[3]["body"]
    assert recorded[0].header("set-cookie").startswith(f"session={ISSUED[2]};")
    assert p.summary is not None and p.summary.recorded == 4 and not p.summary.leaks

    path = cassette_path(cassette_dir, "leaky")
    everything_secret = [*old.values(), *ISSUED]
    assert_no_secret(journal, everything_secret, "journal")
    assert_no_secret(cassette_bytes(path), everything_secret, "cassette")
    assert list(scan_path(path)) == []
    first = load_cassette(path).interaction(0)
    assert header_value(first.request.headers, "cookie").startswith("sid=<redacted:cookie:")
    assert header_value(first.request.headers, "authorization").startswith(
        "Bearer <redacted:authorization:")

    # replay with every token different: each request matches, offline
    new = secrets(2)
    connections = leaky.connections
    with run_proxy("leaky", RecordMode.NONE, config=config) as p, p.client(kind) as client:
        replayed = send(client, leaky, new)
    assert [(r.status, r.header("x-replayproxy")) for r in replayed] == [(200, None)] * 4
    assert leaky.connections == connections, "replay connected to the upstream"
    assert p.summary is not None and p.summary.replayed == 4 and not p.summary.unmatched
    for r, rec in zip(replayed, load_cassette(path).interactions(), strict=True):
        assert r.body == rec.response.body  # the recorded, redacted answer
    served = b"\n".join(gzip.decompress(r.body) for r in replayed)
    assert_no_secret(served, [*old.values(), *new.values(), *ISSUED], "replayed bodies")


def test_a_request_that_differs_elsewhere_still_misses(leaky, run_proxy, tmp_path):
    """Fresh tokens match, but the redaction does not make everything match: a changed
    non-secret field is still a miss."""
    config = write_config(tmp_path, MATCH_SECRET_HEADERS)
    with run_proxy("miss", RecordMode.ALL, config=config) as p, p.client("httpx") as client:
        send(client, leaky, secrets(1))
    fresh = traffic(leaky, secrets(2))
    method, url, body, headers = fresh[1]
    assert body is not None
    with run_proxy("miss", RecordMode.NONE, config=config) as p, p.client("httpx") as client:
        first = fresh[0]  # sets the (redacted) session cookie the recording had
        assert client.request(first[0], first[1], headers=first[3]).status == 200
        r = client.request(method, url, body=body.replace(b'"bob"', b'"eve"'), headers=headers)
        ok = client.request(method, url, body=body, headers=headers)
    assert (r.status, r.header("x-replayproxy")) == (502, "unmatched")
    assert ok.status == 200
    # the miss is reported with the request's secrets redacted
    assert p.summary is not None and len(p.summary.unmatched) == 1
    unmatched = p.summary.unmatched[0].request
    assert b"pw-2-" not in unmatched.body and b"<redacted:password:" in unmatched.body


def test_undecodable_body_is_redacted_as_bytes_through_the_proxy(leaky, run_proxy,
                                                                cassette_dir):
    """A body that says gzip but is not: recorded as the bytes it is, the credential
    inside it redacted all the same (and echoed back by the upstream, there too)."""
    stripe = "sk_test_NotGzipAtAll0123456789"
    raw = b"\x1f\x8b\x00 definitely not gzip \xff\xfe " + stripe.encode() + b" \x00 end"
    with run_proxy("undecodable", RecordMode.ALL) as p, p.client("httpx") as client:
        r = client.request("POST", leaky.url("/v1/raw"), body=raw,
                           headers={"Content-Encoding": "gzip",
                                    "Content-Type": "application/octet-stream"})
    assert r.status == 200 and stripe in json.loads(gzip.decompress(r.body))["body"]
    path = cassette_path(cassette_dir, "undecodable")
    assert_no_secret(cassette_bytes(path), [stripe], "cassette")
    recorded = load_cassette(path).interaction(0).request
    assert header_value(recorded.headers, "content-encoding") == "gzip"
    head, _, tail = raw.partition(stripe.encode())
    assert recorded.body.startswith(head + b"<redacted:stripe-key:")
    assert recorded.body.endswith(b">" + tail)
    assert header_value(recorded.headers, "content-length") == str(len(recorded.body))


# -- the CLI -------------------------------------------------------------------------------

STRIPE = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


def _raw_secrets_cassette(path: Path) -> list[str]:
    """A cassette written without redaction (as before redaction existed)."""
    leaked = ["Bearer-token-unredacted-1", "qkey-unredacted-1", "pw-unredacted-1", STRIPE,
              "session-unredacted-1"]
    save_cassette(path, [
        Interaction(Request("GET", "https", "api.example.com", 443, "/v1/ok", "page=1",
                            (("Accept", "*/*"),)),
                    Response(200, "OK", (("Content-Type", "application/json"),), b'{"ok": 1}'),
                    recorded_at=1_767_225_600.0),
        Interaction(
            Request("POST", "https", "api.example.com", 443, "/v1/login",
                    "api_key=qkey-unredacted-1",
                    (("Authorization", "Bearer Bearer-token-unredacted-1"),
                     ("Content-Type", "application/json")),
                    b'{"user": "bob", "password": "pw-unredacted-1"}'),
            Response(200, "OK", (("Content-Type", "application/json"), ("Content-Encoding", "gzip"),
                                 ("Set-Cookie", "s=session-unredacted-1; Path=/")),
                     gzip.compress(json.dumps({"key": STRIPE, "echo": "pw-unredacted-1"}
                                              ).encode())),
            recorded_at=1_767_225_600.0),
    ])
    return leaked


@pytest.fixture
def cdir(tmp_path: Path) -> Path:
    d = tmp_path / "cassettes"
    d.mkdir()
    return d


def test_cli_scan_dirty_and_clean_cassettes(cli_env, cdir, tmp_path):
    dirty = cdir / "dirty.cassette"
    _raw_secrets_cassette(dirty)
    proc = cli("scan", dirty, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"{dirty}: #2 request header Authorization: authorization (Bear… 25 chars)" in lines
    assert f"{dirty}: #2 request query api_key: api_key (qkey… 17 chars)" in lines
    assert f"{dirty}: #2 request body $.password: password (pw-u… 15 chars)" in lines
    assert f"{dirty}: #2 response body: stripe-key (sk_t… 32 chars)" in lines  # in gzip
    assert f"{dirty}: #2 response header Set-Cookie: set-cookie (sess… 20 chars)" in lines
    assert all(line.startswith(f"{dirty}: #2 ") for line in lines)
    assert f"{len(lines)} secrets found" in proc.stderr
    assert "Traceback" not in proc.stderr
    for secret in ("unredacted-1", STRIPE):
        assert secret not in proc.stdout + proc.stderr  # findings are masked

    clean = cdir / "clean.cassette"
    save_cassette(clean, [load_cassette(dirty).interaction(0)])
    ok = cli("scan", clean, env=cli_env, cwd=tmp_path)
    assert (ok.returncode, ok.stdout) == (0, ""), ok.stderr
    assert "no secrets found" in ok.stderr
    # without arguments: the cassette directory from --cassette-dir
    assert cli("scan", "--cassette-dir", cdir, env=cli_env, cwd=tmp_path).returncode == 1
    (cdir / "dirty.cassette").unlink()
    assert cli("scan", "--cassette-dir", cdir, env=cli_env, cwd=tmp_path).returncode == 0


VCR_DIRTY = """\
interactions:
- request:
    body: '{"user": "bob", "password": "hunter2-vcr"}'
    headers:
      Authorization:
      - Bearer vcr-bearer-token-1
      Content-Type:
      - application/json
    method: POST
    uri: https://api.example.com/v1/login?api_key=vcr-query-key-1
  response:
    body:
      string: '{"ok": true}'
    headers:
      Content-Type:
      - application/json
    status:
      code: 200
      message: OK
version: 1
"""


def test_cli_scan_vcr_yaml_and_har(cli_env, tmp_path):
    yaml_dirty = tmp_path / "vcr.yaml"
    yaml_dirty.write_text(VCR_DIRTY)
    yaml_clean = tmp_path / "vcr_clean.yaml"
    yaml_clean.write_text(VCR_DIRTY.replace("vcr-bearer-token-1", "<redacted:authorization:a1b2c3>")
                          .replace("hunter2-vcr", "[FILTERED]")
                          .replace("vcr-query-key-1", "<redacted:api_key:a1b2c3>"))
    har_dirty = tmp_path / "session.har"
    content = base64.b64encode(json.dumps({"access_token": "har-access-token-1",
                                           "k": STRIPE}).encode()).decode()
    har_dirty.write_text(json.dumps({"log": {"entries": [{
        "request": {"method": "GET", "url": "https://api.example.com/v1/me",
                    "headers": [{"name": "X-Api-Key", "value": "har-key-0001"}],
                    "queryString": []},
        "response": {"status": 200, "headers": [],
                     "content": {"mimeType": "application/json", "encoding": "base64",
                                 "text": content}}}]}}))
    proc = cli("scan", yaml_dirty, har_dirty, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert sorted(proc.stdout.splitlines()) == sorted([
        f"{yaml_dirty}: #1 request query api_key: api_key (vcr-… 15 chars)",
        f"{yaml_dirty}: #1 request header Authorization: authorization (vcr-… 18 chars)",
        f"{yaml_dirty}: #1 request body $.password: password (hunt… 11 chars)",
        f"{har_dirty}: #1 request header X-Api-Key: x-api-key (har-… 12 chars)",
        f"{har_dirty}: #1 response body $.access_token: access_token (har-… 18 chars)",
        f"{har_dirty}: #1 response body: stripe-key (sk_t… 32 chars)",
    ])
    ok = cli("scan", yaml_clean, env=cli_env, cwd=tmp_path)
    assert (ok.returncode, ok.stdout) == (0, ""), ok.stdout + ok.stderr


def test_cli_redact_cleans_a_cassette_in_place_atomically(cli_env, cdir, tmp_path):
    path = cdir / "old.cassette"
    leaked = _raw_secrets_cassette(path)
    before_inode = path.stat().st_ino
    env = {**cli_env, "REPLAYPROXY_REDACTION_KEY": "ci-key"}
    proc = cli("redact", "-c", "old", "--cassette-dir", cdir, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"1 of 2 interactions redacted in {path}" in proc.stderr
    assert path.stat().st_ino != before_inode  # a new file renamed over the old one
    assert sorted(p.name for p in cdir.iterdir()) == ["old.cassette"]  # no temp file left
    assert_no_secret(cassette_bytes(path), leaked, "redacted cassette")
    cassette = load_cassette(path)
    assert len(cassette) == 2
    digest = hmac.new(b"ci-key", b"Bearer-token-unredacted-1", hashlib.sha256).hexdigest()[:6]
    assert dict(cassette.interaction(1).request.headers)["Authorization"] == \
        f"Bearer <redacted:authorization:{digest}>"
    assert cassette.interaction(0).request.query == "page=1"  # the rest is untouched
    assert cli("scan", path, env=cli_env, cwd=tmp_path).returncode == 0
    # a second run has nothing left to do and leaves the file alone
    inode = path.stat().st_ino
    again = cli("redact", "-c", "old", "--cassette-dir", cdir, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "0 of 2 interactions redacted" in again.stderr
    assert path.stat().st_ino == inode


def test_cli_redact_creates_the_key_in_replayproxy_home(cli_env, cdir, tmp_path):
    _raw_secrets_cassette(cdir / "k.cassette")
    proc = cli("redact", "-c", "k", "--cassette-dir", cdir, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    key = Path(cli_env["REPLAYPROXY_HOME"]) / "redaction.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_bytes() not in (cdir / "k.cassette").read_bytes()


def test_cli_redact_refuses_when_rules_do_not_cover_a_secret(cli_env, cdir, tmp_path):
    path = cdir / "pin.cassette"
    save_cassette(path, [Interaction(
        Request("POST", "https", "api.example.com", 443, "/v1/pin", "",
                (("Content-Type", "application/json"), ("Authorization", "Bearer tok-0123456")),
                b'{"password": "\\u0061bcd"}'),
        Response(200))])
    before = path.read_bytes()
    proc = cli("redact", "-c", "pin", "--cassette-dir", cdir, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{path}: #1 request body $.password: password (4 chars)" in proc.stderr
    assert "the cassette was not changed" in proc.stderr and "Traceback" not in proc.stderr
    assert path.read_bytes() == before


# -- configuration-driven rules through `replayproxy record` -----------------------------------


def test_cli_record_with_configured_rules_and_fail_closed(cli_env, leaky, upstream_ca, cdir,
                                                          tmp_path):
    config = write_config(tmp_path, """\
[redact]
headers = ["X-Partner-Sig"]
patterns = [{ name = "order", regex = "ord-[0-9]{8}" }]
same_value = ["x-partner-sig"]

[match]
headers = ["x-partner-sig"]
""")
    url = leaky.url("/v1/orders")

    def curl(sig: str, body: str) -> list[str]:
        return ["curl", "-sS", "--fail", "-o", "/dev/null", "--max-time", "30",
                "-H", f"X-Partner-Sig: {sig}", "-H", "Content-Type: application/json",
                "--data-binary", body, url]

    def run(verb: str, *cmd: str):
        return cli(verb, "-c", "cfg", "--cassette-dir", cdir, "--config", config,
                   "--upstream-ca", upstream_ca.pem, "--", *cmd, env=cli_env, cwd=tmp_path)

    rec = run("record", *curl("partner-sig-000111", '{"order": "ord-20260101"}'))
    assert rec.returncode == 0, rec.stderr
    data = cassette_bytes(cassette_path(cdir, "cfg"))
    assert b"partner-sig-000111" not in data and b"ord-20260101" not in data
    assert b"<redacted:x-partner-sig:" in data and b"<redacted:order:" in data
    # same_value: the same signature matches, another one does not
    assert run("replay", *curl("partner-sig-000111", '{"order": "ord-20269999"}')
               ).returncode == 0
    other = run("replay", *curl("partner-sig-999999", '{"order": "ord-20260101"}'))
    assert other.returncode != 0
    assert "1 request matched nothing" in other.stderr

    # fail closed: a short numeric password is left by redaction and caught by the scanner
    # a short secret written with an escape ("\u0061bcd" is "abcd") is found in the
    # parsed JSON but not as text: redaction cannot replace it, the scanner catches it
    leak = run("record", *curl("partner-sig-000111", '{"password": "\\u0061bcd"}'))
    assert leak.returncode == 1, leak.stderr
    assert "1 interaction still held secrets after redaction and was NOT written" in leak.stderr
    assert "request body $.password: password (4 chars)" in leak.stderr
    assert "Traceback" not in leak.stderr
    # the previous cassette is left as it was: the run recorded nothing
    assert cassette_bytes(cassette_path(cdir, "cfg")) == data


def test_serve_fails_a_run_that_dropped_secret_holding_interactions(cli_env, leaky, upstream_ca,
                                                                    cdir, tmp_path):
    """`serve` judges a run by the same rules as `record`: an interaction not written
    because it still held a secret makes the exit code 1."""
    serve = replayproxy_cmd("serve", "-c", "leak", "-m", "all", "--cassette-dir", cdir,
                            "--upstream-ca", upstream_ca.pem)
    with background(serve, env=cli_env, cwd=tmp_path, stderr_path=tmp_path / "err") as bg:
        env = parse_exports(bg.read_until(
            lambda lines: any(line.startswith("export REPLAYPROXY_URL=") for line in lines)))
        sent = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-H",
             "Content-Type: application/json", "--data-binary", '{"password": "\\u0061bcd"}',
             leaky.url("/v1/orders")], env=base_env(**env), capture_output=True, timeout=60,
            check=False)
        assert sent.returncode == 0, sent.stderr
        bg.proc.send_signal(signal.SIGINT)
        assert bg.proc.wait(30) == 1
    err = (tmp_path / "err").read_text()
    assert "1 interaction still held secrets after redaction and was NOT written" in err
    assert "exiting with 1: interactions holding secrets were not recorded" in err
    assert "Traceback" not in err


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("patterns", '["sk_(live"]', "invalid regular expression"),
    ("patterns", '[{ name = "x", regex = "a{2,1}" }]', "invalid regular expression"),
    ("json", '["$.card[?"]', "invalid JSON path"),
])
@pytest.mark.parametrize("verb", ["record", "scan"])
def test_invalid_rule_fails_at_start_up(verb, key, value, reason, cli_env, cdir, tmp_path):
    config = tmp_path / "pyproject.toml"
    config.write_text(f"[tool.replayproxy.redact]\n{key} = {value}\n")
    args = ("record", "-c", "x", "--cassette-dir", cdir, "--", "true") if verb == "record" \
        else ("scan", cdir)
    proc = cli(*args, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 2
    line = assert_clean_error(proc, str(config), "[tool.replayproxy.redact]", key, reason)
    assert line.startswith("replayproxy: error: ")
    assert list(cdir.iterdir()) == []


def test_invalid_rule_in_a_route_names_the_route(cli_env, cdir, tmp_path):
    config = tmp_path / "replayproxy.toml"
    config.write_text('[[redact.routes]]\nroute = "POST */oauth/*"\npatterns = ["(unclosed"]\n')
    proc = cli("record", "-c", "x", "--cassette-dir", cdir, "--", "true", env=cli_env,
               cwd=tmp_path)
    assert proc.returncode == 2
    assert_clean_error(proc, str(config), "redact.routes #1", "patterns",
                       "invalid regular expression")
