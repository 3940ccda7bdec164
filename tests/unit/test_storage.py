"""Cassette files: round trips, stable bytes, atomic writes, load errors, journals."""

import os
import tempfile
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replayproxy.cassette import format as cassette_format
from replayproxy.cassette import journal
from replayproxy.cassette.format import (
    FORMAT_VERSION,
    decode_interaction,
    dumps,
    encode_interaction,
)
from replayproxy.cassette.journal import Journal, pending_journals, recover_journals
from replayproxy.cassette.quiet import Quiet
from replayproxy.cassette.store import (
    CassetteFile,
    cassette_info,
    cassette_path,
    list_cassettes,
    load_cassette,
    save_cassette,
    validate_cassette_name,
)
from replayproxy.errors import CLI_WORDS, CassetteError, ConfigError
from replayproxy.model import Interaction, Request, Response

# -- strategies -----------------------------------------------------------------------

latin1 = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=30)
header_names = st.sampled_from(
    ["Content-Type", "content-type", "CONTENT-TYPE", "Set-Cookie", "set-cookie", "X-Dup"]
) | latin1
headers = st.lists(st.tuples(header_names, latin1), max_size=8).map(tuple)
finite = st.floats(allow_nan=False, allow_infinity=False)
versions = st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"])

requests = st.builds(
    Request,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]) | st.text(max_size=10),
    scheme=st.sampled_from(["http", "https"]) | st.text(max_size=8),
    host=st.text(max_size=40),
    port=st.integers(0, 65535),
    path=st.text(max_size=60),
    query=st.text(max_size=60),
    headers=headers,
    body=st.binary(max_size=600),
    http_version=versions,
)
responses = st.builds(
    Response,
    status=st.integers(100, 999),
    reason=st.text(max_size=30),
    headers=headers,
    body=st.binary(max_size=600),
    http_version=versions,
)
interactions = st.builds(
    Interaction,
    request=requests,
    response=responses,
    recorded_at=finite,
    ttfb=finite,
    duration=finite,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make(path="/", body=b"ok", *, method="GET", ttfb=0.01, recorded_at=1_700_000_000.0):
    return Interaction(
        Request(method, "https", "api.example.com", 443, path, "a=1",
                (("Accept", "*/*"), ("X-Dup", "1"), ("x-dup", "2"))),
        Response(200, "OK", (("Content-Type", "text/plain"),), body),
        recorded_at=recorded_at,
        ttfb=ttfb,
        duration=ttfb * 2,
    )


def header_bytes(**fields):
    header = {"format": "replayproxy-cassette", "interactions": 0, "version": FORMAT_VERSION}
    header.update(fields)
    return msgpack.packb(header, use_bin_type=True)


def leave_journal(cassette: Path, items, *, replace: bool) -> Path:
    """Record into a journal and 'die': release its lock without committing."""
    journal = Journal(cassette, replace=replace)
    for it in items:
        journal.append(it)
    assert journal._file is not None
    journal._file.close()  # the kernel drops the flock, as it does for a killed process
    return journal.path


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


# -- round trips and stable bytes -----------------------------------------------------


@FAST
@given(st.lists(interactions, max_size=5))
def test_any_interactions_round_trip_through_a_cassette_file(items):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rt.cassette"
        save_cassette(path, items)
        loaded = load_cassette(path)
        assert list(loaded.interactions()) == items
        assert loaded.name == "rt" and loaded.path == path and len(loaded) == len(items)


@FAST
@given(interactions)
def test_encode_decode_round_trip(it):
    assert decode_interaction(encode_interaction(it)) == it


@FAST
@given(st.lists(interactions, max_size=5))
def test_writing_the_same_interactions_twice_gives_identical_bytes(items):
    with tempfile.TemporaryDirectory() as d:
        a, b = Path(d) / "a.cassette", Path(d) / "b.cassette"
        save_cassette(a, items)
        save_cassette(b, [Interaction(**{f: getattr(it, f) for f in it.__slots__})
                          for it in items])
        assert a.read_bytes() == b.read_bytes()
        save_cassette(a, items)  # overwrite in place: still the same bytes
        assert a.read_bytes() == b.read_bytes() == dumps([encode_interaction(i) for i in items])


def test_round_trip_keeps_header_order_case_duplicates_and_latin1(tmp_path):
    hdrs = (("X-Dup", "1"), ("Set-Cookie", "a=é"), ("x-dup", "\xff\x00 2"), ("X-DUP", ""))
    it = Interaction(
        Request("POST", "https", "Example.COM", 8443, "/p", "b=2&a=1", hdrs, b"\x00\xff"),
        Response(201, "Créé", hdrs, b"\x1f\x8b gzip bytes", "HTTP/2.0"),
        1.5, 0.25, 0.75,
    )
    path = tmp_path / "x.cassette"
    save_cassette(path, [it])
    (back,) = load_cassette(path).interactions()
    assert back == it
    assert back.request.headers == hdrs
    assert [v.encode("latin-1") for _, v in back.response.headers][2] == b"\xff\x00 2"


def test_save_accepts_raw_entries_and_interactions_alike(tmp_path):
    a, b = tmp_path / "a.cassette", tmp_path / "b.cassette"
    save_cassette(a, [make("/1"), make("/2")])
    save_cassette(b, [encode_interaction(make("/1")), make("/2")])
    assert a.read_bytes() == b.read_bytes()


def test_cassette_file_from_interactions(tmp_path):
    items = [make("/1"), make("/2")]
    cf = CassetteFile.from_interactions("mem", items)
    assert len(cf) == 2 and cf.path is None and list(cf.interactions()) == items


def test_file_starts_with_a_versioned_header(tmp_path):
    path = tmp_path / "h.cassette"
    save_cassette(path, [make()])
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(path.read_bytes())
    assert next(unpacker) == {"format": "replayproxy-cassette", "interactions": 1, "version": 1}


# -- atomic writes ----------------------------------------------------------------------


def test_save_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "deep" / "dir" / "c.cassette"
    save_cassette(path, [make()])
    save_cassette(path, [make(), make("/2")])
    assert files_in(path.parent) == {"c.cassette"}
    assert len(load_cassette(path)) == 2
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_write_keeps_the_old_cassette_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "c.cassette"
    save_cassette(path, [make()])
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        save_cassette(path, [make("/other")])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert files_in(tmp_path) == {"c.cassette"}


def test_save_into_an_uncreatable_directory_is_a_cassette_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CassetteError, match="cannot create cassette directory"):
        save_cassette(blocker / "c.cassette", [make()])


