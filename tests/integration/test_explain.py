"""Issue 4 on the command line: `replayproxy explain` runs the miss analysis offline, and
bad matching configuration stops the CLI at start-up with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replayproxy.matching.rules import MATCHER_NAMES
from tests.integration.support import (
    AMOUNT_DIFF,
    AMOUNT_URL_PATH,
    CHANGED_PAYMENT,
    RECORDED_PAYMENT,
    assert_clean_error,
    cli,
    offline,
    record_payment,
    write_config,
)

pytestmark = pytest.mark.slow


# -- 11. replayproxy explain ------------------------------------------------------------


@pytest.fixture
def explain(cli_env, cassette_dir, tmp_path):
    """``explain(BODY, *flags)``: `replayproxy explain` of a JSON POST, body from a file."""

    def go(url: str, body: bytes, *flags: str | Path):
        body_file = tmp_path / "body.json"
        body_file.write_bytes(body)
        return cli("explain", "-c", "pay", "--cassette-dir", cassette_dir, "--method", "POST",
                   "--url", url, "--body", f"@{body_file}",
                   "-H", "Content-Type: application/json", *flags, env=cli_env, cwd=tmp_path)

    return go


def test_explain_a_matching_request(https_upstream, run_proxy, explain):
    record_payment(run_proxy, https_upstream)
    url = https_upstream.url(AMOUNT_URL_PATH)
    reordered = json.dumps(dict(reversed(json.loads(RECORDED_PAYMENT).items()))).encode()
    with offline(https_upstream):
        text = explain(url, reordered)
        as_json = explain(url, reordered, "--json")
    assert text.returncode == 0, text.stderr
    assert text.stdout.split()[:6] == ["matches", "#2", "POST", url, "->", "200"], text.stdout
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"match": True, "interaction": 2}


def test_explain_a_changed_amount(https_upstream, run_proxy, explain):
    record_payment(run_proxy, https_upstream)
    url = https_upstream.url(AMOUNT_URL_PATH)
    with offline(https_upstream):
        text = explain(url, CHANGED_PAYMENT)
        as_json = explain(url, CHANGED_PAYMENT, "--json")
        ignored = explain(url, CHANGED_PAYMENT, "--ignore-json", "$.amount")
    assert text.returncode == 1, text.stderr
    assert f"matches POST {url}" in text.stdout
    assert f"Closest recorded: #2 POST {url}" in text.stdout
    assert AMOUNT_DIFF in text.stdout
    assert "Traceback" not in text.stdout + text.stderr

    assert as_json.returncode == 1, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["error"] == "unmatched"
    assert doc["closest"][0]["interaction"] == 2
    assert doc["closest"][0]["differences"] == [
        {"field": "body", "location": "$.amount", "recorded": 1200, "received": 1500}]

    # the same flags as replay: an ignored path makes it match
    assert ignored.returncode == 0, ignored.stdout + ignored.stderr
    assert ignored.stdout.split()[:2] == ["matches", "#2"], ignored.stdout


# -- 12. bad configuration: one line, exit 2, no traceback ------------------------------


@pytest.fixture
def start(cli_env, cassette_dir, tmp_path):
    """``start(*flags)``: `replayproxy replay -c pay ... -- true` (the cassette exists)."""
    cassette_dir.mkdir(parents=True, exist_ok=True)
    (cassette_dir / "pay.cassette").write_bytes(b"")  # never opened: config comes first

    def go(*flags: str | Path, cwd: Path | None = None):
        return cli("replay", "-c", "pay", "--cassette-dir", cassette_dir, *flags, "--", "true",
                   env=cli_env, cwd=cwd or tmp_path)

    return go


def test_invalid_json_path_in_config(start, tmp_path):
    config = write_config(tmp_path, '[match]\nignore_json = ["$.nonce", "$.[["]\n')
    proc = start("--config", config)
    assert proc.returncode == 2
    assert_clean_error(proc, str(config), "[tool.replayproxy.match]", "ignore_json",
                              "invalid JSON path '$.[['")


def test_invalid_regex_in_config_found_in_the_working_directory(start, tmp_path):
    config = write_config(tmp_path, '[match]\nignore_regex = ["ts=\\\\d+", "(unclosed"]\n',
                          name="replayproxy.toml")
    proc = start(cwd=config.parent)  # no --config: replayproxy.toml is found
    assert proc.returncode == 2
    assert_clean_error(proc, str(config), "ignore_regex",
                       "invalid regular expression '(unclosed'", "missing )")


def test_unknown_matcher_name_in_config(start, tmp_path):
    config = write_config(tmp_path, '[match]\nmatchers = ["method", "host", "path", "bodyy"]\n')
    proc = start("--config", config)
    assert proc.returncode == 2
    line = assert_clean_error(proc, str(config), "matchers", "unknown matcher 'bodyy'")
    allowed = line.split("allowed:")[1]
    assert [name.strip() for name in allowed.split(",")] == list(MATCHER_NAMES)


@pytest.mark.parametrize(("text", "table", "key", "expected"), [
    ('cassete_dir = "x"\n', "[tool.replayproxy]", "cassete_dir", "cassette_dir"),
    ('[match]\nignore_jsonpath = ["$.a"]\n', "[tool.replayproxy.match]", "ignore_jsonpath",
     "ignore_json"),
    ('[[match.routes]]\nroute = "POST 127.0.0.1/v1/*"\nignore_header = ["x"]\n',
     "[tool.replayproxy.match.routes #1]", "ignore_header", "ignore_headers"),
], ids=["top-level", "match", "route"])
def test_config_key_that_does_not_exist(text, table, key, expected, start, tmp_path):
    config = write_config(tmp_path, text)
    proc = start("--config", config)
    assert proc.returncode == 2
    line = assert_clean_error(proc, str(config), table, f"{key}: unknown setting", "allowed:")
    assert expected in line.split("allowed:")[1].replace(",", " ").split()


def test_invalid_json_path_on_the_command_line(start):
    proc = start("--ignore-json", "$.[[")
    assert proc.returncode == 2
    assert_clean_error(proc, "--ignore-json", "invalid JSON path '$.[['")


def test_bad_config_stops_record_and_explain_too(cli_env, tmp_path, https_upstream):
    """record and explain refuse a bad file before touching the network as well."""
    config = write_config(tmp_path, '[match]\nignore_json = ["$..["]\n')
    url = https_upstream.url("/v1/x")
    with offline(https_upstream):
        for args in (("record", "-c", "pay", "--", "curl", "-sS", url),
                     ("explain", "-c", "pay", "--url", url)):
            proc = cli(*args[:3], "--cassette-dir", tmp_path / "c", "--config", config,
                       *args[3:], env=cli_env, cwd=tmp_path)
            assert proc.returncode == 2
            assert_clean_error(proc, str(config), "ignore_json", "invalid JSON path")
    assert not (tmp_path / "c").exists()
