"""VCR.py YAML and HAR files read into replayproxy interactions (replayproxy.formats)."""

import base64
import gzip
import json

import pytest
from vcr.serializers import jsonserializer, yamlserializer

from replayproxy.errors import CassetteError
from replayproxy.formats.har import read_har
from replayproxy.formats.vcr import read_vcr, write_vcr
from replayproxy.model import Interaction, Request, Response

GZIPPED = gzip.compress(b'{"access_token": "t"}', mtime=0)  # same bytes (and test ids) every run


def vcr_cassette(body=GZIPPED):
    """As VCR.py writes it: headers as lists, a gzip response body as bytes."""
    return {"version": 1, "interactions": [
        {"request": {"method": "POST", "uri": "https://api.example.com:8443/v1/login?x=1&y=2",
                     "body": '{"user": "bob"}',
                     "headers": {"Content-Type": ["application/json"], "X-Dup": ["1", "2"]}},
         "response": {"status": {"code": 201, "message": "Created"},
                      "headers": {"Content-Encoding": ["gzip"]},
                      "body": {"string": body}}},
        {"request": {"method": "GET", "uri": "http://api.example.com/", "body": None,
                     "headers": {}},
         "response": {"status": {"code": 204, "message": "No Content"}, "headers": {},
                      "body": {"string": ""}}},
    ]}


@pytest.mark.parametrize(("suffix", "serializer", "body"), [
    (".yaml", yamlserializer, GZIPPED),  # bytes as !!binary
    (".json", jsonserializer, GZIPPED.decode("latin-1"))])  # VCR.py's JSON holds text only
def test_a_vcr_cassette_reads_into_interactions(tmp_path, suffix, serializer, body):
    path = tmp_path / f"c{suffix}"
    path.write_text(serializer.serialize(vcr_cassette(body)))
    entries = read_vcr(path)
    assert [(e.number, e.url) for e in entries] == [
        (1, "https://api.example.com:8443/v1/login?x=1&y=2"), (2, "http://api.example.com/")]
    assert entries[0].interaction == Interaction(
        Request("POST", "https", "api.example.com", 8443, "/v1/login", "x=1&y=2",
                (("Content-Type", "application/json"), ("X-Dup", "1"), ("X-Dup", "2")),
                b'{"user": "bob"}'),
        # VCR.py's JSON cannot hold the gzip bytes: the text stored is no gzip, and its
        # Content-Encoding is dropped (as_stored)
        Response(201, "Created", (("Content-Encoding", "gzip"),) if suffix == ".yaml" else (),
                 body if isinstance(body, bytes) else body.encode()))
    assert entries[1].interaction == Interaction(
        Request("GET", "http", "api.example.com", 80, "/"), Response(204, "No Content"))


def test_a_malformed_vcr_entry_says_why_and_the_others_keep_their_number(tmp_path):
    doc = vcr_cassette()
    doc["interactions"].insert(0, "not an interaction")
    del doc["interactions"][2]["response"]
    path = tmp_path / "c.yaml"
    path.write_text(yamlserializer.serialize(doc))
    assert [(e.number, e.problem) for e in read_vcr(path)] == [
        (1, "interaction #1 has no request and no response"), (2, ""),
        (3, "interaction #3 has no response")]


@pytest.mark.parametrize("text", ["a: 1\n", "interactions: 3\n", "[1, 2]\n"])
def test_a_file_that_is_not_a_vcr_cassette_is_one_line_naming_it(tmp_path, text):
    path = tmp_path / "other.yaml"
    path.write_text(text)
    with pytest.raises(CassetteError) as info:
        read_vcr(path)
    assert str(info.value) == f"{path} is not a VCR.py cassette: it has no 'interactions' list"
    assert info.value.fields["syntax"] is False


