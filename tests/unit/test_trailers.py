"""Response trailers (issue 13): redacted like headers, found by the scanner, kept by
the cassette."""

from __future__ import annotations

from dataclasses import replace

from replayproxy.cassette.store import CassetteFile
from replayproxy.model import Interaction, Request, Response
from replayproxy.redaction.redactor import Redactor
from replayproxy.redaction.scan import scan_interaction

STRIPE = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
R = Redactor(key=b"unit-test-redaction-key")


def _it(trailers: tuple[tuple[str, str], ...], request_headers: tuple[tuple[str, str], ...] = ()
        ) -> Interaction:
    return Interaction(
        Request("POST", "https", "api.example.com", 443, "/demo.Greeter/Hello",
                headers=(("content-type", "application/grpc"), *request_headers),
                body=b"\x00\x00\x00\x00\x02\x08\x01", http_version="HTTP/2.0"),
        Response(200, headers=(("content-type", "application/grpc"),),
                 body=b"\x00\x00\x00\x00\x02\x08\x02", http_version="HTTP/2.0",
                 trailers=trailers))


def test_secret_trailer_is_redacted_and_plain_ones_kept() -> None:
    it = _it((("grpc-status", "0"), ("x-api-key", "k-1234567890abcdef"),
              ("grpc-message", f"bad key {STRIPE}")))
    out = R.redact(it).response.trailers
    assert out[0] == ("grpc-status", "0")
    assert out[1][0] == "x-api-key" and out[1][1].startswith("<redacted:x-api-key:")
    assert STRIPE not in out[2][1] and "<redacted:" in out[2][1]
    assert scan_interaction(R.redact(it)) == []


def test_a_token_sent_in_a_request_header_is_replaced_in_the_trailers_too() -> None:
    token = "tok-abcdef-0123456789"
    it = _it((("grpc-status", "16"), ("grpc-message", f"token {token} expired")),
             (("authorization", f"Bearer {token}"),))
    out = R.redact(it)
    assert token not in repr(out)
    assert out.response.trailers[1][1].startswith("token <redacted:authorization:")


def test_redacting_without_secrets_keeps_trailers() -> None:
    it = _it((("grpc-status", "0"), ("grpc-message", "")))
    assert R.redact(it).response.trailers == it.response.trailers


def test_scanner_finds_a_secret_left_in_a_trailer() -> None:
    it = _it((("grpc-status", "0"), ("x-leak", STRIPE)))
    findings = scan_interaction(it)
    assert [(f.location, f.rule) for f in findings] == [
        ("response trailer header x-leak", "stripe-key")]


def test_trailers_survive_the_cassette() -> None:
    it = _it((("grpc-status", "5"), ("grpc-message", "not found")))
    cassette = CassetteFile.from_interactions("c", [it, replace(it, response=Response(204))])
    assert "trailers" in cassette.features
    assert cassette.interaction(0).response.trailers == it.response.trailers
    assert cassette.interaction(1).response.trailers == ()