# -- load errors ----------------------------------------------------------------------


def load_error(path: Path) -> str:
    with pytest.raises(CassetteError) as info:
        load_cassette(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_missing_cassette(tmp_path):
    message = load_error(tmp_path / "stripe.cassette")
    assert "does not exist" in message and "replayproxy record -c stripe" in message
    assert message.endswith("or check cassette_dir")  # each front end words the setting


def test_missing_cassette_names_the_setting_as_each_front_end_words_it(tmp_path):
    with pytest.raises(CassetteError) as info:
        load_cassette(tmp_path / "stripe.cassette")
    assert info.value.render(CLI_WORDS).endswith("or check --cassette-dir")


def test_empty_cassette(tmp_path):
    path = tmp_path / "e.cassette"
    path.write_bytes(b"")
    assert "empty" in load_error(path)


@pytest.mark.parametrize(
    "data",
    [
        b"this is not msgpack at all",
        b"\xc1\xc1\xc1",
        b"\x00",
        b"\x93\x01\x02\x03",
        b"{\"format\": \"replayproxy-cassette\"}",
    ],
)
def test_garbage_cassette(tmp_path, data):
    path = tmp_path / "g.cassette"
    path.write_bytes(data)
    load_error(path)


def test_every_truncation_of_a_small_cassette_is_a_cassette_error(tmp_path):
    full = tmp_path / "full.cassette"
    save_cassette(full, [make("/1", b"first"), make("/2", b"second" * 20)])
    data = full.read_bytes()
    cut = tmp_path / "cut.cassette"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        load_error(cut)
    cut.write_bytes(data)
    assert len(load_cassette(cut)) == 2


@pytest.mark.parametrize("tail", [b"\xc1", b"\x91", b"\xc0", b"\x00", b"\x92\x01"])
def test_data_after_the_interactions_is_a_cassette_error(tmp_path, tail):
    path = tmp_path / "t.cassette"
    save_cassette(path, [make()])
    path.write_bytes(path.read_bytes() + tail)
    assert "unexpected data after the interactions" in load_error(path)


VALID = header_bytes(interactions=1) + msgpack.packb([encode_interaction(make())])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"", header_bytes(interactions=1), VALID]), st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_another_exception(prefix, tail):
    data = prefix + tail
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.cassette"
        path.write_bytes(data)
        try:
            load_cassette(path)
        except CassetteError as e:
            assert str(path) in str(e)


