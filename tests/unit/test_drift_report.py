"""Drift reports: JUnit XML, Markdown, HTML, JSON and the terminal view of hand-built runs."""

import gzip
import io
import json
import re
import tomllib
import xml.etree.ElementTree as ET
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from replayproxy.drift import report as report_package
from replayproxy.drift.compare import compare_responses
from replayproxy.drift.findings import Finding, FindingKind, Severity
from replayproxy.drift.plan import Checked, DriftReport, Outcome
from replayproxy.drift.report import html, junit_xml, markdown, summary_line, write_json
from replayproxy.drift.report.terminal import print_report
from replayproxy.model import Response

JSON_CT = ("Content-Type", "application/json")
CHARGES = "GET 127.0.0.1:8443/v1/charges/{id}"
CUSTOMERS = "GET 127.0.0.1:8443/v1/customers"
UPLOADS = "POST 127.0.0.1:8443/v1/uploads"
BASE = "https://127.0.0.1:8443"

RECORDED_CHARGE = {"id": "ch_3MtwBwLkdIwHu7ix28a3tqPa", "amount": 1200, "currency": "usd",
                   "items": [{"sku": "A-1", "amount": 700}], "note": "<script>alert(1)</script>"}
LIVE_CHARGE = {"id": "ch_9ZzzBwLkdIwHu7ix28a3tqQb", "amount": "12.00", "currency": "usd",
               "items": [{"sku": "A-1", "amount": 700}], "note": "<script>alert(1)</script>",
               "livemode": False}


def resp(doc, status=200, headers=(JSON_CT,), *, gzipped=False, reason="OK"):
    body = json.dumps(doc).encode()
    if gzipped:
        body = gzip.compress(body)
        headers = (*headers, ("Content-Encoding", "gzip"))
    return Response(status, reason, tuple(headers), body)


def checked(outcome, index, *, cassette="stripe", endpoint=CHARGES, findings=(), message="",
            recorded=None, live=None, path="/v1/charges/ch_1", live_url="", elapsed=0.05):
    method = endpoint.split(" ", 1)[0]
    url = BASE + path
    return Checked(cassette=cassette, index=index, key=f"{method} {url} #1", endpoint=endpoint,
                   method=method, url=url, outcome=outcome, findings=tuple(findings),
                   message=message, recorded=recorded, live=live, live_url=live_url,
                   elapsed=elapsed)


def breaking_charge():
    """A real comparison: amount number → string (breaking), livemode added, id volatile."""
    recorded = resp(RECORDED_CHARGE, gzipped=True)
    live = resp(LIVE_CHARGE)
    findings = compare_responses(recorded, live)
    assert {f.severity for f in findings} == set(Severity)
    return checked(Outcome.BREAKING, 0, findings=findings, recorded=recorded, live=live,
                   live_url="https://api.example.com/v1/charges/ch_1", elapsed=0.12)


LINK_MISSING = Finding(Severity.BREAKING, FindingKind.HEADER_MISSING, "header Link",
                       '<https://x/?page=2>; rel="next" | last', None)
LIVEMODE_ADDED = Finding(Severity.ADDITIVE, FindingKind.FIELD_ADDED, "body $.livemode",
                         None, "boolean")
ID_NOISE = Finding(Severity.NOISE, FindingKind.VALUE_CHANGED, "body $.data[*].id",
                   "cus_1", "cus_2")


def sample_report():
    """Two cassettes and a missing one: every outcome, a problem, findings of each kind."""
    customers = resp({"data": [{"id": "cus_1", "name": "Ada"}]})
    results = [
        breaking_charge(),
        checked(Outcome.CHANGED, 1, findings=[LIVEMODE_ADDED],
                recorded=resp({"id": "ch_2"}), live=resp({"id": "ch_2", "livemode": True})),
        checked(Outcome.PASSED, 2, endpoint=CUSTOMERS, path="/v1/customers",
                findings=[ID_NOISE], recorded=customers,
                live=resp({"data": [{"id": "cus_2", "name": "Ada"}]})),
        checked(Outcome.ERROR, 3, endpoint=CUSTOMERS, path="/v1/customers?limit=2",
                message="connection refused by 127.0.0.1:8443", recorded=customers),
        checked(Outcome.SKIPPED, 0, cassette="billing", endpoint=UPLOADS, path="/v1/uploads",
                message="POST not re-sent: it may change data on the server"),
        checked(Outcome.BREAKING, 1, cassette="billing", endpoint=CUSTOMERS,
                path="/v1/customers", findings=[LINK_MISSING], recorded=customers,
                live=customers),
    ]
    return DriftReport(cassettes=("stripe", "billing", "empty"), started_at=1_700_000_000.0,
                       finished_at=1_700_000_004.2, results=results,
                       problems=["cassette cassettes/missing.rpc not found"])


