"""Which recorded interactions replays used: kept per cassette, for ``cassette prune``.

When a replay (record mode ``none``) that received requests ends, the positions it
never served are kept in ``HOME/usage/<key>.json`` (``HOME``: replayproxy's own
directory, never the cassette directory, so nothing new shows in version control),
with a digest of the cassette file as it was: a cassette changed since (re-recorded,
pruned, edited) no longer matches the runs kept for it. The last ``KEPT`` runs are
kept, newest last.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from replayproxy.errors import CassetteError

__all__ = ["KEPT", "Run", "digest", "last_runs", "note_run", "unused_by_all"]

KEPT = 20
"""Runs kept per cassette."""


@dataclass(frozen=True, slots=True)
class Run:
    """One replay of a cassette: when, the file's digest then, what it never served."""

    when: float
    digest: str
    interactions: int
    unused: tuple[int, ...]
    """0-based positions of the interactions never served."""


def digest(path: Path) -> str:
    """The SHA-256 of the cassette file at ``path``."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record_file(home: Path, cassette: Path) -> Path:
    where = str(cassette.resolve())
    key = hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return home / "usage" / f"{cassette.stem}-{key}.json"


def _read(file: Path) -> list[Run]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return [Run(float(r["when"]), str(r["digest"]), int(r["interactions"]),
                    tuple(int(i) for i in r["unused"])) for r in data["runs"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError):
        return []  # a damaged record is only history: start it again


def note_run(home: Path, cassette: Path, interactions: int, unused: list[int]) -> None:
    """Keep a replay of ``cassette`` that left ``unused`` (positions) unserved. Never
    raises: a run's outcome does not depend on its history being written."""
    with contextlib.suppress(OSError):
        file = _record_file(home, cassette)
        runs = _read(file)
        runs.append(Run(time.time(), digest(cassette), interactions, tuple(unused)))
        file.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"cassette": str(cassette.resolve()), "runs": [
            {"when": r.when, "digest": r.digest, "interactions": r.interactions,
             "unused": list(r.unused)} for r in runs[-KEPT:]]})
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, file)


def last_runs(home: Path, cassette: Path, count: int) -> list[Run]:
    """The last ``count`` replays of ``cassette`` as it is now, newest last.

    Raises:
        CassetteError: no replay of the cassette as it is now was recorded.
    """
    current = digest(cassette)
    runs = [r for r in _read(_record_file(home, cassette)) if r.digest == current]
    if not runs:
        raise CassetteError(
            f"no replay of {cassette} as it is now is known (it was never replayed here, "
            "or it changed since): replay it first with `replayproxy replay -c "
            f"{cassette.stem} -- CMD`, then prune")
    return runs[-count:]


def unused_by_all(runs: list[Run]) -> list[int]:
    """The positions none of ``runs`` served, in order."""
    sets = [set(r.unused) for r in runs]
    return sorted(set.intersection(*sets)) if sets else []
