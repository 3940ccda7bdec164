"""Write docs/cli.md from the CLI's own --help (run: make docs).

tests/unit/test_docs.py checks that docs/cli.md is current.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from replayproxy.cli import app

HEADER = """\
# Command-line reference

Generated from `--help` by `docs/generate_cli.py` (`make docs`); do not edit by hand.
Every error replayproxy raises itself is one line on standard error,
`replayproxy: error: ...`, with a non-zero exit code (2, or 127 when the command to
run does not exist); `record` and `replay` otherwise exit with the command's code.
"""


def _commands(group: Any, prefix: list[str]) -> list[list[str]]:
    out = []
    for name in sorted(group.commands):
        command = group.commands[name]
        out.append([*prefix, name])
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            out.extend(_commands(command, [*prefix, name]))
    return out


def command_paths() -> list[list[str]]:
    """Every command and subcommand, as argument lists (e.g. ["cassette", "ls"])."""
    return _commands(typer.main.get_command(app), [])


def render() -> str:
    """The text of docs/cli.md."""
    runner = CliRunner()
    parts = [HEADER]
    for path in [[], *command_paths()]:
        result = runner.invoke(app, [*path, "--help"], prog_name="replayproxy",
                               env={"COLUMNS": "90"}, terminal_width=90)
        title = " ".join(["replayproxy", *path])
        parts.append(f"\n## `{title}`\n\n```\n{result.output.rstrip()}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    target = Path(__file__).with_name("cli.md")
    target.write_text(render())
    sys.stdout.write(f"wrote {target}\n")
