"""Big response bodies served from the cassette's bytes in place (no copy)."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from replayproxy.cassette.format import _skip, body_span, encode_interaction, pack_around
from replayproxy.cassette.store import LEAN_ABOVE, load_cassette, save_cassette
from replayproxy.matching.index import ReplayIndex
from replayproxy.model import Interaction, Request, Response


@pytest.mark.parametrize("value", [
    None, True, False, 0, 127, 128, 255, 65535, 2**32, 2**63, -1, -33, -129, -40000,
    -2**40, 1.5, "", "x" * 31, "y" * 32, "z" * 300, "w" * 70000, b"", b"b" * 300,
    b"c" * 70000, [], [1] * 15, [2] * 16, [3] * 70000, {}, {"a": 1}, {str(i): i for i in
    range(20)}, msgpack.ExtType(1, b"x"), msgpack.ExtType(2, b"y" * 16),
    msgpack.ExtType(3, b"z" * 17), [{"k": [b"v", None, {"n": -5}]}],
])
def test_skip_walks_every_msgpack_kind(value):
    data = msgpack.packb(value, use_bin_type=True) + b"\xc0"
    assert _skip(memoryview(data), 0) == len(data) - 1


def _big(size: int, chunks: bool = True) -> Interaction:
    body = bytes(range(256)) * (size // 256)
    return Interaction(
        Request("GET", "https", "api.test", 443, f"/big/{size}", "q=1", (("Accept", "*/*"),)),
        Response(200, "OK", (("Content-Type", "application/octet-stream"),), body),
        recorded_at=1.7e9, ttfb=0.01, duration=2.0,
        chunks=((0.01, size // 2), (1.5, size - size // 2)) if chunks else (),
        cut="")


def test_body_span_finds_the_response_body():
    it = _big(4096)
    data = msgpack.packb(encode_interaction(it), use_bin_type=True)
    head, start, end = body_span(memoryview(data))
    assert data[start:end] == it.response.body and data[head] == 0xc5


def test_lean_leaves_a_big_body_in_place(tmp_path):
    big, small = _big(LEAN_ABOVE + 256), _big(1024, chunks=False)
    path = tmp_path / "big.cassette"
    save_cassette(path, [small, big])
    cassette = load_cassette(path)
    lean, body = cassette.lean(1)
    assert body is not None and body.obj is cassette._data  # a view, not a copy
    assert bytes(body) == big.response.body
    assert lean.response.body == b"" and lean.chunks == big.chunks
    assert lean.request == big.request and cassette.request(1) == big.request
    assert cassette.lean(0) == (small, None)
    index = ReplayIndex(cassette)
    served = index.match(big.request)
    assert served is not None and served.body is not None
    assert served.interaction.response.body == b"" and served.whole() == big


def test_lean_checks_chunks_against_the_real_length(tmp_path):
    big = _big(LEAN_ABOVE + 256)
    path = tmp_path / "bad.cassette"
    entry = encode_interaction(big)
    bad = (*entry[:5], {"chunks": ((0.1, 5),)})
    save_cassette(path, [bad])
    with pytest.raises(Exception, match="chunks add up to 5 bytes but the body has"):
        load_cassette(path).lean(0)


@pytest.mark.parametrize("size", [0, 255, 256, 65535, 65536, LEAN_ABOVE + 256])
def test_pack_around_a_body_is_packb(size):
    it = _big(size)
    before, after = pack_around(it, len(it.response.body))
    assert before + it.response.body + after == msgpack.packb(encode_interaction(it),
                                                             use_bin_type=True)
    # the body given is not looked at: the parts are the same without it
    empty = dataclasses.replace(it, response=dataclasses.replace(it.response, body=b""))
    assert pack_around(empty, len(it.response.body)) == (before, after)


def test_journal_writes_a_big_body_in_parts(tmp_path):
    from replayproxy.cassette.journal import Journal

    big = _big(LEAN_ABOVE + 256)
    journal = Journal(tmp_path / "big.cassette", replace=False)
    journal.append(big)
    journal.commit()
    assert load_cassette(tmp_path / "big.cassette").interaction(0) == big


# -- indexing a window at a time, mapped files ----------------------------------------


def _many(count: int) -> list[Interaction]:
    return [Interaction(
        Request("POST", "https", "api.test", 443, f"/item/{i}", f"n={i}",
                (("Content-Type", "application/json"),), b'{"n": %d}' % i),
        Response(200, "OK", (("Content-Type", "application/json"),), b'{"ok": %d}' % i),
        recorded_at=1.7e9 + i, ttfb=0.01, duration=0.02) for i in range(count)]


@pytest.mark.parametrize("window", [64, 200, 1000, 1 << 20])
def test_indexing_a_window_at_a_time_finds_every_entry(tmp_path, monkeypatch, window):
    """Whatever the window, entries it ends inside are walked again from their start (a
    bigger window when one entry does not fit), and big bodies are stepped over."""
    from replayproxy.cassette import format as cassette_format

    monkeypatch.setattr(cassette_format, "WINDOW", window)
    items = _many(40)
    items[7] = _big(4096)
    items[30] = _big(70_000, chunks=False)
    path = tmp_path / "many.cassette"
    save_cassette(path, items)
    cassette = load_cassette(path)
    assert len(cassette) == 40
    assert list(cassette.interactions()) == items


def test_a_file_cut_inside_a_body_the_window_steps_over_is_corrupt(tmp_path, monkeypatch):
    from replayproxy.cassette import format as cassette_format
    from replayproxy.errors import CassetteError

    monkeypatch.setattr(cassette_format, "WINDOW", 256)
    path = tmp_path / "cut.cassette"
    save_cassette(path, [*_many(3), _big(70_000)])
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 40_000])
    with pytest.raises(CassetteError, match="ends before its last interaction"):
        load_cassette(path)
    path.write_bytes(data + b"\xc0")
    with pytest.raises(CassetteError, match="unexpected data after the interactions"):
        load_cassette(path)


def test_a_big_cassette_file_is_mapped_and_its_bodies_are_views_of_the_map(
        tmp_path, monkeypatch):
    import mmap

    from replayproxy.cassette import store

    monkeypatch.setattr(store, "MAP_ABOVE", 1024)
    big = _big(LEAN_ABOVE + 256)
    path = tmp_path / "mapped.cassette"
    save_cassette(path, [*_many(3), big])
    cassette = load_cassette(path)
    assert isinstance(cassette._data, mmap.mmap)
    lean, body = cassette.lean(3)
    assert body is not None and body.obj is cassette._data
    store.release_pages(body)  # the pages are read again from the page cache
    assert bytes(body) == big.response.body and cassette.interaction(3) == big
    # the file may be replaced while it is mapped: the map keeps the old one
    save_cassette(path, _many(2))
    assert bytes(body) == big.response.body
    assert len(load_cassette(path)) == 2


# -- folding journals by copying entries ------------------------------------------------


@pytest.fixture
def small_windows(monkeypatch):
    """Thresholds small enough that a test's bodies take the paths a 200 MB body takes:
    the file mapped, the body stepped over and compared by digest, copied in pieces."""
    from replayproxy.cassette import format as cassette_format
    from replayproxy.cassette import journal, store

    monkeypatch.setattr(cassette_format, "WINDOW", 4096)
    monkeypatch.setattr(journal, "WINDOW", 4096)
    monkeypatch.setattr(store, "MAP_ABOVE", 1024)
    monkeypatch.setattr(journal, "LEAN_ABOVE", 2048)
    monkeypatch.setattr(journal, "_COPY", 1000)


def test_a_journal_with_big_bodies_folds_by_copying_them(tmp_path, small_windows):
    from replayproxy.cassette.journal import Journal

    path = tmp_path / "big.cassette"
    items = [*_many(3), _big(70_144), *_many(2), _big(9216, chunks=False)]
    journal = Journal(path, replace=False)
    for it in items:
        journal.append(it)
    journal.commit()
    data = path.read_bytes()
    assert list(load_cassette(path).interactions()) == items
    save_cassette(tmp_path / "same.cassette", items)  # the bytes dumps would give
    assert (tmp_path / "same.cassette").read_bytes() == data


def test_rerecording_an_unchanged_big_body_keeps_the_file_and_a_changed_one_replaces_it(
        tmp_path, small_windows):
    import dataclasses

    from replayproxy.cassette.journal import Journal

    path = tmp_path / "big.cassette"
    first = [*_many(2), _big(70_144)]
    save_cassette(path, first)
    before = path.read_bytes()
    journal = Journal(path, replace=True)
    for it in first:  # re-recorded: new timings, same content
        journal.append(dataclasses.replace(it, ttfb=0.5, duration=3.0))
    journal.commit()
    assert path.read_bytes() == before

    changed = first[2].response.body[:-1] + b"!"
    journal = Journal(path, replace=True)
    for it in first[:2]:
        journal.append(it)
    journal.append(dataclasses.replace(first[2], response=dataclasses.replace(
        first[2].response, body=changed)))
    journal.commit()
    got = load_cassette(path)
    assert got.interaction(2).response.body == changed
    assert [got.interaction(i) for i in range(2)] == first[:2]


def test_a_torn_big_entry_at_the_end_of_a_journal_is_dropped_silently(
        tmp_path, small_windows, caplog):
    from replayproxy.cassette.journal import Journal, recover_journals

    path = tmp_path / "torn.cassette"
    journal = Journal(path, replace=False)
    for it in (*_many(2), _big(70_144)):
        journal.append(it)
    leftover = journal.path
    journal._file.close()  # the writer was killed: its lock is gone, the journal stays
    data = leftover.read_bytes()
    leftover.write_bytes(data[:len(data) - 30_000])
    with caplog.at_level("WARNING", logger="replayproxy"):
        assert recover_journals(path) == 2
    assert list(load_cassette(path).interactions()) == _many(2)
    assert not caplog.messages and not leftover.exists()