def test_a_future_format_version_is_refused_in_one_line_naming_the_version_and_the_fix(
        tmp_path):
    path = tmp_path / "v.cassette"
    path.write_bytes(header_bytes(version=99) + msgpack.packb([]))
    message = load_error(path)  # one line, naming the file
    assert f"{path} uses format version 99, newer than this replayproxy reads (up to 2)" \
        in message
    assert message.endswith("upgrade replayproxy (pip install -U replayproxy)")
    with pytest.raises(CassetteError) as info:
        cassette_info(path)
    assert str(info.value) == message


def version_3(entry):
    """A made-up format version 3 entry: a map instead of an array."""
    return {"request": entry[0], "response": entry[1], "timings": entry[2:]}


def read_version_3(monkeypatch):
    """Register a reader for the made-up version 3."""
    def index(window):  # a small file: the first window holds it all
        unpacker = window.unpacker
        offsets, fields = [], []
        for _ in range(unpacker.read_array_header()):
            offsets.append(unpacker.tell())
            entry = unpacker.unpack()
            fields.append(tuple(entry["request"][:5]))
        return [*offsets, unpacker.tell()], fields

    def decode(raw):
        return decode_interaction((raw["request"], raw["response"], *raw["timings"]))

    readers = {**cassette_format.READERS, 3: cassette_format.Reader(3, index, decode)}
    monkeypatch.setattr(cassette_format, "READERS", readers)


def test_the_reader_is_chosen_by_the_version_in_the_header(tmp_path, monkeypatch):
    items = [make("/1"), make("/2")]
    path = tmp_path / "v3.cassette"
    path.write_bytes(header_bytes(version=3, interactions=2) + msgpack.packb(
        [version_3(encode_interaction(it)) for it in items], use_bin_type=True))
    assert "newer than this replayproxy reads (up to 2)" in load_error(path)

    read_version_3(monkeypatch)
    loaded = load_cassette(path)
    assert loaded.version == 3
    assert loaded.fields == [("GET", "https", "api.example.com", 443, p) for p in ("/1", "/2")]
    assert list(loaded.interactions()) == items
    # and version 1 files still read with their own reader
    v1 = tmp_path / "v1.cassette"
    save_cassette(v1, items)
    assert load_cassette(v1).version == 1 and list(load_cassette(v1).interactions()) == items


@pytest.mark.parametrize("version", [0, -1, "1", None, 1.0])
def test_invalid_version(tmp_path, version):
    path = tmp_path / "v.cassette"
    path.write_bytes(header_bytes(version=version) + msgpack.packb([]))
    assert "invalid format version" in load_error(path)


@pytest.mark.parametrize(
    "header",
    [
        {"format": "replayproxy-journal", "interactions": 0, "version": 1},
        {"format": "something-else", "interactions": 0, "version": 1},
        {"interactions": 0, "version": 1},
        [1, 2, 3],
        "replayproxy-cassette",
    ],
)
def test_wrong_header_format(tmp_path, header):
    path = tmp_path / "w.cassette"
    path.write_bytes(msgpack.packb(header) + msgpack.packb([]))
    assert "is not a replayproxy cassette file" in load_error(path)


def test_header_count_mismatch(tmp_path):
    path = tmp_path / "n.cassette"
    entry = encode_interaction(make())
    path.write_bytes(header_bytes(interactions=2) + msgpack.packb([entry], use_bin_type=True))
    assert "header says 2 interactions, file has 1" in load_error(path)


@pytest.mark.parametrize("field", ["interactions", "version"])
def test_a_megabyte_value_in_the_header_is_not_echoed(tmp_path, field):
    path = tmp_path / "n.cassette"
    path.write_bytes(header_bytes(**{field: "x" * 1_000_000}) + msgpack.packb([]))
    assert len(load_error(path)) < 300 + 2 * len(str(path))


def test_missing_interaction_list(tmp_path):
    path = tmp_path / "m.cassette"
    path.write_bytes(header_bytes() + msgpack.packb({"not": "a list"}))
    assert "interaction list is missing" in load_error(path)


