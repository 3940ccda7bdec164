"""Live secrets kept out of the drift check's outputs: ``replayproxy.drift.clean`` (#16)."""

import json
from urllib.parse import quote

from replayproxy.drift.clean import Scrubber, mask, mask_shapes
from replayproxy.drift.compare import compare_responses
from replayproxy.drift.findings import Finding, FindingKind, Severity
from replayproxy.drift.history import default_database, prepare_directory
from replayproxy.drift.plan import (
    Checked,
    DriftConfig,
    DriftReport,
    Outcome,
    Planned,
    plan_request,
)
from replayproxy.drift.report import html
from replayproxy.model import Request, Response, header_value
from replayproxy.redaction.redactor import RedactionConfig, Redactor
from replayproxy.redaction.secrets import PLACEHOLDER

KEY = b"test-key"
CRED = "LiveCredential+/=&Zx81Qw77"
JSON_CT = ("Content-Type", "application/json")
STRIPE = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"


def _request(**changes: object) -> Request:
    return Request("GET", "https", "api.example.com", 443, "/v1/session",
                   **changes)  # type: ignore[arg-type]


def _body(response: Response) -> dict:
    return json.loads(response.body)


def test_an_echoed_credential_becomes_its_placeholder_everywhere() -> None:
    redactor = Redactor(key=KEY)
    placeholder = redactor.placeholder("x-custom", CRED)
    recorded = _request(headers=(("X-Custom", placeholder),))
    planned = plan_request(recorded, DriftConfig(credentials=(("x-custom", "VAR"),)),
                           {"VAR": CRED})
    assert isinstance(planned, Planned)
    assert planned.credentials == (("x-custom", CRED),)
    live = Response(302, "Found", (
        JSON_CT, ("X-Echo", f"you sent {CRED}"),
        ("Location", f"https://cb.example/?state=1&k={quote(CRED, safe='')}")),
        json.dumps({"harmless": CRED, "nested": json.dumps({"again": CRED})}).encode())
    scrub = Scrubber(redactor).knowing(planned.credentials)
    sent, clean = scrub.interaction(planned.request, live)
    text = clean.body.decode() + repr(clean.headers) + sent.url + repr(sent.headers)
    for form in (CRED, quote(CRED, safe=""), json.dumps(CRED)[1:-1]):
        assert form not in text
    assert _body(clean)["harmless"] == placeholder  # the cassette's own placeholder
    assert header_value(clean.headers, "x-echo") == f"you sent {placeholder}"


def test_live_secrets_are_redacted_by_the_recording_rules() -> None:
    live = Response(200, "OK", (JSON_CT, ("Set-Cookie", "session=Sess1on8Value; Path=/"),
                                ("X-Session-Token", "HeaderTok3nValue"),
                                ("Location", "https://x.example/cb?access_token=LocTok3nValue")),
                    json.dumps({"accessToken": "CamelTok3nValue", "clientSecret": "Cl1entSecret",
                                "payload": json.dumps({"access_token": "NestedTok3n"})}).encode())
    clean = Scrubber(Redactor(key=KEY)).response(_request(), live)
    text = clean.body.decode() + repr(clean.headers)
    for secret in ("Sess1on8Value", "HeaderTok3nValue", "LocTok3nValue", "CamelTok3nValue",
                   "Cl1entSecret", "NestedTok3n"):
        assert secret not in text
    assert PLACEHOLDER.fullmatch(_body(clean)["accessToken"])


def test_classification_still_works_on_placeholders() -> None:
    scrub = Scrubber(Redactor(key=KEY))

    def live(token: str, with_secret: bool = True) -> Response:
        doc = {"access_token": token, "clientSecret": token + "x"} if with_secret else \
            {"access_token": token}
        return scrub.response(_request(), Response(200, "OK", (JSON_CT,),
                                                   json.dumps(doc).encode()))

    recorded = live("RecordedTokenValue1")
    findings = compare_responses(recorded, live("LiveTokenValue2"),
                                 live_again=live("LiveTokenValue3"))
    by_location = {f.location: f for f in findings}
    assert {f.severity for f in findings} == {Severity.NOISE}
    changed = by_location["body $.clientSecret"]  # learned: it changed between the live calls
    assert changed.kind is FindingKind.VALUE_CHANGED
    assert PLACEHOLDER.fullmatch(str(changed.recorded))
    assert PLACEHOLDER.fullmatch(str(changed.live))
    gone = compare_responses(recorded, live("LiveTokenValue2", with_secret=False))
    assert (Severity.BREAKING, FindingKind.FIELD_MISSING, "body $.clientSecret") in {
        (f.severity, f.kind, f.location) for f in gone}


def test_texts_lose_secret_query_values_injected_credentials_and_shapes() -> None:
    scrub = Scrubber(Redactor(key=KEY), [("authorization", CRED)])
    message = (f"the live response of GET https://h.example/x?access_token=Abcdefgh1234&"
               f"page=2&k={quote(CRED, safe='')} is too big; header said {CRED}; key {STRIPE}")
    clean = scrub.text(message)
    for secret in ("Abcdefgh1234", CRED, quote(CRED, safe=""), STRIPE):
        assert secret not in clean
    assert "page=2" in clean and "is too big" in clean
    assert scrub.text("nothing secret at https://h.example/x?page=2") == \
        "nothing secret at https://h.example/x?page=2"


def test_credential_shapes_are_masked_when_no_rule_redacts_them() -> None:
    off = RedactionConfig(headers=frozenset(), header_words=frozenset(), fields=frozenset(),
                          patterns=())
    scrub = Scrubber(Redactor(off, KEY))
    assert scrub.text(f"key {STRIPE}") == f"key {mask(STRIPE)}"
    assert mask(STRIPE) == f"sk_t… {len(STRIPE)} chars"
    f = Finding(Severity.NOISE, FindingKind.VALUE_CHANGED, "body $.key", STRIPE, 3)
    assert scrub.finding(f).recorded == mask(STRIPE)
    assert mask_shapes("<redacted:stripe-key:abcdef> stays") == "<redacted:stripe-key:abcdef> stays"


def test_the_html_page_masks_a_shape_left_in_a_response() -> None:
    live = Response(200, "OK", (JSON_CT, ("X-Key", STRIPE)),
                    json.dumps({"key": STRIPE}).encode())
    checked = Checked("c", 0, "GET https://h/x #1", "GET h/x", "GET", "https://h/x",
                      Outcome.PASSED, recorded=live, live=live)
    page = html(DriftReport(("c",), results=[checked]))
    assert STRIPE not in page
    assert mask(STRIPE) in page


def test_history_default_is_in_the_project_and_ignores_itself(tmp_path) -> None:
    path, warning = default_database(tmp_path, tmp_path / "cassettes")
    assert path == tmp_path / ".replayproxy" / "history.db" and warning is None
    prepare_directory(path)
    assert (tmp_path / ".replayproxy" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_a_history_at_the_old_default_is_kept_with_a_warning(tmp_path) -> None:
    old = tmp_path / "cassettes" / ".replayproxy.db"
    old.parent.mkdir()
    old.write_bytes(b"")
    path, warning = default_database(tmp_path, tmp_path / "cassettes")
    assert path == old
    assert warning is not None and str(old) in warning and "history.db" in warning
    (tmp_path / ".replayproxy").mkdir()
    (tmp_path / ".replayproxy" / "history.db").write_bytes(b"")
    path, warning = default_database(tmp_path, tmp_path / "cassettes")
    assert path == tmp_path / ".replayproxy" / "history.db"  # both: the new one, as said
    assert warning is not None and "not used" in warning and str(old) in warning
