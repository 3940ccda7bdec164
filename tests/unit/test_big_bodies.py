"""Big response bodies redacted and scanned a window at a time (``redaction.big``).

The windows are made small here, so a few kilobytes take every path a 200 MB body
takes; each test compares with what the whole-body redactor does with the same body."""

from __future__ import annotations

import gzip
import io
import json
import logging

import brotli
import pytest

from replayproxy.model import Interaction, Request, Response
from replayproxy.redaction import big
from replayproxy.redaction.redactor import RedactionConfig, Redactor
from replayproxy.streams import BodyFile

KEY = b"k" * 32
AWS = "AKIAABCDEFGHIJKLMNOP"
TOKEN = "tok_9f8e7d6c5b4a39281706"


@pytest.fixture(autouse=True)
def small_windows(monkeypatch):
    monkeypatch.setattr(big, "WINDOW", 1000)
    monkeypatch.setattr(big, "OVERLAP", 300)


def _file(data: bytes) -> BodyFile:
    body = BodyFile.new()
    body.write(data)
    return body


def _interaction(body: bytes, content_type: str = "application/json",
                 encoding: str | None = None, chunks=None) -> Interaction:
    headers = [("Content-Type", content_type)]
    if encoding:
        headers.append(("Content-Encoding", encoding))
    return Interaction(
        Request("GET", "https", "api.test", 443, "/feed",
                headers=(("Authorization", f"Bearer {TOKEN}"),)),
        Response(200, "OK", tuple(headers), body),
        chunks=chunks if chunks is not None else ((0.0, len(body)),))


def _lines(n: int = 60) -> bytes:
    """JSON lines whose secrets fall at many offsets, some across window edges."""
    out = []
    for i in range(n):
        doc = {"i": i, "pad": "x" * (i * 7 % 90), "note": f"echo {TOKEN}" if i % 7 == 0 else "",
               "password": f"pw-{i}-long-enough" if i % 5 == 0 else "", "pin": 4711 + i,
               "text": f"key {AWS} here" if i % 11 == 0 else "plain"}
        out.append(json.dumps(doc).encode() + b"\n")
    return b"".join(out)


def _both(it: Interaction, config: RedactionConfig | None = None
          ) -> tuple[Interaction, bytes, Interaction]:
    redactor = Redactor(config or RedactionConfig(), KEY)
    lean = Interaction(it.request, Response(it.response.status, it.response.reason,
                                            it.response.headers, b""), chunks=it.chunks)
    source = _file(it.response.body)
    got, out = big.redact_big(redactor, lean, source)
    data = b"".join(out.windows(1 << 20))
    out.close()
    source.close()
    return got, data, redactor.redact(it)


def test_a_big_json_lines_body_is_redacted_as_the_whole_body_would_be():
    body = _lines()
    got, data, whole = _both(_interaction(body, "application/x-ndjson"))
    for secret in (TOKEN, AWS, "pw-0-long-enough", "pw-55-long-enough"):
        assert secret.encode() not in data
    assert data.count(b"<redacted:") >= body.count(TOKEN.encode()) + body.count(AWS.encode())
    # the same secrets, the same placeholders, everywhere the whole-body redactor puts them
    assert data == whole.response.body
    assert got.request == whole.request
    assert sum(n for _, n in got.chunks) == len(data)


def test_secret_json_numbers_become_placeholder_strings():
    body = b"".join(json.dumps({"i": i, "pin": 1000 + i}).encode() + b"\n" for i in range(80))
    config = RedactionConfig(fields=frozenset({"pin"}))
    _, data, whole = _both(_interaction(body), config)
    assert b'"pin": 1042' not in data and b'"pin": "<redacted:pin:' in data
    assert data == whole.response.body


def test_event_boundaries_stay_chunk_boundaries_when_lengths_change():
    events = [f"id: {n}\ndata: {json.dumps({'n': n, 'access_token': TOKEN + str(n)})}\n\n"
              .encode() for n in range(40)]
    body = b"".join(events)
    chunks = tuple((0.1 * n, len(e)) for n, e in enumerate(events))
    got, data, whole = _both(_interaction(body, "text/event-stream", chunks=chunks))
    assert TOKEN.encode() not in data and data == whole.response.body
    pieces, at = [], 0
    for _, n in got.chunks:
        pieces.append(data[at:at + n])
        at += n
    assert at == len(data) and len(pieces) == 40
    assert all(p.startswith(b"id: %d\n" % n) and p.endswith(b"\n\n")
               for n, p in enumerate(pieces))
    assert [t for t, _ in got.chunks] == [t for t, _ in chunks]


def test_a_gzip_body_is_decoded_redacted_and_encoded_again():
    plain = _lines()
    got, data, _ = _both(_interaction(gzip.compress(plain), encoding="gzip"))
    assert dict(got.response.headers)["Content-Encoding"] == "gzip"
    text = gzip.decompress(data)
    assert TOKEN.encode() not in text and AWS.encode() not in text
    assert text.count(b"\n") == plain.count(b"\n")


def test_a_br_body_that_needs_a_replacement_is_written_decoded():
    plain = _lines()
    got, data, _ = _both(_interaction(brotli.compress(plain), encoding="br"))
    assert "Content-Encoding" not in dict(got.response.headers)
    assert TOKEN.encode() not in data and data.count(b"\n") == plain.count(b"\n")


