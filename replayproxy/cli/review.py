"""The commands for reviewing cassettes: ``cassette diff``, ``cassette text`` (git's
textconv driver) and ``git-setup``."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from replayproxy.cli.options import CassetteDir, Config, Matching, catch_errors
from replayproxy.cli.output import PREFIX
from replayproxy.errors import CassetteError, ConfigError

GITATTRIBUTES_LINE = "*.cassette diff=replayproxy"
"""What ``git-setup`` adds to ``.gitattributes``."""


def _cassette_file(given: str, cassette_dir: Path) -> Path:
    """A cassette given as a file path (``cassettes/a.cassette``) or a name (``a``)."""
    from replayproxy.cassette.store import SUFFIX, cassette_path

    if given.endswith(SUFFIX) or "/" in given:
        return Path(given)
    return cassette_path(cassette_dir, given)


@catch_errors
def cassette_diff(
    old: Annotated[str, typer.Argument(metavar="A", show_default=False,
                                       help="The old cassette: a name or a .cassette file.")],
    new: Annotated[str, typer.Argument(metavar="B", show_default=False,
                                       help="The new cassette: a name or a .cassette file.")],
    cassette_dir: CassetteDir = None,
    config: Config = None,
) -> None:
    """Show what differs between two cassettes: interactions added, removed and changed
    (headers, status, bodies; JSON compared as JSON). Exit 1 when they differ.

    Example: replayproxy cassette diff stripe stripe-new
    """
    from replayproxy.cassette.diff import diff_cassettes, render_diff
    from replayproxy.cassette.store import load_cassette

    directory = Matching(config, cassette_dir).cassette_directory()
    a, b = (_cassette_file(x, directory) for x in (old, new))
    first = list(load_cassette(a).interactions())
    second = list(load_cassette(b).interactions())
    diff = diff_cassettes(first, second)
    for line in render_diff(diff, first, second):
        typer.echo(line)
    added, removed, changed, same = diff.counts()
    typer.echo(f"{PREFIX}{a} -> {b}: {added} added, {removed} removed, {changed} changed, "
               f"{same} unchanged", err=True)
    if not diff.same:
        raise typer.Exit(1)


@catch_errors
def cassette_text(
    file: Annotated[Path, typer.Argument(metavar="FILE", show_default=False,
                                         help="The cassette file.")],
) -> None:
    """Print a cassette file as text, for git's textconv (see `replayproxy git-setup`):
    every interaction in full, no file path.

    Example: replayproxy cassette text cassettes/stripe.cassette
    """
    from replayproxy.cassette.store import load_cassette
    from replayproxy.cassette.view import render_text

    for line in render_text(load_cassette(file).interactions()):
        typer.echo(line)


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                              text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise ConfigError("git is not installed (or not on PATH): install it, then run "
                          "`replayproxy git-setup` again") from None
    if done.returncode != 0:
        raise ConfigError(f"{repo} is not in a git repository ({done.stderr.strip()}): run "
                          "`replayproxy git-setup` inside one, or pass --repo DIR")
    return done.stdout.strip()


def textconv_command() -> str:
    """The textconv command: this Python running replayproxy, so it works whatever PATH
    git runs with."""
    return f"{shlex.quote(sys.executable)} -m replayproxy cassette text"


@catch_errors
def git_setup(
    repo: Annotated[Path, typer.Option("--repo", metavar="DIR", show_default=False,
                                       help="A directory of the git repository [default: "
                                       "the current directory].")] = Path(),
) -> None:
    """Make `git diff` and `git log -p` show cassettes as text: add the .gitattributes line
    and set the repository-local textconv driver.

    Example: replayproxy git-setup
    """
    top = Path(_git(repo, "rev-parse", "--show-toplevel"))
    attributes = top / ".gitattributes"
    try:
        existing = attributes.read_text(encoding="utf-8") if attributes.exists() else ""
    except (OSError, UnicodeDecodeError) as e:
        raise CassetteError(f"cannot read {attributes}: {e}") from None
    if GITATTRIBUTES_LINE not in existing.splitlines():
        separator = "" if not existing or existing.endswith("\n") else "\n"
        try:
            with attributes.open("a", encoding="utf-8") as f:
                f.write(f"{separator}{GITATTRIBUTES_LINE}\n")
        except OSError as e:
            raise CassetteError(f"cannot write {attributes}: {e.strerror}") from None
        typer.echo(f"{PREFIX}added `{GITATTRIBUTES_LINE}` to {attributes} (commit it)",
                   err=True)
    _git(top, "config", "--local", "diff.replayproxy.textconv", textconv_command())
    _git(top, "config", "--local", "diff.replayproxy.cachetextconv", "false")
    typer.echo(f"{PREFIX}set diff.replayproxy.textconv in the repository's own git config: "
               "`git diff` and `git log -p` now show cassettes as text", err=True)
