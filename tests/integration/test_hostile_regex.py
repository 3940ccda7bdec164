"""A user regular expression that backtracks catastrophically never hangs the proxy (#16).

``(a+)+$`` on ``"a" * 5000 + "!"`` would run ``re`` for ages. Configured for matching
(``ignore_regex``) and for redaction (``patterns``), it is stopped by its time limit: the
hostile request gets a one-line error naming the pattern, the run's summary lists it,
and other requests, before and after, are answered as usual.
"""

from __future__ import annotations

import time

import pytest

from replayproxy.model import RecordMode
from tests.integration.support import write_config

EVIL = "(a+)+$"
HOSTILE = b"a" * 5000 + b"!"


def _errors_only_about_the_pattern(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The proxy's error lines, then cleared (``run_proxy`` fails on any error left)."""
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    caplog.clear()
    return lines


def test_a_catastrophic_ignore_regex_stops_one_request_not_the_proxy(run_proxy, http_upstream,
                                                                     tmp_path, caplog):
    config = write_config(tmp_path, f"[match]\nignore_regex = ['{EVIL}']\n")
    with run_proxy("evil", RecordMode.ALL) as p, p.client("requests") as c:
        assert c.post(http_upstream.url("/v1/things"), b"hello").status == 200
    with run_proxy("evil", RecordMode.NONE, config=config) as p, p.client("requests") as c:
        start = time.monotonic()
        hostile = c.post(http_upstream.url("/v1/things"), HOSTILE)
        assert time.monotonic() - start < 30
        assert hostile.status == 500
        message = hostile.body.decode()
        assert message.count("\n") == 1
        assert "'(a+)+$' ([tool.replayproxy.match] ignore_regex)" in message
        assert "backtracks catastrophically" in message
        assert c.post(http_upstream.url("/v1/things"), b"hello").status == 200  # replayed
        errors = _errors_only_about_the_pattern(caplog)
        assert errors and all("(a+)+$" in e and "Traceback" not in e for e in errors)
    assert p.summary is not None
    assert any("ignore_regex" in e for e in p.summary.errors)


def test_a_catastrophic_redaction_pattern_stops_one_recording_not_the_proxy(
        run_proxy, http_upstream, tmp_path, caplog):
    config = write_config(tmp_path, f"[tool.replayproxy.redact]\npatterns = ['{EVIL}']\n")
    with run_proxy("evil", RecordMode.ALL, config=config) as p, p.client("requests") as c:
        assert c.post(http_upstream.url("/echo"), b"before").status == 200
        hostile = c.post(http_upstream.url("/echo"), HOSTILE)
        assert hostile.status == 500
        assert "'(a+)+$' ([tool.replayproxy.redact] patterns)" in hostile.body.decode()
        assert c.post(http_upstream.url("/echo"), b"after").status == 200
        errors = _errors_only_about_the_pattern(caplog)
        assert errors and all("(a+)+$" in e for e in errors)
    assert p.summary is not None
    assert p.summary.recorded == 2  # nothing unredacted was written
    assert any("patterns" in e for e in p.summary.errors)


def test_a_catastrophic_route_regex_stops_one_request(run_proxy, http_upstream, tmp_path,
                                                      caplog):
    config = write_config(tmp_path, "faults = ['status=503@re:(a+)+$']\n")
    with run_proxy("route", RecordMode.ALL, config=config) as p, p.client("requests") as c:
        assert c.get(http_upstream.url("/json")).status == 200
        hostile = c.get(http_upstream.url("/v1/" + "a" * 5000 + "!"))
        assert hostile.status == 500
        assert "route 're:(a+)+$'" in hostile.body.decode()
        assert c.get(http_upstream.url("/json")).status == 200
        _errors_only_about_the_pattern(caplog)
