"""Damaged files: every case ends in a correct load or one line naming the file (#16).

Real files (a cassette, a recording's journal, VCR.py YAML and JSON, a HAR, a
configuration) are truncated, bit-flipped, spliced with each other, cut into and
re-typed (a value swapped for one of another type: a number for a body, a map for a
header, a megabyte string, nesting thousands deep), one to three times over. Each
damaged file is then used the way replayproxy uses it, and must give either a correct
load (every interaction decodes, renders as ``cassette show`` does, and is found by the
replay index; recovery leaves a cassette that loads) or a ``CassetteError`` /
``ConfigError`` of one line naming the file: never another exception, a hang, or a
truncated file read as a shorter one.

``make test`` runs a few hundred cases; ``make fuzz`` sets ``REPLAYPROXY_FUZZ_EXAMPLES``
to run thousands per file kind (at least 10,000 in all).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vcr.serializers import jsonserializer, yamlserializer

from replayproxy.cassette.format import decode_interaction, encode_interaction
from replayproxy.cassette.journal import DAMAGED, Journal, pending_journals, recover_journals
from replayproxy.cassette.store import load_cassette, save_cassette
from replayproxy.cassette.view import render_interaction, summary_line
from replayproxy.config import load_settings
from replayproxy.errors import CassetteError, ConfigError, ReplayproxyError
from replayproxy.formats.har import read_har
from replayproxy.formats.vcr import read_vcr
from replayproxy.matching.index import ReplayIndex
from replayproxy.model import Interaction, Request, Response
from replayproxy.redaction.scan import scan_path

pytestmark = pytest.mark.filterwarnings(  # a damaged file may hold a megabyte value
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")

FUZZ = int(os.environ.get("REPLAYPROXY_FUZZ_EXAMPLES") or 0)
"""Cases per test in ``make fuzz``; 0 (the default): a quick run in ``make test``."""
HANG = 20 if FUZZ else 10
"""Seconds one case may take before it counts as a hang."""


def cases(quick: int) -> settings:
    return settings(max_examples=FUZZ or quick, deadline=None, database=None if FUZZ else
                    settings.default.database,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# -- real files ------------------------------------------------------------------------

BODY = json.dumps({"id": "ch_1", "amount": 1200, "currency": "eur",
                   "metadata": {"order": "A-17", "tags": ["x", "y"]}}).encode()


def interactions() -> list[Interaction]:
    return [
        Interaction(
            Request("POST", "https", "api.example.com", 443, "/v1/charges", "expand=customer",
                    (("Content-Type", "application/json"), ("Accept", "*/*"),
                     ("X-Dup", "1"), ("x-dup", "2")), b'{"amount": 1200}', "HTTP/1.1"),
            Response(200, "OK", (("Content-Type", "application/json"),
                                 ("Content-Encoding", "gzip")), gzip.compress(BODY),
                     "HTTP/1.1"),
            1_764_000_000.25, 0.0021, 0.0024),
        Interaction(
            Request("GET", "http", "127.0.0.1", 8080, "/img", "", (("Host", "127.0.0.1"),),
                    b"", "HTTP/2.0"),
            Response(404, "Nicht gefunden", (("Content-Type", "image/png"),),
                     bytes(range(256)), "HTTP/2.0"),
            1_764_000_001.5, 0.01, 0.5),
        Interaction(
            Request("DELETE", "https", "[::1]", 8443, "/v1/x/é", "a=1&a=2", (), b"",
                    "HTTP/1.1"),
            Response(204, "", (("Set-Cookie", "sid=\xff; Path=/"),), b"", "HTTP/1.1"),
            1_764_000_002.0, 0.0, 0.0),
    ]


def _cassette_seeds() -> list[bytes]:
    seeds = []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "seed.cassette"
        for items in (interactions(), interactions()[:1], []):
            save_cassette(path, items)
            seeds.append(path.read_bytes())
    return seeds


def _journal_seeds() -> list[bytes]:
    seeds = []
    with tempfile.TemporaryDirectory() as d:
        for replace in (False, True):
            journal = Journal(Path(d) / "seed.cassette", replace=replace)
            for it in interactions():
                journal.append(it)
            seeds.append(journal.path.read_bytes())
            assert journal._file is not None
            journal._file.close()  # dies without folding
            journal.path.unlink()
    return seeds


def _vcr_document() -> dict[str, Any]:
    return {"interactions": [
        {"request": {"method": "POST", "uri": "https://api.example.com:8443/v1/login?x=1",
                     "body": '{"user": "bob"}',
                     "headers": {"Content-Type": ["application/json"], "X-Dup": ["1", "2"]}},
         "response": {"status": {"code": 201, "message": "Created"},
                      "headers": {"Content-Encoding": ["gzip"]},
                      "body": {"string": gzip.compress(BODY)}}},
        {"request": {"method": "GET", "uri": "http://api.example.com/", "body": None,
                     "headers": {}},
         "response": {"status": {"code": 204, "message": "No Content"}, "headers": {},
                      "body": {"string": ""}}},
    ], "version": 1}  # in the order VCR.py writes them


def _vcr_seeds() -> list[bytes]:
    doc = _vcr_document()
    as_text = json.loads(json.dumps(doc, default=lambda b: b.decode("latin-1")))
    return [yamlserializer.serialize(doc).encode(),
            jsonserializer.serialize(as_text).encode()]


def _har_seed() -> bytes:
    return json.dumps({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [
        {"request": {"method": "POST", "url": "https://api.example.com/v1/x?a=1#frag",
                     "httpVersion": "HTTP/2.0",
                     "headers": [{"name": "Accept", "value": "*/*"}],
                     "cookies": [{"name": "sid", "value": "s1"}],
                     "postData": {"mimeType": "application/json", "text": '{"é": 1}'}},
         "response": {"status": 200, "statusText": "OK",
                      "headers": [{"name": "Content-Type", "value": "application/json"}],
                      "cookies": [],
                      "content": {"mimeType": "application/json", "encoding": "base64",
                                  "text": "eyJvayI6IHRydWV9"}}},
        {"request": {"method": "GET", "url": "http://api.example.com"},
         "response": {"status": 304, "content": {"mimeType": "text/html", "text": "hi"}}},
    ]}}, indent=1).encode()


CONFIG = b'''[tool.replayproxy]
cassette_dir = "tests/cassettes"
strict = true
fail_on_unused = false
faults = ["latency=300ms@*/search*", "status=503,first=2"]

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
on_exhausted = "error"

[tool.replayproxy.redact]
headers = ["X-Internal"]
fields = ["card_number"]
json = ["$.card.number"]
patterns = ["sk_live_[A-Za-z0-9]+", { name = "pin", regex = "pin-[0-9]{4}" }]
on_leak = "warn"

[tool.replayproxy.drift]
ignore = ["$.meta.request_id", "Date"]
origins = { "https://api.example.com" = "https://sandbox.example.com" }
concurrency = 4
rate = "5/s"
timeout = "10s"
credentials = { "Authorization" = "SANDBOX_TOKEN" }

[[tool.replayproxy.drift.routes]]
route = "GET api.example.com/v1/charges/*"
ignore = ["$.created"]
'''


def _config_seed_is_valid() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "pyproject.toml"
        path.write_bytes(CONFIG)
        load_settings(path)


CASSETTES = _cassette_seeds()
JOURNALS = _journal_seeds()
VCRS = _vcr_seeds()
HARS = [_har_seed()]
CONFIGS = [CONFIG]
_config_seed_is_valid()


# -- damage ----------------------------------------------------------------------------

HOSTILE_TEXT = ["[" * 5000 + "]" * 5000, "x" * 1_000_000, "\x1b[31m\x00\ud800"]
"""Raw text a re-typing may put in place of a value: deep nesting, a megabyte string."""

odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(),
    st.text(max_size=8), st.binary(max_size=8),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3),
                                                             st.integers(), max_size=2),
    st.sampled_from([100_000]).map(lambda n: "x" * n),  # kept out of the strategy's repr
    st.just(10**30), st.just(1e308), st.just(-1e308))


def _paths(value: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a parsed document (lists and maps, walked)."""
    yield here
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _paths(item, (*here, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*here, key))


