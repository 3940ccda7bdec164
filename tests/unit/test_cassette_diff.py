"""``replayproxy.cassette.diff`` and the text form for git (#15)."""

from __future__ import annotations

import gzip

from replayproxy.cassette.diff import compare, diff_cassettes, pair_up, render_diff
from replayproxy.cassette.store import cassette_path, save_cassette
from replayproxy.cassette.view import render_text
from tests.factories import interaction, request, response
from tests.unit.cli_runner import cli_fixture, error_line  # noqa: F401

A = interaction("/a", response(json={"id": "x1", "amount": 1200, "items": [1, 2]}))
B = interaction("/b", "b")


def test_identical_interactions_have_no_changes():
    assert compare(A, A) == []


def test_json_bodies_compare_as_json_per_path():
    same_json_other_bytes = interaction("/a", response(
        body=b'{"items":[1,2],"amount":1200,"id":"x1"}',
        headers=[("Content-Type", "application/json")]))
    assert compare(A, same_json_other_bytes) == []
    changed = interaction("/a", response(json={"id": "x1", "amount": 1500, "items": [1, 2, 3],
                                               "new": True}))
    assert [(c.where, c.old, c.new) for c in compare(A, changed)] == [
        ("response body $.amount", 1200, 1500),
        ("response body $.items[2]", None, 3),
        ("response body $.new", None, True),
    ]


def test_headers_by_name_and_status():
    old = interaction("/a", response(200, "x", headers=[("Date", "d1"), ("X-Gone", "1"),
                                                        ("Set-Cookie", "a"), ("Set-Cookie", "b")]))
    new = interaction("/a", response(201, "x", headers=[("date", "d2"), ("Set-Cookie", "a"),
                                                        ("X-New", "n")]))
    assert [(c.where, c.old, c.new) for c in compare(old, new)] == [
        ("status", 200, 201), ("reason", "OK", "Created"),
        ("response header Date", ["d1"], ["d2"]), ("response header X-Gone", ["1"], None),
        ("response header Set-Cookie", ["a", "b"], ["a"]), ("response header X-New", None, ["n"])]


def test_text_bodies_as_a_line_diff_and_binary_by_digest():
    [text] = compare(interaction("/t", "one\ntwo\n"), interaction("/t", "one\nthree\n"))
    assert text.where == "response body" and text.lines == ("@@ -1,2 +1,2 @@", " one",
                                                             "-two", "+three")
    [binary] = compare(interaction("/p", bytes(range(256))), interaction("/p", bytes(256)))
    assert binary.where == "response body" and "sha256" in binary.old


def test_the_same_content_encoded_again_is_one_bytes_change():
    payload = b'{"a": 1}'
    headers = [("Content-Encoding", "gzip")]
    old = interaction("/g", response(body=gzip.compress(payload, mtime=1), headers=headers))
    new = interaction("/g", response(body=gzip.compress(payload, mtime=2), headers=headers))
    assert [c.where for c in compare(old, new)] == ["response body bytes"]


def test_pairs_follow_request_lines_in_order():
    x, y, z = (request("GET", p) for p in ("/x", "/y", "/z"))
    assert pair_up([x, y, x], [x, x, z]) == [(0, 0), (1, None), (2, 1), (None, 2)]


def test_render_names_added_removed_and_changed():
    changed = interaction("/a", response(json={"id": "x1", "amount": 1500, "items": [1, 2]}))
    c = interaction("/c", "c")
    diff = diff_cassettes([A, B], [changed, c])
    assert diff.counts() == (1, 1, 1, 0) and not diff.same
    lines = list(render_diff(diff, [A, B], [changed, c]))
    assert lines[0].startswith("changed #1   GET https://api.example.com/a -> 200 OK")
    assert lines[1] == "    response body $.amount: 1200 -> 1500"
    assert lines[2].startswith("removed #2   GET https://api.example.com/b")
    assert lines[3].startswith("added   #2   GET https://api.example.com/c")


def test_text_form_has_no_path_and_digests_binary_bodies():
    lines = list(render_text([A, interaction("/p", response(body=bytes(range(256)), headers=[
        ("Content-Type", "image/png")]))]))
    assert lines[0] == "# replayproxy cassette: 2 interactions"
    assert any('"amount": 1200' in line for line in lines)
    assert any("<binary, 256 B, image/png, sha256 40aff2e9d2d8922e>" in line for line in lines)


# -- the commands ------------------------------------------------------------------------


def test_cassette_diff_command(cli, tmp_path):
    d = tmp_path / "c"
    changed = interaction("/a", response(json={"id": "x1", "amount": 1500, "items": [1, 2]}))
    save_cassette(cassette_path(d, "old"), [A, B])
    save_cassette(cassette_path(d, "new"), [changed, B])
    result = cli("cassette", "diff", "old", "new", "-d", d)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == ["    response body $.amount: 1200 -> 1500"]
    assert result.stderr == (f"replayproxy: {cassette_path(d, 'old')} -> "
                             f"{cassette_path(d, 'new')}: 0 added, 0 removed, 1 changed, "
                             "1 unchanged\n")
    same = cli("cassette", "diff", cassette_path(d, "old"), "old", "-d", d)
    assert (same.exit_code, same.stdout) == (0, "")


def test_cassette_diff_of_a_missing_cassette_is_one_line(cli, tmp_path):
    save_cassette(cassette_path(tmp_path, "old"), [A])
    error_line(cli("cassette", "diff", "old", "nope", "-d", tmp_path), "nope", "does not exist")


def test_cassette_text_command_prints_no_path(cli, tmp_path):
    path = cassette_path(tmp_path, "old")
    save_cassette(path, [A])
    result = cli("cassette", "text", path)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "# replayproxy cassette: 1 interaction"
    assert str(tmp_path) not in result.stdout
