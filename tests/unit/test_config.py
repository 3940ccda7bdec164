"""Configuration files, their validation, and the rules per route they produce."""

import re
import textwrap

import pytest

from replayproxy.cassette.store import CassetteFile
from replayproxy.config import Settings, find_config, load_settings, parse_settings
from replayproxy.errors import ConfigError
from replayproxy.matching.index import ReplayIndex
from replayproxy.matching.rules import (
    EXACT_MATCHERS,
    MATCHER_NAMES,
    BodyKind,
    Exhausted,
    MatchConfig,
    MatchRule,
)
from replayproxy.routes import parse_route
from tests.factories import interaction, request


def write(directory, name, text):
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def pyproject(tmp_path, text):
    """A pyproject.toml with ``text`` (TOML under [tool.replayproxy]) in it."""
    return write(tmp_path, "pyproject.toml", '[project]\nname = "app"\n\n' + textwrap.dedent(text))


def config_error(tmp_path, text, *, name="pyproject.toml"):
    """Load ``text`` as ``name`` in tmp_path; return the ConfigError message."""
    path = (pyproject(tmp_path, text) if name == "pyproject.toml"
            else write(tmp_path, name, text))
    with pytest.raises(ConfigError) as info:
        load_settings(directory=tmp_path)
    message = str(info.value)
    assert str(path) in message
    with pytest.raises(ConfigError) as again:  # the same with an explicit path
        load_settings(path=path)
    assert str(again.value) == message
    return message


# -- finding and reading the file -----------------------------------------------------


def test_no_configuration_file_gives_the_defaults(tmp_path):
    settings = load_settings(directory=tmp_path)
    assert settings == Settings()
    assert settings.match == MatchConfig()
    assert find_config(tmp_path) is None


def test_a_pyproject_without_the_section_gives_the_defaults(tmp_path):
    path = pyproject(tmp_path, "[tool.other]\nx = 1\n")
    settings = load_settings(directory=tmp_path)
    assert settings.source == path
    assert settings.match == MatchConfig() and not settings.strict


def test_pyproject_settings(tmp_path):
    path = pyproject(tmp_path, """
        [tool.replayproxy]
        cassette_dir = "tests/cassettes"
        strict = true
        fail_on_unused = true

        [tool.replayproxy.match]
        matchers = ["method", "host", "path", "query", "body"]
        ignore_query = "ts"
        headers = ["X-Api-Version"]
        ignore_json = ["$.meta.nonce"]
        ignore_regex = ['\\d{4}-\\d\\d-\\d\\d']
        body = "json"

        [[tool.replayproxy.match.routes]]
        route = "POST api.example.com/v1/*"
        ignore_json = ["$.request_id"]
        ignore_headers = ["Timestamp"]
        on_exhausted = "error"

        [[tool.replayproxy.match.routes]]
        route = "*/search*"
        matchers = ["query"]
    """)
    assert find_config(tmp_path) == (path, "tool.replayproxy")
    settings = load_settings(directory=tmp_path)
    assert load_settings(path=path) == settings
    assert settings.source == path
    assert settings.cassette_dir == "tests/cassettes"
    assert settings.strict and settings.fail_on_unused
    match = settings.match
    assert match.exact == ("method", "host", "path")
    base = match.base
    assert base.matchers == frozenset({"query", "body"})
    assert base.ignore_query == frozenset({"ts"})
    assert base.headers == ("x-api-version",)
    assert base.ignore_json == ("$.meta.nonce",)
    assert [p.pattern for p in base.ignore_regex] == [r"\d{4}-\d\d-\d\d"]
    assert base.body is BodyKind.JSON and base.on_exhausted is Exhausted.REPEAT
    assert [route.text for route, _ in match.routes] == ["POST api.example.com/v1/*",
                                                         "*/search*"]
    assert match.routes[0][1] == {"ignore_json": ["$.request_id"],
                                  "ignore_headers": ["Timestamp"],
                                  "on_exhausted": Exhausted.ERROR}
    assert match.routes[1][1] == {"matchers": ["query"]}