# -- summary and JSON ---------------------------------------------------------------------


def test_summary_line_counts_every_outcome():
    assert summary_line(sample_report()) == (
        "drift: 2 breaking, 1 changed, 1 passed, 1 error, 1 skipped (3 cassettes, 4.2 s)")


def test_summary_line_of_an_unfinished_empty_run():
    report = DriftReport(cassettes=("one",), started_at=5.0)
    assert summary_line(report) == (
        "drift: 0 breaking, 0 changed, 0 passed, 0 errors, 0 skipped (1 cassette, 0.0 s)")


def test_write_json_is_the_report_as_json():
    report = sample_report()
    report.problems.append("cassette café.rpc is unreadable")
    text = write_json(report)
    assert text.endswith("}\n")
    assert json.loads(text) == json.loads(json.dumps(report.as_json()))
    assert "café" in text  # not \u00e9
    assert text.startswith('{\n  "format": "replayproxy-drift"')


def test_json_times_are_iso_8601_in_utc():
    data = json.loads(write_json(sample_report()))
    assert (data["format"], data["version"]) == ("replayproxy-drift", 2)
    assert data["started_at"] == "2023-11-14T22:13:20Z"  # 1_700_000_000
    assert data["finished_at"] == "2023-11-14T22:13:24Z"
    assert data["duration"] == 4.2
    unfinished = json.loads(write_json(DriftReport(cassettes=("one",), started_at=5.0)))
    assert (unfinished["started_at"], unfinished["finished_at"], unfinished["duration"]) == (
        "1970-01-01T00:00:05Z", None, None)


def one_interaction_report():
    """The first interaction of a cassette (position 0), breaking, with an error after it."""
    first = breaking_charge()
    second = checked(Outcome.ERROR, 1, cassette="stripe", endpoint=CUSTOMERS,
                     path="/v1/customers", message="connection refused")
    return DriftReport(cassettes=("stripe",), started_at=1.0, finished_at=2.0,
                       results=[first, second])


def terminal_text(report):
    out = io.StringIO()
    print_report(Console(file=out, width=200, color_system=None), report, verbose=True)
    return out.getvalue()


@pytest.mark.parametrize("render", [
    terminal_text, markdown, html, lambda r: junit_xml(r).decode(), write_json])
def test_every_report_numbers_interactions_from_1(render):
    text = render(one_interaction_report())
    assert "[0]" not in text and "interaction 0" not in text and '"number": 0' not in text
    if render is write_json:
        data = json.loads(text)
        assert [(r["number"], r["key"]) for r in data["results"]] == [
            (1, f"GET {BASE}/v1/charges/ch_1 #1"), (2, f"GET {BASE}/v1/customers #1")]
        assert "index" not in data["results"][0]
    elif render is html:
        assert "stripe [1]" in text and "interaction 1</span>" in text
        assert "stripe [2]" in text and "interaction 2</span>" in text
    elif render is markdown:
        assert "`stripe [1] 200→200`" in text and "`stripe [2]`" in text
    elif render is terminal_text:
        assert "  stripe [1]  breaking" in text and "  stripe [2]  error" in text
    else:
        assert f"{CHARGES} [1]" in text and f"{CUSTOMERS} [2]" in text


# -- JUnit XML ----------------------------------------------------------------------------


def cases(root):
    return {c.get("name"): c for c in root.iter("testcase")}


def test_junit_is_xml_with_a_case_per_interaction_and_problem():
    report = sample_report()
    data = junit_xml(report)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(data)
    assert root.tag == "testsuites"
    assert len(list(root.iter("testcase"))) == len(report.results) + len(report.problems)
    assert len(cases(root)) == len(report.results) + 1, "test case names are unique"
    assert set(cases(root)) >= {"GET 127.0.0.1:8443/v1/charges/{id} [1]",
                                "GET 127.0.0.1:8443/v1/customers [4]",
                                "POST 127.0.0.1:8443/v1/uploads [1]"}