def test_malformed_interaction_is_reported_with_file_and_position(tmp_path):
    path = tmp_path / "bad.cassette"
    good = encode_interaction(make())
    path.write_bytes(header_bytes(interactions=2) + msgpack.packb([good, [1, 2]]))
    with pytest.raises(CassetteError,
                       match=r"interaction #2 is not a 5- or 6-element array") as info:
        load_cassette(path)
    assert str(path) in str(info.value)
    bad_request = list(good)
    bad_request[0] = ("GET", "https")
    path.write_bytes(header_bytes(interactions=2) + msgpack.packb([good, bad_request]))
    with pytest.raises(CassetteError, match=r"interaction #2 has a malformed request"):
        load_cassette(path)
    bad_response = list(good)
    bad_response[1] = ("not", "a", "response")
    path.write_bytes(header_bytes(interactions=2) + msgpack.packb([good, bad_response]))
    with pytest.raises(CassetteError, match=r"interaction #2 has a malformed response"):
        load_cassette(path)
    # the pairs inside a header list are only checked when the interaction is used
    bad_header = list(good)
    bad_header[1] = (200, "OK", (("Content-Type", 7),), b"", "HTTP/1.1")
    path.write_bytes(header_bytes(interactions=2) + msgpack.packb([good, bad_header],
                                                                  use_bin_type=True))
    cassette = load_cassette(path)
    assert cassette.interaction(0) == make()
    with pytest.raises(CassetteError, match=r"malformed interaction #2 \(a header in the "
                       r"response headers should be a \[name, value\] pair") as info:
        cassette.interaction(1)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_cassette_info_reads_the_count(tmp_path):
    path = tmp_path / "i.cassette"
    save_cassette(path, [make("/1"), make("/2"), make("/3")])
    assert cassette_info(path) == 3
    path.write_bytes(b"\xc1")
    with pytest.raises(CassetteError, match="i.cassette"):
        cassette_info(path)


def test_list_cassettes_lists_only_cassettes_sorted(tmp_path):
    for name in ("b", "a", "c"):
        save_cassette(tmp_path / f"{name}.cassette", [])
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".a.cassette.123.journal").write_bytes(b"")
    assert [p.name for p in list_cassettes(tmp_path)] == ["a.cassette", "b.cassette", "c.cassette"]
    assert list_cassettes(tmp_path / "missing") == []


def test_list_cassettes_sorts_by_cassette_name_not_file_name(tmp_path):
    for name in ("npm-install-axios", "npm-install", "npm", "npm.x"):
        save_cassette(tmp_path / f"{name}.cassette", [])
    assert [p.stem for p in list_cassettes(tmp_path)] == ["npm", "npm-install",
                                                          "npm-install-axios", "npm.x"]


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stripe", "stripe-payments_v1.2", "_x", "A1", "x" * 200])
def test_valid_cassette_names(tmp_path, name):
    assert validate_cassette_name(name) == name
    assert cassette_path(tmp_path, name) == tmp_path / f"{name}.cassette"


@pytest.mark.parametrize(
    "name",
    ["a/b", "/abs", "..", "../x", "x/../y", "a..b", ".hidden", ".", "", "a\\b", "a b",
     "x\x00", "x" * 201],
)
def test_unsafe_cassette_names_are_rejected(tmp_path, name):
    with pytest.raises(ConfigError, match="invalid cassette name"):
        validate_cassette_name(name)
    with pytest.raises(ConfigError):
        cassette_path(tmp_path, name)


# -- journals -------------------------------------------------------------------------


def test_journal_commit_folds_and_removes_itself(tmp_path):
    cassette = tmp_path / "j.cassette"
    journal = Journal(cassette, replace=True)
    journal.append(make("/1"))
    journal.append(make("/2"))
    assert journal.count == 2
    assert journal.commit() == 2
    assert files_in(tmp_path) == {"j.cassette"}
    assert [i.request.path for i in load_cassette(cassette).interactions()] == ["/1", "/2"]
    assert journal.commit() == 0
    with pytest.raises(ValueError, match="closed"):
        journal.append(make())


def test_journal_holds_each_interaction_before_commit(tmp_path):
    cassette = tmp_path / "j.cassette"
    journal = Journal(cassette, replace=False)
    journal.append(make("/1"))
    unpacker = msgpack.Unpacker(raw=False, use_list=False)
    unpacker.feed(journal.path.read_bytes())
    header, entry = list(unpacker)
    assert header["format"] == "replayproxy-journal" and header["replace"] is False
    assert decode_interaction(entry) == make("/1")
    assert not cassette.exists()
    journal.commit()


