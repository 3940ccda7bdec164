"""The drift report as JSON: everything, machine-readable (``format: replayproxy-drift``)."""

from __future__ import annotations

import json

from replayproxy.drift.plan import DriftReport

__all__ = ["write_json"]

def write_json(report: DriftReport) -> str:
    """``report.as_json()`` indented, non-ASCII kept, ending in a newline."""
    return json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n"
