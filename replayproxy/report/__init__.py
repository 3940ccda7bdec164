"""The run report: what every proxy run served, kept in SQLite, and what it shows.

``replayproxy.report.runs`` stores one row per session of each run (per test under the
pytest plugin) with its per-endpoint counts and durations, and reads them back as a
``RunReport``: each cassette's endpoint coverage, the slowest tests and the flaky ones.
``replayproxy report`` prints it (text, ``--json``, ``--markdown``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ENV", "default_database", "new_suite"]

ENV = "REPLAYPROXY_REPORT_DB"
"""Names the runs database; ``off`` turns recording off."""


def default_database(project: Path,
                     environ: Mapping[str, str] | None = None) -> Path | None:
    """The runs database: ``$REPLAYPROXY_REPORT_DB``, else ``PROJECT/.replayproxy/runs.db``;
    None when ``$REPLAYPROXY_REPORT_DB`` is ``off``."""
    env = os.environ if environ is None else environ
    named = env.get(ENV, "").strip()
    if named.lower() in ("off", "0", "false", "no"):
        return None
    return Path(named).expanduser() if named else project / ".replayproxy" / "runs.db"


def new_suite() -> str:
    """A fresh suite id (the runs of one CLI run, or of one pytest session)."""
    return uuid.uuid4().hex[:16]
