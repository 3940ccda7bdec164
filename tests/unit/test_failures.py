"""No silent failure (#12): the causes and fixes of upstream failures, client refusals,
a replay that bypassed the proxy, and an unusable cassette directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from replayproxy.cassette.store import check_cassette_dir, save_cassette
from replayproxy.decision.failures import (
    MARKER,
    ClientRefusal,
    UpstreamFailure,
    classify_upstream_error,
    is_upstream_failure,
    recorded_cause,
    recorded_timeout,
)
from replayproxy.decision.session import CassetteSession
from replayproxy.decision.verdict import verdict
from replayproxy.errors import CassetteError
from replayproxy.model import Interaction, RecordMode, Request, Response


def _request(path: str = "/a") -> Request:
    return Request("GET", "https", "api.example.com", 443, path)


def _interaction(path: str = "/a", response: Response | None = None) -> Interaction:
    return Interaction(_request(path), response or Response(200, "OK", (), b"A"))


@pytest.mark.parametrize(("message", "kind"), [
    ("Certificate verify failed: self-signed certificate in certificate chain",
     "TLS verify failed"),
    ("[Errno 111] Connect call failed ('127.0.0.1', 9)", "connection refused"),
    ("[Errno -2] Name or service not known", "DNS lookup failed"),
    ("[Errno -3] Temporary failure in name resolution", "DNS lookup failed"),
    ("server closed connection", "connection reset"),
    ("[Errno 104] Connection reset by peer", "connection reset"),
    ("no answer after 3.0 s, the client gave up (timed out) and disconnected", "timeout"),
    ("TLS handshake failed: wrong version number", "TLS handshake failed"),
    ("something else", "upstream error"),
])
def test_upstream_errors_are_classified(message, kind):
    assert classify_upstream_error(message) == kind


def test_an_upstream_failure_line_names_host_cause_and_fix():
    failure = UpstreamFailure(_request(), "Certificate verify failed: unable to get local "
                                         "issuer certificate")
    assert failure.line.startswith("TLS verify failed for api.example.com:443 (GET "
                                   "https://api.example.com/a): Certificate verify failed")
    assert failure.line.endswith("— pass --upstream-ca or check the system trust store")


def test_a_client_refusal_names_the_host_and_the_fix():
    line = ClientRefusal("api.example.com", "unknown ca").line
    assert "api.example.com" in line and "does not trust the replayproxy CA" in line
    assert "replayproxy ca" in line and "docs/clients.md" in line


def test_a_recorded_failure_is_marked_and_keeps_its_cause():
    response = Response(502, "Bad Gateway", (("X-Replayproxy", MARKER),
                                             ("X-Replayproxy-Cause", "refused")), b"")
    assert is_upstream_failure(response) and recorded_cause(response) == "refused"
    assert not is_upstream_failure(Response(502, "Bad Gateway", (), b""))


def test_recording_a_failure_lists_it_and_fails_the_run(tmp_path):
    session = CassetteSession(tmp_path, "f", RecordMode.ALL)
    session.decide(_request())
    failed = Response(502, "Bad Gateway", (("X-Replayproxy", MARKER),
                                           ("X-Replayproxy-Cause", "refused")), b"page")
    session.record_failure(_interaction(response=failed), "[Errno 111] Connect call failed")
    summary = session.close()
    assert summary.recorded == 1 and len(summary.upstream_failures) == 1
    result = verdict(summary)
    assert result.exit_code == 1
    assert "1 upstream request failed while recording" in result.reasons[0]

    replay = CassetteSession(tmp_path, "f", RecordMode.NONE)
    replay.decide(_request())
    summary = replay.close()
    assert [f.message for f in summary.replayed_failures] == ["refused"]
    assert verdict(summary).passed  # replayed the same way, as recorded


def test_a_replay_that_nothing_reached_fails(tmp_path):
    save_cassette(tmp_path / "b.cassette", [_interaction()])
    summary = CassetteSession(tmp_path, "b", RecordMode.NONE).close()
    result = verdict(summary)
    assert result.exit_code == 1 and "bypassed" in result.reasons[0]
    # a failing command keeps its code
    assert verdict(summary, command_exit=2).exit_code == 2


def test_a_client_refusal_fails_the_run_and_replaces_the_bypass_reason(tmp_path):
    save_cassette(tmp_path / "b.cassette", [_interaction()])
    session = CassetteSession(tmp_path, "b", RecordMode.NONE)
    session.note_connection()
    session.note_refusal("api.example.com", "unknown ca")
    session.note_refusal("api.example.com", "unknown ca")  # listed once
    summary = session.close()
    assert len(summary.client_refusals) == 1
    reasons = verdict(summary).reasons
    assert len(reasons) == 1 and "refused the proxy's certificate" in reasons[0]


# -- the cassette directory ------------------------------------------------------------------


def test_a_usable_or_missing_directory_passes(tmp_path):
    check_cassette_dir(tmp_path, write=True)
    check_cassette_dir(tmp_path / "new" / "deeper", write=True)
    check_cassette_dir(tmp_path / "missing", write=False)


@pytest.mark.parametrize("write", [True, False])
def test_a_file_is_not_a_cassette_directory(tmp_path, write):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CassetteError, match="is a file: choose another with cassette_dir"):
        check_cassette_dir(tmp_path / "f", write=write)
    with pytest.raises(CassetteError, match="is not a directory"):
        check_cassette_dir(tmp_path / "f" / "sub", write=True)


def test_a_device_is_not_a_cassette_directory():
    with pytest.raises(CassetteError, match="/dev/null is not a directory"):
        check_cassette_dir(Path("/dev/null"), write=True)


def test_a_dangling_symlink_names_its_target(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(CassetteError, match="which does not exist: create"):
        check_cassette_dir(tmp_path / "link", write=False)


def test_a_read_only_directory_stops_a_recording(tmp_path, monkeypatch):
    # as root a mode-0555 directory is writable anyway: pretend the access check fails
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path
                        else real(p, mode))
    with pytest.raises(CassetteError, match="is not writable: fix its permissions"):
        check_cassette_dir(tmp_path, write=True)
    with pytest.raises(CassetteError, match="cannot create cassette directory .*not writable"):
        check_cassette_dir(tmp_path / "sub", write=True)
    check_cassette_dir(tmp_path, write=False)  # replay only reads


def test_a_recorded_timeout_replays_as_no_answer(tmp_path):
    from replayproxy.decision.pipeline import HELD_EXTRA, FaultAnswer, Pipeline
    from replayproxy.faults.effects import Hold

    placeholder = Response(504, "Gateway Timeout", (("X-Replayproxy", "upstream-timeout"),
                                                    ("X-Replayproxy-Waited", "2.500")), b"")
    assert recorded_timeout(placeholder) == 2.5 and is_upstream_failure(placeholder)
    assert recorded_timeout(Response(200, "OK", (("X-Replayproxy", "upstream-timeout"),),
                                     b"")) is None  # an upstream's own header, not ours
    save_cassette(tmp_path / "t.cassette", [_interaction(response=placeholder)])
    pipeline = Pipeline(CassetteSession(tmp_path, "t", RecordMode.NONE))
    plan = pipeline.decide(_request(), 0.0).plan
    assert isinstance(plan, FaultAnswer) and plan.action.terminal == Hold(2.5 + HELD_EXTRA)
    assert len(pipeline.session.close().replayed_failures) == 1


def test_requests_a_fault_answers_reached_the_proxy(tmp_path):
    from replayproxy.decision.pipeline import FaultAnswer, Pipeline
    from replayproxy.faults.plan import FaultPlan

    save_cassette(tmp_path / "b.cassette", [_interaction()])
    pipeline = Pipeline(CassetteSession(tmp_path, "b", RecordMode.NONE),
                        FaultPlan(["status=503"]))
    assert isinstance(pipeline.decide(_request(), 0.0).plan, FaultAnswer)
    summary = pipeline.session.close()
    assert summary.requests == 1 and verdict(summary).passed


def test_a_proxy_served_without_a_command_is_no_bypass(tmp_path):
    save_cassette(tmp_path / "b.cassette", [_interaction()])
    summary = CassetteSession(tmp_path, "b", RecordMode.NONE).close()
    assert verdict(summary, command=False).passed