def _replace(value: Any, where: tuple[Any, ...], new: Any) -> Any:
    if not where:
        return new
    if isinstance(value, tuple | list):
        items = list(value)
        items[where[0]] = _replace(items[where[0]], where[1:], new)
        return items
    copy = dict(value)
    copy[where[0]] = _replace(copy[where[0]], where[1:], new)
    return copy


def retype_msgpack(data: bytes, draw: Callable[..., Any]) -> bytes:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    try:
        objects = list(unpacker)
    except Exception:
        return data
    where = draw(st.sampled_from(list(_paths(objects))[1:] or [()]))
    objects = _replace(objects, where, draw(odd_values))
    if not isinstance(objects, list):
        return data
    try:
        return b"".join(msgpack.packb(o, use_bin_type=True) for o in objects)
    except (TypeError, ValueError, OverflowError):
        return data


PLACEHOLDER = "\x00placeholder\x00"


def _retype_text(doc: Any, dump: Callable[[Any], str], quote: Callable[[str], str],
                 draw: Callable[..., Any]) -> bytes:
    where = draw(st.sampled_from(list(_paths(doc))[1:] or [()]))
    pick = draw(st.integers(0, len(HOSTILE_TEXT)))  # an index: no megabyte in reports
    raw = HOSTILE_TEXT[pick - 1] if pick else None
    new = PLACEHOLDER if raw else draw(odd_values)
    try:
        text = dump(_replace(doc, where, new))
    except (TypeError, ValueError, OverflowError, yaml.YAMLError, RecursionError):
        return dump(doc).encode("utf-8", "surrogateescape")
    if raw:
        text = text.replace(quote(PLACEHOLDER), raw if raw.startswith("[") else quote(raw))
    return text.encode("utf-8", "surrogateescape")


