"""`replayproxy cassette ls`, `cassette show`, `scan` and `redact`, in-process."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, save_cassette
from tests.factories import interaction, request, response
from tests.unit.cli_runner import cli_fixture, error_line  # noqa: F401

JSON_BODY = json.dumps({"hello": "world", "items": [1, 2, 3], "nested": {"ok": True}}).encode()
GZIP_PAYLOAD = json.dumps({"compressed": True, "greeting": "hello gzip", "n": 42}).encode()
BINARY = bytes(range(256)) * 4
BASE = "https://api.example.com"
JSON_TYPE = (("Content-Type", "application/json"),)


SHOP = [
    interaction("/json?x=1",
                response(200, JSON_BODY, headers=[*JSON_TYPE, ("X-Upstream", "json")])),
    interaction(request("GET", "/gzip", headers=[("Accept-Encoding", "gzip")]),
                response(200, gzip.compress(GZIP_PAYLOAD),
                         headers=[*JSON_TYPE, ("Content-Encoding", "gzip")])),
    interaction("/png", response(200, BINARY, headers=[("Content-Type", "image/png")])),
    interaction(request("POST", "/echo", headers=JSON_TYPE, body=b'{"amount":1200}'),
                response(200, b'{"ok": true}', headers=JSON_TYPE)),
]


@pytest.fixture
def cdir(tmp_path: Path) -> Path:
    d = tmp_path / "cassettes"
    save_cassette(cassette_path(d, "shop"), SHOP)
    save_cassette(cassette_path(d, "other"), SHOP[:1])
    return d


def test_cassette_ls_counts_and_sizes(cli, cdir):
    ls = cli("cassette", "ls", "--cassette-dir", cdir)
    assert ls.exit_code == 0, ls.stderr
    lines = ls.stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["other", "1", "interaction"], ["shop", "4", "interactions"]]
    size = cassette_path(cdir, "shop").stat().st_size
    assert f"{size / 1024:.1f} KB" in lines[1]
    # the size column stays aligned whatever the noun's number
    assert len(lines[0]) == len(lines[1]), lines


def test_cassette_show_decodes_and_numbers_from_1(cli, cdir):
    show = cli("cassette", "show", "-c", "shop", "--cassette-dir", cdir)
    assert show.exit_code == 0, show.stderr
    out = show.stdout
    assert out.splitlines()[0] == f"# {cassette_path(cdir, 'shop')}: 4 interactions"
    assert f"#1   GET {BASE}/json?x=1 -> 200 OK  req 0 B  resp {len(JSON_BODY)} B" in out
    assert f"#2   GET {BASE}/gzip -> 200 OK" in out and "gzip" in out.split("#2")[1]
    assert f"#3   GET {BASE}/png -> 200 OK" in out
    assert f"resp {len(BINARY) / 1024:.1f} KB" in out
    assert f"#4   POST {BASE}/echo -> 200 OK  req 15 B" in out
    assert "#0" not in out and "#5" not in out
    # JSON pretty-printed (indented, one key per line)
    pretty = json.dumps(json.loads(JSON_BODY), indent=2).splitlines()
    assert all(f"    {line}" in out.splitlines() for line in pretty)
    for line in json.dumps(json.loads(GZIP_PAYLOAD), indent=2).splitlines():
        assert f"    {line}" in out.splitlines()  # gzip body decoded
    assert "image/png" in out and "<binary" in out
    assert '"amount": 1200' in out  # request body too

    brief = cli("cassette", "show", "-c", "shop", "--brief", "--cassette-dir", cdir)
    assert brief.exit_code == 0
    assert [line.split()[0] for line in brief.stdout.splitlines()[1:]] == [
        "#1", "#2", "#3", "#4"]
    one = cli("cassette", "show", "-c", "shop", "-i", "1", "--brief", "--cassette-dir", cdir)
    assert one.stdout.splitlines()[1].startswith(f"#1   GET {BASE}/json?x=1")


def test_cassette_show_of_one_interaction_says_interaction(cli, cdir):
    show = cli("cassette", "show", "-c", "other", "--brief", "--cassette-dir", cdir)
    assert show.stdout.splitlines()[0].endswith(": 1 interaction")


@pytest.mark.parametrize("args", [["-c", "shop"], ["shop"], ["shop", "-c", "shop"]],
                         ids=["option", "positional", "both-agree"])
def test_cassette_show_takes_c_like_every_command(cli, cdir, args):
    show = cli("cassette", "show", *args, "--brief", "--cassette-dir", cdir)
    assert show.exit_code == 0, show.stderr
    assert "4 interactions" in show.stdout.splitlines()[0]


@pytest.mark.parametrize(("args", "needles"), [
    (["shop", "-c", "other"], ["'shop'", "-c 'other'", "cassette show -c other"]),
    ([], ["no cassette given", "cassette show -c NAME"]),
    (["-c", "shop", "-i", "0"], ["interactions 1 to 4", "--interaction 0"]),
    (["-c", "shop", "-i", "5"], ["interactions 1 to 4", "--interaction 5"]),
], ids=["two-names", "no-name", "interaction-0", "interaction-past-the-end"])
def test_cassette_show_bad_input(cli, cdir, args, needles):
    error_line(cli("cassette", "show", *args, "--cassette-dir", cdir), *needles)


def test_scan_summary_has_one_prefix_and_counts_in_words(cli, tmp_path):
    leaky = tmp_path / "leaky.cassette"
    save_cassette(leaky, [interaction(
        request("GET", "/a", headers=[("Authorization", "Bearer abcdefgh1234")]),
        response(headers=JSON_TYPE))])
    found = cli("scan", leaky)
    assert found.exit_code == 1
    assert found.stderr.splitlines() == [
        "replayproxy: 1 secret found: redact a cassette with `replayproxy redact -c NAME` "
        "(add a rule to [tool.replayproxy.redact] for what it misses)"]
    clean = tmp_path / "clean.cassette"
    save_cassette(clean, SHOP)
    ok = cli("scan", clean)
    assert (ok.exit_code, ok.stdout) == (0, "")
    assert ok.stderr == f"replayproxy: no secrets found in 1 file of {clean}\n"


# -- scanner honesty (#15) -------------------------------------------------------------


COMPOSE = """\
services:
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: pg-s3cret-value
      POSTGRES_USER: app
  web:
    environment:
      - SLACK_TOKEN=slack-t0ken-value
      - DB_PASSWORD=${DB_PASSWORD}