def test_junit_fails_only_breaking_interactions():
    root = ET.fromstring(junit_xml(sample_report()))
    failed = {c.get("name") for c in root.iter("testcase") if c.find("failure") is not None}
    assert failed == {"GET 127.0.0.1:8443/v1/charges/{id} [1]",
                      "GET 127.0.0.1:8443/v1/customers [2]"}
    charge = cases(root)["GET 127.0.0.1:8443/v1/charges/{id} [1]"]
    assert charge.get("classname") == "drift.stripe"
    assert charge.get("time") == "0.120"
    failure = charge.find("failure")
    first = breaking_charge().findings[0]
    assert failure.get("type") == "breaking"
    assert failure.get("message") == f"1 breaking: {first.describe()}"
    lines = failure.text.splitlines()
    for finding in breaking_charge().findings:  # breaking, additive and noise alike
        assert finding.describe() in lines
    assert "live: GET https://api.example.com/v1/charges/ch_1 -> 200" in lines


def test_junit_errors_skips_and_passes():
    root = ET.fromstring(junit_xml(sample_report()))
    by_name = cases(root)
    error = by_name["GET 127.0.0.1:8443/v1/customers [4]"].find("error")
    assert error.get("message") == "connection refused by 127.0.0.1:8443"
    skipped = by_name["POST 127.0.0.1:8443/v1/uploads [1]"].find("skipped")
    assert skipped.get("message").startswith("POST not re-sent")
    changed = by_name["GET 127.0.0.1:8443/v1/charges/{id} [2]"]
    assert [child.tag for child in changed] == ["system-out"]
    assert LIVEMODE_ADDED.describe() in changed.find("system-out").text
    passed = by_name["GET 127.0.0.1:8443/v1/customers [3]"]
    assert passed.find("failure") is None and passed.find("error") is None


def test_junit_problems_are_errors_of_their_own_suite():
    root = ET.fromstring(junit_xml(sample_report()))
    suite = root.find("testsuite[@name='replayproxy drift']")
    assert suite is not None
    (case,) = suite.findall("testcase")
    assert case.find("error").get("message") == "cassette cassettes/missing.rpc not found"
    assert suite.get("errors") == "1" and suite.get("tests") == "1"


def test_junit_counts():
    root = ET.fromstring(junit_xml(sample_report()))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"replayproxy drift", "replayproxy drift: stripe",
                           "replayproxy drift: billing", "replayproxy drift: empty"}
    counts = {name: tuple(s.get(k) for k in ("tests", "failures", "errors", "skipped"))
              for name, s in suites.items()}
    assert counts["replayproxy drift: stripe"] == ("4", "1", "1", "0")
    assert counts["replayproxy drift: billing"] == ("2", "1", "0", "1")
    assert counts["replayproxy drift: empty"] == ("0", "0", "0", "0")
    assert tuple(root.get(k) for k in ("tests", "failures", "errors", "skipped")) == (
        "7", "2", "2", "1")
    assert root.get("time") == "4.200"
    assert suites["replayproxy drift: stripe"].get("time") == "0.270"  # 0.12 + 3 × 0.05
    for suite in suites.values():
        assert len(suite.findall("testcase")) == int(suite.get("tests"))


def test_junit_survives_control_characters():
    bad = Finding(Severity.BREAKING, FindingKind.HEADER_MISSING, "header X-\x01", "a\x00b", None)
    report = DriftReport(cassettes=("c\x02",), results=[
        checked(Outcome.BREAKING, 0, cassette="c\x02", findings=[bad]),
        checked(Outcome.ERROR, 1, cassette="c\x02", message="reset\x1b[0m\nby peer")])
    root = ET.fromstring(junit_xml(report))  # would raise on a raw control character
    error = next(root.iter("error"))
    assert error.get("message") == "reset\ufffd[0m\nby peer"


# -- Markdown -----------------------------------------------------------------------------