def retype_json(data: bytes, draw: Callable[..., Any]) -> bytes:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return data
    return _retype_text(doc, lambda d: json.dumps(d, default=repr), json.dumps, draw)


def retype_yaml(data: bytes, draw: Callable[..., Any]) -> bytes:
    try:
        doc = yaml.safe_load(data)
    except (yaml.YAMLError, RecursionError, ValueError, TypeError):
        return data
    return _retype_text(doc, lambda d: yaml.safe_dump(d, width=10**9),
                        lambda s: json.dumps(s).replace("\\u0000", "\\0"), draw)


def retype_toml(data: bytes, draw: Callable[..., Any]) -> bytes:
    lines = data.decode("utf-8", "replace").splitlines()
    settable = [i for i, line in enumerate(lines) if " = " in line]
    if not settable:
        return data
    i = draw(st.sampled_from(settable))
    key = lines[i].split(" = ", 1)[0]
    values = ['1', '-7', '3.5', 'true', '"text"', '[]', '[1, "a"]', '{ a = 1 }',
              '"' + "x" * 1_000_000 + '"', "[" * 5000 + "]" * 5000, '"\\u001b[2J"',
              '1979-05-27', '"(a|aa)+$"', '"$..["']
    value = values[draw(st.integers(0, len(values) - 1))]  # an index: no megabyte in reports
    lines[i] = f"{key} = {value}"
    return "\n".join(lines).encode()


@st.composite
def damaged(draw: Callable[..., Any], seeds: list[bytes],
            retype: Callable[[bytes, Callable[..., Any]], bytes]) -> tuple[bytes, bool]:
    """A seed with one to three kinds of damage; and whether it is a pure truncation."""
    data = draw(st.sampled_from(seeds))
    kinds = draw(st.lists(st.sampled_from(["truncate", "flip", "splice", "cut", "insert",
                                           "retype"]), min_size=1, max_size=3))
    for kind in kinds:
        n = len(data)
        if kind == "truncate":
            data = data[:draw(st.integers(0, max(n - 1, 0)))]
        elif kind == "flip" and n:
            at = draw(st.integers(0, n - 1))
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + \
                data[at + 1:]
        elif kind == "splice":
            other = draw(st.sampled_from(seeds))
            a, b = sorted(draw(st.tuples(st.integers(0, n), st.integers(0, n))))
            c, d = sorted(draw(st.tuples(st.integers(0, len(other)),
                                         st.integers(0, len(other)))))
            data = data[:a] + other[c:d] + data[b:]
        elif kind == "cut":
            a, b = sorted(draw(st.tuples(st.integers(0, n), st.integers(0, n))))
            data = data[:a] + data[b:]
        elif kind == "insert":
            at = draw(st.integers(0, n))
            data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
        elif kind == "retype":
            data = retype(data, draw)
    return data, set(kinds) == {"truncate"}


# -- what each case must end in ---------------------------------------------------------


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"a damaged file took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def one_line_naming(error: ReplayproxyError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message, message
    assert len(message) < 1000 + len(str(path)) * 3, message[:300]


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def warnings_logged() -> Iterator[list[str]]:
    handler, logger = Warnings(), logging.getLogger("replayproxy")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def use_cassette(path: Path) -> int | None:
    """Load, index, render and match as replay and ``cassette show`` do; the number of
    interactions, or None when the file is refused."""
    try:
        cassette = load_cassette(path)
    except CassetteError as e:
        one_line_naming(e, path)
        return None
    index = ReplayIndex(cassette)
    for i in range(len(cassette)):
        try:
            it = cassette.interaction(i)
        except CassetteError as e:  # an entry is only refused when used: a header pair
            one_line_naming(e, path)
            continue
        summary_line(i + 1, it)
        list(render_interaction(i + 1, it, 200))
        try:
            served = index.match(it.request)
        except CassetteError as e:  # another entry of the same request, damaged
            one_line_naming(e, path)
            continue
        assert served is not None
    return len(cassette)