def test_leftover_journal_is_recovered(tmp_path):
    cassette = tmp_path / "r.cassette"
    journal = leave_journal(cassette, [make("/1"), make("/2")], replace=True)
    assert pending_journals(cassette) == [journal]
    assert recover_journals(cassette) == 2
    assert [i.request.path for i in load_cassette(cassette).interactions()] == ["/1", "/2"]
    assert files_in(tmp_path) == {"r.cassette"}
    assert recover_journals(cassette) == 0


def test_live_journal_is_left_alone(tmp_path):
    cassette = tmp_path / "live.cassette"
    journal = Journal(cassette, replace=False)
    journal.append(make())
    assert pending_journals(cassette) == []
    assert recover_journals(cassette) == 0
    assert journal.path.exists() and not cassette.exists()
    assert journal.commit() == 1


def test_replace_journal_replaces_and_append_journal_appends(tmp_path):
    cassette = tmp_path / "m.cassette"
    save_cassette(cassette, [make("/old1"), make("/old2")])
    leave_journal(cassette, [make("/new")], replace=False)
    assert recover_journals(cassette) == 1
    paths = [i.request.path for i in load_cassette(cassette).interactions()]
    assert paths == ["/old1", "/old2", "/new"]

    leave_journal(cassette, [make("/fresh")], replace=True)
    assert recover_journals(cassette) == 1
    assert [i.request.path for i in load_cassette(cassette).interactions()] == ["/fresh"]


def test_several_leftover_journals_fold_oldest_first(tmp_path):
    cassette = tmp_path / "s.cassette"
    save_cassette(cassette, [make("/old")])
    first = leave_journal(cassette, [make("/a")], replace=False)
    older = first.with_name(".s.cassette.1.journal")
    first.rename(older)
    os.utime(older, (1_000_000, 1_000_000))
    leave_journal(cassette, [make("/b")], replace=False)
    assert recover_journals(cassette) == 2
    paths = [i.request.path for i in load_cassette(cassette).interactions()]
    assert paths == ["/old", "/a", "/b"]
    assert files_in(tmp_path) == {"s.cassette"}


@settings(max_examples=60, deadline=None)
@given(st.lists(interactions, min_size=1, max_size=4), st.booleans(), st.data())
def test_torn_last_journal_entry_recovers_the_complete_entries(items, replace, data):
    with tempfile.TemporaryDirectory() as d:
        cassette = Path(d) / "torn.cassette"
        journal = leave_journal(cassette, items, replace=replace)
        last = len(msgpack.packb(encode_interaction(items[-1]), use_bin_type=True))
        keep = data.draw(st.integers(0, last - 1), label="bytes of the last entry kept")
        raw = journal.read_bytes()
        journal.write_bytes(raw[: len(raw) - last + keep])
        assert recover_journals(cassette) == len(items) - 1
        if len(items) > 1:
            assert list(load_cassette(cassette).interactions()) == items[:-1]
        else:  # nothing complete: no cassette (a later `once` run records afresh)
            assert not cassette.exists()
        assert not journal.exists()


def test_journal_torn_inside_its_header_recovers_nothing(tmp_path):
    cassette = tmp_path / "h.cassette"
    journal = leave_journal(cassette, [], replace=True)
    header = journal.read_bytes()
    for n in range(len(header)):
        journal.write_bytes(header[:n])  # killed before the header was complete
        assert recover_journals(cassette) == 0
        assert not journal.exists()
        assert not cassette.exists()


def test_torn_journal_with_no_complete_entry_keeps_the_old_cassette(tmp_path):
    cassette = tmp_path / "keep.cassette"
    save_cassette(cassette, [make("/old")])
    before = cassette.read_bytes()
    journal = leave_journal(cassette, [make("/new")], replace=True)
    journal.write_bytes(journal.read_bytes()[:-3])
    assert recover_journals(cassette) == 0
    assert cassette.read_bytes() == before
    assert not journal.exists()


