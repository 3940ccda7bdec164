"""The mitm engine's addon in-process, with mitmproxy's own test helpers (no sockets).

What needs a real proxy and real clients (TLS, CONNECT, timing of faults, trickles) is
in tests/integration; here: that the addon carries out each plan the pipeline makes,
converts a flow once, and records only what came from upstream.
"""

import asyncio
import json

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.decision.pipeline import FaultAnswer, Pipeline
from replayproxy.decision.session import CassetteSession, Forward, Replay, Unmatched
from replayproxy.engines.mitm.addon import STATE, FlowState, ReplayproxyAddon, Role
from replayproxy.engines.mitm.convert import request_from_flow
from replayproxy.faults.plan import FaultPlan
from replayproxy.model import RecordMode
from tests.factories import interaction, response

pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


def _flow(path="/a", accept=None):
    f = tflow.tflow()
    f.request.scheme, f.request.host, f.request.port, f.request.path = \
        "https", "api.example.com", 443, path
    f.request.headers.clear()
    if accept:
        f.request.headers["Accept"] = accept
    f.request.content = b""
    return f


def _recorded(tmp_path, *bodies):
    interactions = [
        interaction(request_from_flow(_flow(f"/{name}").request),
                    response(200, body, headers=[("Content-Type", "text/plain")]))
        for name, body in bodies
    ]
    save_cassette(cassette_path(tmp_path, "shop"), interactions)


def in_loop(test):
    """Run an async test body: mitmproxy's test master needs a running event loop."""
    return asyncio.run(test())


def _addon(tmp_path, mode=RecordMode.NONE, faults=()):
    session = CassetteSession(tmp_path, "shop", mode)
    return ReplayproxyAddon(Pipeline(session, FaultPlan(faults)))


def _state(flow) -> FlowState:
    state = flow.metadata[STATE]
    assert isinstance(state, FlowState)
    return state


def test_replay_answers_with_the_recorded_bytes(tmp_path):
    _recorded(tmp_path, ("a", b"recorded A"))
    addon = _addon(tmp_path)
    async def go():
        with taddons.context(addon):
            f = _flow("/a")
            await addon.request(f)
            assert f.response is not None and f.response.content == b"recorded A"
            assert isinstance(_state(f).planned.plan, Replay)
            await addon.response(f)  # the response hook sees a replayed flow: nothing recorded
        assert addon.pipeline.session.close().recorded == 0

    in_loop(go)


@pytest.mark.parametrize(("accept", "content_type"), [
    ("application/json", "application/json"),
    ("text/html", "text/plain; charset=utf-8"),
])
def test_unmatched_answers_502_with_the_diagnosis(tmp_path, accept, content_type):
    _recorded(tmp_path, ("a", b"A"))
    addon = _addon(tmp_path)
    async def go():
        with taddons.context(addon):
            f = _flow("/zzz", accept=accept)
            await addon.request(f)
        assert f.response.status_code == 502
        assert f.response.headers["X-Replayproxy"] == "unmatched"
        assert f.response.headers["Content-Type"] == content_type
        assert isinstance(_state(f).planned.plan, Unmatched)
        if accept == "application/json":
            assert json.loads(f.response.content)["closest"][0]["interaction"] == 1

    in_loop(go)


def test_a_fault_answer_is_carried_out_and_not_recorded(tmp_path):
    addon = _addon(tmp_path, RecordMode.ALL, ["status=503@*/a"])
    async def go():
        with taddons.context(addon):
            f = _flow("/a")
            await addon.request(f)
            assert f.response.status_code == 503 and f.response.headers["X-Replayproxy"] == "fault"
            assert isinstance(_state(f).planned.plan, FaultAnswer)
            await addon.response(f)
        assert addon.pipeline.session.close().recorded == 0

    in_loop(go)


def test_reset_kills_the_flow(tmp_path):
    addon = _addon(tmp_path, RecordMode.ALL, ["reset@*"])
    async def go():
        with taddons.context(addon):
            f = _flow("/a")
            await addon.request(f)
        assert f.response is None and f.error is not None

    in_loop(go)


def test_forward_records_the_request_converted_when_it_came_in(tmp_path):
    addon = _addon(tmp_path, RecordMode.ALL)
    async def go():
        with taddons.context(addon):
            f = _flow("/a")
            await addon.request(f)
            state = _state(f)
            assert isinstance(state.planned.plan, Forward) and f.response is None
            assert state.request is not None and state.request.path == "/a"
            f.response = tflow.tresp(content=b"from upstream")
            await addon.response(f)
        summary = addon.pipeline.session.close()
        assert summary.recorded == 1
        [recorded] = load_cassette(cassette_path(tmp_path, "shop")).interactions()
        assert recorded.request == state.request and recorded.response.body == b"from upstream"

    in_loop(go)


def test_a_response_another_addon_made_is_never_recorded(tmp_path):
    addon = _addon(tmp_path, RecordMode.ALL)
    async def go():
        with taddons.context(addon):
            f = _flow("/a")
            f.response = http.Response.make(407, b"proxy authentication required")
            await addon.request(f)
            assert _state(f).role is Role.OTHER
            await addon.response(f)
        assert addon.pipeline.session.close().recorded == 0

    in_loop(go)


def test_an_internal_error_answers_500_and_never_goes_upstream(tmp_path, monkeypatch):
    addon = _addon(tmp_path, RecordMode.ALL)

    def broken(request, now):
        raise RuntimeError("boom")

    monkeypatch.setattr(addon.pipeline, "decide", broken)
    async def go():
        with taddons.context(addon):
            f = _flow("/a")
            await addon.request(f)
        assert f.response.status_code == 500 and b"boom" in f.response.content

    in_loop(go)


def test_replay_refuses_upstream_connections(tmp_path):
    _recorded(tmp_path, ("a", b"A"))
    addon = _addon(tmp_path)
    data = type("Data", (), {"server": tflow.tserver_conn(), "client": tflow.tclient_conn()})()
    data.server.error = None
    addon.server_connect(data)
    assert "replaying offline" in data.server.error


def test_options_build_the_pipeline_for_mitmdump_users(tmp_path):
    _recorded(tmp_path, ("a", b"A"))
    addon = ReplayproxyAddon()
    async def go():
        with taddons.context(addon) as tctx:
            tctx.configure(addon, replayproxy_cassette="shop",
                           replayproxy_cassette_dir=str(tmp_path),
                           replayproxy_fault=["status=418@*/teapot"])
            assert addon.pipeline is not None and len(addon.pipeline.faults) == 1
            f = _flow("/teapot")
            await addon.request(f)
            assert f.response.status_code == 418

    in_loop(go)


@pytest.mark.parametrize(("options", "message"), [
    ({"replayproxy_cassette": ""}, "set the cassette name"),
    ({"replayproxy_cassette": "missing"}, "--set replayproxy_cassette_dir"),
    ({"replayproxy_cassette": "shop", "replayproxy_fault": ["bogus@*"]}, "unknown fault kind"),
])
def test_bad_options_are_one_line_in_mitmdump_terms(tmp_path, options, message):
    _recorded(tmp_path, ("a", b"A"))
    addon = ReplayproxyAddon()
    async def go():
        with taddons.context(addon) as tctx, pytest.raises(Exception, match=message) as raised:
            # not tctx.configure: its rollback re-configures with the old values, and the
            # error of that replaces ours
            tctx.options.update(replayproxy_cassette_dir=str(tmp_path), **options)
        assert "\n" not in str(raised.value)

    in_loop(go)