def test_a_clean_body_is_the_same_file_untouched():
    body = b"".join(b'{"i": %d, "ok": true}\n' % i for i in range(200))
    redactor = Redactor(RedactionConfig(), KEY)
    source = _file(body)
    it = Interaction(Request("GET", "https", "api.test", 443, "/clean"),
                     Response(200, "OK", (("Content-Type", "application/json"),), b""),
                     chunks=((0.0, len(body)),))
    got, out = big.redact_big(redactor, it, source)
    assert out is source and got.chunks == it.chunks
    source.close()


def test_the_scanner_finds_a_secret_once_even_across_windows(monkeypatch):
    body = io.BytesIO()
    for i in range(50):
        body.write(b"x" * (97 + i) + b"\n")
    body.write(b"... " + AWS.encode() + b" ...\n")
    data = body.getvalue()
    it = Interaction(Request("GET", "https", "api.test", 443, "/f"),
                     Response(200, "OK", (("Content-Type", "text/plain"),), b""))
    source = _file(data)
    findings = big.scan_big_interaction(it, source, RedactionConfig())
    source.close()
    assert [(f.location, f.rule) for f in findings] == [("response body", "aws-access-key")]


def test_jsonpath_rules_are_said_not_to_apply(caplog):
    config = RedactionConfig(json_paths=("$.deep.secret",))
    with caplog.at_level(logging.WARNING, logger="replayproxy"):
        _both(_interaction(_lines()), config)
    assert any("JSONPath redaction rules are not applied" in m for m in caplog.messages)


def test_a_body_over_what_a_cassette_holds_is_one_error_and_nothing_is_written(tmp_path):
    """msgpack's ``bin 32`` holds 4 GiB - 1 bytes: a longer stream (an endless one a
    client read for hours) is refused in one line; the journal stays loadable."""
    from replayproxy.cassette.format import MAX_BODY
    from replayproxy.cassette.journal import Journal
    from replayproxy.cassette.store import load_cassette
    from replayproxy.errors import CassetteError

    journal = Journal(tmp_path / "huge.cassette", replace=False)
    small = _interaction(b"ok")
    journal.append(small)
    body = _file(b"x" * 10)
    body.size = MAX_BODY + 1  # as if: the check comes before any byte is copied
    with pytest.raises(CassetteError, match=r"GET https://api.test/feed is 4,294,967,296 "
                                            r"bytes, more than a cassette holds"):
        journal.append(_interaction(b""), body)
    body.close()
    journal.commit()
    assert list(load_cassette(tmp_path / "huge.cassette").interactions()) == [small]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "br"])
def test_a_well_compressed_body_is_decoded_in_bounded_pieces(encoding):
    """A body that inflates a thousandfold (a "zip bomb" upstream) comes out a window at
    a time, never in one piece its compressed size does not announce (brotli's decoder
    takes no output limit: only its input is fed 16 KiB at a time)."""
    import zlib

    import zstandard

    plain = b"\0" * 2_000_000
    packed = {"gzip": lambda d: gzip.compress(d), "deflate": zlib.compress,
              "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
              "br": brotli.compress}[encoding](plain)
    assert len(packed) < 10_000
    source = _file(packed)
    pieces = list(big._decoded(source, encoding))
    source.close()
    assert b"".join(pieces) == plain
    if encoding != "br":
        assert max(len(p) for p in pieces) <= 1000


# -- bounded decoding -------------------------------------------------------------------


def test_decoding_is_bounded_and_refuses_what_would_grow_too_big():
    import zlib

    from replayproxy import codec

    gz = (("Content-Encoding", "gzip"),)
    assert codec.decode_body(gzip.compress(b"hello"), gz) == b"hello"
    bomb = gzip.compress(b"\0" * 3_000_000)
    assert codec.decode_body(bomb, gz, limit=2_000_000) is None  # as undecodable
    assert codec.decode_body(bomb, gz) == b"\0" * 3_000_000
    assert codec.decode_body(gzip.compress(b"x" * 5000)[:-20], gz) is None  # truncated
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = raw.compress(b"raw deflate") + raw.flush()
    assert codec.decode_body(deflated, (("Content-Encoding", "deflate"),)) == b"raw deflate"
    assert codec.decode_body(zlib.compress(b"zlib"), (("Content-Encoding", "deflate"),)) \
        == b"zlib"
    assert codec.decoded_over(bomb, gz, 2_999_999) and not codec.decoded_over(bomb, gz,
                                                                             3_000_000)
    assert not codec.decoded_over(b"not gzip", gz, 1)


def test_a_small_compressed_body_that_decodes_big_is_redacted_a_window_at_a_time(
        tmp_path, monkeypatch):
    """Small on the wire, big decoded (a gzip body of a few kilobytes): recorded through
    the windowed redactor, its secrets replaced, never decoded whole."""
    from replayproxy.cassette.store import cassette_path, load_cassette
    from replayproxy.decision import session as session_module
    from replayproxy.decision.session import CassetteSession
    from replayproxy.model import RecordMode

    monkeypatch.setattr(session_module, "BIG_BODY", 20_000)
    plain = _lines(400)
    assert len(plain) > 20_000
    body = gzip.compress(plain)
    assert len(body) < 20_000
    seen = []
    real = big.redact_big
    monkeypatch.setattr(session_module, "redact_big",
                        lambda *a: seen.append(a[2].size) or real(*a))
    writer = CassetteSession(tmp_path, "gz", RecordMode.ALL, redactor=Redactor(key=KEY))
    assert writer.record(_interaction(body, encoding="gzip")) == []
    writer.close()
    assert seen == [len(body)]
    stored = load_cassette(cassette_path(tmp_path, "gz")).interaction(0).response
    text = gzip.decompress(stored.body)
    assert AWS.encode() not in text and TOKEN.encode() not in text
    assert text.count(b"\n") == plain.count(b"\n")
