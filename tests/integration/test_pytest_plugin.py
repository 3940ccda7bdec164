"""The pytest plugin, as a user's test suite sees it: suites run with ``pytester`` in a
subprocess of their own (one proxy per process), against a local HTTPS upstream with
its own CA, recording and then replaying with the upstream's traffic counted.

Each inner suite has ``filterwarnings = error``, as many suites (ours included) do.
"""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request

import pytest

from replayproxy.cassette.store import load_cassette
from replayproxy.engines.mitm.ca import CA
from replayproxy.run import ProxyRun
from tests.conftest import UpstreamCA
from tests.integration.support import PROXY_ENV_NAMES, Upstream

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.slow

INI = """
[pytest]
filterwarnings = error
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, proxy_ca: CA,
          upstream_ca: UpstreamCA, https_upstream: Upstream):
    """Run the inner suite: ``suite(*args)`` with the plugin loaded, the session's CA and
    the upstream's CA trusted; the upstream's base URL is ``$UPSTREAM`` inside."""
    for name in PROXY_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UPSTREAM", https_upstream.base_url)
    pytester.makeini(INI)

    def run(*args: str, plugin: bool = True) -> pytest.RunResult:
        options = ["-p", "replayproxy.pytest_plugin", f"--replayproxy-ca-dir={proxy_ca.directory}",
                   f"--replayproxy-upstream-ca={upstream_ca.pem}",
                   "--replayproxy-upstream-proxy=none"] if plugin else []
        # hypothesis' and anyio's plugins cost each inner run seconds of start-up
        return pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:anyio", *options,
            *args, timeout=180)

    return run


def write(pytester: pytest.Pytester, source: str, name: str = "test_api") -> None:
    pytester.makepyfile(**{name: textwrap.dedent(source)})


PAY = """
    import os
    import pytest
    import requests

    UP = os.environ["UPSTREAM"]

    @pytest.mark.replayproxy(cassette="payments")
    def test_pay(replayproxy):
        r = requests.post(UP + "/v1/payment_intents", json={"amount": 9999})
        assert r.json()["body"] == '{"amount": 9999}'

    @pytest.mark.replayproxy
    def test_customer(replayproxy):
        assert requests.get(UP + "/v1/customers/c1").json()["path"] == "/v1/customers/c1"

    def test_fixture_alone(replayproxy):
        assert requests.get(UP + "/v2/ping").status_code == 200
"""


def test_record_then_replay_with_the_marker(pytester, suite, https_upstream):
    write(pytester, PAY)
    suite("--replayproxy-record-mode=once").assert_outcomes(passed=3)
    assert https_upstream.total_requests == 3
    cassettes = pytester.path / "cassettes"
    assert sorted(p.name for p in cassettes.iterdir()) == [
        "payments.cassette", "test_api.test_customer.cassette",
        "test_api.test_fixture_alone.cassette"]
    assert load_cassette(cassettes / "payments.cassette").request(0).path == \
        "/v1/payment_intents"

    replayed = suite()  # the default record mode: none
    replayed.assert_outcomes(passed=3)
    assert https_upstream.total_requests == 3  # nothing reached the upstream


def test_a_missing_cassette_in_mode_none_says_how_to_record_it(pytester, suite):
    write(pytester, PAY)
    result = suite("-k", "test_pay")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*replayproxy: cassette 'payments' does not exist in *"
                                 "--replayproxy-record-mode=once*"])


def test_an_unmatched_request_fails_the_test_with_the_closest_recording(pytester, suite):
    write(pytester, PAY)
    suite("--replayproxy-record-mode=once", "-k", "test_pay").assert_outcomes(passed=1)
    write(pytester, PAY.replace('{"amount": 9999}', '{"amount": 10}'))
    result = suite("-k", "test_pay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*replayproxy: cassette 'payments' (*payments.cassette): 1 unmatched request(s)",
        "*no recorded interaction in cassette 'payments' matches POST *",
        "*(the test then failed with JSONDecodeError: *"])


def test_several_workers_record_and_replay_without_damaging_cassettes(pytester, suite,
                                                                       https_upstream):
    tests = "".join(f"""
def test_call_{i}(replayproxy):
    assert requests.get(UP + "/v1/items/{i}").json()["path"] == "/v1/items/{i}"
    assert len(replayproxy.requests()) == 1
