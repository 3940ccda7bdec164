"""Bad input that stops the CLI before any proxy starts, in-process: each gives one
`replayproxy: error: ...` line naming the problem and the fix, a non-zero exit, no
traceback (an exception escaping the CLI fails these tests), nothing on stdout."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from replayproxy.cassette.store import save_cassette
from replayproxy.errors import CLI_WORDS, ConfigError
from replayproxy.matching.rules import MATCHER_NAMES
from tests.factories import interaction, request, response
from tests.integration.support import write_config
from tests.unit.cli_runner import cli_fixture, error_line  # noqa: F401


@pytest.fixture
def cdir(tmp_path: Path) -> Path:
    d = tmp_path / "cassettes"
    d.mkdir()
    return d


@pytest.fixture
def replay(cli, cdir):
    def go(name: str, *extra: str | Path, verb: str = "replay"):
        return cli(verb, "-c", name, "--cassette-dir", cdir, *extra, "--", "true")

    return go


def _real_cassette(path: Path) -> None:
    it = interaction(request("GET", "/v1/items?a=1", headers=[("Host", "api.example.com")]),
                     response(200, json={"x": "y" * 4000}))
    save_cassette(path, [it, it])


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\xc1\xff\x00garbage\x93 not msgpack at all" * 10)


def _truncated(path: Path) -> None:
    _real_cassette(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _future(path: Path) -> None:
    header = {"format": "replayproxy-cassette", "interactions": 0, "version": 99}
    path.write_bytes(msgpack.packb(header) + msgpack.packb([]))


@pytest.mark.parametrize(("write", "needles", "fixes"), [
    (_corrupt, ["corrupt"], ["git checkout", "record again"]),
    (_truncated, ["truncated"], ["git checkout", "record again"]),
    (_future, ["version 99"], ["upgrade replayproxy"]),
], ids=["corrupt", "truncated", "unknown-format-version"])
def test_unreadable_cassette(replay, cdir, write, needles, fixes):
    path = cdir / "bad.cassette"
    write(path)
    line = error_line(replay("bad"), str(path), *needles)
    assert any(fix in line for fix in fixes), line


def test_missing_cassette_in_replay_mode(replay, cdir):
    line = error_line(replay("nope"), "'nope'", "does not exist", str(cdir))
    assert "replayproxy record -c nope" in line  # the fix
    assert "--cassette-dir" in line  # a setting named as the flag (CLI_WORDS)


@pytest.mark.parametrize(("name", "verb", "needles"), [
    ("team/stripe", "replay", ["'team/stripe'", "no '/'", "-c stripe-payments"]),
    ("..", "record", ["'..'", "no '..'"]),
    ("a..b", "record", ["'a..b'", "no '..'"]),
], ids=["slash", "dotdot", "inner-dotdot"])
def test_bad_cassette_name(replay, cdir, name, verb, needles):
    error_line(replay(name, verb=verb), *needles)
    assert list(cdir.iterdir()) == []


def test_upstream_ca_that_does_not_exist(replay, tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    error_line(replay("x", "--upstream-ca", missing, verb="record"), str(missing),
               "--upstream-ca")


@pytest.mark.parametrize("verb", ["record", "replay"])
def test_no_command_shows_an_example_of_the_same_command(cli, cdir, verb):
    line = error_line(cli(verb, "-c", "x", "--cassette-dir", cdir), "no command", "--")
    assert f"e.g. replayproxy {verb} -c x -- pytest" in line


def test_errors_word_settings_as_flags(cli, monkeypatch):
    """The one catch point renders an error's {fields} with CLI_WORDS."""
    from replayproxy.cli import options

    def fail(*_args, **_kwargs):
        raise ConfigError("no cassettes in this place: pass {cassette_dir} or set {config}")

    monkeypatch.setattr(options.Matching, "cassette_directory", fail)
    line = error_line(cli("cassette", "ls"))
    assert line == (f"replayproxy: error: no cassettes in this place: pass "
                    f"{CLI_WORDS['cassette_dir']} or set {CLI_WORDS['config']}")


# -- bad configuration: one line, exit 2 ----------------------------------------------------


@pytest.fixture
def start(cli, cdir):
    """``start(*flags)``: `replayproxy replay -c pay ... -- true` (the cassette exists)."""
    (cdir / "pay.cassette").write_bytes(b"")  # never opened: config comes first

    def go(*flags: str | Path):
        return cli("replay", "-c", "pay", "--cassette-dir", cdir, *flags, "--", "true")

    return go


def test_invalid_json_path_in_config(start, tmp_path):
    config = write_config(tmp_path, '[match]\nignore_json = ["$.nonce", "$.[["]\n')
    proc = start("--config", config)
    assert proc.exit_code == 2
    error_line(proc, str(config), "[tool.replayproxy.match]", "ignore_json",
               "invalid JSON path '$.[['")


def test_invalid_regex_in_config_found_in_the_working_directory(start, tmp_path, cli,
                                                                 monkeypatch):
    config = write_config(tmp_path, '[match]\nignore_regex = ["ts=\\\\d+", "(unclosed"]\n',
                          name="replayproxy.toml")
    monkeypatch.chdir(config.parent)  # no --config: replayproxy.toml is found
    proc = start()
    assert proc.exit_code == 2
    error_line(proc, str(config), "ignore_regex", "invalid regular expression '(unclosed'",
               "missing )")


def test_unknown_matcher_name_in_config(start, tmp_path):
    config = write_config(tmp_path, '[match]\nmatchers = ["method", "host", "path", "bodyy"]\n')
    proc = start("--config", config)
    assert proc.exit_code == 2
    line = error_line(proc, str(config), "matchers", "unknown matcher 'bodyy'")
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
    assert proc.exit_code == 2
    line = error_line(proc, str(config), table, f"{key}: unknown setting", "allowed:")
    assert expected in line.split("allowed:")[1].replace(",", " ").split()


def test_invalid_json_path_on_the_command_line(start):
    proc = start("--ignore-json", "$.[[")
    assert proc.exit_code == 2
    error_line(proc, "--ignore-json", "invalid JSON path '$.[['")


@pytest.mark.parametrize("args", [
    ("record", "-c", "pay", "--", "curl", "-sS", "http://127.0.0.1:9/v1/x"),
    ("explain", "-c", "pay", "http://127.0.0.1:9/v1/x"),
], ids=["record", "explain"])
def test_bad_config_stops_record_and_explain_too(cli, tmp_path, args):
    """record and explain refuse a bad file before anything else (port 9, discard, is
    never asked: the error comes first)."""
    config = write_config(tmp_path, '[match]\nignore_json = ["$..["]\n')
    proc = cli(*args[:3], "--cassette-dir", tmp_path / "c", "--config", config, *args[3:])
    assert proc.exit_code == 2
    error_line(proc, str(config), "ignore_json", "invalid JSON path")
    assert not (tmp_path / "c").exists()
