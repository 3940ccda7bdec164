"""The decision pipeline: one request and the time in, one plan out; and the exit rules."""

import threading

import pytest

from replayproxy.cassette.store import save_cassette
from replayproxy.decision.pipeline import FaultAnswer, Pipeline, decide
from replayproxy.decision.session import CassetteSession, Forward, Replay, Unmatched
from replayproxy.decision.verdict import verdict
from replayproxy.faults.effects import Hold, RefuseConnect, Reset, Respond, Truncate
from replayproxy.faults.plan import FaultPlan
from replayproxy.model import RecordMode
from tests.factories import interaction, request


@pytest.fixture
def replaying(tmp_path):
    save_cassette(tmp_path / "shop.cassette",
                  [interaction(path, body) for path, body in [("/a", b"A1"), ("/a", b"A2"),
                                                              ("/b", b"B")]])
    return CassetteSession(tmp_path, "shop", RecordMode.NONE)


@pytest.mark.parametrize(("spec", "terminal"), [
    ("status=503@*/a", Respond),
    ("reset@*/a", Reset),
    ("timeout=1s@*/a", Hold),
])
def test_a_fault_that_answers_by_itself_leaves_the_cassette_alone(replaying, spec, terminal):
    pipeline = Pipeline(replaying, FaultPlan([spec]))
    planned = pipeline.decide(request("GET", "/a"), 0.0)
    assert isinstance(planned.plan, FaultAnswer)
    assert isinstance(planned.plan.action.terminal, terminal)
    assert planned.answers_by_itself
    # the recorded sequence is still in step: the first answer is still the first one
    served = pipeline.decide(request("GET", "/b"), 0.0).plan
    assert isinstance(served, Replay) and served.served.interaction.response.body == b"B"
    pipeline.faults.clear()
    first = pipeline.decide(request("GET", "/a"), 0.0).plan
    assert isinstance(first, Replay) and first.served.interaction.response.body == b"A1"
    assert replaying.summary.replayed == 2


def test_a_response_fault_rides_along_with_the_replay(replaying):
    planned = Pipeline(replaying, FaultPlan(["truncate,fraction=0.5@*", "latency=10ms@*"])).decide(
        request("GET", "/a"), 0.0)
    assert isinstance(planned.plan, Replay)
    assert planned.fault is not None
    assert isinstance(planned.fault.terminal, Truncate)
    assert len(planned.fault.delays) == 1


def test_no_fault_rule_gives_a_plain_plan(replaying):
    planned = Pipeline(replaying).decide(request("GET", "/a"), 0.0)
    assert isinstance(planned.plan, Replay) and planned.fault is None


def test_unmatched_carries_the_diagnosis(replaying):
    planned = Pipeline(replaying).decide(request("GET", "/c"), 0.0)
    assert isinstance(planned.plan, Unmatched)
    assert planned.plan.closest and planned.plan.closest[0].interaction.request.path in ("/a",
                                                                                         "/b")
    assert planned.answers_by_itself


def test_recording_forwards(tmp_path):
    session = CassetteSession(tmp_path, "new", RecordMode.ALL)
    planned = Pipeline(session, FaultPlan(["latency=1ms@*"])).decide(request("GET", "/x"), 0.0)
    assert isinstance(planned.plan, Forward) and not planned.answers_by_itself
    assert planned.fault is not None


def test_plain_http_connections_can_be_refused(replaying):
    faults = FaultPlan(["refuse_connect@api.example.com"])
    planned = decide(replaying, faults, request("GET", "http://api.example.com/a"), 0.0)
    assert isinstance(planned.plan, FaultAnswer)
    assert isinstance(planned.plan.action.terminal, RefuseConnect)
    # over TLS the CONNECT is where it is refused, not the request inside the tunnel
    assert isinstance(decide(replaying, faults, request("GET", "/a"), 0.0).plan, Replay)
    pipeline = Pipeline(replaying, faults)
    assert pipeline.decide_connect("api.example.com", 443, 0.0) is not None
    assert pipeline.decide_connect("other.example.com", 443, 0.0) is None


def test_the_plan_is_decided_under_the_lock(replaying):
    lock = threading.Lock()
    pipeline = Pipeline(replaying, FaultPlan(["status=500@*/zzz"]), lock)
    with lock:  # the control API holds it: the decision waits
        done = []
        a = request("GET", "/a")
        worker = threading.Thread(target=lambda: done.append(pipeline.decide(a, 0.0)))
        worker.start()
        worker.join(0.2)
        assert not done
    worker.join(5)
    assert done and isinstance(done[0].plan, Replay)


# -- the exit rules -------------------------------------------------------------------


def _summary(tmp_path, *, unmatched=False, unused=False, leak=False, leak_written=False):
    save_cassette(tmp_path / "s.cassette", [interaction("/a", b"A"), interaction("/b", b"B")])
    session = CassetteSession(tmp_path, "s", RecordMode.NONE)
    session.decide(request("GET", "/a"))
    if not unused:
        session.decide(request("GET", "/b"))
    if unmatched:
        session.decide(request("GET", "/nothing"))
    summary = session.close()
    if leak:
        summary.leaks.append((request("GET", "/leak"), []))
        summary.leaks_written = leak_written
    return summary


@pytest.mark.parametrize(("facts", "fail_on_unused", "code", "reason"), [
    ({}, False, 0, None),
    ({"unmatched": True}, False, 1, "unmatched"),
    ({"leak": True}, False, 1, "secrets were not recorded"),
    ({"leak": True, "leak_written": True}, False, 0, None),
    ({"unused": True}, False, 0, None),
    ({"unused": True}, True, 1, "never used"),
])
def test_exit_rules(tmp_path, facts, fail_on_unused, code, reason):
    result = verdict(_summary(tmp_path, **facts), fail_on_unused=fail_on_unused)
    assert result.exit_code == code and result.passed is (code == 0)
    assert (reason is None) == (not result.reasons)
    if reason:
        assert reason in result.reasons[0]


def test_a_failing_command_keeps_its_exit_code(tmp_path):
    result = verdict(_summary(tmp_path, unmatched=True), command_exit=3)
    assert result.exit_code == 3 and result.reasons == ()
