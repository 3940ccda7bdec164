"""Recorded variables: made while recording, read back on replay, stored atomically."""

from __future__ import annotations

import json
import os

import pytest

from replayproxy.cassette.variables import RecordedVariables, variables_path
from replayproxy.errors import CassetteError, ConfigError
from replayproxy.model import RecordMode


def counter():
    calls = []

    def make():
        calls.append(1)
        return f"value-{len(calls)}"
    return make, calls


def test_recorded_then_replayed(tmp_path):
    make, calls = counter()
    rec = RecordedVariables(tmp_path, "pay", RecordMode.ALL)
    assert rec.get("customer", make) == "value-1"
    assert rec.get("customer", make) == "value-1"  # made once per use
    assert calls == [1]
    replay = RecordedVariables(tmp_path, "pay", RecordMode.NONE)
    assert replay.get("customer", lambda: pytest.fail("replay must not make a value")) == \
        "value-1"
    doc = json.loads((tmp_path / "pay.variables.json").read_text())
    assert doc == {"format": "replayproxy-variables", "version": 1,
                   "variables": {"customer": "value-1"}}


def test_all_makes_a_new_value_new_episodes_keeps_the_stored_one(tmp_path):
    RecordedVariables(tmp_path, "c", RecordMode.ALL).get("k", lambda: "old")
    assert RecordedVariables(tmp_path, "c", RecordMode.NEW_EPISODES).get("k", lambda: "x") == "old"
    assert RecordedVariables(tmp_path, "c", RecordMode.NEW_EPISODES).get("n", lambda: 7) == 7
    assert RecordedVariables(tmp_path, "c", RecordMode.ALL).get("k", lambda: "new") == "new"
    assert RecordedVariables(tmp_path, "c", RecordMode.NONE).get("n", str) == 7


def test_values_come_back_as_replay_gives_them(tmp_path):
    assert RecordedVariables(tmp_path, "c", RecordMode.ALL).get("t", lambda: (1, 2)) == [1, 2]


def test_replaying_a_variable_never_recorded_says_to_record_again(tmp_path):
    with pytest.raises(CassetteError, match=r"variable 'x' was not recorded with cassette 'c'"):
        RecordedVariables(tmp_path, "c", RecordMode.NONE).get("x", str)


def test_a_value_json_cannot_hold_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ConfigError, match="cannot be stored as JSON"):
        RecordedVariables(tmp_path, "c", RecordMode.ALL).get("x", object)
    assert not variables_path(tmp_path, "c").exists()


def test_a_damaged_file_is_named(tmp_path):
    variables_path(tmp_path, "c").write_text("{not json")
    with pytest.raises(CassetteError, match=r"c\.variables\.json cannot be read"):
        RecordedVariables(tmp_path, "c", RecordMode.NONE).get("x", str)
    variables_path(tmp_path, "c").write_text("[]")
    with pytest.raises(CassetteError, match="not a replayproxy variables file"):
        RecordedVariables(tmp_path, "c", RecordMode.NONE).get("x", str)


def test_the_file_is_replaced_atomically_leaving_no_temporary_file(tmp_path):
    rec = RecordedVariables(tmp_path, "c", RecordMode.ALL)
    for i in range(3):
        rec.get(f"v{i}", lambda i=i: i)
    assert sorted(os.listdir(tmp_path)) == ["c.variables.json"]
    assert json.loads((tmp_path / "c.variables.json").read_text())["variables"] == {
        "v0": 0, "v1": 1, "v2": 2}


def test_an_unsafe_cassette_name_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="invalid cassette name"):
        RecordedVariables(tmp_path, "../x", RecordMode.ALL)
