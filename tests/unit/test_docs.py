"""The docs keep up with the CLI (as sqlite-utils tests its docs)."""

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from replayproxy.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("generate_cli", ROOT / "docs/generate_cli.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


def test_cli_reference_is_current():
    assert (ROOT / "docs/cli.md").read_text() == GENERATOR.render(), (
        "docs/cli.md is out of date: run `make docs`"
    )


@pytest.mark.parametrize("path", GENERATOR.command_paths(), ids=" ".join)
def test_every_command_has_help_and_a_section(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0
    summary = result.output.split("\n\n")[1].strip()
    assert summary and not summary.startswith(("Options:", "Arguments:"))
    assert f"## `replayproxy {' '.join(path)}`" in (ROOT / "docs/cli.md").read_text()


def test_readme_names_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