def cells(row):
    """The cells of a Markdown table row, split at unescaped pipes as GitHub does."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def test_markdown_verdict_and_counts():
    text = markdown(sample_report())
    lines = text.splitlines()
    assert lines[0] == "## replayproxy drift: ❌ breaking API drift (check incomplete)"
    assert "**2 breaking** · 1 changed · 1 passed · **1 error** · 1 skipped — 3 cassettes, 4.2 s" \
        in lines
    assert "- cassette cassettes/missing.rpc not found" in lines
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_markdown_tables_of_breaking_findings_by_endpoint():
    text = markdown(sample_report())
    lines = text.splitlines()
    breaking = text.split("### Breaking (2)")[1].split("### Changed")[0]
    assert "#### `GET 127.0.0.1:8443/v1/charges/{id}`" in breaking
    assert "#### `GET 127.0.0.1:8443/v1/customers`" in breaking
    assert "| **breaking** | `type_changed` | `body $.amount` | `number` | `string` |" in lines
    assert "| additive | `field_added` | `body $.livemode` | `(absent)` | `boolean` |" in lines
    assert "| Severity | Kind | Where | Recorded | Live |" in lines
    assert "value_changed" not in breaking, "noise stays out of the tables"
    changed = text.split("### Changed (additive only) (1)")[1]
    assert "`stripe [2] 200→200`" in changed


def test_markdown_escapes_pipes_and_markup_in_cells():
    lines = markdown(sample_report()).splitlines()
    (row,) = [line for line in lines if "header_missing" in line]
    assert "\\| last" in row
    assert cells(row) == ["**breaking**", "`header_missing`", "`header Link`",
                          '`"<https://x/?page=2>; rel=\\"next\\" \\| last"`', "`(absent)`"]


def test_markdown_escapes_newlines_and_backticks():
    odd = Finding(Severity.BREAKING, FindingKind.HEADER_MISSING, "header A`B", "x\ny", None)
    report = DriftReport(cassettes=("c",), results=[checked(Outcome.BREAKING, 0, findings=[odd])],
                         problems=["line one\nline <two> | three"])
    lines = markdown(report).splitlines()
    (row,) = [line for line in lines if "header_missing" in line]
    assert "``header A`B``" in row
    assert len(cells(row)) == 5
    assert "- line one<br>line &lt;two&gt; \\| three" in lines


def test_markdown_errors_skips_and_noise():
    text = markdown(sample_report())
    assert ("- `stripe [4]` `GET https://127.0.0.1:8443/v1/customers?limit=2`: "
            "connection refused by 127.0.0.1:8443") in text
    assert "<details><summary>Skipped: 1</summary>" in text
    assert "- POST not re-sent: it may change data on the server ×1" in text
    noise = text.split("<details><summary>Noise:")[1]
    assert "| `value_changed` | `body $.data[*].id` | 1 |" in noise


def test_markdown_caps_rows_per_endpoint():
    many = [Finding(Severity.BREAKING, FindingKind.FIELD_MISSING, f"body $.f{i}", "number", None)
            for i in range(30)]
    same = Finding(Severity.BREAKING, FindingKind.FIELD_MISSING, "body $.f0", "number", None)
    report = DriftReport(cassettes=("c",), results=[
        checked(Outcome.BREAKING, 0, findings=many),
        checked(Outcome.BREAKING, 1, findings=[same])])
    lines = markdown(report).splitlines()
    rows = [line for line in lines if line.startswith("| **breaking**")]
    assert len(rows) == 20
    assert "| **breaking** | `field_missing` | `body $.f0` ×2 | `number` | `(absent)` |" in rows
    assert "| … and 10 more | | | | |" in lines


def test_markdown_without_drift():
    report = DriftReport(cassettes=("c",), results=[checked(Outcome.PASSED, 0)])
    text = markdown(report)
    assert text.startswith("## replayproxy drift: ✅ no API drift\n")
    assert "###" not in text and "<details>" not in text


# -- HTML ---------------------------------------------------------------------------------

VOID = {"meta", "br", "col", "input", "img", "hr", "link"}


class Structure(HTMLParser):
    """Tags, attributes and nesting errors of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.errors, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(page):
    parser = Structure()
    parser.feed(page)
    parser.close()
    return parser


