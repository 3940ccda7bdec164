"""Import another tool's file into a cassette and export a cassette to one: the rules,
with no I/O beyond reading the file (the CLI writes, atomically).

An import reads every entry (``read_vcr`` with its version checked, ``read_har``); an
entry that is not a whole exchange stops the import with one line naming the file and
the entry, unless bad entries are skipped. Each interaction is redacted with the
cassette's rules, then scanned: a secret the rules missed refuses the whole import
(``on_leak = "error"``, the default) or is imported with a warning (``"warn"``), and
``scan = false`` skips the scan, as when recording.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from replayproxy.errors import CassetteError, ConfigError
from replayproxy.formats import Entry
from replayproxy.model import Interaction
from replayproxy.redaction.redactor import Redactor
from replayproxy.redaction.scan import Finding, scan_interaction

__all__ = ["Format", "Imported", "export_text", "import_entries", "read_entries"]


class Format(StrEnum):
    """The other tools' formats replayproxy imports and exports."""

    VCR = "vcr"
    HAR = "har"


def read_entries(kind: Format, path: Path) -> tuple[Entry, ...]:
    """The entries of the ``kind`` file at ``path``. Raises CassetteError naming the file
    when it does not parse or is not of the format (or of a VCR.py version not read)."""
    from replayproxy.formats.har import read_har
    from replayproxy.formats.vcr import read_vcr

    if not path.is_file():
        raise CassetteError(f"{path} does not exist or is not a file: give the "
                            f"{'VCR.py cassette' if kind is Format.VCR else 'HAR file'} "
                            "to import")
    return read_vcr(path, check_version=True) if kind is Format.VCR else read_har(path)


@dataclass(slots=True)
class Imported:
    """What an import gives: the interactions to write, redacted, and what it left out."""

    interactions: list[Interaction] = field(default_factory=list)
    redacted: int = 0
    """How many of them redaction changed."""
    skipped: list[str] = field(default_factory=list)
    """Why each bad entry was skipped (``--skip-bad``)."""
    leaks: list[Finding] = field(default_factory=list)
    """Secrets the scanner still found, imported anyway (``on_leak = "warn"``)."""


def import_entries(path: Path, entries: Sequence[Entry], redactor: Redactor, *,
                   skip_bad: bool = False) -> Imported:
    """Redact and scan ``entries`` read from ``path``.

    Raises:
        CassetteError: an entry is bad and ``skip_bad`` is False, the file has no
            interaction to import, or the scanner found a secret the rules missed
            (with ``on_leak = "error"``): nothing is imported.
    """
    out = Imported()
    config = redactor.config
    refused: list[Finding] = []
    for entry in entries:
        if entry.problem:
            if not skip_bad:
                raise CassetteError(f"{path}: {entry.problem}; fix it, or pass --skip-bad "
                                    "to import the other entries", path=str(path))
            out.skipped.append(entry.problem)
            continue
        clean = redactor.redact(entry.interaction)
        out.redacted += clean != entry.interaction
        findings = scan_interaction(clean, config, str(path), entry.number) \
            if config.scan else []
        (out.leaks if config.on_leak == "warn" else refused).extend(findings)
        out.interactions.append(clean)
    if refused:
        first = refused[0]
        raise CassetteError(
            f"{path}: {len(refused)} secret{'s' if len(refused) > 1 else ''} left after "
            f"redaction, the first in entry #{first.interaction}, {first.location} "
            f"({first.rule}, {first.excerpt}): add a rule for it to "
            "[tool.replayproxy.redact] and import again (nothing was imported)",
            path=str(path))
    if not out.interactions:
        raise CassetteError(f"{path} has no interaction to import"
                            + (f" ({len(out.skipped)} bad entries skipped)"
                               if out.skipped else ""), path=str(path))
    return out


def export_text(kind: Format, interactions: Sequence[Interaction], target: Path,
                version: str = "") -> str:
    """The text of a ``kind`` file holding ``interactions`` (VCR.py's JSON serializer
    when ``target`` ends in ``.json``, else its YAML).

    Raises:
        ConfigError: VCR.py's JSON cannot hold a binary body.
    """
    from replayproxy.formats.har import write_har
    from replayproxy.formats.vcr import write_vcr

    if kind is Format.HAR:
        return write_har(interactions, version)
    try:
        return write_vcr(interactions, json=target.suffix == ".json")
    except TypeError:
        raise ConfigError(f"{target}: VCR.py's JSON serializer cannot hold binary bodies; "
                          "export to a .yaml file instead") from None
