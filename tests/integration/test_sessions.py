"""Several cassettes on one proxy: sessions chosen by the proxy URL's user name, or
opened through the control API with settings of their own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from replayproxy import ProxyRun
from replayproxy.cassette.store import load_cassette
from tests.integration.support import base_env, control_call, offline


def curl(proxy_url: str, ca: Path, url: str, *extra: str) -> tuple[int, str, str]:
    """curl through ``proxy_url`` (a session URL); (exit code, body, stderr)."""
    env = base_env(HTTPS_PROXY=proxy_url, https_proxy=proxy_url, http_proxy=proxy_url,
                   CURL_CA_BUNDLE=str(ca))
    done = subprocess.run(["curl", "-sS", "--max-time", "30", *extra, url], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr


def control(run: ProxyRun, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    assert run.control_url is not None and run.control_token is not None
    return control_call(run.control_url, run.control_token, method, path, payload)


def test_two_processes_replay_their_own_cassettes_through_one_proxy(
        https_upstream, proxy_ca, upstream_ca, tmp_path):
    cdir = tmp_path / "cassettes"
    ca = proxy_ca.bundle
    with ProxyRun(None, "once", cassette_dir=cdir, upstream_ca=upstream_ca.pem,
                  ca_dir=proxy_ca.directory) as run:
        for name, path in (("alpha", "/v1/alpha"), ("beta", "/v1/beta")):
            code, body, err = curl(run.session_url(name), ca, https_upstream.url(path))
            assert code == 0, err
            assert json.loads(body)["path"] == path
    assert run.verdict().passed
    assert {n: s.recorded for n, s in run.session_summaries.items()} == {"alpha": 1,
                                                                          "beta": 1}
    assert [it.request.path for it in load_cassette(cdir / "alpha.cassette").interactions()] \
        == ["/v1/alpha"]

    with offline(https_upstream), ProxyRun(None, "none", cassette_dir=cdir,
                                           ca_dir=proxy_ca.directory) as run:
        env = {n: base_env(HTTPS_PROXY=run.session_url(n), CURL_CA_BUNDLE=str(ca))
               for n in ("alpha", "beta")}
        # two client processes at once, each asking for both paths
        procs = {n: [subprocess.Popen(["curl", "-sS", "--max-time", "30",
                                       https_upstream.url(p)], env=env[n],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for p in ("/v1/alpha", "/v1/beta")] for n in env}
        out = {n: [p.communicate(timeout=60) for p in ps] for n, ps in procs.items()}
    alpha, beta = out["alpha"], out["beta"]
    assert json.loads(alpha[0][0])["path"] == "/v1/alpha"
    assert b"X-Replayproxy" not in alpha[0][0]
    # alpha never recorded /v1/beta, beta never /v1/alpha
    assert b"no recorded interaction in cassette 'alpha' matches GET" in alpha[1][0]
    assert json.loads(beta[1][0])["path"] == "/v1/beta"
    assert b"no recorded interaction in cassette 'beta' matches GET" in beta[0][0]
    summaries = run.session_summaries
    assert (summaries["alpha"].replayed, summaries["alpha"].unmatched.total) == (1, 1)
    assert (summaries["beta"].replayed, summaries["beta"].unmatched.total) == (1, 1)
    verdict = run.verdict()
    assert verdict.exit_code == 1
    assert any(r.startswith("session alpha: some requests were unmatched")
               for r in verdict.reasons)


def test_a_plain_http_client_names_its_session_too(http_upstream, proxy_ca, tmp_path):
    cdir = tmp_path / "cassettes"
    with ProxyRun("main", "once", cassette_dir=cdir, ca_dir=proxy_ca.directory) as run:
        code, body, err = curl(run.session_url("side"), proxy_ca.bundle,
                               http_upstream.url("/v1/side"))
        assert code == 0, err
        code, body, err = curl(run.proxy_url, proxy_ca.bundle, http_upstream.url("/v1/main"))
        assert code == 0, err
    assert run.summary is not None and run.summary.recorded == 1
    assert run.session_summaries["side"].recorded == 1
    assert [it.request.path for it in load_cassette(cdir / "side.cassette").interactions()] \
        == ["/v1/side"]
    # Proxy-Authorization never reaches the cassette
    side = next(load_cassette(cdir / "side.cassette").interactions())
    assert not any(k.lower().startswith("proxy-") for k, _ in side.request.headers)


@pytest.mark.parametrize("name, why", [
    ("..", "invalid cassette name '..'"),
    ("..%2F..%2Fetc", "invalid cassette name '../../etc'"),
    ("a%2Fb", "invalid cassette name 'a/b'"),
    (".hidden", "invalid cassette name '.hidden'"),
])
def test_an_unsafe_session_name_is_refused_with_407_and_nothing_is_written(
        https_upstream, proxy_ca, upstream_ca, tmp_path, name, why):
    cdir = tmp_path / "deep" / "cassettes"
    with ProxyRun(None, "once", cassette_dir=cdir, upstream_ca=upstream_ca.pem,
                  ca_dir=proxy_ca.directory) as run:
        proxy = run.proxy_url.replace("://", f"://{name}@")
        code, body, err = curl(proxy, proxy_ca.bundle, https_upstream.url("/json"), "-v")
        assert code != 0
        assert "407" in err
        plain = curl(proxy, proxy_ca.bundle, https_upstream.url("/json").replace(
            "https://", "http://"), "-i")
        assert plain[0] == 0 and plain[1].startswith("HTTP/1.1 407")
        assert why in plain[1]
        assert "letters, digits" in plain[1]
    assert https_upstream.total_requests == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []


def test_a_session_opened_through_the_control_api_keeps_its_own_faults(
        https_upstream, proxy_ca, upstream_ca, tmp_path):
    cdir = tmp_path / "cassettes"
    with ProxyRun(None, "once", cassette_dir=cdir, upstream_ca=upstream_ca.pem,
                  ca_dir=proxy_ca.directory) as run:
        status, opened = control(run, "POST", "/sessions",
                                 {"cassette": "flaky", "faults": ["status=503@*"]})
        assert status == 201 and opened["named_proxy_url"] == run.session_url("flaky")
        # a port of its own: no user name needed (Java, clients that drop credentials)
        assert "@" not in opened["proxy_url"] and opened["proxy_url"] != run.proxy_url
        status, again = control(run, "POST", "/sessions", {"cassette": "flaky"})
        assert status == 409 and "open already" in again["error"]

        for proxy in (opened["proxy_url"], opened["named_proxy_url"]):
            code, body, _ = curl(proxy, proxy_ca.bundle, https_upstream.url("/v1/x"),
                                 "-o", "/dev/null", "-w", "%{http_code}")
            assert body == "503"
        code, body, _ = curl(run.session_url("steady"), proxy_ca.bundle,
                             https_upstream.url("/v1/x"), "-o", "/dev/null", "-w",
                             "%{http_code}")
        assert body == "200"  # the other session has no fault
        status, listed = control(run, "GET", "/sessions")
        assert [s["name"] for s in listed["sessions"]] == ["flaky", "steady"]
        status, faults = control(run, "GET", "/sessions/flaky/faults")
        assert [f["hits"] for f in faults["faults"]] == [2]
        status, closed = control(run, "DELETE", "/sessions/steady")
        assert status == 200 and closed["recorded"] == 1 and closed["passed"]
        # written at once, while the proxy goes on
        assert (cdir / "steady.cassette").is_file()
        control(run, "DELETE", "/sessions/flaky")
        code, body, _ = curl(opened["proxy_url"], proxy_ca.bundle,
                             https_upstream.url("/v1/x").replace("https:", "http:"), "-i")
        assert body.startswith("HTTP/1.1 407") and "session 'flaky' was closed" in body
        status, bad = control(run, "POST", "/sessions", {"cassette": "../x"})
        assert status == 400 and "invalid cassette name" in bad["error"]
        status, missing = control(run, "GET", "/faults")
        assert status == 404 and "named sessions only" in missing["error"]


def test_a_replay_only_session_whose_cassette_is_missing_is_refused(
        https_upstream, proxy_ca, tmp_path):
    with ProxyRun(None, "none", cassette_dir=tmp_path, ca_dir=proxy_ca.directory) as run:
        code, body, err = curl(run.session_url("nope"), proxy_ca.bundle,
                               https_upstream.url("/json").replace("https:", "http:"), "-i")
        assert code == 0 and body.startswith("HTTP/1.1 407")
        assert "cassette" in body and "does not exist" in body
        code, body, err = curl(run.proxy_url, proxy_ca.bundle,
                               https_upstream.url("/json").replace("https:", "http:"), "-i")
        assert body.startswith("HTTP/1.1 407") and "named sessions only" in body
    assert https_upstream.total_requests == 0


def test_a_replay_only_session_serves_https_inside_a_recording_run(
        https_upstream, proxy_ca, upstream_ca, tmp_path):
    cdir = tmp_path / "cassettes"
    with ProxyRun("first", "once", cassette_dir=cdir, upstream_ca=upstream_ca.pem,
                  ca_dir=proxy_ca.directory) as run:
        code, body, err = curl(run.session_url("kept"), proxy_ca.bundle,
                               https_upstream.url("/v1/kept"))
        assert code == 0, err
    served = https_upstream.total_requests
    with ProxyRun("second", "all", cassette_dir=cdir, upstream_ca=upstream_ca.pem,
                  ca_dir=proxy_ca.directory) as run:
        status, _ = control(run, "POST", "/sessions", {"cassette": "kept", "mode": "none"})
        assert status == 201
        code, body, err = curl(run.session_url("kept"), proxy_ca.bundle,
                               https_upstream.url("/v1/kept"))
        assert code == 0, err
        assert json.loads(body)["path"] == "/v1/kept"
        assert https_upstream.total_requests == served  # replayed, not fetched
        code, body, err = curl(run.proxy_url, proxy_ca.bundle, https_upstream.url("/v1/live"))
        assert code == 0 and json.loads(body)["path"] == "/v1/live"
    assert run.session_summaries["kept"].replayed == 1
    assert run.summary is not None and run.summary.recorded == 1