""" for i in range(6))
    write(pytester, "import os\nimport requests\nUP = os.environ['UPSTREAM']\n" + tests)
    suite("-n", "2", "--replayproxy-record-mode=once").assert_outcomes(passed=6)
    cassettes = sorted((pytester.path / "cassettes").iterdir())
    assert [p.name for p in cassettes] == [f"test_api.test_call_{i}.cassette"
                                           for i in range(6)]
    for i, path in enumerate(cassettes):
        cassette = load_cassette(path)
        assert (len(cassette), cassette.request(0).path) == (1, f"/v1/items/{i}")
    hits = https_upstream.total_requests
    suite("-n", "2").assert_outcomes(passed=6)
    assert https_upstream.total_requests == hits


FAULTS = """
    import os
    import pytest
    import requests

    UP = os.environ["UPSTREAM"]

    @pytest.mark.replayproxy(faults=["status=429@*/v1/limited"])
    def test_faults(replayproxy):
        assert requests.get(UP + "/v1/limited").status_code == 429
        assert requests.get(UP + "/v1/flaky").status_code == 200
        replayproxy.faults.add("status=503,first=1@*/v1/flaky")
        assert requests.get(UP + "/v1/flaky").status_code == 503
        assert requests.get(UP + "/v1/flaky").status_code == 200
        assert [f["hits"] for f in replayproxy.faults.list()] == [1, 1]
        replayproxy.faults.clear()
        assert requests.get(UP + "/v1/limited").status_code == 200

    def test_the_next_test_has_no_fault(replayproxy):
        assert replayproxy.faults.list() == []
        assert requests.get(UP + "/v1/flaky").status_code == 200

    @pytest.mark.replayproxy(match={"ignore_json": ["$.nonce"]})
    def test_matching_from_the_marker(replayproxy):
        r = requests.post(UP + "/v1/nonce", json={"n": 1, "nonce": os.urandom(8).hex()})
        assert r.status_code == 200 and r.json()["path"] == "/v1/nonce"
"""


def test_faults_from_the_marker_and_switched_inside_a_test(pytester, suite):
    write(pytester, FAULTS)
    suite("--replayproxy-record-mode=once").assert_outcomes(passed=3)
    suite().assert_outcomes(passed=3)  # and the same on replay (another nonce too)


VERIFY = """
    import os
    import pytest
    import requests

    UP = os.environ["UPSTREAM"]

    def pay(amount):
        requests.get(UP + "/v1/customers/c1")
        requests.post(UP + "/v1/payment_intents", json={"amount": amount, "currency": "usd"},
                      headers={"Idempotency-Key": "k-1"})

    def test_verified(replayproxy):
        pay(9999)
        sent = replayproxy.requests(method="POST", url="*/v1/payment_intents")
        assert [(r.method, r.json["amount"], r.header("idempotency-key")) for r in sent] \\
            == [("POST", 9999, "k-1")]
        replayproxy.assert_requested("POST", "*/v1/payment_intents", json={"amount": 9999},
                                     headers={"Idempotency-Key": "k-1"}, times=1)
        replayproxy.assert_requested("POST", "*/v1/refunds", times=0)

    def test_wrong_amount(replayproxy):
        pay(1000)
        replayproxy.assert_requested("POST", "*/v1/payment_intents", json={"amount": 9999},
                                     times=1)
"""


def test_verification_passes_and_fails_with_a_readable_diff(pytester, suite):
    write(pytester, VERIFY)
    result = suite("--replayproxy-record-mode=once")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "E * AssertionError: expected 1 request POST */v1/payment_intents with JSON "
        '{"amount": 9999}, got 0.',
        "E * Requests sent during this test (2):",
        "E * #* GET https://127.0.0.1:*/v1/customers/c1 (forwarded): "
        "not POST */v1/payment_intents",
        "E * #* POST https://127.0.0.1:*/v1/payment_intents (forwarded): differs",
        "E * $.amount: expected 9999, got 1000",
    ])
    replayed = suite("-k", "test_verified")  # the same on replay
    replayed.assert_outcomes(passed=1)


VARIABLE = """
    import os
    import uuid
    import requests

    UP = os.environ["UPSTREAM"]

    def test_new_customer(replayproxy):
        name = replayproxy.variable("customer", lambda: f"cust-{uuid.uuid4().hex}")
        r = requests.post(UP + "/v1/customers", json={"name": name})
        assert r.status_code == 200 and name in r.json()["body"]
        print("customer:", name)
