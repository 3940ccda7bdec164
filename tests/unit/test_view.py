"""Readable views: decoded, pretty-printed bodies and one-line summaries."""

import gzip
import json
import zlib

import brotli
import pytest
import zstandard

from replayproxy.cassette.view import (
    decode_body,
    format_size,
    render_body,
    render_interaction,
    summary_line,
)
from tests.factories import JSON, interaction, request, response

DOC = {"id": "ch_1", "amount": 2000, "currency": "eur", "tags": ["a", "é"]}
RAW = json.dumps(DOC).encode()
PRETTY = json.dumps(DOC, indent=2, ensure_ascii=False)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"


def raw_deflate(data):
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
    "identity": lambda d: d,
}


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_encoded_bodies_are_decoded(encoding):
    body = ENCODERS[encoding](RAW)
    assert decode_body(body, (("Content-Encoding", encoding),)) == RAW
    headers = (("content-encoding", encoding.upper()), ("Content-Type", "application/json"))
    assert render_body(body, headers) == PRETTY


def test_raw_deflate_is_decoded_too():
    assert decode_body(raw_deflate(RAW), (("Content-Encoding", "deflate"),)) == RAW


def test_stacked_encodings_are_undone_last_first():
    body = gzip.compress(brotli.compress(RAW))  # Content-Encoding lists br, then gzip
    assert decode_body(body, (("Content-Encoding", "br, gzip"),)) == RAW


def test_no_content_encoding_leaves_the_body_alone():
    assert decode_body(b"\x1f\x8b raw", ()) == b"\x1f\x8b raw"


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "compress"])
def test_undecodable_bodies_are_summarised(encoding):
    headers = (("Content-Encoding", encoding),)
    assert decode_body(b"not compressed at all", headers) is None
    assert render_body(b"not compressed at all", headers) == f"<21 B, undecodable {encoding}>"


def test_json_is_pretty_printed_by_content_type_or_by_shape():
    assert render_body(RAW, (("Content-Type", "application/json; charset=utf-8"),)) == PRETTY
    assert render_body(RAW, ()) == PRETTY
    assert render_body(b"[1,2]", (("Content-Type", "application/vnd.api+json"),)) == (
        "[\n  1,\n  2\n]"
    )


def test_invalid_json_is_shown_as_text():
    assert render_body(b"{not json", (("Content-Type", "application/json"),)) == "{not json"


def test_text_is_shown_as_is():
    assert render_body("héllo\nworld\t!".encode(), (("Content-Type", "text/plain"),)) == (
        "héllo\nworld\t!"
    )
    assert render_body(b"plain words", ()) == "plain words"


def test_binary_is_summarised():
    png = render_body(PNG, (("Content-Type", "image/png"),))
    assert png == f"<binary, {len(PNG)} B, image/png>"
    assert render_body(b"\x00\x01\x02", ()) == "<binary, 3 B, no content-type>"
    assert render_body(b"\xff\xfe text", (("Content-Type", "text/plain"),)).startswith(
        "<binary, 7 B"
    )


def test_long_text_is_cut():
    text = "x" * 25
    assert render_body(text.encode(), (), max_chars=10) == "x" * 10 + "\n… (15 more characters)"
    assert render_body(text.encode(), (), max_chars=25) == text
    long_json = json.dumps(list(range(2000))).encode()
    rendered = render_body(long_json, (("Content-Type", "application/json"),))
    assert rendered.startswith("[\n  0,\n  1,") and rendered.endswith("more characters)")
    assert len(rendered) < 4100


def test_empty_body_renders_as_nothing():
    assert render_body(b"", (("Content-Type", "application/json"),)) == ""


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (1536, "1.5 KB"),
     (5 * 1024 * 1024, "5.0 MB"), (3 * 1024**3, "3.0 GB"), (5 * 1024**4, "5120.0 GB")],
)
def test_format_size(n, text):
    assert format_size(n) == text


def charge():
    return interaction(
        request("POST", "/v1/charges?x=1", headers=JSON, body=b'{"amount":5}'),
        response(201, gzip.compress(RAW), headers=[("Content-Encoding", "gzip"), *JSON]),
        recorded_at=1_700_000_000.0, ttfb=0.0125, duration=0.0301,
    )


def test_summary_line():
    it = charge()
    size = format_size(len(it.response.body))
    assert summary_line(3, it) == (
        f"#3   POST https://api.example.com/v1/charges?x=1 -> 201 Created"
        f"  req 12 B  resp {size} gzip"
    )


def test_summary_line_without_reason_or_encoding():
    it = interaction(request("GET", "http://h:8080/"), response(204, reason=""))
    assert summary_line(12, it) == "#12  GET http://h:8080/ -> 204  req 0 B  resp 0 B"


def test_render_interaction_shows_timing_headers_and_decoded_bodies():
    lines = list(render_interaction(1, charge()))
    assert lines[0] == summary_line(1, charge())
    assert lines[1] == (
        "  recorded 2023-11-14 22:13:20 UTC, first byte 12.5 ms, total 30.1 ms, HTTP/1.1"
    )
    text = "\n".join(lines)
    assert "  request headers:\n    Content-Type: application/json" in text
    assert "  request body:\n    {\n      \"amount\": 5\n    }" in text
    assert "    Content-Encoding: gzip" in text
    assert '  response body:\n    {\n      "id": "ch_1",' in text
