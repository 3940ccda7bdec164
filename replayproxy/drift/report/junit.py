"""The drift report as JUnit XML, so CI's test tab shows what broke.

One test case per checked interaction: breaking drift is a failure, an interaction that
could not be checked and a problem of the run are errors, a request not re-sent is
skipped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime

from replayproxy.drift.findings import Severity
from replayproxy.drift.plan import Checked, DriftReport, Outcome
from replayproxy.drift.report.shared import findings_of, run_seconds, status_text

__all__ = ["junit_xml"]

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _x(text: str) -> str:
    """Text XML 1.0 can hold: ElementTree writes control characters as they are, which
    makes a document no parser accepts (a header value or body key can carry them)."""
    return _XML_ILLEGAL.sub("\ufffd", text)


def _finding_lines(checked: Checked) -> str:
    lines = [f.describe() for f in findings_of(checked, *Severity)]
    lines.append(f"recorded: {checked.method} {checked.url} -> {status_text(checked.recorded)}")
    if checked.live is not None or checked.live_url:
        lines.append(f"live: {checked.method} {checked.live_url or checked.url} -> "
                     f"{status_text(checked.live)}")
    return _x("\n".join(lines))


def _testcase(suite: ET.Element, checked: Checked) -> None:
    case = ET.SubElement(suite, "testcase", classname=_x(f"drift.{checked.cassette}"),
                         name=_x(f"{checked.endpoint} [{checked.number}]"),
                         time=f"{checked.elapsed:.3f}")
    if checked.outcome is Outcome.BREAKING:
        broken = findings_of(checked, Severity.BREAKING)
        first = broken[0].describe() if broken else checked.message
        failure = ET.SubElement(case, "failure", type="breaking",
                                message=_x(f"{len(broken)} breaking: {first}"))
        failure.text = _finding_lines(checked)
    elif checked.outcome is Outcome.ERROR:
        error = ET.SubElement(case, "error", type="error", message=_x(checked.message))
        error.text = _x(f"{checked.message}\n{checked.method} {checked.url}")
    elif checked.outcome is Outcome.SKIPPED:
        ET.SubElement(case, "skipped", message=_x(checked.message))
    elif checked.findings:  # changed, or passed with noise: shown, not failing
        ET.SubElement(case, "system-out").text = _finding_lines(checked)


def _suite_counts(suite: ET.Element, tests: int, failures: int, errors: int, skipped: int,
                  seconds: float) -> None:
    for key, value in (("tests", tests), ("failures", failures), ("errors", errors),
                       ("skipped", skipped)):
        suite.set(key, str(value))
    suite.set("time", f"{seconds:.3f}")


def junit_xml(report: DriftReport) -> bytes:
    """JUnit XML: a test suite per cassette and a test case per checked interaction.

    Test cases are named ``GET host/v1/charges/{id} [3]`` (endpoint and the
    interaction's number, from 1) with class ``drift.CASSETTE``. Only breaking drift
    fails; additive and noise findings of passing cases go to ``system-out``.
    ``report.problems`` (a missing cassette) become errors in a suite named
    ``replayproxy drift``, so CI shows them.
    """
    stamp = datetime.fromtimestamp(report.started_at, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    root = ET.Element("testsuites", name="replayproxy drift")
    totals = Counter[str]()
    if report.problems:
        suite = ET.SubElement(root, "testsuite", name="replayproxy drift", timestamp=stamp)
        for i, problem in enumerate(report.problems, 1):
            short = problem if len(problem) <= 100 else problem[:99] + "…"
            case = ET.SubElement(suite, "testcase", classname="drift",
                                 name=_x(f"problem {i}: {short}"), time="0.000")
            ET.SubElement(case, "error", type="problem", message=_x(problem)).text = _x(problem)
        _suite_counts(suite, len(report.problems), 0, len(report.problems), 0, 0.0)
        totals.update(tests=len(report.problems), errors=len(report.problems))
    by_cassette: dict[str, list[Checked]] = {name: [] for name in report.cassettes}
    for r in report.results:
        by_cassette.setdefault(r.cassette, []).append(r)
    for cassette, checked in by_cassette.items():
        suite = ET.SubElement(root, "testsuite", name=_x(f"replayproxy drift: {cassette}"),
                              timestamp=stamp)
        for c in checked:
            _testcase(suite, c)
        outcomes = Counter(c.outcome for c in checked)
        _suite_counts(suite, len(checked), outcomes[Outcome.BREAKING], outcomes[Outcome.ERROR],
                      outcomes[Outcome.SKIPPED], sum(c.elapsed for c in checked))
        totals.update(tests=len(checked), failures=outcomes[Outcome.BREAKING],
                      errors=outcomes[Outcome.ERROR], skipped=outcomes[Outcome.SKIPPED])
    _suite_counts(root, totals["tests"], totals["failures"], totals["errors"],
                  totals["skipped"], run_seconds(report))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
