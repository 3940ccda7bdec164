"""The exit rules of a proxy run, written once for every front end.

A run "passes" when the command under the proxy passed (or, for a proxy served until
stopped, always) and replayproxy itself found nothing wrong. Anything replayproxy finds
turns a passing run into exit code 1, with a reason a front end can print:

- a request matched nothing in the cassette (replay is incomplete);
- an interaction still held a secret after redaction and was not written (the
  cassette is missing it);
- recorded interactions were never used and ``fail_on_unused`` is set.

A failing command keeps its own exit code.
"""

from __future__ import annotations

from dataclasses import dataclass

from replayproxy.decision.session import SessionSummary

__all__ = ["Verdict", "verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A run's exit code and why replayproxy failed a run whose command passed (each
    reason may name a setting as a field: see ``errors.word_settings``)."""

    exit_code: int
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def verdict(summary: SessionSummary, *, command_exit: int = 0,
            fail_on_unused: bool = False) -> Verdict:
    """Judge a run from its summary and the exit code of the command it served
    (0 for a proxy served until stopped)."""
    if command_exit != 0:
        return Verdict(command_exit)
    reasons = []
    if summary.unmatched:
        reasons.append("some requests were unmatched")
    if summary.leaks and not summary.leaks_written:
        reasons.append("interactions holding secrets were not recorded")
    if summary.unused and fail_on_unused:
        reasons.append("recorded interactions were never used ({fail_on_unused})")
    return Verdict(1 if reasons else 0, tuple(reasons))
