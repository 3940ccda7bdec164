"""``[redact] defaults = false`` and ``[redact] scan = false`` (#15): turning the built-in
redaction rules off leaves the fail-closed scanner on; only ``scan = false`` turns it off."""

from __future__ import annotations

from pathlib import Path

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.config import load_settings
from replayproxy.decision.session import CassetteSession
from replayproxy.model import RecordMode
from replayproxy.redaction.redactor import RedactionConfig, Redactor
from tests.factories import interaction, request, response

BEARER = "Bearer abcdefgh12345678"


def _record(tmp_path: Path, toml: str) -> tuple[list[str], int]:
    config = tmp_path / "replayproxy.toml"
    config.write_text(toml)
    settings = load_settings(config)
    session = CassetteSession(tmp_path, "c", RecordMode.ALL,
                              redactor=Redactor(settings.redact, key=b"k"))
    findings = session.record(interaction(request("GET", "/me", headers=[
        ("Authorization", BEARER)]), response()))
    session.close()
    path = cassette_path(tmp_path, "c")
    return [f.rule for f in findings], len(load_cassette(path)) if path.exists() else 0


def test_without_the_default_rules_a_bearer_token_is_refused_not_written(tmp_path):
    assert _record(tmp_path, "[redact]\ndefaults = false\n") == (["authorization"], 0)


def test_only_scan_false_lets_it_through(tmp_path):
    assert _record(tmp_path, "[redact]\ndefaults = false\nscan = false\n") == ([], 1)


def test_the_default_rules_redact_it_and_nothing_is_found(tmp_path):
    assert _record(tmp_path, "[redact]\n") == ([], 1)


def test_no_warning_with_both_switches_on():
    assert RedactionConfig().warnings() == []
