"""Drift classification: a recorded (v1) response against a live (v2) one, as plain data."""

import copy
import gzip
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from replayproxy.drift.compare import (
    compare_responses,
    json_path,
    looks_volatile,
    media_type,
    size_class,
)
from replayproxy.drift.findings import Finding, FindingKind, Severity, worst
from replayproxy.model import Response

JSON_CT = ("Content-Type", "application/json")

V1 = {
    "id": "ch_3MtwBwLkdIwHu7ix28a3tqPa",
    "created": 1700000000,
    "amount": 1200,
    "currency": "usd",
    "customer": {"id": "cus_9s6XKzkNRiz8i3", "email": "a@example.com"},
    "items": [{"sku": "A-1", "amount": 700}, {"sku": "B-2", "amount": 500}],
    "refunded": False,
    "metadata": {"order": "1042"},
}


def resp(body=V1, status=200, headers=(JSON_CT,), *, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    return Response(status, "", tuple(headers), data)


def changed(**edits):
    doc = copy.deepcopy(V1)
    for key, value in edits.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return doc


def kinds(findings):
    return {(f.severity, f.kind, f.location) for f in findings}


def breaking(findings):
    return [f for f in findings if f.severity is Severity.BREAKING]


# -- the cases --------------------------------------------------------------------


def test_identical_responses_have_no_findings():
    assert compare_responses(resp(), resp()) == []


def test_a_removed_field_is_breaking_field_missing():
    findings = compare_responses(resp(), resp(changed(currency=...)))
    assert kinds(findings) == {(Severity.BREAKING, FindingKind.FIELD_MISSING, "body $.currency")}
    assert findings[0].recorded == "string" and findings[0].live is None


def test_a_removed_nested_field_names_its_path():
    doc = changed(customer={"id": "cus_9s6XKzkNRiz8i3"})
    assert kinds(compare_responses(resp(), resp(doc))) == {
        (Severity.BREAKING, FindingKind.FIELD_MISSING, "body $.customer.email")}


def test_a_type_change_is_breaking_type_changed():
    findings = compare_responses(resp(), resp(changed(amount="12.00")))
    assert kinds(findings) == {(Severity.BREAKING, FindingKind.TYPE_CHANGED, "body $.amount")}
    assert (findings[0].recorded, findings[0].live) == ("number", "string")
    assert findings[0].describe() == (
        "breaking type_changed at body $.amount: recorded number, live string")


def test_an_array_that_became_an_object_is_breaking():
    findings = compare_responses(resp(), resp(changed(items={"data": []})))
    assert kinds(findings) == {(Severity.BREAKING, FindingKind.TYPE_CHANGED, "body $.items")}
    assert (findings[0].recorded, findings[0].live) == ("array", "object")


def test_an_object_that_became_null_is_breaking():
    findings = compare_responses(resp(), resp(changed(customer=None)))
    assert kinds(findings) == {(Severity.BREAKING, FindingKind.TYPE_CHANGED, "body $.customer")}


def test_a_recorded_null_that_now_has_a_value_is_additive():
    rec = resp(changed(refunded_at=None))
    findings = compare_responses(rec, resp(changed(refunded_at="later")))
    assert kinds(findings) == {(Severity.ADDITIVE, FindingKind.TYPE_CHANGED, "body $.refunded_at")}


def test_an_added_field_is_additive():
    findings = compare_responses(resp(), resp(changed(livemode=True)))
    assert kinds(findings) == {(Severity.ADDITIVE, FindingKind.FIELD_ADDED, "body $.livemode")}
    assert worst(findings) is Severity.ADDITIVE


def test_a_new_status_class_is_breaking_and_hides_the_body():
    live = resp({"error": {"type": "not_found"}}, status=404)
    findings = compare_responses(resp(), live)
    assert kinds(findings) == {(Severity.BREAKING, FindingKind.STATUS_CLASS_CHANGED, "status")}
    assert (findings[0].recorded, findings[0].live) == (200, 404)
    assert findings[0].describe() == (
        "breaking status_class_changed at status: recorded 200, live 404")


def test_a_status_within_the_same_class_is_additive():
    findings = compare_responses(resp(), resp(status=201))
    assert kinds(findings) == {(Severity.ADDITIVE, FindingKind.STATUS_CHANGED, "status")}


def test_new_random_ids_and_timestamps_are_noise_never_breaking():
    live = changed(id="ch_9ZzzQqLkdIwHu7ixAAAAAAAA", created=1700000999,
                   customer={"id": "cus_0000000000abcd", "email": "a@example.com"})
    live["request_id"] = "req_8f2a9c"  # new field: additive, not noise
    findings = compare_responses(resp(), resp(live))
    assert not breaking(findings)
    assert kinds(findings) == {
        (Severity.NOISE, FindingKind.VALUE_CHANGED, "body $.id"),
        (Severity.NOISE, FindingKind.VALUE_CHANGED, "body $.created"),
        (Severity.NOISE, FindingKind.VALUE_CHANGED, "body $.customer.id"),
        (Severity.ADDITIVE, FindingKind.FIELD_ADDED, "body $.request_id"),
    }
    noise = next(f for f in findings if f.location == "body $.id")
    assert noise.recorded == V1["id"] and noise.live == "ch_9ZzzQqLkdIwHu7ixAAAAAAAA"
    assert noise.describe() == ('noise value_changed at body $.id: '
                                'recorded "ch_3MtwBwLkdIwHu7ix28a3tqPa", '
                                'live "ch_9ZzzQqLkdIwHu7ixAAAAAAAA"')


def test_values_that_look_volatile_by_form_are_noise_whatever_the_key():
    rec = resp({"when": "2024-01-02T03:04:05Z", "ref": "6f1c2d9e-6a1b-4c1d-9e2f-0a1b2c3d4e5f"})
    live = resp({"when": "2024-05-06T07:08:09.123+02:00",
                 "ref": "0b7e4a55-1d2c-4f3e-8a9b-1c2d3e4f5a6b"})
    assert kinds(compare_responses(rec, live)) == {
        (Severity.NOISE, FindingKind.VALUE_CHANGED, "body $.when"),
        (Severity.NOISE, FindingKind.VALUE_CHANGED, "body $.ref"),
    }


def test_ordinary_value_changes_are_data_not_drift():
    live = changed(amount=9999, currency="eur", refunded=True, metadata={"order": "7"})
    assert compare_responses(resp(), resp(live)) == []


def test_a_changed_content_type_is_breaking():
    live = resp(raw=b"<html>gone</html>", headers=(("Content-Type", "text/html"),))
    findings = compare_responses(resp(), live)
    assert kinds(findings) == {
        (Severity.BREAKING, FindingKind.CONTENT_TYPE_CHANGED, "header Content-Type")}
    assert (findings[0].recorded, findings[0].live) == ("application/json", "text/html")


def test_content_type_parameters_and_case_do_not_count():
    live = resp(headers=(("content-type", "Application/JSON; charset=utf-8"),))
    assert compare_responses(resp(), live) == []


def test_a_content_type_where_none_was_recorded_is_additive():
    findings = compare_responses(resp(headers=()), resp())
    assert kinds(findings) == {
        (Severity.ADDITIVE, FindingKind.CONTENT_TYPE_CHANGED, "header Content-Type")}


# -- arrays -------------------------------------------------------------------------------


def test_arrays_of_other_lengths_with_the_same_element_shape_are_no_drift():
    items = [{"sku": f"S-{i}", "amount": i * 100} for i in range(5)]
    assert compare_responses(resp(), resp(changed(items=items))) == []
    assert compare_responses(resp(changed(items=[])), resp()) == []
    assert compare_responses(resp(), resp(changed(items=[]))) == []


def test_an_element_shape_change_is_breaking_at_the_wildcard_path():
    items = [{"sku": "A-1", "amount": "7.00"}, {"sku": "B-2", "amount": "5.00"},
             {"sku": "C-3", "amount": "1.00"}]
    findings = compare_responses(resp(), resp(changed(items=items)))
    assert kinds(findings) == {
        (Severity.BREAKING, FindingKind.TYPE_CHANGED, "body $.items[*].amount")}


def test_element_shapes_are_merged_across_elements():
    rec = changed(items=[{"sku": "A"}, {"amount": 1}])
    live = changed(items=[{"sku": "A", "amount": 1}])
    assert compare_responses(resp(rec), resp(live)) == []
    gone = changed(items=[{"sku": "A"}, {"sku": "B"}])
    assert kinds(compare_responses(resp(rec), resp(gone))) == {
        (Severity.BREAKING, FindingKind.FIELD_MISSING, "body $.items[*].amount")}


def test_a_null_element_in_an_array_of_objects_is_breaking():
    live = changed(items=[{"sku": "A-1", "amount": 700}, None])
    findings = compare_responses(resp(), resp(live))
    assert kinds(findings) == {(Severity.BREAKING, FindingKind.TYPE_CHANGED, "body $.items[*]")}
    assert findings[0].live == "null|object"


# -- volatility learned and ignore paths --------------------------------------------------


def test_volatility_is_learned_from_a_second_live_call():
    rec = resp(changed(sequence=1, note="first"))
    live = resp(changed(sequence=2, note="second"))
    again = resp(changed(sequence=3, note="second"))
    assert compare_responses(rec, live) == []  # plain values: not reported
    findings = compare_responses(rec, live, live_again=again)
    assert kinds(findings) == {(Severity.NOISE, FindingKind.VALUE_CHANGED, "body $.sequence")}


def test_fields_that_come_and_go_between_live_calls_are_noise():
    rec = resp()
    live = resp(changed(discount={"code": "X"}, currency=...))
    again = resp(changed(currency=...))
    findings = compare_responses(rec, live, live_again=again)
    assert kinds(findings) == {
        (Severity.NOISE, FindingKind.FIELD_ADDED, "body $.discount"),
        (Severity.BREAKING, FindingKind.FIELD_MISSING, "body $.currency"),
    }


def test_a_stable_second_call_changes_nothing():
    live = resp(changed(currency=...))
    assert compare_responses(resp(), live, live_again=live) == compare_responses(resp(), live)


def test_ignored_json_paths_are_not_compared():
    live = changed(metadata={"order": 5, "extra": True}, currency=...)
    findings = compare_responses(resp(), resp(live), ignore=["$.metadata.*", "$.currency"])
    assert findings == []
    items = [{"sku": "A-1", "amount": "7.00"}]
    assert compare_responses(resp(), resp(changed(items=items)),
                             ignore=["$.items[*].amount"]) == []
    assert compare_responses(resp(), resp(changed(items=items)), ignore=["$..amount"]) == []


def test_an_invalid_ignore_path_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"\$\.\[\["):
        compare_responses(resp(), resp(), ignore=["$.[["])