def test_replayproxy_toml_has_its_settings_at_the_top_and_wins_over_pyproject(tmp_path):
    pyproject(tmp_path, '[tool.replayproxy]\ncassette_dir = "from-pyproject"\n')
    own = write(tmp_path, "replayproxy.toml", """
        cassette_dir = "from-own-file"

        [match]
        ignore_query = ["ts"]

        [[match.routes]]
        route = "api.example.com"
        body = "ignore"
    """)
    assert find_config(tmp_path) == (own, "")
    settings = load_settings(directory=tmp_path)
    assert settings.source == own and settings.cassette_dir == "from-own-file"
    assert settings.match.base.ignore_query == frozenset({"ts"})
    assert settings.match.routes[0][1] == {"body": BodyKind.IGNORE}
    assert load_settings(path=own) == settings


def test_an_explicit_path_with_another_name_is_read_like_replayproxy_toml(tmp_path):
    path = write(tmp_path, "ci.toml", "strict = true\n[match]\nignore_form = ['csrf']\n")
    settings = load_settings(path=path)
    assert settings.strict and settings.match.base.ignore_form == frozenset({"csrf"})


def test_an_explicit_path_that_does_not_exist(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_settings(path=tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in str(info.value)


def test_matchers_without_exact_fields_drop_them_from_the_index():
    settings = parse_settings({"match": {"matchers": ["method", "path", "body"]}})
    assert settings.match.exact == ("method", "path")
    assert settings.match.base.matchers == frozenset({"body"})
    recorded = request("GET", "/v1/x?a=1")
    index = ReplayIndex(CassetteFile.from_interactions("c", [interaction(recorded)]),
                        settings.match)
    moved = request("GET", "http://localhost:8080/v1/x?a=2")
    assert index.match(moved) is not None
    assert index.match(request("GET", "http://localhost:8080/v1/y")) is None


def test_every_matcher_is_the_default():
    settings = parse_settings({})
    assert settings.match.exact == EXACT_MATCHERS
    assert settings.match.base == MatchRule()


# -- bad configuration ----------------------------------------------------------------


def test_invalid_toml(tmp_path):
    message = config_error(tmp_path, "[tool.replayproxy\nstrict = true\n")
    assert "invalid TOML" in message


def test_invalid_toml_in_replayproxy_toml(tmp_path):
    message = config_error(tmp_path, "strict = = true\n", name="replayproxy.toml")
    assert "invalid TOML" in message


def test_invalid_json_path(tmp_path):
    message = config_error(tmp_path, """
        [tool.replayproxy.match]
        ignore_json = ["$.ok", "$.items[*"]
    """)
    assert "[tool.replayproxy.match] ignore_json" in message
    assert "invalid JSON path '$.items[*'" in message


def test_invalid_json_path_in_a_route(tmp_path):
    message = config_error(tmp_path, """
        [[tool.replayproxy.match.routes]]
        route = "POST api.example.com/v1/*"
        ignore_json = ["$$"]
    """)
    assert "[tool.replayproxy.match.routes #1] ignore_json" in message
    assert "invalid JSON path '$$'" in message


def test_invalid_regular_expression(tmp_path):
    message = config_error(tmp_path, """
        [tool.replayproxy.match]
        ignore_regex = ["ok", "ts=(\\\\d+"]
    """)
    assert "[tool.replayproxy.match] ignore_regex" in message
    assert r"invalid regular expression 'ts=(\\d+'" in message
    assert "missing )" in message


def test_invalid_route_regular_expression(tmp_path):
    message = config_error(tmp_path, """
        [[tool.replayproxy.match.routes]]
        route = "api.example.com"
        body = "ignore"

        [[tool.replayproxy.match.routes]]
        route = "re:(("
        body = "ignore"
    """)
    assert "[tool.replayproxy.match.routes #2] route" in message
    assert "invalid regular expression in route 're:(('" in message


@pytest.mark.parametrize(
    ("table", "problem"),
    [('route = ""', "empty route"),
     ('route = "POST a b"', "invalid route"),
     ("route = 5", "missing"),
     ('body = "ignore"', "missing")],
)
def test_invalid_or_missing_route(tmp_path, table, problem):
    message = config_error(tmp_path, f"[[tool.replayproxy.match.routes]]\n{table}\n")
    assert "[tool.replayproxy.match.routes #1] route" in message
    assert problem in message


def test_unknown_matcher_name(tmp_path):
    message = config_error(tmp_path, """
        [tool.replayproxy.match]
        matchers = ["method", "path", "bodies"]
    """)
    assert "[tool.replayproxy.match] matchers" in message
    assert "unknown matcher 'bodies'" in message
    assert "allowed: " + ", ".join(MATCHER_NAMES) in message


def test_unknown_matcher_name_in_a_route(tmp_path):
    message = config_error(tmp_path, """
        [[tool.replayproxy.match.routes]]
        route = "*"
        matchers = ["querystring"]
    """)
    assert "[tool.replayproxy.match.routes #1] matchers" in message
    assert "unknown matcher 'querystring'; allowed: query, headers, body" in message


def test_a_route_cannot_choose_exact_matchers(tmp_path):
    message = config_error(tmp_path, """
        [[tool.replayproxy.match.routes]]
        route = "*"
        matchers = ["query", "host"]
    """)
    assert "unknown matcher 'host'; allowed: query, headers, body" in message
    assert "decide which route applies" in message


def test_unknown_top_level_key(tmp_path):
    message = config_error(tmp_path, '[tool.replayproxy]\ncasette_dir = "x"\n')
    assert "[tool.replayproxy] casette_dir: unknown setting" in message
    assert ("allowed: cassette_dir, drift, fail_on_unused, faults, limits, match, pace, "
            "pytest, redact, strict") in message


def test_unknown_top_level_key_in_replayproxy_toml(tmp_path):
    message = config_error(tmp_path, "strictly = true\n", name="replayproxy.toml")
    assert "strictly: unknown setting" in message
    assert ("allowed: cassette_dir, drift, fail_on_unused, faults, limits, match, pace, "
            "pytest, redact, strict") in message


ALLOWED_RULE_KEYS = ("body, headers, ignore_form, ignore_headers, ignore_json, ignore_query, "
                     "ignore_regex, matchers, on_exhausted")


def test_unknown_key_in_the_match_table(tmp_path):
    message = config_error(tmp_path, '[tool.replayproxy.match]\nignore_header = ["date"]\n')
    assert "[tool.replayproxy.match] ignore_header: unknown setting" in message
    assert f"allowed: {ALLOWED_RULE_KEYS}, routes" in message


def test_route_is_not_a_key_of_the_match_table(tmp_path):
    message = config_error(tmp_path, '[tool.replayproxy.match]\nroute = "*"\n')
    assert "[tool.replayproxy.match] route: unknown setting" in message


def test_unknown_key_in_a_route(tmp_path):
    message = config_error(tmp_path, """
        [[tool.replayproxy.match.routes]]
        route = "POST api.example.com/v1/*"
        ignore_jsonpath = ["$.request_id"]
    """)
    assert "[tool.replayproxy.match.routes #1] ignore_jsonpath: unknown setting" in message
    allowed = ALLOWED_RULE_KEYS.replace("on_exhausted", "on_exhausted, route")
    assert f"allowed: {allowed}" in message


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        ('[tool.replayproxy]\nstrict = "yes"', "[tool.replayproxy] strict", "expected bool"),
        ("[tool.replayproxy]\nstrict = 1", "[tool.replayproxy] strict", "expected bool"),
        ("[tool.replayproxy]\nfail_on_unused = []", "[tool.replayproxy] fail_on_unused",
         "expected bool"),
        ("[tool.replayproxy]\ncassette_dir = 5", "[tool.replayproxy] cassette_dir",
         "expected str"),
        ('[tool.replayproxy]\nmatch = "all"', "[tool.replayproxy] match", "expected dict"),
        ("[tool.replayproxy.match]\nignore_query = 5", "[tool.replayproxy.match] ignore_query",
         "expected a list of query parameter names, got 5"),
        ("[tool.replayproxy.match]\nheaders = [1, 2]", "[tool.replayproxy.match] headers",
         "got [1, 2]"),
        ('[tool.replayproxy.match]\nignore_json = [["$.a"]]',
         "[tool.replayproxy.match] ignore_json", "expected a list of JSON paths"),
        ('[tool.replayproxy.match]\nbody = "xml"', "[tool.replayproxy.match] body",
         "expected one of auto, json, graphql, form, multipart, bytes, ignore, got 'xml'"),
        ('[tool.replayproxy.match]\non_exhausted = ["error"]',
         "[tool.replayproxy.match] on_exhausted", "expected one of repeat, error"),
        ('[tool.replayproxy.match]\nroutes = "POST *"', "[tool.replayproxy.match] routes",
         "expected an array of tables"),
        ("[tool.replayproxy.match.routes]\nroute = '*'", "[tool.replayproxy.match] routes",
         "expected an array of tables"),
        ('[tool.replayproxy.match]\nroutes = ["POST *"]',
         "[tool.replayproxy.match.routes #1] route", "expected a table"),
    ],
)
def test_wrong_types(tmp_path, text, where, expected):
    message = config_error(tmp_path, text + "\n")
    assert where in message
    assert expected in message


