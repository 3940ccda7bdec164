"""CassetteSession: record modes, decisions, journalling and the end-of-run summary."""

import dataclasses

import msgpack
import pytest

from replayproxy.cassette.format import decode_interaction
from replayproxy.cassette.store import load_cassette, save_cassette
from replayproxy.decision.session import CassetteSession, Forward, Replay, Unmatched
from replayproxy.errors import CassetteError, ConfigError
from replayproxy.model import Interaction, RecordMode, Request, Response


def req(path="/v1/items", query="", body=b""):
    return Request("GET", "https", "api.example.com", 443, path, query, (), body)


def it(path="/v1/items", body=b"recorded", ttfb=0.01):
    return Interaction(req(path), Response(200, "OK", (("Content-Type", "text/plain"),), body),
                       1_700_000_000.0, ttfb, ttfb * 2)


def paths(cassette_file):
    return [i.request.path for i in load_cassette(cassette_file).interactions()]


def die(session):
    """Release the journal's lock without committing, as the kernel does for a killed run."""
    assert session._journal is not None and session._journal._file is not None
    session._journal._file.close()


def journals(directory):
    return sorted(directory.glob(".*.journal"))


@pytest.fixture
def existing(tmp_path):
    """A cassette 'shop' holding /a and /b."""
    save_cassette(tmp_path / "shop.cassette", [it("/a", b"A"), it("/b", b"B")])
    return tmp_path / "shop.cassette"


def test_once_records_when_the_cassette_is_missing(tmp_path):
    session = CassetteSession(tmp_path, "shop", RecordMode.ONCE)
    assert session.mode is RecordMode.ALL and session.records
    assert isinstance(session.decide(req("/a")), Forward)
    session.record(it("/a"))
    summary = session.close()
    assert summary.mode is RecordMode.ALL and summary.recorded == 1
    assert paths(tmp_path / "shop.cassette") == ["/a"]


def test_once_replays_when_the_cassette_exists(tmp_path, existing):
    session = CassetteSession(tmp_path, "shop", RecordMode.ONCE)
    assert session.mode is RecordMode.NONE and not session.records
    decision = session.decide(req("/a"))
    assert isinstance(decision, Replay)
    assert decision.served.interaction.response.body == b"A"
    assert isinstance(session.decide(req("/new")), Unmatched)


def test_none_with_a_missing_cassette_says_how_to_record(tmp_path):
    with pytest.raises(CassetteError) as info:
        CassetteSession(tmp_path, "stripe", RecordMode.NONE)
    message = str(info.value)
    assert "'stripe' does not exist" in message
    assert "replayproxy record -c stripe" in message
    assert str(tmp_path) in message


def test_corrupt_cassette_is_a_cassette_error(tmp_path):
    (tmp_path / "bad.cassette").write_bytes(b"\xc1 not a cassette")
    with pytest.raises(CassetteError, match="bad.cassette"):
        CassetteSession(tmp_path, "bad", RecordMode.NONE)


def test_invalid_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        CassetteSession(tmp_path, "../escape", RecordMode.ALL)


def test_new_episodes_replays_matches_and_forwards_the_rest(tmp_path, existing):
    session = CassetteSession(tmp_path, "shop", RecordMode.NEW_EPISODES)
    assert session.records
    replay = session.decide(req("/a"))
    assert isinstance(replay, Replay) and replay.served.interaction.response.body == b"A"
    assert isinstance(session.decide(req("/c")), Forward)
    session.record(it("/c", b"C"))
    summary = session.close()
    assert (summary.replayed, summary.recorded, summary.unmatched) == (1, 1, [])
    assert summary.unused == [1]
    assert paths(existing) == ["/a", "/b", "/c"]


def test_new_episodes_on_a_missing_cassette_creates_it(tmp_path):
    session = CassetteSession(tmp_path, "fresh", RecordMode.NEW_EPISODES)
    assert isinstance(session.decide(req("/x")), Forward)
    session.record(it("/x"))
    session.close()
    assert paths(tmp_path / "fresh.cassette") == ["/x"]


def test_all_forwards_everything_and_replaces_the_cassette(tmp_path, existing):
    session = CassetteSession(tmp_path, "shop", RecordMode.ALL)
    assert isinstance(session.decide(req("/a")), Forward)  # recorded, but not replayed
    assert isinstance(session.decide(req("/z")), Forward)
    session.record(it("/z", b"Z"))
    session.record(it("/a", b"A2"))
    summary = session.close()
    assert summary.replayed == 0 and summary.recorded == 2
    got = list(load_cassette(existing).interactions())
    assert [(i.request.path, i.response.body) for i in got] == [("/z", b"Z"), ("/a", b"A2")]
    assert journals(tmp_path) == []


def test_record_reaches_the_journal_before_close(tmp_path, existing):
    before = existing.read_bytes()
    session = CassetteSession(tmp_path, "shop", RecordMode.ALL)
    session.record(it("/first", b"1"))
    (journal,) = journals(tmp_path)
    unpacker = msgpack.Unpacker(raw=False, use_list=False)
    unpacker.feed(journal.read_bytes())
    header, entry = list(unpacker)
    assert header["format"] == "replayproxy-journal" and header["replace"] is True
    assert decode_interaction(entry) == it("/first", b"1")
    assert existing.read_bytes() == before  # the cassette changes only at close()
    session.close()
    assert paths(existing) == ["/first"]


