"""Drift reports: one ``DriftReport`` for CI, a pull request, a browser and a terminal.

- ``junit_xml`` (``junit``): a test case per checked interaction, breaking ones failing;
- ``markdown`` (``markdown``): a pull-request comment, capped per endpoint;
- ``html`` (``html``): one self-contained page, recorded and live side by side;
- ``write_json`` (``json_report``): everything, machine-readable;
- ``print_report`` (``terminal``) and ``render_history`` (``history``): rich, for a
  terminal (imported on first use); ``history_json``: the history for tools.

``shared`` holds what they have in common: ``summary_line``, endpoint groups, labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replayproxy.drift.report.html import html
from replayproxy.drift.report.json_report import write_json
from replayproxy.drift.report.junit import junit_xml
from replayproxy.drift.report.markdown import markdown
from replayproxy.drift.report.shared import summary_line

if TYPE_CHECKING:
    from replayproxy.drift.report.history import history_json, render_history
    from replayproxy.drift.report.terminal import print_report

__all__ = ["history_json", "html", "junit_xml", "markdown", "print_report", "render_history",
           "summary_line", "write_json"]


def __getattr__(name: str) -> Any:
    """The renderers that import rich, imported on first use."""
    if name == "print_report":
        from replayproxy.drift.report import terminal

        return terminal.print_report
    if name in ("history_json", "render_history"):
        from replayproxy.drift.report import history

        return getattr(history, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
