"""Read paths never write: `cassette ls`, `cassette show`, `explain` and `scan` leave an
interrupted recording's journals where they are; `show` and `explain` say so and how to
fold it in. A command that writes (`redact`) folds it in first."""

from __future__ import annotations

from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.decision.session import CassetteSession
from replayproxy.model import RecordMode
from tests.factories import interaction
from tests.unit.cli_runner import cli_fixture  # noqa: F401

URL = "https://api.example.com/v1/a"


@pytest.fixture
def interrupted(tmp_path: Path) -> Path:
    """Cassette 'shop' holding /v1/a, and the journal of a killed run that added /v1/b."""
    cdir = tmp_path / "cassettes"
    save_cassette(cassette_path(cdir, "shop"), [interaction("/v1/a")])
    writer = CassetteSession(cdir, "shop", RecordMode.NEW_EPISODES)
    writer.record(interaction("/v1/b"))
    # the kernel releases the journal's lock of a killed run; nothing is committed
    assert writer._journal is not None and writer._journal._file is not None
    writer._journal._file.close()
    return cdir


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize(("args", "code", "note"), [
    (("cassette", "ls"), 0, False),
    (("cassette", "show", "-c", "shop"), 0, True),
    (("cassette", "show", "shop", "--brief"), 0, True),
    (("explain", "-c", "shop", URL), 0, True),
    (("explain", "-c", "shop", "https://api.example.com/v1/b"), 1, True),
    (("scan",), 0, False),
])
def test_read_commands_leave_the_journal_alone(cli, interrupted, args, code, note):
    before = _snapshot(interrupted)
    assert any(name.endswith(".journal") for name in before)
    result = cli(*args, "--cassette-dir", interrupted)
    assert result.exit_code == code, result.stderr
    assert _snapshot(interrupted) == before
    said = "interrupted recording (1 journal) that is not folded in" in result.stderr
    assert said is note, result.stderr
    if note:
        assert "fold it in with `replayproxy replay -c shop -- true`" in result.stderr


def test_explain_of_a_cassette_with_only_a_journal_names_it(cli, tmp_path):
    cdir = tmp_path / "cassettes"
    writer = CassetteSession(cdir, "fresh", RecordMode.ALL)
    writer.record(interaction("/v1/a"))
    assert writer._journal is not None and writer._journal._file is not None
    writer._journal._file.close()
    before = _snapshot(cdir)
    result = cli("explain", "-c", "fresh", URL, "--cassette-dir", cdir)
    assert result.exit_code == 2
    assert "has only an interrupted recording so far" in result.stderr
    assert "replayproxy replay -c fresh -- true" in result.stderr
    assert _snapshot(cdir) == before


def test_redact_writes_and_so_folds_the_journal_in(cli, interrupted):
    result = cli("redact", "-c", "shop", "--cassette-dir", interrupted)
    assert result.exit_code == 0, result.stderr
    assert not any(p.name.endswith(".journal") for p in interrupted.iterdir())
    paths = [it.request.path for it in
             load_cassette(cassette_path(interrupted, "shop")).interactions()]
    assert paths == ["/v1/a", "/v1/b"]