"""


def test_a_recorded_variable_comes_back_on_replay(pytester, suite):
    write(pytester, VARIABLE)
    recorded = suite("--replayproxy-record-mode=once", "-s")
    recorded.assert_outcomes(passed=1)
    stored = json.loads((pytester.path / "cassettes" /
                         "test_api.test_new_customer.variables.json").read_text())
    name = stored["variables"]["customer"]
    recorded.stdout.fnmatch_lines([f"*customer: {name}*"])
    replayed = suite("-s")  # a new uuid would match nothing: the stored one is used
    replayed.assert_outcomes(passed=1)
    replayed.stdout.fnmatch_lines([f"*customer: {name}*"])


CURL = """
    import os
    import subprocess

    UP = os.environ["UPSTREAM"]

    def test_curl(replayproxy):
        out = subprocess.run(["curl", "-sS", "--max-time", "20", UP + "/v1/from-curl"],
                             capture_output=True, text=True, check=True).stdout
        assert '"path": "/v1/from-curl"' in out
        assert [r.url for r in replayproxy.requests()] == [UP + "/v1/from-curl"]
"""


def test_a_curl_subprocess_goes_through_the_proxy(pytester, suite, https_upstream):
    write(pytester, CURL)
    suite("--replayproxy-record-mode=once").assert_outcomes(passed=1)
    assert https_upstream.hits("/v1/from-curl") == 1
    https_upstream.stop()  # replay needs no upstream at all
    suite().assert_outcomes(passed=1)


DIRECT = """
    import http.client
    import os
    from urllib.parse import urlsplit

    import requests

    UP = urlsplit(os.environ["UPSTREAM"])

    def test_direct(replayproxy):
        conn = http.client.HTTPSConnection(UP.hostname, UP.port, timeout=5)
        try:
            conn.request("GET", "/v1/direct")
        except OSError:
            pass  # swallowed: the test fails all the same

    def test_through_the_proxy(replayproxy):
        assert requests.get(UP.geturl() + "/v1/ok").status_code == 200
