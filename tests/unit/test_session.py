"""CassetteSession: record modes, decisions, journalling and the end-of-run summary."""

import msgpack
import pytest

from replayproxy.cassette.format import decode_interaction
from replayproxy.cassette.store import load_cassette, save_cassette
from replayproxy.decision.session import CassetteSession, Forward, Replay, Unmatched
from replayproxy.errors import CassetteError, ConfigError
from replayproxy.model import RecordMode
from tests.factories import interaction, request, response


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
    save_cassette(tmp_path / "shop.cassette", [interaction("/a", b"A"), interaction("/b", b"B")])
    return tmp_path / "shop.cassette"


def test_once_records_when_the_cassette_is_missing(tmp_path):
    session = CassetteSession(tmp_path, "shop", RecordMode.ONCE)
    assert session.mode is RecordMode.ALL and session.records
    assert isinstance(session.decide(request("GET", "/a")), Forward)
    session.record(interaction("/a"))
    summary = session.close()
    assert summary.mode is RecordMode.ALL and summary.recorded == 1
    assert paths(tmp_path / "shop.cassette") == ["/a"]


def test_once_replays_when_the_cassette_exists(tmp_path, existing):
    session = CassetteSession(tmp_path, "shop", RecordMode.ONCE)
    assert session.mode is RecordMode.NONE and not session.records
    decision = session.decide(request("GET", "/a"))
    assert isinstance(decision, Replay)
    assert decision.served.interaction.response.body == b"A"
    assert isinstance(session.decide(request("GET", "/new")), Unmatched)


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
    replay = session.decide(request("GET", "/a"))
    assert isinstance(replay, Replay) and replay.served.interaction.response.body == b"A"
    assert isinstance(session.decide(request("GET", "/c")), Forward)
    session.record(interaction("/c", b"C"))
    summary = session.close()
    assert (summary.replayed, summary.recorded, summary.unmatched) == (1, 1, [])
    assert summary.unused == [1]
    assert paths(existing) == ["/a", "/b", "/c"]


def test_new_episodes_on_a_missing_cassette_creates_it(tmp_path):
    session = CassetteSession(tmp_path, "fresh", RecordMode.NEW_EPISODES)
    assert isinstance(session.decide(request("GET", "/x")), Forward)
    session.record(interaction("/x"))
    session.close()
    assert paths(tmp_path / "fresh.cassette") == ["/x"]


def test_all_forwards_everything_and_keeps_what_it_did_not_rerecord(tmp_path, existing):
    """VCR.py 9: re-recorded interactions replace the ones they match; the others stay,
    ahead of the new ones (#12)."""
    session = CassetteSession(tmp_path, "shop", RecordMode.ALL)
    assert isinstance(session.decide(request("GET", "/a")), Forward)  # recorded, but not replayed
    assert isinstance(session.decide(request("GET", "/z")), Forward)
    session.record(interaction("/z", b"Z"))
    session.record(interaction("/a", b"A2"))
    summary = session.close()
    assert summary.replayed == 0 and summary.recorded == 2
    got = list(load_cassette(existing).interactions())
    assert [(i.request.path, i.response.body) for i in got] == [
        ("/b", b"B"), ("/z", b"Z"), ("/a", b"A2")]
    assert journals(tmp_path) == []


def test_fresh_replaces_the_whole_cassette(tmp_path, existing):
    session = CassetteSession(tmp_path, "shop", RecordMode.NEW_EPISODES, fresh=True)
    assert session.mode is RecordMode.ALL
    assert isinstance(session.decide(request("GET", "/a")), Forward)
    session.record(interaction("/z", b"Z"))
    session.close()
    assert paths(existing) == ["/z"]


def test_fresh_with_mode_none_is_an_error(tmp_path, existing):
    with pytest.raises(CassetteError, match="starting afresh records"):
        CassetteSession(tmp_path, "shop", RecordMode.NONE, fresh=True)


