"""The ``replayproxy`` command run in-process with typer's CliRunner, for the CLI tests
that start no proxy and no child command (those stay in tests/integration/).

``Cli`` isolates each run: a temporary working directory (no ./pyproject.toml of this
repository is read as configuration), a temporary REPLAYPROXY_HOME, no inherited
REPLAYPROXY_* variables, and the logging set-up of ``replayproxy`` and ``mitmproxy``
loggers restored afterwards (the CLI points them at its own stderr).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from replayproxy.cli import app


@dataclass
class Cli:
    """``cli(*args)`` runs ``replayproxy ARGS`` in-process and returns the Result;
    an exception that escapes the CLI fails the test with its traceback."""

    cwd: Path

    def __call__(self, *args: str | os.PathLike[str], env: dict[str, str] | None = None
                 ) -> Result:
        return CliRunner().invoke(app, [str(a) for a in args], env=env,
                                  catch_exceptions=False, prog_name="replayproxy",
                                  terminal_width=200)  # --help: one line per option


@pytest.fixture(name="cli")
def cli_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """The ``cli`` fixture (see ``Cli``); the working directory is ``tmp_path/work``.
    Import ``cli_fixture`` into a test module to use it."""
    for name in list(os.environ):
        if name.startswith("REPLAYPROXY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REPLAYPROXY_HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    saved = {name: (logger.handlers[:], logger.level, logger.propagate)
             for name in ("replayproxy", "mitmproxy")
             for logger in [logging.getLogger(name)]}
    try:
        yield Cli(work)
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def error_line(result: Result, *needles: str) -> str:
    """A user error: non-zero exit, stderr exactly one ``replayproxy: error:`` line naming
    ``needles``, nothing on stdout. Returns the line."""
    assert result.exit_code != 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("replayproxy: error: "), lines[0]
    assert not result.stdout.strip(), result.stdout
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]