def test_the_section_must_be_a_table(tmp_path):
    message = config_error(tmp_path, "[tool]\nreplayproxy = 5\n")
    assert "[tool.replayproxy] must be a table" in message


def test_errors_are_one_line(tmp_path):
    message = config_error(tmp_path, '[tool.replayproxy.match]\nignore_json = ["$.a["]\n')
    assert "\n" not in message


# -- rules per route --------------------------------------------------------------------


def test_rule_for_merges_the_base_and_every_matching_route_in_order():
    config = parse_settings({"match": {
        "ignore_query": ["ts"],
        "ignore_json": ["$.base"],
        "routes": [
            {"route": "api.example.com", "ignore_query": ["a"], "body": "json",
             "ignore_json": ["$.one", "$.base"], "headers": ["X-One"]},
            {"route": "POST api.example.com/v1/*", "ignore_query": ["b"], "body": "bytes",
             "ignore_json": ["$.two"], "on_exhausted": "error"},
            {"route": "*/other*", "ignore_query": ["c"], "matchers": ["body"]},
            {"route": "re:/v1/charges$", "matchers": ["query"], "ignore_regex": ["x+"]},
        ],
    }}, section="tool.replayproxy").match
    post = config.rule_for("POST", "https", "api.example.com", 443, "/v1/charges")
    assert post.ignore_query == frozenset({"ts", "a", "b"})
    assert post.ignore_json == ("$.base", "$.one", "$.two")  # extended, in order, once
    assert post.headers == ("x-one",)
    assert post.body is BodyKind.BYTES  # the later route replaces
    assert post.on_exhausted is Exhausted.ERROR
    assert post.matchers == frozenset({"query"})
    assert [p.pattern for p in post.ignore_regex] == ["x+"]
    assert post.sources == ("defaults", "api.example.com", "POST api.example.com/v1/*",
                            "re:/v1/charges$")

    get = config.rule_for("GET", "https", "API.example.com", 443, "/v1/charges/ch_1")
    assert get.ignore_query == frozenset({"ts", "a"})
    assert get.body is BodyKind.JSON and get.on_exhausted is Exhausted.REPEAT
    assert get.matchers == frozenset({"query", "headers", "body"})

    other = config.rule_for("GET", "https", "elsewhere.net", 443, "/other/x")
    assert other.ignore_query == frozenset({"ts", "c"})
    assert other.matchers == frozenset({"body"})
    assert other.body is BodyKind.AUTO and other.ignore_json == ("$.base",)

    nothing = config.rule_for("GET", "https", "elsewhere.net", 443, "/")
    assert nothing == config.base