"""


def test_a_direct_connection_in_mode_none_fails_the_test_naming_the_host(
        pytester, suite, https_upstream):
    write(pytester, DIRECT)
    suite("--replayproxy-record-mode=all", "-k", "test_through").assert_outcomes(passed=1)
    write(pytester, DIRECT)
    result = suite("--replayproxy-record-mode=once")  # test_direct records; the other replays
    result.assert_outcomes(passed=2)
    connections = https_upstream.connections
    result = suite()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        f"*replayproxy: the test connected directly to 127.0.0.1:{https_upstream.port}, "
        "not through the proxy: the test replays (record mode none)*"])
    assert https_upstream.connections == connections  # refused before it connected


def test_a_suite_whose_warnings_are_errors_still_gets_tls_through_the_proxy(pytester, suite):
    # pyOpenSSL warns "Passing pyOpenSSL X509 objects is deprecated" from mitmproxy 11's
    # TLS code in the proxy's thread; filterwarnings = error would turn it into an error
    # there and break every handshake
    write(pytester, """
        import os, warnings, requests

        def test_tls(replayproxy):
            assert requests.get(os.environ["UPSTREAM"] + "/v1/tls").status_code == 200

        def test_own_warnings_still_fail():
            warnings.warn("mine", DeprecationWarning)
    """)
    result = suite("--replayproxy-record-mode=all")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*DeprecationWarning: mine*"])


# -- bad input --------------------------------------------------------------------------


def test_an_unknown_marker_argument_is_a_usage_error(pytester, suite):
    write(pytester, """
        import pytest

        @pytest.mark.replayproxy(casette="typo")
        def test_x(replayproxy):
            pass
    """)
    result = suite()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: test_api.py::test_x: @pytest.mark.replayproxy: unknown argument casette; "
        "allowed: cassette, record_mode, faults, match"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_record_mode_that_does_not_exist_is_a_usage_error(pytester, suite):
    write(pytester, """
        import pytest

        @pytest.mark.replayproxy(record_mode="sometimes")
        def test_x():
            pass
    """)
    result = suite()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: test_api.py::test_x: @pytest.mark.replayproxy: unknown record mode "
        "'sometimes'; use one of: once, new_episodes, all, none"])
    result = suite("--replayproxy-record-mode=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--replayproxy-record-mode: invalid choice: 'sometimes'*"])
    pytester.makefile(".toml", replayproxy='[pytest]\nrecord_mode = "sometimes"\n')
    result = suite()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: replayproxy: *replayproxy.toml: [[]pytest] "
                                 "record_mode: unknown record mode 'sometimes'*"])


def test_a_bad_fault_option_is_a_usage_error(pytester, suite):
    write(pytester, "def test_x(replayproxy):\n    pass\n")
    result = suite("--replayproxy-fault=status=999@*")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: replayproxy: --replayproxy-fault 'status=999@*': *"])


def test_the_fixture_without_the_plugin_is_a_usage_error(pytester, suite):
    pytester.makeconftest("from replayproxy.pytest_plugin import replayproxy  # noqa: F401\n")
    write(pytester, "def test_x(replayproxy):\n    pass\n")
    result = suite("-p", "no:replayproxy.pytest_plugin", plugin=False)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines([
        "*replayproxy: the replayproxy fixture is used but the plugin is not loaded (its "
        "--replayproxy-* options are missing): load it with -p replayproxy.pytest_plugin*"])


# -- the control API's request log, for suites in other languages -------------------------


def test_the_control_api_lists_the_requests_sent(proxy_ca, upstream_ca, https_upstream,
                                                  tmp_path):
    import requests

    with ProxyRun("log", "all", cassette_dir=tmp_path, upstream_ca=upstream_ca.pem,
                  ca_dir=proxy_ca.directory, upstream_proxy="none") as run:
        proxies = {"https": run.proxy_url}
        requests.get(https_upstream.url("/v1/a"), proxies=proxies, verify=str(run.ca.bundle))
        requests.post(https_upstream.url("/v1/b"), json={"n": 1}, proxies=proxies,
                      verify=str(run.ca.bundle))

        def call(query: str, method: str = "GET", token: str | None = run.control_token):
            request = urllib.request.Request(f"{run.control_url}/requests{query}",
                                             method=method,
                                             headers={"Authorization": f"Bearer {token}"})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(request, timeout=10) as response:
                return json.loads(response.read())

        listed = call("?method=POST&url=*/v1/b")
        assert [(r["method"], r["url"], r["json"], r["outcome"]) for r in listed["requests"]] \
            == [("POST", https_upstream.url("/v1/b"), {"n": 1}, "forwarded")]
        assert listed["next"] == 3
        assert [r["seq"] for r in call("?since=2")["requests"]] == [2]
        assert call("", "DELETE") == {"cleared": 2}
        for query, token, status in [("", "wrong", 401), ("?since=x", run.control_token, 400)]:
            with pytest.raises(urllib.error.HTTPError) as refused:
                call(query, token=token)
            refused.value.close()  # its socket
            assert refused.value.code == status


def test_loading_the_plugin_imports_no_proxy_until_a_test_uses_it(pytester, suite):
    pytester.makeconftest("""
        import sys

        def pytest_collection_finish(session):
            heavy = sorted(m for m in sys.modules if m.split(".")[0] == "mitmproxy")
            print("heavy at collection:", heavy)
    """)
    write(pytester, PAY)
    result = suite("--collect-only", "-s")
    result.stdout.fnmatch_lines(["heavy at collection: []"])


def test_each_test_is_kept_in_the_run_report(pytester, suite, monkeypatch, tmp_path,
                                             https_upstream):
    from replayproxy.report.runs import read_report

    db = tmp_path / "runs.db"
    monkeypatch.setenv("REPLAYPROXY_REPORT_DB", str(db))
    write(pytester, PAY)
    suite("--replayproxy-record-mode=once", "-n", "2").assert_outcomes(passed=3)
    suite().assert_outcomes(passed=3)
    write(pytester, PAY.replace('{"amount": 9999}', '{"amount": 10}'))
    suite("-k", "test_pay").assert_outcomes(failed=1)

    report = read_report(db)
    assert report.suites == 3  # the two xdist workers' runs are one suite
    by_test = {r.test: r for r in report.slowest}
    assert set(by_test) == {"test_api.py::test_pay", "test_api.py::test_customer",
                            "test_api.py::test_fixture_alone"}
    assert by_test["test_api.py::test_customer"].outcomes == ("passed:0", "passed:0")
    assert [r.test for r in report.flaky] == ["test_api.py::test_pay"]
    assert report.flaky[0].outcomes == ("passed:0", "passed:0", "failed:1")
    assert report.coverage["payments"] == {
        f"POST 127.0.0.1:{https_upstream.port}/v1/payment_intents": 3}
