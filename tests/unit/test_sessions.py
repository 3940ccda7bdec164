"""Sessions: the name a client gives in its proxy URL, and the sessions of a run."""

import base64

import pytest

from replayproxy.decision.pipeline import Pipeline
from replayproxy.decision.session import CassetteSession
from replayproxy.decision.sessions import (
    SessionRefused,
    Sessions,
    SessionSettings,
    session_name,
    session_url,
)
from replayproxy.errors import CassetteError
from replayproxy.model import RecordMode


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(user.encode()).decode()


@pytest.mark.parametrize("header, name", [
    (None, None), ("", None), (basic("stripe:"), "stripe"), (basic("stripe"), "stripe"),
    (basic("stripe:secret"), "stripe"), (basic(":pw"), None),
    (basic("my%20cassette:"), "my cassette"), ("basic " + basic("x:")[6:], "x"),
])
def test_the_session_is_the_user_name_of_a_basic_credential(header, name):
    assert session_name(header) == name


@pytest.mark.parametrize("header, why", [
    ("Bearer abc", "not 'Bearer'"), ("Basic %%%", "not valid base64"),
    ("Basic " + base64.b64encode(b"\xff\xfe").decode(), "not valid base64"),
])
def test_an_unreadable_credential_is_refused_with_the_fix(header, why):
    with pytest.raises(SessionRefused, match=why) as info:
        session_name(header)
    assert "http://CASSETTE@HOST:PORT" in str(info.value)


def test_session_url_puts_the_name_in_the_proxy_url():
    assert session_url("http://127.0.0.1:8080", "a b") == "http://a%20b@127.0.0.1:8080"


def _sessions(tmp_path, default: bool = True):
    opened: list[tuple[str, SessionSettings]] = []

    def open_pipeline(name: str, settings: SessionSettings) -> Pipeline:
        opened.append((name, settings))
        mode = RecordMode.parse(settings.mode) if settings.mode else RecordMode.ALL
        return Pipeline(CassetteSession(tmp_path, name, mode))

    main = Pipeline(CassetteSession(tmp_path, "main", RecordMode.ALL)) if default else None
    return Sessions(open_pipeline, main, "main" if default else None), main, opened


def test_sessions_open_once_by_name_and_unnamed_requests_use_the_run_cassette(tmp_path):
    sessions, main, opened = _sessions(tmp_path)
    assert sessions.pipeline(None) is main and sessions.pipeline("main") is main
    first = sessions.pipeline("alpha")
    assert sessions.pipeline("alpha") is first
    assert [n for n, _ in opened] == ["alpha"]
    assert sessions.names() == ["alpha"] and sessions.records


def test_a_session_keeps_the_settings_it_started_with(tmp_path):
    sessions, _, _ = _sessions(tmp_path)
    sessions.open("alpha", SessionSettings(faults=("status=503@*",)))
    with pytest.raises(SessionRefused, match="open already, with the settings it started"):
        sessions.open("alpha", SessionSettings(faults=()))
    with pytest.raises(SessionRefused, match="open already"):
        sessions.open("main", SessionSettings())


@pytest.mark.parametrize("name", ["..", "../x", "a/b", ".hidden", "a\\b", "x" * 201])
def test_an_unsafe_name_is_refused_before_anything_is_opened(tmp_path, name):
    sessions, _, opened = _sessions(tmp_path)
    with pytest.raises(SessionRefused, match="invalid cassette name"):
        sessions.pipeline(name)
    assert opened == [] and list(tmp_path.iterdir()) == []


def test_a_run_of_named_sessions_only_asks_for_a_name(tmp_path):
    sessions, _, _ = _sessions(tmp_path, default=False)
    with pytest.raises(SessionRefused, match="named sessions only"):
        sessions.pipeline(None)


def test_a_session_whose_cassette_cannot_open_is_refused_with_the_reason(tmp_path):
    def open_pipeline(name: str, settings: SessionSettings) -> Pipeline:
        raise CassetteError(f"cassette {name} does not exist: record it first")

    sessions = Sessions(open_pipeline)
    with pytest.raises(SessionRefused, match="session 'gone': cassette gone does not exist"):
        sessions.pipeline("gone")


def test_closing_writes_each_session_and_keeps_its_summary(tmp_path):
    sessions, _, _ = _sessions(tmp_path)
    sessions.pipeline("alpha")
    sessions.pipeline("beta")
    assert sessions.close("alpha").recorded == 0
    with pytest.raises(SessionRefused, match="no open session 'alpha'"):
        sessions.close("alpha")
    assert set(sessions.close_all()) == {"alpha", "beta"}
    assert sessions.names() == []


def test_a_port_of_its_own_serves_its_session_until_it_is_closed(tmp_path):
    sessions, _, _ = _sessions(tmp_path)
    sessions.open("java", SessionSettings())
    sessions.bind_port("java", 41000)
    assert sessions.on_port(41000) == "java" and sessions.on_port(41001) is None
    sessions.close("java")
    with pytest.raises(SessionRefused, match="session 'java' was closed"):
        sessions.on_port(41000)