def test_garbage_after_a_journal_entry_keeps_what_came_before(tmp_path):
    cassette = tmp_path / "g.cassette"
    journal = leave_journal(cassette, [make("/1")], replace=False)
    with journal.open("ab") as f:
        f.write(b"\xc1\xc1 garbage" + msgpack.packb(encode_interaction(make("/2"))))
    assert recover_journals(cassette) == 1
    assert [i.request.path for i in load_cassette(cassette).interactions()] == ["/1"]
    assert files_in(tmp_path) == {"g.cassette", journal.name + ".damaged"}  # set aside


# -- stabilising re-recordings ---------------------------------------------------------


def test_rerecording_identical_traffic_gives_identical_bytes(tmp_path):
    cassette = tmp_path / "st.cassette"
    first = [make("/1", ttfb=0.01), make("/2", ttfb=0.02)]
    journal = Journal(cassette, replace=True)
    for it in first:
        journal.append(it)
    journal.commit()
    before = cassette.read_bytes()

    journal = Journal(cassette, replace=True)
    for it in first:
        journal.append(Interaction(it.request, it.response, it.recorded_at + 3600, 0.5, 0.9))
    journal.commit()
    assert cassette.read_bytes() == before


def test_rerecording_changed_traffic_takes_the_new_entries(tmp_path):
    cassette = tmp_path / "st.cassette"
    save_cassette(cassette, [make("/1", b"old"), make("/2")])
    journal = Journal(cassette, replace=True)
    journal.append(make("/1", b"new", ttfb=0.3))
    journal.append(make("/2", ttfb=0.4))
    journal.commit()
    got = list(load_cassette(cassette).interactions())
    assert got == [make("/1", b"new", ttfb=0.3), make("/2")]


def test_stabilise_consumes_identical_old_entries_in_order():
    old = [encode_interaction(make(ttfb=t)) for t in (0.1, 0.2)]
    new = [encode_interaction(make(ttfb=t)) for t in (0.7, 0.8, 0.9)]
    other = encode_interaction(make("/other", ttfb=0.5))
    stored = [journal._Stored.packed(e) for e in old]
    fresh = [journal._Stored.packed(e) for e in (*new, other)]
    out = journal._stabilise(stored, fresh, Quiet())
    assert out == [stored[0], stored[1], fresh[2], fresh[3]]
    assert journal._stabilise(stored, fresh, Quiet(keep=False)) == fresh


# -- damaged journals: checked as the loader checks, set aside, never blocking -------------


def raw_journal(cassette: Path, entries, *, replace=False, header=None) -> Path:
    """A journal left by a dead run, holding ``entries`` as they are (any types)."""
    path = cassette.parent / f".{cassette.name}.4242.journal"
    head = header if header is not None else {
        "format": "replayproxy-journal", "replace": replace, "version": FORMAT_VERSION}
    path.write_bytes(b"".join(msgpack.packb(x, use_bin_type=True) for x in [head, *entries]))
    return path


def retyped(entry, where, value):
    """``entry`` (nested tuples) with the item at index path ``where`` replaced."""
    if not where:
        return value
    items = list(entry)
    items[where[0]] = retyped(items[where[0]], where[1:], value)
    return tuple(items)


LEAVES = [(0, k) for k in range(9)] + [(1, k) for k in range(5)] + [(2,), (3,), (4,),
                                                                     (0, 6, 0, 1), (1, 2, 0, 0)]
ODD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1),
                       st.floats(), st.text(max_size=5), st.binary(max_size=5),
                       st.lists(st.integers(-9, 9), max_size=3), st.dictionaries(
                           st.text(max_size=3), st.integers(-9, 9), max_size=2))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(LEAVES), ODD_VALUES, st.booleans())
def test_a_wrong_typed_journal_entry_never_makes_the_cassette_unloadable(where, value,
                                                                          has_cassette):
    with tempfile.TemporaryDirectory() as d:
        cassette = Path(d) / "w.cassette"
        if has_cassette:
            save_cassette(cassette, [make("/old")])
        good = [encode_interaction(make(f"/{i}")) for i in range(3)]
        bad = retyped(good[1], where, value)
        journal = raw_journal(cassette, [good[0], bad, good[2]])
        try:
            decode_interaction(msgpack.unpackb(msgpack.packb(bad, use_bin_type=True),
                                               raw=False, use_list=False))
            fine = True
        except ValueError:
            fine = False
        recovered = recover_journals(cassette)
        assert recovered == (3 if fine else 2)
        loaded = load_cassette(cassette)  # whatever the journal held, the cassette loads
        paths = [it.request.path for it in loaded.interactions()]
        assert paths[-recovered:][0] == "/0" and paths[-1] == "/2"
        assert (not fine) == journal.with_name(journal.name + ".damaged").exists()
        assert not journal.exists()