# -- headers ------------------------------------------------------------------------------


def test_new_headers_are_additive_and_volatile_ones_never_count():
    rec = resp(headers=(JSON_CT, ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"), ("Server", "api")))
    live = resp(headers=(JSON_CT, ("X-Request-Id", "abc"), ("ETag", '"1"'), ("Set-Cookie", "a=b"),
                         ("CF-Ray", "8a"), ("Age", "3"), ("Server", "api2"),
                         ("X-API-Version", "2024-06-01")))
    findings = compare_responses(rec, live)
    assert kinds(findings) == {
        (Severity.ADDITIVE, FindingKind.HEADER_ADDED, "header X-API-Version")}
    assert findings[0].describe() == (
        'additive header_added at header X-API-Version: recorded (absent), live "2024-06-01"')


def test_a_missing_header_is_breaking_only_when_clients_act_on_it():
    rec = resp(status=201, headers=(JSON_CT, ("Location", "/v1/charges/1"), ("X-Powered-By", "x")))
    findings = compare_responses(rec, resp(status=201))
    assert kinds(findings) == {
        (Severity.BREAKING, FindingKind.HEADER_MISSING, "header Location"),
        (Severity.NOISE, FindingKind.HEADER_MISSING, "header X-Powered-By"),
    }
    assert findings[0].severity is Severity.BREAKING  # worst first


def test_ignored_and_unstable_headers():
    rec = resp()
    live = resp(headers=(JSON_CT, ("X-Shard", "3"), ("X-Debug", "1")))
    again = resp(headers=(JSON_CT, ("X-Debug", "1")))
    findings = compare_responses(rec, live, live_again=again, ignore=["x-debug"])
    assert kinds(findings) == {(Severity.NOISE, FindingKind.HEADER_ADDED, "header X-Shard")}


# -- bodies that are not plain JSON -------------------------------------------------------


def test_gzip_and_identity_bodies_compare_by_content():
    zipped = Response(200, "", (JSON_CT, ("Content-Encoding", "gzip")),
                      gzip.compress(json.dumps(changed(currency=...)).encode()))
    assert kinds(compare_responses(resp(), zipped)) == {
        (Severity.BREAKING, FindingKind.FIELD_MISSING, "body $.currency")}
    same = Response(200, "", (JSON_CT, ("Content-Encoding", "gzip")),
                    gzip.compress(json.dumps(V1).encode()))
    assert compare_responses(same, resp()) == []


def test_a_body_that_cannot_be_decoded_is_compared_as_bytes():
    broken = Response(200, "", (JSON_CT, ("Content-Encoding", "br")), b"not brotli")
    findings = compare_responses(resp(), broken)
    assert kinds(findings) == {(Severity.BREAKING, FindingKind.BODY_NOT_JSON, "body")}
    assert compare_responses(broken, broken) == []


def test_invalid_json_claimed_as_json_never_crashes():
    bad = resp(raw=b'{"amount": 12')
    findings = compare_responses(resp(), bad)
    assert kinds(findings) == {(Severity.BREAKING, FindingKind.BODY_NOT_JSON, "body")}
    assert findings[0].live == "not JSON, <1KiB"
    assert compare_responses(bad, resp()) == []  # both under 1 KiB
    assert compare_responses(bad, resp(raw=b"\xff\xfe{")) == []
    deep = resp(raw=b"[" * 100_000 + b"]" * 100_000)
    assert compare_responses(deep, deep) == []
    assert compare_responses(resp(), deep)[0].kind is FindingKind.BODY_NOT_JSON


def test_deeply_nested_json_falls_back_to_size_classes():
    nested = b"[" * 900 + b"]" * 900
    assert compare_responses(resp(raw=nested), resp(raw=nested)) == []


def test_non_json_bodies_compare_by_size_class():
    html = (("Content-Type", "text/html; charset=utf-8"),)
    small, large = resp(raw=b"<p>hi</p>", headers=html), resp(raw=b"x" * 5000, headers=html)
    empty = resp(raw=b"", headers=html)
    assert compare_responses(small, resp(raw=b"<p>hello</p>", headers=html)) == []
    assert kinds(compare_responses(small, large)) == {
        (Severity.NOISE, FindingKind.SIZE_CLASS_CHANGED, "body")}
    assert kinds(compare_responses(small, empty)) == {
        (Severity.BREAKING, FindingKind.SIZE_CLASS_CHANGED, "body")}
    assert kinds(compare_responses(empty, small)) == {
        (Severity.ADDITIVE, FindingKind.SIZE_CLASS_CHANGED, "body")}


def test_a_json_body_that_became_empty_is_breaking():
    findings = compare_responses(resp(), resp(raw=b""))
    assert kinds(findings) == {(Severity.BREAKING, FindingKind.SIZE_CLASS_CHANGED, "body")}


def test_head_and_no_content_responses():
    head = Response(200, "", (JSON_CT, ("Content-Length", "512")), b"")
    assert compare_responses(head, Response(200, "", (JSON_CT, ("Content-Length", "9")))) == []
    assert compare_responses(Response(204), Response(204)) == []


# -- helpers ------------------------------------------------------------------------------


def test_worst():
    noise = Finding(Severity.NOISE, FindingKind.VALUE_CHANGED, "body $.id", "a", "b")
    added = Finding(Severity.ADDITIVE, FindingKind.FIELD_ADDED, "body $.x", None, "number")
    assert worst([]) is None
    assert worst([noise, added]) is Severity.ADDITIVE
    assert json.loads(json.dumps(added.as_json()))["severity"] == "additive"


def test_long_values_are_shortened():
    rec = resp({"token": "a1" * 100})
    finding = compare_responses(rec, resp({"token": "b2" * 100}))[0]
    assert len(finding.recorded) == 80 and finding.recorded.endswith("…")


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("id", 3, True), ("customerId", "x", True), ("updated_at", "x", True),
    ("ETag", "x", True), ("name", "Alice", False), ("count", 12, False),
    (None, 1700000000, True), (None, 1700000000123, True), (None, True, False),
    (None, "2024-01-02", True), (None, "Tue, 15 Nov 1994 08:12:31 GMT", True),
    (None, "9f86d081884c7d659a2feaa0c55ad015", True), (None, "usd", False),
    (None, "hello world", False),
])
def test_looks_volatile(key, value, expected):
    assert looks_volatile(key, value) is expected