"""


def test_scan_reads_yaml_that_is_not_vcr_as_text_and_names_a_fix_for_it(cli, tmp_path):
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(COMPOSE)
    found = cli("scan", compose)
    assert found.exit_code == 1, found.stderr
    assert found.stdout.splitlines() == [
        f"{compose}: line 5 POSTGRES_PASSWORD: postgres_password (pg-s… 15 chars)",
        f"{compose}: line 9 SLACK_TOKEN: slack_token (slac… 17 chars)"]
    assert found.stderr.splitlines() == [
        "replayproxy: 2 secrets found: remove the secrets from other files by hand (read "
        "them from the environment instead)"]
    assert "replayproxy redact -c" not in found.stderr


@pytest.mark.parametrize(("name", "text", "why"), [
    ("broken.yaml", "interactions:\n  - request: {method: GET\n", "is not valid YAML (line"),
    ("broken.har", '{"log": {"entries": [', "is not valid JSON (line 1"),
    ("other.har", '{"entries": []}', "is not a HAR file: it has no 'log.entries' list"),
    ("corrupt.cassette", "\xc1 not msgpack", "not scanned: is corrupt or truncated"),
])
def test_scan_says_not_scanned_and_exits_2_when_nothing_was_scanned(cli, tmp_path, name,
                                                                    text, why):
    path = tmp_path / name
    path.write_text(text, encoding="latin-1")
    result = cli("scan", path)
    assert result.exit_code == 2
    assert result.stdout == ""
    first, second = result.stderr.splitlines()
    assert first.startswith(f"replayproxy: {path}: not scanned: ") and why in first, first
    assert second == ("replayproxy: error: nothing scanned: no file could be scanned; pass "
                      "cassette files or directories")


def test_scan_lists_what_it_could_not_scan_next_to_what_it_did(cli, tmp_path):
    save_cassette(tmp_path / "good.cassette", SHOP)
    (tmp_path / "broken.yml").write_text("a: [1\n")
    result = cli("scan", tmp_path)
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0].startswith(
        f"replayproxy: {tmp_path / 'broken.yml'}: not scanned: is not valid YAML")
    assert result.stderr.splitlines()[1] == (
        f"replayproxy: no secrets found in 1 file of {tmp_path} (1 not scanned, listed above)")


def test_scan_hint_for_a_har_names_the_import_command(cli, tmp_path):
    har = tmp_path / "session.har"
    har.write_text(json.dumps({"log": {"entries": [{
        "request": {"method": "GET", "url": "https://api.example.com/x",
                    "headers": [{"name": "Authorization", "value": "Bearer abcdefgh1234"}]},
        "response": {"status": 200, "content": {"text": "ok"}}}]}}))
    result = cli("scan", har)
    assert result.exit_code == 1
    assert "`replayproxy import har FILE -c NAME`" in result.stderr


def test_turning_the_default_rules_off_leaves_the_scanner_on_and_warns(cli, tmp_path):
    leaky = tmp_path / "leaky.cassette"
    save_cassette(leaky, [interaction(
        request("GET", "/a", headers=[("Authorization", "Bearer abcdefgh1234")]),
        response(headers=JSON_TYPE))])
    config = tmp_path / "replayproxy.toml"
    config.write_text("[redact]\ndefaults = false\n")
    result = cli("scan", leaky, "--config", config)
    assert result.exit_code == 1
    assert "request header Authorization: authorization" in result.stdout
    assert result.stderr.splitlines()[0] == (
        "replayproxy: warning: [redact] defaults = false: the built-in redaction rules are "
        "off, only your rules redact; the scanner still checks the built-in ones (an "
        f"interaction they flag is not written) (in {config})")
    config.write_text("[redact]\ndefaults = false\nscan = false\n")
    result = cli("scan", leaky, "--config", config)
    assert result.exit_code == 1  # an explicit scan still scans
    assert [line for line in result.stderr.splitlines() if "warning" in line] == [
        f"replayproxy: warning: {line} (in {config})" for line in (
            "[redact] defaults = false: the built-in redaction rules are off, only your "
            "rules redact; the scanner still checks the built-in ones (an interaction they "
            "flag is not written)",
            "[redact] scan = false: the secret scanner is off, recorded and imported "
            "interactions are written without being checked for secrets")]


def test_cassette_ls_sorts_by_cassette_name(cli, tmp_path):
    d = tmp_path / "c"
    for name in ("npm-install-axios", "npm-install", "b"):
        save_cassette(cassette_path(d, name), SHOP[:1])
    ls = cli("cassette", "ls", "--cassette-dir", d)
    assert [line.split()[0] for line in ls.stdout.splitlines()] == [
        "b", "npm-install", "npm-install-axios"]


def test_redact_reports_in_words(cli, cdir):
    done = cli("redact", "-c", "other", "--cassette-dir", cdir)
    assert done.exit_code == 0, done.stderr
    path = cassette_path(cdir, "other")
    assert done.stderr == f"replayproxy: 0 of 1 interaction redacted in {path}\n"