def test_on_exhausted_error_applies_only_on_its_route():
    config = MatchConfig(routes=((parse_route("POST api.example.com/v1/*"),
                                  {"on_exhausted": Exhausted.ERROR}),))
    charge, item = request("POST", "/v1/charges", json={"a": 1}), request("GET", "/v1/items")
    index = ReplayIndex(CassetteFile.from_interactions("c", [
        interaction(charge, b"charge-1"),
        interaction(charge, b"charge-2"),
        interaction(item, b"item"),
    ]), config)
    served = [index.match(charge) for _ in range(3)]
    assert [s.interaction.response.body for s in served[:2]] == [b"charge-1", b"charge-2"]
    assert served[2] is None
    first, again = index.match(item), index.match(item)
    assert first.interaction.response.body == again.interaction.response.body == b"item"
    assert not first.repeated and again.repeated
    # the same on a path outside the route repeats
    other = request("POST", "/v2/charges", json={"a": 1})
    plain = ReplayIndex(CassetteFile.from_interactions("c", [interaction(other, b"v2")]), config)
    assert plain.match(other) is not None and plain.match(other).repeated


def test_on_exhausted_from_a_configuration_file(tmp_path):
    pyproject(tmp_path, """
        [[tool.replayproxy.match.routes]]
        route = "POST api.example.com/v1/*"
        on_exhausted = "error"
    """)
    config = load_settings(directory=tmp_path).match
    charge = request("POST", "/v1/charges", json={"a": 1})
    index = ReplayIndex(CassetteFile.from_interactions("c", [interaction(charge)]), config)
    assert index.match(charge) is not None and index.match(charge) is None