def test_helpers():
    assert json_path(("items", None, "a key", "x")) == '$.items[*]["a key"].x'
    assert media_type((("Content-Type", " Text/Plain ; charset=x"),)) == "text/plain"
    assert media_type(()) is None
    assert [size_class(n) for n in (0, 1, 1024, 65536, 2**20)] == [
        "empty", "<1KiB", "1KiB-64KiB", "64KiB-1MiB", ">=1MiB"]


# -- properties ---------------------------------------------------------------------------

KEYS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
SCALARS = st.none() | st.booleans() | st.integers(-10**6, 10**6) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10)
DOCS = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(KEYS, children, max_size=4), max_leaves=20)
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _same_type(value, data):
    if isinstance(value, dict):
        return {k: _same_type(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [_same_type(v, data) for v in value]
    if value is None:
        return None
    if isinstance(value, bool):
        return data.draw(st.booleans())
    if isinstance(value, int | float):
        return data.draw(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
    return data.draw(st.text(max_size=40))


def _key_paths(doc, path=()):
    """The path of every object key, array elements as [*] (None)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*path, k)
            yield from _key_paths(v, (*path, k))
    elif isinstance(doc, list):
        for v in doc:
            yield from _key_paths(v, (*path, None))


def _remove(doc, path):
    """Remove the key at ``path`` everywhere it occurs ([*] = every element)."""
    head, rest = path[0], path[1:]
    if head is None:
        for element in doc if isinstance(doc, list) else ():
            _remove(element, rest)
        return
    if not isinstance(doc, dict) or head not in doc:
        return
    if rest:
        _remove(doc[head], rest)
    else:
        del doc[head]


def _body(doc):
    return resp(doc)


@PROPERTY
@given(DOCS, st.data())
def test_changing_only_leaf_values_is_never_breaking(doc, data):
    live = _same_type(doc, data)
    findings = compare_responses(_body(doc), _body(live))
    assert not breaking(findings)
    assert all(f.kind is FindingKind.VALUE_CHANGED for f in findings)


@PROPERTY
@given(st.dictionaries(KEYS, DOCS, min_size=1, max_size=4), st.data())
def test_removing_a_key_is_breaking_field_missing_at_its_path(doc, data):
    paths = sorted(set(_key_paths(doc)), key=repr)
    assume(paths)
    path = data.draw(st.sampled_from(paths))
    live = copy.deepcopy(doc)
    _remove(live, path)
    findings = compare_responses(_body(doc), _body(live))
    assert [(f.kind, f.location) for f in breaking(findings)] == [
        (FindingKind.FIELD_MISSING, f"body {json_path(path)}")]
