"""The connection policy (``replayproxy.limits``): timeouts, the cap, eviction."""

from __future__ import annotations

import pytest

from replayproxy.config import parse_settings
from replayproxy.errors import ConfigError
from replayproxy.limits import DEFAULT_LIMITS, ConnectionTable, Limits, connection_cap


def _expired(table: ConnectionTable, now: float, last: dict[str, float]) -> dict[str, str]:
    return dict(table.expired(now, last.get))  # type: ignore[arg-type]


def test_defaults_are_sane():
    assert (DEFAULT_LIMITS.header_timeout, DEFAULT_LIMITS.idle_timeout,
            DEFAULT_LIMITS.max_connections) == (30.0, 300.0, 1000)


def test_a_silent_connection_is_closed_after_the_idle_timeout():
    table = ConnectionTable(Limits(header_timeout=5, idle_timeout=60))
    table.admit("a", 0)
    last = {"a": 0.0}
    assert _expired(table, 30, last) == {}
    assert "idle for 60 s" in _expired(table, 61, last)["a"]


def test_a_request_trickling_in_is_closed_after_the_header_timeout():
    table = ConnectionTable(Limits(header_timeout=5, idle_timeout=60))
    table.admit("a", 0)
    last = {"a": 0.0}
    assert _expired(table, 1, last) == {}  # where activity stands
    last["a"] = 2.0
    assert _expired(table, 2.5, last) == {}  # one activity alone may be the upstream
    last["a"] = 4.0
    assert _expired(table, 4.5, last) == {}
    assert "request headers not complete after 5 s" in _expired(table, 7.5, last)["a"]


def test_a_request_in_progress_is_never_timed_out_and_the_clock_restarts_after_it():
    table = ConnectionTable(Limits(header_timeout=5, idle_timeout=60))
    table.admit("a", 0)
    table.begin("a", "flow-1")
    assert _expired(table, 500, {"a": 0.0}) == {}
    table.end("a", "flow-1", 500)
    assert _expired(table, 550, {"a": 500.0}) == {}
    assert "a" in _expired(table, 561, {"a": 500.0})


def test_at_the_cap_the_longest_waiting_connection_makes_room():
    table = ConnectionTable(Limits(max_connections=2))
    assert table.admit("a", 0) == (True, None)
    assert table.admit("b", 1) == (True, None)
    table.begin("a", "flow")  # busy: never evicted
    assert table.admit("c", 2) == (True, "b")
    table.begin("c", "flow")
    assert table.admit("d", 3) == (False, None)  # all busy: refused
    table.closed("a")
    assert table.admit("d", 4) == (True, None)


@pytest.mark.parametrize("files, cap", [(None, 1000), (1024, 480), (100, 18), (10, 8),
                                        (1_000_000, 1000)])
def test_the_cap_never_uses_up_the_open_file_limit(files, cap):
    assert connection_cap(1000, files) == cap


def test_limits_from_the_configuration():
    settings = parse_settings({"limits": {"header_timeout": "2s", "idle_timeout": 90,
                                          "max_connections": 50}})
    assert settings.limits == Limits(header_timeout=2.0, idle_timeout=90.0, max_connections=50)
    assert parse_settings({}).limits == DEFAULT_LIMITS


@pytest.mark.parametrize("table", [{"header_timeout": 0}, {"idle_timeout": "-1s"},
                                   {"idle_timeout": True}, {"max_connections": 0},
                                   {"max_connections": 2.5}, {"header": "1s"},
                                   {"idle_timeout": [1]}])
def test_bad_limits(table):
    with pytest.raises(ConfigError, match=r"\[limits\]"):
        parse_settings({"limits": table}, section="")