def test_nothing_recorded_in_mode_all_leaves_the_cassette_untouched(tmp_path, existing):
    before, mtime = existing.read_bytes(), existing.stat().st_mtime_ns
    session = CassetteSession(tmp_path, "shop", RecordMode.ALL)
    session.decide(req("/a"))
    summary = session.close()
    assert summary.recorded == 0
    assert existing.read_bytes() == before and existing.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.cassette"]


def test_rerecording_identical_traffic_keeps_the_file_byte_identical(tmp_path):
    first = CassetteSession(tmp_path, "same", RecordMode.ALL)
    first.record(it("/a", ttfb=0.01))
    first.record(it("/b", ttfb=0.02))
    first.close()
    before = (tmp_path / "same.cassette").read_bytes()
    again = CassetteSession(tmp_path, "same", RecordMode.ALL)
    again.record(dataclasses.replace(it("/a", ttfb=0.5), recorded_at=1_800_000_000.0))
    again.record(dataclasses.replace(it("/b", ttfb=0.7), recorded_at=1_800_000_001.0))
    again.close()
    assert (tmp_path / "same.cassette").read_bytes() == before


def test_unmatched_requests_are_collected_with_a_message_naming_the_cassette(tmp_path, existing):
    session = CassetteSession(tmp_path, "shop", RecordMode.NONE)
    missing = req("/missing", "q=1", b"xyz")
    decision = session.decide(missing)
    assert isinstance(decision, Unmatched)
    assert "cassette 'shop'" in decision.message
    assert "GET https://api.example.com/missing?q=1" in decision.message
    assert "3 bytes" in decision.message
    assert "replayproxy record -c shop" in decision.message
    session.decide(req("/a"))
    summary = session.close()
    assert [u.request for u in summary.unmatched] == [missing]
    assert summary.replayed == 1 and summary.unused == [1]
    assert summary.cassette == "shop" and summary.path == existing


def test_strict_session_counts_requests_past_the_sequence_as_unmatched(tmp_path, existing):
    session = CassetteSession(tmp_path, "shop", RecordMode.NONE, strict=True)
    assert isinstance(session.decide(req("/a")), Replay)
    assert isinstance(session.decide(req("/a")), Unmatched)
    assert len(session.close().unmatched) == 1

    lenient = CassetteSession(tmp_path, "shop", RecordMode.NONE)
    assert isinstance(lenient.decide(req("/a")), Replay)
    second = lenient.decide(req("/a"))
    assert isinstance(second, Replay) and second.served.repeated


def test_a_killed_recording_is_recovered_by_the_next_session(tmp_path):
    killed = CassetteSession(tmp_path, "crash", RecordMode.ALL)
    killed.record(it("/1"))
    killed.record(it("/2"))
    die(killed)
    nxt = CassetteSession(tmp_path, "crash", RecordMode.ONCE)
    assert nxt.mode is RecordMode.NONE
    assert nxt.summary.recovered == 2
    assert isinstance(nxt.decide(req("/2")), Replay)
    assert paths(tmp_path / "crash.cassette") == ["/1", "/2"]
    assert journals(tmp_path) == []


def test_a_recording_killed_mid_first_entry_leaves_once_mode_recording(tmp_path):
    killed = CassetteSession(tmp_path, "torn", RecordMode.ONCE)
    killed.record(it("/1"))
    die(killed)
    (journal,) = journals(tmp_path)
    journal.write_bytes(journal.read_bytes()[:-5])  # killed while writing the entry
    nxt = CassetteSession(tmp_path, "torn", RecordMode.ONCE)
    assert nxt.summary.recovered == 0
    assert nxt.mode is RecordMode.ALL  # no empty cassette was left to replay from
    nxt.close()


def test_a_read_only_session_leaves_an_interrupted_recording_alone(tmp_path, existing):
    writer = CassetteSession(tmp_path, "shop", RecordMode.NEW_EPISODES)
    writer.record(it("/c", b"C"))
    die(writer)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    reader = CassetteSession(tmp_path, "shop", RecordMode.NONE, recover=False)
    assert [p.name for p in reader.pending] == [p.name for p in journals(tmp_path)]
    assert reader.summary.recovered == 0
    assert isinstance(reader.decide(req("/a")), Replay)
    assert isinstance(reader.decide(req("/c")), Unmatched)  # not folded in
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # a session that writes folds it in
    assert CassetteSession(tmp_path, "shop", RecordMode.NONE).summary.recovered == 1
    assert paths(existing) == ["/a", "/b", "/c"]


def test_repeated_requests_are_redacted_once(tmp_path, existing, monkeypatch):
    session = CassetteSession(tmp_path, "shop", RecordMode.NONE)
    calls = []
    real = session.redactor.redact_request
    monkeypatch.setattr(session.redactor, "redact_request",
                        lambda r: calls.append(r.path) or real(r))
    big = req("/a", body=b"x" * (64 * 1024 + 1))
    for request in (req("/a"), req("/a"), req("/b"), req("/a"), big, big):
        session.decide(request)
    assert calls == ["/a", "/b", "/a", "/a"]  # the big body is redacted every time
    session.redacted_cache = 0
    session.decide(req("/b"))
    assert calls[-1] == "/b"