def test_a_malformed_journal_entry_is_set_aside_with_one_warning_line(tmp_path, caplog):
    cassette = tmp_path / "m.cassette"
    good = [encode_interaction(make(f"/{i}")) for i in range(3)]
    journal = raw_journal(cassette, [good[0], retyped(good[1], (1, 3), 12), good[2]])
    with caplog.at_level("WARNING", logger="replayproxy"):
        assert recover_journals(cassette) == 2
    assert [i.request.path for i in load_cassette(cassette).interactions()] == ["/0", "/2"]
    kept = journal.with_name(journal.name + ".damaged")
    assert files_in(tmp_path) == {"m.cassette", kept.name}
    (message,) = caplog.messages
    assert "\n" not in message
    assert message == (f"journal {journal}: interaction #2 is malformed (the response body "
                       f"should be bytes but is int 12); 2 other interactions recovered, the "
                       f"journal is kept as {kept} (check it, then delete it)")
    assert pending_journals(cassette) == []  # set aside: not recovered again


@pytest.mark.parametrize("header", [
    {"format": "replayproxy-journal", "replace": True, "version": "1"},
    {"format": "replayproxy-journal", "replace": "yes", "version": 1},
    {"format": "replayproxy-journal", "replace": True, "version": 99},
    {"format": "replayproxy-cassette", "interactions": 1, "version": 1},
    [1, 2, 3],
])
def test_a_damaged_journal_header_does_not_block_the_cassette(tmp_path, caplog, header):
    cassette = tmp_path / "h.cassette"
    save_cassette(cassette, [make("/old")])
    before = cassette.read_bytes()
    journal = raw_journal(cassette, [encode_interaction(make("/new"))], header=header)
    with caplog.at_level("WARNING", logger="replayproxy"):
        assert recover_journals(cassette) == 0
    assert cassette.read_bytes() == before
    assert not journal.exists() and journal.with_name(journal.name + ".damaged").exists()
    (message,) = caplog.messages
    assert message.startswith(f"journal {journal}: its header is damaged (")
    assert "git checkout" not in message


def test_garbage_in_the_journal_header_bytes_does_not_block_the_cassette(tmp_path, caplog):
    cassette = tmp_path / "g.cassette"
    journal = cassette.parent / f".{cassette.name}.77.journal"
    journal.write_bytes(b"\xc1\xc1\xc1" + msgpack.packb(encode_interaction(make())))
    with caplog.at_level("WARNING", logger="replayproxy"):
        assert recover_journals(cassette) == 0
    assert "its header is damaged (unreadable header: " in caplog.messages[0]
    assert not cassette.exists() and pending_journals(cassette) == []


def test_a_corrupt_journal_advises_deleting_it_not_restoring_it_from_git(tmp_path):
    from replayproxy.cassette.format import corrupt_error
    message = str(corrupt_error(tmp_path / ".c.cassette.1.journal", "why"))
    assert "git checkout" not in message and f"rm {tmp_path}/.c.cassette.1.journal" in message
    assert "git checkout" in str(corrupt_error(tmp_path / "c.cassette", "why"))


def test_a_wrong_typed_cassette_entry_is_rejected_at_load_naming_file_and_entry(tmp_path):
    good = encode_interaction(make())
    path = tmp_path / "t.cassette"
    for where, value, why in [
        ((1, 3), 12, "interaction #2 has a malformed response body (not bytes)"),
        ((1, 0), "200", "interaction #2 has a malformed response (the status should be a "
                        "whole number from 0 to 999 but is str '200')"),
        ((0, 3), 70000, "interaction #2 has a malformed request (the port should be a whole "
                        "number from 0 to 65535 but is int 70000)"),
        ((2,), float("inf"), "interaction #2 has malformed timings (the recording time "
                             "should be a finite number but is float inf)"),
        ((0, 7), "text", "interaction #2 has a malformed request (the body should be bytes "
                         "but is str 'text')"),
    ]:
        path.write_bytes(header_bytes(interactions=2) + msgpack.packb(
            [good, retyped(good, where, value)], use_bin_type=True))
        assert why in load_error(path)