def test_new_episodes_records_past_a_sequence_then_replays_it(tmp_path, existing):
    """VCR.py 9: a request beyond its recorded sequence is recorded (not repeated), and
    an identical request after it replays the new recording."""
    session = CassetteSession(tmp_path, "shop", RecordMode.NEW_EPISODES)
    assert isinstance(session.decide(request("GET", "/a")), Replay)
    assert isinstance(session.decide(request("GET", "/a")), Forward)
    session.record(interaction("/a", b"A2"))
    again = session.decide(request("GET", "/a"))
    assert isinstance(again, Replay) and again.served.interaction.response.body == b"A2"
    assert isinstance(session.decide(request("GET", "/a")), Forward)
    session.close()
    assert paths(existing) == ["/a", "/b", "/a"]


def test_a_killed_rerecording_keeps_what_it_did_not_rerecord(tmp_path, existing):
    killed = CassetteSession(tmp_path, "shop", RecordMode.ALL)
    killed.record(interaction("/a", b"A2"))
    die(killed)
    CassetteSession(tmp_path, "shop", RecordMode.NONE).close()
    assert paths(existing) == ["/b", "/a"]


def test_record_reaches_the_journal_before_close(tmp_path, existing):
    before = existing.read_bytes()
    session = CassetteSession(tmp_path, "shop", RecordMode.ALL)
    first = interaction("/first", response(200, b"1", headers=[("Content-Type", "text/plain")]))
    session.record(first)
    (journal,) = journals(tmp_path)
    unpacker = msgpack.Unpacker(raw=False, use_list=False)
    unpacker.feed(journal.read_bytes())
    header, entry = list(unpacker)
    assert header["format"] == "replayproxy-journal" and header["replace"] == "keep"
    assert decode_interaction(entry) == first
    assert existing.read_bytes() == before  # the cassette changes only at close()
    session.close()
    assert paths(existing) == ["/a", "/b", "/first"]


def test_nothing_recorded_in_mode_all_leaves_the_cassette_untouched(tmp_path, existing):
    before, mtime = existing.read_bytes(), existing.stat().st_mtime_ns
    session = CassetteSession(tmp_path, "shop", RecordMode.ALL)
    session.decide(request("GET", "/a"))
    summary = session.close()
    assert summary.recorded == 0
    assert existing.read_bytes() == before and existing.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.cassette"]


def test_rerecording_identical_traffic_keeps_the_file_byte_identical(tmp_path):
    first = CassetteSession(tmp_path, "same", RecordMode.ALL)
    first.record(interaction("/a", ttfb=0.01, duration=0.02))
    first.record(interaction("/b", ttfb=0.02, duration=0.04))
    first.close()
    before = (tmp_path / "same.cassette").read_bytes()
    again = CassetteSession(tmp_path, "same", RecordMode.ALL)
    again.record(interaction("/a", ttfb=0.5, duration=1.0, recorded_at=1_800_000_000.0))
    again.record(interaction("/b", ttfb=0.7, duration=1.4, recorded_at=1_800_000_001.0))
    again.close()
    assert (tmp_path / "same.cassette").read_bytes() == before


def test_unmatched_requests_are_collected_with_a_message_naming_the_cassette(tmp_path, existing):
    session = CassetteSession(tmp_path, "shop", RecordMode.NONE)
    missing = request("GET", "/missing?q=1", body=b"xyz")
    decision = session.decide(missing)
    assert isinstance(decision, Unmatched)
    assert "cassette 'shop'" in decision.message
    assert "GET https://api.example.com/missing?q=1" in decision.message
    assert "3 bytes" in decision.message
    assert "replayproxy record -c shop" in decision.message
    session.decide(request("GET", "/a"))
    summary = session.close()
    assert [u.request for u in summary.unmatched] == [missing]
    assert summary.replayed == 1 and summary.unused == [1]
    assert summary.cassette == "shop" and summary.path == existing


def test_strict_session_counts_requests_past_the_sequence_as_unmatched(tmp_path, existing):
    session = CassetteSession(tmp_path, "shop", RecordMode.NONE, strict=True)
    assert isinstance(session.decide(request("GET", "/a")), Replay)
    assert isinstance(session.decide(request("GET", "/a")), Unmatched)
    assert len(session.close().unmatched) == 1

    lenient = CassetteSession(tmp_path, "shop", RecordMode.NONE)
    assert isinstance(lenient.decide(request("GET", "/a")), Replay)
    second = lenient.decide(request("GET", "/a"))
    assert isinstance(second, Replay) and second.served.repeated


