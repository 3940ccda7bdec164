"""The commands that read or rewrite cassettes without a proxy: ``cassette ls``,
``cassette show``, ``scan`` and ``redact``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from replayproxy.cli.options import (
    CassetteDir,
    CassetteName,
    Config,
    Matching,
    catch_errors,
    redactor,
)
from replayproxy.cli.output import PREFIX, interrupted_note, plural, terminal_safe
from replayproxy.errors import CassetteError, ConfigError


@catch_errors
def cassette_ls(cassette_dir: CassetteDir = None, config: Config = None) -> None:
    """List the cassettes: name, interactions, size."""
    from replayproxy.cassette.journal import pending_journals, unrecovered_cassettes
    from replayproxy.cassette.store import cassette_info, list_cassettes
    from replayproxy.cassette.view import format_size

    cassette_dir = Matching(config, cassette_dir).cassette_directory()
    files = list_cassettes(cassette_dir)
    # a first recording killed before it ended has left only its journal: show it too
    unrecovered = unrecovered_cassettes(cassette_dir)
    if not files and not unrecovered:
        typer.echo(f"no cassettes in {cassette_dir}", err=True)
        return
    width = max(len(n) for n in [f.stem for f in files] + unrecovered)
    for f in files:
        try:
            count = cassette_info(f)
            counted = f"{count:>8} {'interaction ' if count == 1 else 'interactions'}"
        except CassetteError:
            counted = f"{'corrupt':>8} {'':<12}"
        pending = " (+ interrupted recording, recovered on next use)" if pending_journals(f) \
            else ""
        typer.echo(f"{f.stem:<{width}}  {counted}  "
                   f"{format_size(f.stat().st_size):>9}{pending}")
    for name in unrecovered:
        typer.echo(f"{name:<{width}}  interrupted recording only, recovered on next use "
                   f"(e.g. replayproxy replay -c {name} -- CMD)")


def _one_name(positional: str | None, option: str | None) -> str:
    """The cassette of ``cassette show``: ``-c NAME`` as everywhere, or the older
    positional NAME; both only when they agree."""
    if positional and option and positional != option:
        raise ConfigError(f"two cassettes given, {positional!r} and -c {option!r}: "
                          f"show one, e.g. replayproxy cassette show -c {option}")
    name = option or positional
    if not name:
        raise ConfigError("no cassette given: replayproxy cassette show -c NAME "
                          "(`replayproxy cassette ls` lists them)")
    return name


@catch_errors
def cassette_show(
    name: Annotated[str | None, typer.Argument(
        metavar="NAME", show_default=False,
        help="Cassette name (the same as -c NAME).")] = None,
    cassette: Annotated[str | None, typer.Option(
        "--cassette", "-c", metavar="NAME", show_default=False,
        help="Cassette name.")] = None,
    cassette_dir: CassetteDir = None,
    config: Config = None,
    interaction: Annotated[int | None, typer.Option(
        "--interaction", "-i", metavar="N", show_default=False,
        help="Show only interaction N (numbered from 1).")] = None,
    brief: Annotated[bool, typer.Option("--brief", help="One line per interaction.")] = False,
    max_chars: Annotated[int, typer.Option(metavar="N",
                                           help="Cut bodies longer than this.")] = 4000,
    descriptor_set: Annotated[Path | None, typer.Option(
        "--descriptor-set", metavar="FILE", show_default=False,
        help="Decode gRPC messages with this protobuf descriptor set (protoc "
             "--descriptor_set_out=FILE --include_imports).")] = None,
) -> None:
    """Show a cassette's interactions, numbered from 1, bodies decoded and pretty-printed;
    gRPC messages as length-prefixed frames in hex (decoded with --descriptor-set).

    Example: replayproxy cassette show -c stripe --brief
    """
    from replayproxy.cassette.journal import pending_journals
    from replayproxy.cassette.store import cassette_path, load_cassette
    from replayproxy.cassette.view import render_interaction, summary_line

    name = _one_name(name, cassette)
    descriptors = None
    if descriptor_set is not None:
        from replayproxy.grpc_wire import Descriptors

        descriptors = Descriptors(descriptor_set)
    cassette_dir = Matching(config, cassette_dir).cassette_directory()
    path = cassette_path(cassette_dir, name)
    pending = pending_journals(path)
    if not path.exists() and pending:
        raise CassetteError(
            f"cassette {name!r} has only an interrupted recording so far (a journal in "
            f"{cassette_dir}): recover it with `replayproxy replay -c {name} -- true`, "
            "then show it again")
    loaded = load_cassette(path, name)
    if pending:
        typer.echo(interrupted_note(name, len(pending)), err=True)
    numbers = range(1, len(loaded) + 1)
    if interaction is not None:
        if not 1 <= interaction <= len(loaded):
            raise ConfigError(f"cassette {name!r} has interactions 1 to {len(loaded)}; "
                              f"--interaction {interaction} is out of range")
        numbers = range(interaction, interaction + 1)
    typer.echo(f"# {loaded.path}: {plural(len(loaded), 'interaction')}")
    for n in numbers:
        it = loaded.interaction(n - 1)
        if brief:
            typer.echo(summary_line(n, it))
        else:
            for line in render_interaction(n, it, max_chars, descriptors, terminal_safe):
                typer.echo(line)
            typer.echo("")


@catch_errors
def scan(
    paths: Annotated[list[Path] | None, typer.Argument(
        metavar="PATH", show_default=False,
        help="Cassettes, VCR.py YAML or HAR files, or directories [default: the cassette "
        "directory].")] = None,
    cassette_dir: CassetteDir = None,
    config: Config = None,
) -> None:
    """Scan cassettes (and VCR.py YAML, HAR files) for secrets; exit 1 on any finding.

    Usable as a pre-commit hook or a CI step: replayproxy scan cassettes/
    """
    from replayproxy.redaction.scan import scan_path

    settings = Matching(config, cassette_dir).settings()
    targets = paths or [Path(settings.cassette_dir or "cassettes")]
    count = 0
    for target in targets:
        for finding in scan_path(target, settings.redact):
            typer.echo(finding.describe())
            count += 1
    if count:
        typer.echo(f"{PREFIX}{plural(count, 'secret')} found; redact them with `replayproxy "
                   "redact -c NAME` or add a rule to [tool.replayproxy.redact]", err=True)
        raise typer.Exit(1)
    typer.echo(f"{PREFIX}no secrets found in {', '.join(map(str, targets))}", err=True)


@catch_errors
def redact(
    cassette: CassetteName,
    cassette_dir: CassetteDir = None,
    config: Config = None,
) -> None:
    """Apply the current redaction rules to an existing cassette, in place (atomically).

    Example: replayproxy redact -c stripe
    """
    from replayproxy.cassette.journal import recover_journals
    from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
    from replayproxy.redaction.scan import scan_interaction

    settings = Matching(config, cassette_dir).settings()
    path = cassette_path(settings.cassette_dir or "cassettes", cassette)
    recover_journals(path)
    rules = redactor(settings)
    originals = list(load_cassette(path, cassette).interactions())
    redacted = [rules.redact(it) for it in originals]
    changed = sum(a != b for a, b in zip(originals, redacted, strict=True))
    leaks = [f for i, it in enumerate(redacted)
             for f in scan_interaction(it, settings.redact, str(path), i + 1)]
    if leaks:
        for finding in leaks:
            typer.echo(finding.describe(), err=True)
        raise CassetteError(f"{plural(len(leaks), 'secret')} in {path} "
                            f"{'is' if len(leaks) == 1 else 'are'} not covered by any "
                            "redaction rule; add rules to [tool.replayproxy.redact] and run "
                            "again (the cassette was not changed)")
    if changed:
        save_cassette(path, redacted)
    typer.echo(f"{PREFIX}{changed} of {plural(len(redacted), 'interaction')} redacted in "
               f"{path}", err=True)