def test_html_is_a_complete_self_contained_page():
    page = html(sample_report())
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    assert page.rstrip().endswith("</html>")
    parsed = parse(page)
    assert parsed.errors == [] and parsed.stack == []
    tags = {tag for tag, _ in parsed.tags}
    assert {"html", "head", "style", "body", "main", "details", "table"} <= tags
    assert not tags & {"script", "link", "img", "iframe", "object"}
    for _, attrs in parsed.tags:
        assert "src" not in attrs
        assert attrs.get("href", "#").startswith("#"), attrs
    style = page.split("<style>")[1].split("</style>")[0]
    assert "url(" not in style and "@import" not in style and "http" not in style


def test_html_inlines_the_style_sheet_shipped_as_package_data():
    css = Path(report_package.__file__).with_name("style.css").read_text("utf-8")
    assert ".badge,.pill{" in css
    assert f"<style>\n{css}</style>" in html(sample_report())
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "drift/report/style.css" in pyproject["tool"]["setuptools"]["package-data"][
        "replayproxy"]


def test_html_escapes_bodies_and_shows_both_sides():
    page = html(sample_report())
    assert "<script>" not in page
    assert escape('  "note": "<script>alert(1)</script>",') in page
    # the recorded body was gzip: decoded, pretty-printed, the changed line removed/added
    assert re.search(r'class="c del hit-breaking">' + re.escape(escape('  "amount": 1200,')),
                     page)
    assert re.search(r'class="c add hit-breaking">' + re.escape(escape('  "amount": "12.00",')),
                     page)
    assert re.search(r'class="c add hit-additive">' + re.escape(escape('  "livemode": false')),
                     page)
    assert escape('"sku": "A-1",') in page
    assert "gzip" in page  # in the body meta of the recorded side
    assert "https://api.example.com/v1/charges/ch_1" in page


def test_html_highlights_the_lines_of_a_finding_by_json_path():
    page = html(sample_report())
    # $.amount is marked, $.items[*].amount (same key, unchanged) is not
    amount_700 = re.findall(r'class="c (\w+)( hit-\w+)?"> *' + re.escape(escape('"amount": 700')),
                            page)
    assert amount_700 == [("eq", ""), ("eq", "")]
    assert re.search(r'class="c del hit-noise"> *' + re.escape(escape('"id": "cus_1"')), page)
    assert re.search(r'class="c add hit-noise"> *' + re.escape(escape('"id": "cus_2"')), page)


def test_html_pretty_json_matches_json_dumps():
    doc = {"a": [1, {"b": []}, {}], "c": None, "é": 'ü"x', "n": 1.5e300, "nested": [[[]]]}
    recorded = Response(200, "OK", (JSON_CT,), json.dumps(doc).encode())
    report = DriftReport(cassettes=("c",), results=[
        checked(Outcome.ERROR, 0, message="timeout", recorded=recorded)])
    rows = re.findall(r'<td class="c eq">([^<]*)</td>', html(report))
    pretty = json.dumps(doc, indent=2, ensure_ascii=False).splitlines()
    assert rows[-len(pretty):] == [escape(line) for line in pretty]


def test_html_shows_findings_and_structure():
    page = html(sample_report())
    text = "".join(parse(page).text)
    for finding in breaking_charge().findings:
        assert f"{finding.kind}{finding.location}" in text.replace("\n", "")
    assert "type_changed" in page and "body $.amount" in page
    assert "cassette cassettes/missing.rpc not found" in text
    assert "connection refused by 127.0.0.1:8443" in text
    assert "2 breaking" in text and "1 error" in text
    assert page.count('<section class="endpoint"') == 3
    # breaking and errors open, passed and skipped closed
    cards = re.findall(r'<details class="card k-(\w+)" id="[^"]+"( open)?>', page)
    assert sorted(cards) == sorted([("breaking", " open"), ("breaking", " open"),
                                    ("changed", " open"), ("error", " open"),
                                    ("passed", ""), ("skipped", "")])


def test_html_binary_empty_and_long_bodies():
    png = Response(200, "OK", (("Content-Type", "image/png"),), b"\x89PNG\r\n\x1a\n" + bytes(300))
    long_doc = {"rows": [{"n": i, "text": "x" * 80} for i in range(400)]}
    long_live = {"rows": [{"n": i, "text": "x" * 80} for i in range(400)]}
    long_live["rows"][5]["text"] = "changed"
    report = DriftReport(cassettes=("c",), results=[
        checked(Outcome.PASSED, 0, recorded=png, live=Response(204, "No Content")),
        checked(Outcome.PASSED, 1, recorded=resp(long_doc), live=resp(long_live)),
    ])
    page = html(report)
    assert parse(page).errors == []
    assert "(308 bytes of binary)" in page
    assert "(empty body)" in page
    assert "more characters not shown" in page
    assert "unchanged lines</summary>" in page  # the identical rest folds away
    assert escape('"text": "changed"') in page


