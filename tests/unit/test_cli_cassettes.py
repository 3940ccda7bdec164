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
        "replayproxy: 1 secret found; redact them with `replayproxy redact -c NAME` or add "
        "a rule to [tool.replayproxy.redact]"]
    clean = tmp_path / "clean.cassette"
    save_cassette(clean, SHOP)
    ok = cli("scan", clean)
    assert (ok.exit_code, ok.stdout) == (0, "")
    assert ok.stderr == f"replayproxy: no secrets found in {clean}\n"


def test_redact_reports_in_words(cli, cdir):
    done = cli("redact", "-c", "other", "--cassette-dir", cdir)
    assert done.exit_code == 0, done.stderr
    path = cassette_path(cdir, "other")
    assert done.stderr == f"replayproxy: 0 of 1 interaction redacted in {path}\n"