def test_a_file_that_is_not_yaml_says_where_it_breaks(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("interactions:\n  - request: {method: GET\nversion: 1\n")
    with pytest.raises(CassetteError) as info:
        read_vcr(path)
    assert str(info.value).startswith(f"{path} is not valid YAML (line 3, column 8: "
                                   "did not find expected ',' or '}')")
    assert info.value.fields["syntax"] is True


@pytest.mark.parametrize(("version", "needle"), [
    (2, "of version 2, which replayproxy cannot read: it reads version 1"),
    ("x", "of version x, which")])
def test_an_unsupported_vcr_version_is_refused_when_checked(tmp_path, version, needle):
    doc = vcr_cassette()
    doc["version"] = version
    path = tmp_path / "c.yaml"
    path.write_text(yamlserializer.serialize(doc))
    assert len(read_vcr(path)) == 2  # the scanner reads it anyway
    with pytest.raises(CassetteError, match=needle):
        read_vcr(path, check_version=True)


def test_a_vcr_cassette_of_before_version_1_names_the_migration(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(yamlserializer.serialize([{"request": {}, "response": {}}]))
    with pytest.raises(CassetteError, match="before VCR.py 1.0.*vcr.migration"):
        read_vcr(path)


def har_file(entries):
    return json.dumps({"log": {"version": "1.2", "creator": {"name": "t"}, "entries": entries}})


def test_a_har_reads_into_interactions_with_decoded_bodies(tmp_path):
    path = tmp_path / "s.har"
    path.write_text(har_file([
        {"request": {"method": "POST", "url": "https://api.example.com/v1/x?a=1#frag",
                     "httpVersion": "HTTP/2.0",
                     "headers": [{"name": "Content-Encoding", "value": "gzip"},
                                 {"name": "Accept", "value": "*/*"}],
                     "cookies": [{"name": "sid", "value": "s1"}],
                     "postData": {"mimeType": "application/json", "text": '{"é": 1}'}},
         "response": {"status": 200, "statusText": "OK",
                      "headers": [{"name": "Content-Type", "value": "application/json"},
                                  {"name": "content-encoding", "value": "br"}],
                      "cookies": [{"name": "n", "value": "v"}],
                      "content": {"mimeType": "text/plain", "encoding": "base64",
                                  "text": base64.b64encode(b"\x00\x01binary").decode()}}},
        {"request": {"method": "GET", "url": "http://api.example.com"},
         "response": {"status": 304, "content": {"mimeType": "text/html", "text": "hi"}}},
    ]))
    first, second = read_har(path)
    assert (first.number, first.url) == (1, "https://api.example.com/v1/x?a=1#frag")
    assert first.interaction == Interaction(
        Request("POST", "https", "api.example.com", 443, "/v1/x", "a=1",
                (("Accept", "*/*"), ("Content-Type", "application/json")),
                '{"é": 1}'.encode(), "HTTP/2.0"),
        Response(200, "OK", (("Content-Type", "application/json"),), b"\x00\x01binary"))
    assert first.cookies == (("request", "sid", "s1"), ("response", "n", "v"))
    assert second.interaction == Interaction(
        Request("GET", "http", "api.example.com", 80, "/"),
        Response(304, "", (("Content-Type", "text/html"),), b"hi"))


def test_malformed_har_entries_are_read_as_far_as_they_go(tmp_path):
    path = tmp_path / "s.har"
    path.write_text(har_file([
        "not an entry",
        {"request": {"url": "http://h:notaport/x", "headers": {"not": "a list"}},
         "response": {"status": "abc", "content": {"encoding": "base64", "text": "abc"}}},
    ]))
    first, second = read_har(path)
    assert first.number == 1 and first.interaction.request.method == "GET"
    assert second.interaction.request.host == "" and second.interaction.request.headers == ()
    assert second.interaction.response.status == 0
    assert second.interaction.response.body == b"abc"  # not base64 after all: as text
    assert (first.problem, second.problem) == ("entry #1 has no request and no response",
                                               "entry #2 has no response status (the request "
                                               "got no answer)")


def test_a_har_entry_without_a_response_says_so(tmp_path):
    path = tmp_path / "s.har"
    path.write_text(har_file([{"request": {"method": "GET", "url": "http://h/x"}}]))
    [entry] = read_har(path)
    assert entry.problem == "entry #1 has no response"


@pytest.mark.parametrize("text", ["[]", '{"log": {}}', '{"log": {"entries": 1}}'])
def test_a_file_that_is_not_a_har_is_one_line_naming_it(tmp_path, text):
    path = tmp_path / "s.har"
    path.write_text(text)
    with pytest.raises(CassetteError) as info:
        read_har(path)
    assert str(info.value) == f"{path} is not a HAR file: it has no 'log.entries' list"
    assert info.value.fields["syntax"] is False


def test_a_har_that_is_not_json_says_where_it_breaks(tmp_path):
    path = tmp_path / "s.har"
    path.write_text('{"log": {"entries": [}}')
    with pytest.raises(CassetteError) as info:
        read_har(path)
    assert str(info.value) == (f"{path} is not valid JSON (line 1, column 22: Expecting "
                               "value): fix the file or export it again")
    assert info.value.fields["syntax"] is True


# -- hostile and damaged files (#16) ------------------------------------------------------


BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
interactions:
- request: {method: *h, uri: *h, headers: {X: *h}, body: *h}
  response: {status: {code: *h, message: *h}, headers: {Y: [*h]}, body: {string: *h}}
version: 1
"""


def test_a_yaml_alias_bomb_is_read_as_bounded_text(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    (entry,) = read_vcr(path)  # in well under a second, not 9**8 strings
    request = entry.interaction.request
    assert request.body.startswith(b"[[[[[[[[lol, lol") and len(request.body) < 2_000_000
    assert entry.interaction.response.status == 0


@pytest.mark.parametrize(("suffix", "text"), [
    (".yaml", "interactions: " + "[" * 5000 + "]" * 5000 + "\nversion: 1\n"),
    (".json", '{"interactions": ' + "[" * 5000 + "]" * 5000 + ', "version": 1}'),
    (".har", '{"log": {"entries": ' + "[" * 5000 + "]" * 5000 + "}}"),
])
def test_nesting_thousands_deep_is_one_line_naming_the_file(tmp_path, suffix, text):
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(CassetteError) as info:
        (read_har if suffix == ".har" else read_vcr)(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_vcr_cassette_cut_after_an_interaction_is_refused_not_read_short(tmp_path):
    path = tmp_path / "cut.yaml"
    text = yamlserializer.serialize(vcr_cassette())
    second = text.index("- request:", text.index("- request:") + 1)
    path.write_text(text[:second])  # the first interaction only: valid YAML
    with pytest.raises(CassetteError, match="is truncated or not a VCR.py cassette"):
        read_vcr(path)


def test_odd_values_in_a_har_become_storable_text(tmp_path):
    path = tmp_path / "odd.har"
    path.write_text('{"log": {"entries": [{"request": {"method": "\\ud800", "url": '
                    '"http://h/\\udc80", "headers": [{"name": "X", "value": 1e400}]}, '
                    '"response": {"status": Infinity, "statusText": [1, {"a": null}]}}]}}')
    (entry,) = read_har(path)
    it = entry.interaction
    assert it.request.method == "?" and entry.url == "http://h/?"
    assert it.request.headers == (("X", "inf"),)
    assert it.response.status == 0 and it.response.reason == "[1, {a: }]"


# -- writing (#15) -------------------------------------------------------------------------


ROUND_TRIP = [
    Interaction(Request("POST", "https", "api.example.com", 8443, "/v1/x", "a=1",
                        (("Accept", "*/*"), ("Content-Type", "application/json")),
                        b'{"n": 1}'),  # in name order: VCR.py's YAML sorts the names
                Response(201, "Created", (("Content-Type", "application/json"),
                                          ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")),
                         b'{"ok": true}')),
    Interaction(Request("GET", "http", "api.example.com", 80, "/png"),
                Response(200, "OK", (("Content-Type", "image/png"),), bytes(range(256)))),
]


def test_write_vcr_reads_back_the_same_interactions(tmp_path):
    path = tmp_path / "out.yaml"
    path.write_text(write_vcr(ROUND_TRIP))
    assert [e.interaction for e in read_vcr(path, check_version=True)] == ROUND_TRIP
    assert yamlserializer.deserialize(path.read_text())["version"] == 1


def test_write_vcr_joins_repeated_request_headers_as_vcr_keeps_one_value(tmp_path):
    from replayproxy.formats.vcr import write_vcr

    it = Interaction(Request("GET", "https", "h", 443, "/", "",
                             (("Cookie", "a=1"), ("Cookie", "b=2"), ("X-A", "1"), ("X-A", "2"))),
                     Response(204))
    path = tmp_path / "out.yaml"
    path.write_text(write_vcr([it]))
    assert read_vcr(path)[0].interaction.request.headers == (("Cookie", "a=1; b=2"),
                                                             ("X-A", "1, 2"))


def test_write_har_base64s_binary_bodies_and_reads_back(tmp_path):
    from replayproxy.formats.har import write_har

    path = tmp_path / "out.har"
    path.write_text(write_har(ROUND_TRIP, "1.0"))
    doc = json.loads(path.read_text())
    assert doc["log"]["version"] == "1.2" and doc["log"]["creator"]["name"] == "replayproxy"
    png = doc["log"]["entries"][1]["response"]["content"]
    assert png["encoding"] == "base64" and base64.b64decode(png["text"]) == bytes(range(256))
    assert doc["log"]["entries"][0]["request"]["queryString"] == [{"name": "a", "value": "1"}]
    assert [e.interaction for e in read_har(path)] == ROUND_TRIP


def test_write_har_decodes_gzip_bodies_as_har_wants(tmp_path):
    from replayproxy.formats.har import write_har

    it = Interaction(Request("GET", "https", "h", 443, "/"),
                     Response(200, "OK", (("Content-Encoding", "gzip"),
                                          ("Content-Length", str(len(GZIPPED)))), GZIPPED))
    path = tmp_path / "out.har"
    path.write_text(write_har([it]))
    content = json.loads(path.read_text())["log"]["entries"][0]["response"]["content"]
    assert content["text"] == '{"access_token": "t"}'
    [entry] = read_har(path)
    assert entry.interaction.response.headers == (("Content-Length", "21"),)