def test_ignore_json_on_one_route_only(tmp_path):
    pyproject(tmp_path, """
        [tool.replayproxy.match]
        ignore_query = ["ts"]

        [[tool.replayproxy.match.routes]]
        route = "POST api.example.com/v1/*"
        ignore_json = ["$.request_id"]
    """)
    config = load_settings(directory=tmp_path).match
    recorded = {"request_id": "r1", "amount": 1200}
    on_route = request("POST", "/v1/charges", json=recorded)
    off_route = request("POST", "/v2/charges", json=recorded)
    other_method = request("PUT", "/v1/charges", json=recorded)
    index = ReplayIndex(CassetteFile.from_interactions("c", [
        interaction(q, q.path + q.method) for q in (on_route, off_route, other_method)
    ]), config)

    def fresh(q, **body):
        return request(q.method, f"{q.path}?ts=2", json={"amount": 1200, **body})

    assert index.match(fresh(on_route, request_id="r2")).position == 0
    assert index.match(fresh(off_route, request_id="r2")) is None
    assert index.match(fresh(other_method, request_id="r2")) is None
    assert index.match(fresh(off_route, request_id="r1")).position == 1
    # the ignored field is ignored, nothing else is
    assert index.match(request("POST", "/v1/charges",
                               json={"request_id": "r3", "amount": 1500})) is None


def test_a_regex_route_and_ignore_regex_from_the_file(tmp_path):
    write(tmp_path, "replayproxy.toml", r"""
        [[match.routes]]
        route = 're:^api\.example\.com/v1/reports/\d+$'
        ignore_regex = ['generated at \S+']
    """)
    config = load_settings(directory=tmp_path).match
    text = (("Content-Type", "text/plain"),)

    def report(path, when):
        return request("POST", path, headers=text, body=f"total 5, generated at {when}")

    index = ReplayIndex(CassetteFile.from_interactions("c", [
        interaction(report("/v1/reports/7", "2024-01-01T00:00")),
        interaction(report("/v1/reports/7/raw", "2024-01-01T00:00")),
    ]), config)
    assert index.match(report("/v1/reports/7", "2025-06-30T12:34")) is not None
    assert index.match(report("/v1/reports/7/raw", "2025-06-30T12:34")) is None
    assert re.search("generated", config.routes[0][1]["ignore_regex"][0].pattern)


@pytest.mark.parametrize(("route", "problem"), [
    ("GRT api.example.com/*", "unknown method 'GRT'"),
    ("api..example.com/v1/*", "malformed host"),
    ("/v1/*", "it has no host"),
])
def test_a_route_that_could_never_apply_is_a_startup_error(tmp_path, route, problem):
    message = config_error(tmp_path, f"""
        [[tool.replayproxy.match.routes]]
        route = "{route}"
        ignore_query = ["ts"]
    """)
    assert "pyproject.toml" in message
    assert "[tool.replayproxy.match.routes #1] route" in message
    assert problem in message


# -- hostile files: deep nesting, huge values ------------------------------------------


@pytest.mark.parametrize("text", [
    "x = " + "[" * 5000 + "]" * 5000,
    "x = " + "{a=" * 5000 + "1" + "}" * 5000,
])
def test_toml_nested_thousands_of_levels_is_one_line_not_a_recursion_error(tmp_path, text):
    message = config_error(tmp_path, text, name="replayproxy.toml")
    assert message.endswith("nested too deeply to read; fix the file (no setting nests "
                            "more than a few levels)")


@pytest.mark.parametrize(("text", "key"), [
    ('strict = "{}"', "strict"),
    ('[match]\nbody = "{}"', "body"),
    ('[match]\nignore_regex = ["(", "{}"]', "ignore_regex"),
    ('[redact]\non_leak = "{}"', "on_leak"),
    ('faults = ["{}"]', "fault"),
    ('[drift]\nrate = "{}"', "rate"),
    ('[[match.routes]]\nroute = "a b c {}"', "route"),
    ('"{}" = 1', "…"),
])
def test_a_megabyte_value_is_not_echoed_in_full(tmp_path, text, key):
    huge = "x" * 1_000_000
    message = config_error(tmp_path, text.format(huge), name="replayproxy.toml")
    assert len(message) < 1000 and "\n" not in message
    assert key in message
