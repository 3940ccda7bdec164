"""How the CLI words things: one pluralisation helper, one `replayproxy: ` prefix per
line, interactions numbered from 1 in the end-of-run report."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, save_cassette
from replayproxy.cli.output import plural, report_run, setup_logging
from replayproxy.decision.session import CassetteSession, SessionSummary
from replayproxy.model import RecordMode
from tests.factories import interaction, request, response
from tests.unit.cli_runner import cli_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("cli")  # restores the loggers setup_logging changes

JSON_TYPE = (("Content-Type", "application/json"),)


@pytest.mark.parametrize(("count", "noun", "nouns", "expected"), [
    (0, "interaction", None, "0 interactions"),
    (1, "interaction", None, "1 interaction"),
    (2, "secret", None, "2 secrets"),
    (1, "request", None, "1 request"),
    (3, "recorded interaction", None, "3 recorded interactions"),
    (1, "entry", "entries", "1 entry"),
    (2, "entry", "entries", "2 entries"),
])
def test_plural(count, noun, nouns, expected):
    assert plural(count, noun, nouns) == expected


def _stderr_after(capsys, log) -> list[str]:
    setup_logging(quiet=False)
    log()
    err: str = capsys.readouterr().err
    return err.splitlines()


def test_log_lines_have_one_prefix(capsys):
    def log():
        logging.getLogger("replayproxy").warning("cassette x: 1 replayed")
        logging.getLogger("replayproxy.engines").warning("replayproxy: no recorded interaction")

    assert _stderr_after(capsys, log) == ["replayproxy: cassette x: 1 replayed",
                                          "replayproxy: no recorded interaction"]


@pytest.fixture
def summary(tmp_path: Path) -> SessionSummary:
    """A replay of cassette ``shop`` (#1 GET /a, #2 POST /charges, #3 GET /c) that
    served #1, missed a POST whose amount changed, and never used #2 and #3."""
    charge = interaction(request("POST", "/charges", json={"amount": 1200}), response(201))
    save_cassette(cassette_path(tmp_path, "shop"),
                  [interaction("/a"), charge, interaction("/c")])
    session = CassetteSession(tmp_path, "shop", RecordMode.NONE)
    session.decide(request("GET", "/a"))
    session.decide(request("POST", "/charges", json={"amount": 1500}))
    return session.close()


def test_report_numbers_interactions_from_1(summary, capsys):
    lines = _stderr_after(capsys, lambda: report_run(summary, fail_on_unused=True))
    assert lines[0].endswith("shop.cassette: 1 replayed, 0 recorded")
    assert "replayproxy: 1 request matched nothing in cassette shop:" in lines
    assert "replayproxy:   unmatched: POST https://api.example.com/charges" in lines
    assert "replayproxy:     Closest recorded: #2 POST https://api.example.com/charges" in lines
    start = lines.index("replayproxy: 2 recorded interactions in cassette shop were never used:")
    assert [line.split()[1] for line in lines[start + 1:]] == ["#2", "#3"]
    assert not any(line.startswith("replayproxy: replayproxy:") for line in lines)


def test_report_of_one_unused_interaction_says_was(summary, capsys):
    summary.unused, summary.unused_interactions = summary.unused[:1], \
        summary.unused_interactions[:1]
    lines = _stderr_after(capsys, lambda: report_run(summary))
    assert "replayproxy: 1 recorded interaction in cassette shop was never used:" in lines


@pytest.mark.parametrize(("text", "shown"), [
    ("GET /a\x1b[31mred\x1b[0m", "GET /a\\x1b[31mred\\x1b[0m"),
    ("carriage\rreturn\x07bell", "carriage\\x0dreturn\\x07bell"),
    ("tab\tand\nnewline stay", "tab\tand\nnewline stay"),
    ("\x9bcsi", "\\x9bcsi"),
])
def test_client_text_is_terminal_safe(text, shown):
    from replayproxy.cli.output import terminal_safe

    assert terminal_safe(text) == shown


def test_a_megabyte_url_is_shortened():
    from replayproxy.cli.output import MAX_LINE, terminal_safe

    url = "http://api.example.com/" + "a" * 1_000_000
    shown = terminal_safe(url)
    assert len(shown) < MAX_LINE + 40
    assert shown.startswith("http://api.example.com/aaa") and "characters]…" in shown