def test_a_killed_recording_is_recovered_by_the_next_session(tmp_path):
    killed = CassetteSession(tmp_path, "crash", RecordMode.ALL)
    killed.record(interaction("/1"))
    killed.record(interaction("/2"))
    die(killed)
    nxt = CassetteSession(tmp_path, "crash", RecordMode.ONCE)
    assert nxt.mode is RecordMode.NONE
    assert nxt.summary.recovered == 2
    assert isinstance(nxt.decide(request("GET", "/2")), Replay)
    assert paths(tmp_path / "crash.cassette") == ["/1", "/2"]
    assert journals(tmp_path) == []


def test_a_recording_killed_mid_first_entry_leaves_once_mode_recording(tmp_path):
    killed = CassetteSession(tmp_path, "torn", RecordMode.ONCE)
    killed.record(interaction("/1"))
    die(killed)
    (journal,) = journals(tmp_path)
    journal.write_bytes(journal.read_bytes()[:-5])  # killed while writing the entry
    nxt = CassetteSession(tmp_path, "torn", RecordMode.ONCE)
    assert nxt.summary.recovered == 0
    assert nxt.mode is RecordMode.ALL  # no empty cassette was left to replay from
    nxt.close()


def test_a_read_only_session_leaves_an_interrupted_recording_alone(tmp_path, existing):
    writer = CassetteSession(tmp_path, "shop", RecordMode.NEW_EPISODES)
    writer.record(interaction("/c", b"C"))
    die(writer)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    reader = CassetteSession(tmp_path, "shop", RecordMode.NONE, recover=False)
    assert [p.name for p in reader.pending] == [p.name for p in journals(tmp_path)]
    assert reader.summary.recovered == 0
    assert isinstance(reader.decide(request("GET", "/a")), Replay)
    assert isinstance(reader.decide(request("GET", "/c")), Unmatched)  # not folded in
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
    big = request("GET", "/a", body=b"x" * (64 * 1024 + 1))
    for incoming in [*(request("GET", path) for path in ("/a", "/a", "/b", "/a")), big, big]:
        session.decide(incoming)
    assert calls == ["/a", "/b", "/a", "/a"]  # the big body is redacted every time
    session.redacted_cache = 0
    session.decide(request("GET", "/b"))
    assert calls[-1] == "/b"


def test_routes_that_matched_nothing_are_listed(tmp_path, existing):
    from replayproxy.matching.rules import MatchConfig
    from replayproxy.routes import parse_route

    match = MatchConfig(routes=((parse_route("api.example.com/a"), {}),
                                (parse_route("127.0.0.1:8443/v1/*"), {})))
    session = CassetteSession(tmp_path, "shop", RecordMode.NONE, match=match)
    session.decide(request("GET", "/a"))
    assert session.close().unused_routes == ["match route '127.0.0.1:8443/v1/*'"]
    # a run that nothing reached says so otherwise, not route by route
    idle = CassetteSession(tmp_path, "shop", RecordMode.NONE, match=match)
    assert idle.close().unused_routes == []


def test_a_long_run_keeps_the_first_unmatched_requests_and_counts_the_rest(tmp_path, existing):
    """A soak or a serve left up for days must not keep every unmatched request."""
    session = CassetteSession(tmp_path, "shop", RecordMode.NONE)
    limit = session.summary.unmatched.limit
    for n in range(limit + 50):
        session.decide(request("GET", f"https://api.example.com/missing/{n}"))
    summary = session.close()
    assert len(summary.unmatched) == limit
    assert summary.unmatched.total == limit + 50
    assert summary.unmatched[0].request.path == "/missing/0"


def test_a_symlink_planted_at_the_journal_name_is_not_followed(tmp_path):
    """The journal's name is predictable (the PID): a symbolic link planted there must
    not make the recording write elsewhere."""
    import os

    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    cdir = tmp_path / "cassettes"
    cdir.mkdir()
    session = CassetteSession(cdir, "shop", RecordMode.ALL)
    # planted after the session started (recovery would have set it aside before)
    (cdir / f".shop.cassette.{os.getpid()}.journal").symlink_to(outside)
    with pytest.raises(CassetteError, match="is a symbolic link; remove it"):
        session.record(interaction("/a", b"A"))
    session.close()
    assert outside.read_bytes() == b"precious"