def test_html_cuts_a_long_json_value_but_shows_its_start():
    doc = {"id": 1, "blob": "<" + "A" * 50_000 + ">"}
    report = DriftReport(cassettes=("c",), results=[
        checked(Outcome.PASSED, 0, recorded=resp(doc), live=resp(doc))])
    page = html(report)
    assert escape('  "blob": "<AAAA') in page
    assert "A" * 30_000 not in page
    assert "more characters not shown" in page


def test_html_of_an_empty_run():
    page = html(DriftReport(cassettes=(), problems=["no cassette given"]))
    assert "No interaction was checked." in page
    assert "no cassette given" in page
    assert parse(page).errors == []


def test_html_marks_headers_and_status():
    recorded = Response(302, "Found", (("Location", "/next"), ("Link", "<a>")), b"")
    live = Response(500, "Server Error", (("Link", "<a>"),), b"")
    findings = compare_responses(recorded, live)
    report = DriftReport(cassettes=("c",), results=[
        checked(Outcome.BREAKING, 0, findings=findings, recorded=recorded, live=live)])
    page = html(report)
    assert 'class="c del hit-breaking">HTTP/1.1 302 Found' in page
    assert 'class="c add hit-breaking">HTTP/1.1 500 Server Error' in page


# -- terminal -----------------------------------------------------------------------------


def terminal(report, **kwargs):
    out = io.StringIO()
    print_report(Console(file=out, width=120), report, **kwargs)
    return out.getvalue()


def test_terminal_report_groups_by_endpoint():
    text = terminal(sample_report())
    assert "\x1b" not in text, "no colours when the console is not a terminal"
    lines = text.splitlines()
    heads = [line for line in lines if line.startswith(("GET", "POST"))]
    assert heads == [  # worst first: an error, then breaking drift, then skipped only
        "GET 127.0.0.1:8443/v1/customers  1 error, 1 breaking, 1 passed  (1 noise finding)",
        "GET 127.0.0.1:8443/v1/charges/{id}  1 breaking, 1 changed  (1 noise finding)",
        "POST 127.0.0.1:8443/v1/uploads  1 skipped",
    ]
    assert "  stripe [4]  error  GET https://127.0.0.1:8443/v1/customers?limit=2" in lines
    assert "    connection refused by 127.0.0.1:8443" in lines
    at = lines.index("  stripe [1]  breaking  200 -> 200  GET https://127.0.0.1:8443/v1/charges/ch_1")
    assert lines[at + 1] == "    sent to https://api.example.com/v1/charges/ch_1"
    assert summary_line(sample_report()) in lines
    assert lines[-1] == "problem: cassette cassettes/missing.rpc not found"


def test_terminal_report_lists_breaking_and_additive_not_noise():
    text = terminal(sample_report())
    for finding in breaking_charge().findings:
        shown = f"    {finding.describe()}" in text
        assert shown == (finding.severity is not Severity.NOISE), finding
    assert "    " + LINK_MISSING.describe() in text
    assert "POST not re-sent" not in text
    assert "stripe [3]" not in text, "passed interactions only with --verbose"


def test_terminal_report_verbose_shows_noise_skips_and_passes():
    text = terminal(sample_report(), verbose=True)
    assert "    " + ID_NOISE.describe() in text  # $.data[*].id: no markup eaten
    assert "  billing [1]  skipped  POST https://127.0.0.1:8443/v1/uploads" in text
    assert "    POST not re-sent: it may change data on the server" in text
    assert "  stripe [3]  passed  200 -> 200  GET https://127.0.0.1:8443/v1/customers" in text


@pytest.mark.parametrize("outcome", [Outcome.PASSED, Outcome.CHANGED])
def test_terminal_report_of_a_clean_run(outcome):
    report = DriftReport(cassettes=("c",), started_at=1.0, finished_at=2.0,
                         results=[checked(outcome, 0)])
    text = terminal(report)
    assert text.splitlines()[-1] == summary_line(report)
    assert "problem:" not in text