def check_interaction(it: Interaction) -> None:
    """What another tool's file gave is an interaction replayproxy can store and show."""
    assert decode_interaction(encode_interaction(it)) == it
    msgpack.packb(encode_interaction(it), use_bin_type=True)  # storable as it is
    summary_line(1, it)
    list(render_interaction(1, it, 200))


# -- the fuzz targets --------------------------------------------------------------------


@cases(120)
@given(damaged(CASSETTES, retype_msgpack))
def test_a_damaged_cassette_loads_correctly_or_fails_in_one_line(case):
    data, truncated = case
    with tempfile.TemporaryDirectory() as d, time_limit(HANG):
        path = Path(d) / "fuzz.cassette"
        path.write_bytes(data)
        count = use_cassette(path)
        if truncated:  # a prefix of a cassette is never read as a shorter cassette
            assert count is None
        try:
            list(scan_path(path))
        except CassetteError as e:
            one_line_naming(e, path)


@cases(120)
@given(damaged(JOURNALS, retype_msgpack), st.sampled_from([None, *CASSETTES]))
def test_recovering_a_damaged_journal_never_breaks_the_cassette(case, old):
    data, _ = case
    with tempfile.TemporaryDirectory() as d, time_limit(HANG), warnings_logged() as logged:
        cassette = Path(d) / "fuzz.cassette"
        if old is not None:
            cassette.write_bytes(old)
        journal = cassette.with_name(f".{cassette.name}.4242.journal")
        journal.write_bytes(data)
        recovered = recover_journals(cassette)  # a good cassette: never an error
        assert pending_journals(cassette) == []
        for message in logged:
            assert "\n" not in message and str(journal) in message, message
        assert journal.with_name(journal.name + DAMAGED).exists() == bool(logged)
        if cassette.exists():
            loaded = load_cassette(cassette)  # recovery never leaves it unloadable
            for it in loaded.interactions():  # every entry folded in decodes
                summary_line(1, it)
                list(render_interaction(1, it, 200))
        else:
            assert recovered == 0


def read_seed(seed: bytes, like: Path) -> Any:
    other = like.with_name("seed" + like.suffix)
    other.write_bytes(seed)
    return read_vcr(other) if like.suffix != ".har" else read_har(other)


def _other_format(suffix: str, read: Callable[[Path], Any], seeds: list[bytes],
                  retype: Callable[[bytes, Callable[..., Any]], bytes]) -> Any:
    @cases(80)
    @given(damaged(seeds, retype))
    def test(case: tuple[bytes, bool]) -> None:
        data, truncated = case
        with tempfile.TemporaryDirectory() as d, time_limit(HANG):
            path = Path(d) / f"fuzz{suffix}"
            path.write_bytes(data)
            try:
                entries = read(path)
            except CassetteError as e:
                one_line_naming(e, path)
            else:
                for entry in entries:
                    check_interaction(entry.interaction)
                if truncated:  # never read as a file with fewer interactions
                    assert len(entries) == 2 or any(len(entries) == len(read_seed(seed, path))
                                                    for seed in seeds)
            try:
                list(scan_path(path))
            except CassetteError as e:
                one_line_naming(e, path)

    return test


test_a_damaged_vcr_yaml_reads_correctly_or_fails_in_one_line = _other_format(
    ".yaml", read_vcr, VCRS, retype_yaml)
test_a_damaged_vcr_json_reads_correctly_or_fails_in_one_line = _other_format(
    ".json", read_vcr, VCRS, retype_json)
test_a_damaged_har_reads_correctly_or_fails_in_one_line = _other_format(
    ".har", read_har, HARS, retype_json)


@cases(100)
@given(damaged(CONFIGS, retype_toml))
def test_a_damaged_configuration_loads_or_fails_in_one_line(case):
    data, _ = case
    with tempfile.TemporaryDirectory() as d, time_limit(HANG):
        path = Path(d) / "pyproject.toml"
        path.write_bytes(data)
        try:
            load_settings(path)
        except ConfigError as e:
            one_line_naming(e, path)


@pytest.mark.parametrize("seeds", [CASSETTES, JOURNALS, VCRS, HARS, CONFIGS])
def test_the_real_files_the_fuzzer_starts_from_are_good(seeds):
    assert seeds and all(seeds)
