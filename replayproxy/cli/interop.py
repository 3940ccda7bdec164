"""The commands that exchange cassettes with other tools: ``import vcr|har`` and
``export vcr|har`` (the rules are in ``replayproxy.formats.exchange``)."""

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
from replayproxy.cli.output import PREFIX, plural, warn_relaxed
from replayproxy.errors import CassetteError

SkipBad = Annotated[bool, typer.Option(
    "--skip-bad", help="Skip entries that are not whole exchanges (no response, no URL) "
    "and import the rest, listing each one skipped.")]
Force = Annotated[bool, typer.Option(
    "--force", help="Replace the file (or cassette) if it exists.")]


def _file_argument(help_text: str) -> object:
    return typer.Argument(metavar="FILE", show_default=False, help=help_text)


def _import(kind: str, file: Path, cassette: str, cassette_dir: Path | None,
            config: Path | None, skip_bad: bool, force: bool) -> None:
    from replayproxy.cassette.journal import pending_journals
    from replayproxy.cassette.store import cassette_path, save_cassette
    from replayproxy.formats.exchange import Format, import_entries, read_entries

    settings = Matching(config, cassette_dir).settings()
    warn_relaxed(settings)
    path = cassette_path(settings.cassette_dir or "cassettes", cassette)
    if pending_journals(path):
        raise CassetteError(f"cassette {cassette!r} has an interrupted recording not folded "
                            f"in: fold it in with `replayproxy replay -c {cassette} -- true` "
                            "(then import with --force to replace it), or import into "
                            "another name with -c NAME")
    if path.exists() and not force:
        raise CassetteError(f"cassette {cassette!r} already exists ({path}): pass --force to "
                            "replace it, or import into another name with -c NAME")
    imported = import_entries(file, read_entries(Format(kind), file), redactor(settings),
                              skip_bad=skip_bad)
    for why in imported.skipped:
        typer.echo(f"{PREFIX}{file}: skipped {why}", err=True)
    for finding in imported.leaks:
        typer.echo(f"{PREFIX}warning: imported with a secret (on_leak = \"warn\"): "
                   f"{finding.describe()}", err=True)
    save_cassette(path, imported.interactions)
    typer.echo(f"{PREFIX}imported {plural(len(imported.interactions), 'interaction')} from "
               f"{file} into {path} ({imported.redacted} redacted"
               + (f", {len(imported.skipped)} skipped" if imported.skipped else "") + ")",
               err=True)


def _export(kind: str, cassette: str, file: Path, cassette_dir: Path | None,
            config: Path | None, force: bool) -> None:
    from replayproxy import __version__
    from replayproxy.cassette.journal import pending_journals
    from replayproxy.cassette.store import cassette_path, load_cassette, write_atomic
    from replayproxy.formats.exchange import Format, export_text

    settings = Matching(config, cassette_dir).settings()
    path = cassette_path(settings.cassette_dir or "cassettes", cassette)
    if file.exists() and not force:
        raise CassetteError(f"{file} already exists: pass --force to replace it, or export "
                            "to another file")
    if file.is_dir():
        raise CassetteError(f"{file} is a directory: give a file name, e.g. {file}/"
                            f"{cassette}.{'har' if kind == 'har' else 'yaml'}")
    loaded = load_cassette(path, cassette)
    if pending_journals(path):
        raise CassetteError(f"cassette {cassette!r} has an interrupted recording not folded "
                            f"in: fold it in with `replayproxy replay -c {cassette} -- true`, "
                            "then export again")
    text = export_text(Format(kind), list(loaded.interactions()), file, __version__)
    if not file.parent.is_dir():
        raise CassetteError(f"cannot write {file}: {file.parent} is not a directory")
    write_atomic(file, text.encode("utf-8"))
    typer.echo(f"{PREFIX}exported {plural(len(loaded), 'interaction')} of cassette "
               f"{cassette!r} to {file}", err=True)


@catch_errors
def import_vcr(
    file: Annotated[Path, _file_argument("The VCR.py cassette (YAML, or VCR.py's JSON).")],
    cassette: CassetteName,
    cassette_dir: CassetteDir = None,
    config: Config = None,
    skip_bad: SkipBad = False,
    force: Force = False,
) -> None:
    """Import a VCR.py cassette into a cassette, redacted and scanned on the way in.

    Example: replayproxy import vcr tests/cassettes/test_pay.yaml -c stripe
    """
    _import("vcr", file, cassette, cassette_dir, config, skip_bad, force)


@catch_errors
def import_har(
    file: Annotated[Path, _file_argument("The HAR file (a browser's, mitmproxy's...).")],
    cassette: CassetteName,
    cassette_dir: CassetteDir = None,
    config: Config = None,
    skip_bad: SkipBad = False,
    force: Force = False,
) -> None:
    """Import a HAR file into a cassette, redacted and scanned on the way in.

    Example: replayproxy import har session.har -c checkout
    """
    _import("har", file, cassette, cassette_dir, config, skip_bad, force)


@catch_errors
def export_vcr(
    cassette: CassetteName,
    file: Annotated[Path, _file_argument("The VCR.py cassette to write (.yaml; .json for "
                                         "VCR.py's JSON serializer).")],
    cassette_dir: CassetteDir = None,
    config: Config = None,
    force: Force = False,
) -> None:
    """Export a cassette as a VCR.py cassette, to replay in-process with VCR.py.

    Example: replayproxy export vcr -c stripe tests/cassettes/test_pay.yaml
    """
    _export("vcr", cassette, file, cassette_dir, config, force)


@catch_errors
def export_har(
    cassette: CassetteName,
    file: Annotated[Path, _file_argument("The HAR file to write.")],
    cassette_dir: CassetteDir = None,
    config: Config = None,
    force: Force = False,
) -> None:
    """Export a cassette as a HAR 1.2 file (binary bodies base64), for any HAR viewer.

    Example: replayproxy export har -c stripe stripe.har
    """
    _export("har", cassette, file, cassette_dir, config, force)
