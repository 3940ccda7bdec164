"""Issue 6, the controls: the control API used by a command run under `replayproxy
replay`, its answers to bad payloads, and bad fault rules given to the CLI.

The command is a Python script run as ``replayproxy replay -c NAME -- python
script.py URL``: it finds the control API through ``REPLAYPROXY_CONTROL_URL`` (what
``FaultControl()`` reads), switches faults between its requests, and prints one JSON
line per step, which the test reads back.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.model import Interaction, Request, Response
from tests.integration.support import (
    JSON_BODY,
    assert_clean_error,
    base_env,
    cli,
    free_port,
    write_config,
)

pytestmark = pytest.mark.slow

# the recorded API: nothing listens on its port (replay is offline)
PORT = free_port()
URL = f"http://127.0.0.1:{PORT}/json"


def _cassette(directory: Path, name: str = "api") -> None:
    it = Interaction(
        Request("GET", "http", "127.0.0.1", PORT, "/json", "", ()),
        Response(200, "OK", (("Content-Type", "application/json"),
                             ("Content-Length", str(len(JSON_BODY)))), JSON_BODY),
        recorded_at=1_767_225_600.0, ttfb=0.001, duration=0.002)
    save_cassette(cassette_path(directory, name), [it])


def _run_script(tmp: Path, env: dict[str, str], body: str,
                *extra: str) -> tuple[list[Any], str]:
    """Replay cassette ``api`` around ``python script.py URL``; return its JSON lines."""
    cdir = tmp / "cassettes"
    _cassette(cdir)
    script = tmp / "script.py"
    script.write_text(_PRELUDE + textwrap.dedent(body), encoding="utf-8")
    proc = cli("replay", "-c", "api", "--cassette-dir", cdir, *extra, "--", sys.executable,
               script, URL, env=env, cwd=tmp, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


_PRELUDE = '''\
import http.client, json, os, sys, urllib.error, urllib.request
from replayproxy.faults.control import FaultControl, FaultControlError

URL = sys.argv[1]
CONTROL = os.environ["REPLAYPROXY_CONTROL_URL"]
proxied = urllib.request.build_opener()  # HTTP_PROXY from replayproxy
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

def out(*values):
    print(json.dumps(values), flush=True)

def get():
    """(status, body, X-Replayproxy) of GET URL through the proxy, or "dropped"."""
    try:
        with proxied.open(URL, timeout=30) as r:
            return [r.status, r.read().decode(), r.headers.get("X-Replayproxy")]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode(), e.headers.get("X-Replayproxy")]
    except (OSError, http.client.HTTPException):
        return "dropped"

def raw(method, path="/faults", data=None, content_type="application/json",
        token=os.environ["REPLAYPROXY_CONTROL_TOKEN"]):
    """(status, decoded JSON answer) of a raw call to the control API."""
    request = urllib.request.Request(CONTROL + path, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with direct.open(request, timeout=30) as r:
            return [r.status, json.loads(r.read())]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read())]
'''


# -- the control API from a command run under replayproxy --------------------------------


def test_command_adds_observes_counts_and_clears_faults(cli_env, tmp_path):
    lines, _ = _run_script(tmp_path, cli_env, """
        faults = FaultControl()
        out("control", CONTROL)
        out("start", faults.list())
        out("normal", get())
        out("added", faults.add("status=503,first=2,body=injected@GET */json"))
        out("faulted", get())
        out("faulted", get())
        out("passed", get())
        out("list", faults.list())
        out("added", faults.add({"kind": "status", "value": 418, "route": "*/json"}))
        out("teapot", get())
        out("hits", faults.hits())
        out("cleared", faults.clear())
        out("list", faults.list())
        out("normal", get())
    """)
    normal = [200, JSON_BODY.decode(), None]
    assert lines == [
        ["control", lines[0][1]],
        ["start", []],
        ["normal", normal],
        ["added", 0],
        ["faulted", [503, "injected", "fault"]],
        ["faulted", [503, "injected", "fault"]],
        ["passed", normal],
        ["list", [{"index": 0, "spec": "status=503,first=2,body=injected@GET */json",
                   "hits": 2}]],
        ["added", 1],
        ["teapot", [418, "", "fault"]],
        ["hits", [2, 1]],
        ["cleared", 2],
        ["list", []],
        ["normal", normal],
    ]
    assert lines[0][1].startswith("http://127.0.0.1:")


def test_fault_flags_and_control_api_combine(cli_env, tmp_path):
    """A --fault rule is listed by the API with its hits, and clearing removes it."""
    lines, stderr = _run_script(tmp_path, cli_env, """
        faults = FaultControl()
        out("first", get())
        out("second", get())
        out("list", faults.list())
        faults.clear()
        out("after", get())
    """, "--fault", "reset,first=1@*/json", "--fault", "status=502,nth=2@*/json")
    assert lines[0] == ["first", "dropped"]
    assert lines[1] == ["second", [502, "", "fault"]]
    assert lines[2] == ["list", [
        {"index": 0, "spec": "reset,first=1@*/json", "hits": 1},
        {"index": 1, "spec": "status=502,nth=2@*/json", "hits": 1}]]
    assert lines[3] == ["after", [200, JSON_BODY.decode(), None]]
    assert "faults: reset,first=1@*/json; status=502,nth=2@*/json" in stderr


@pytest.fixture(scope="module")
def bad_payloads(proxy_ca_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, Any]:
    """Every bad call to the control API, made once from one command; by label."""
    tmp = tmp_path_factory.mktemp("control")
    env = base_env(REPLAYPROXY_CA_DIR=str(proxy_ca_dir), REPLAYPROXY_HOME=str(tmp / "home"))
    lines, _ = _run_script(tmp, env, """
        calls = {
            "not json": raw("POST", data=b"{not json"),
            "empty": raw("POST", data=b""),
            "unknown kind": raw("POST", data=json.dumps({"spec": "bogus@*"}).encode()),
            "p outside 0..1": raw("POST", data=json.dumps({"spec": "reset,p=1.5"}).encode()),
            "negative latency": raw("POST",
                                    data=json.dumps({"spec": "latency=-5ms"}).encode()),
            "spec not a string": raw("POST", data=json.dumps({"spec": 503}).encode()),
            "not an object": raw("POST", data=b'["reset"]'),
            "bad table": raw("POST", data=json.dumps({"kind": "reset", "p": 2}).encode()),
            "unknown path": raw("GET", "/nope"),
            "unknown path post": raw("POST", "/faults/1", data=b'{"spec": "reset"}'),
            "no token": raw("POST", data=json.dumps({"spec": "reset"}).encode(), token=None),
            "wrong token": raw("DELETE", token="guessed"),
            "no token list": raw("GET", token=None),
        }
        for label, answer in calls.items():
            out(label, answer)
        try:
            FaultControl().add("reset,p=2")
        except FaultControlError as e:
            out("client", str(e))
        out("list", raw("GET"))
        out("after", get())
    """)
    return {label: value for label, value in lines}


@pytest.mark.parametrize(("label", "reason"), [
    ("not json", "the body is not JSON"),
    ("empty", "send a JSON body"),
    ("unknown kind", "unknown fault kind 'bogus'"),
    ("p outside 0..1", "p must be a probability from 0 to 1, got '1.5'"),
    ("negative latency", "latency must not be negative, got '-5ms'"),
    ("spec not a string", "'spec' must be a string"),
    ("not an object", "expected a JSON object"),
    ("bad table", "key 'p': p must be a probability from 0 to 1"),
])
def test_bad_payload_gets_400_with_the_reason(bad_payloads, label, reason):
    status, answer = bad_payloads[label]
    assert status == 400, answer
    assert reason in answer["error"], answer


@pytest.mark.parametrize("label", ["unknown path", "unknown path post"])
def test_unknown_path_gets_404(bad_payloads, label):
    status, answer = bad_payloads[label]
    assert status == 404 and "/faults" in answer["error"], answer


@pytest.mark.parametrize("label", ["no token", "wrong token", "no token list"])
def test_a_call_without_the_run_token_gets_401(bad_payloads, label):
    """Another local user (or a program the run did not start) cannot change faults."""
    status, answer = bad_payloads[label]
    assert status == 401, answer
    assert "REPLAYPROXY_CONTROL_TOKEN" in answer["error"]


def test_bad_payloads_change_nothing(bad_payloads):
    assert "p must be a probability from 0 to 1, got '2'" in bad_payloads["client"]
    assert bad_payloads["list"] == [200, {"faults": []}]
    assert bad_payloads["after"] == [200, JSON_BODY.decode(), None]


# -- bad fault rules on the command line and in the configuration -----------------------


@pytest.fixture
def marker_cmd(tmp_path: Path) -> tuple[Path, list[str]]:
    """A command that leaves a file behind if it ever runs."""
    marker = tmp_path / "ran"
    return marker, [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]


def test_unknown_kind_flag_on_replay(cli_env, tmp_path, marker_cmd):
    marker, cmd = marker_cmd
    _cassette(tmp_path / "cassettes")
    proc = cli("replay", "-c", "api", "--cassette-dir", tmp_path / "cassettes",
               "--fault", "bogus@*", "--", *cmd, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 2
    line = assert_clean_error(proc, "--fault 'bogus@*'", "unknown fault kind 'bogus'")
    assert "reset" in line  # the kinds allowed
    assert not marker.exists()


def test_probability_outside_0_1_flag_on_record(cli_env, tmp_path, marker_cmd):
    marker, cmd = marker_cmd
    proc = cli("record", "-c", "new", "--cassette-dir", tmp_path / "cassettes",
               "--fault", "reset,p=1.5", "--", *cmd, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 2
    assert_clean_error(proc, "--fault 'reset,p=1.5'", "p must be a probability from 0 to 1")
    assert not marker.exists()
    assert not (tmp_path / "cassettes" / "new.cassette").exists()


def test_negative_latency_flag_on_serve(cli_env, tmp_path):
    proc = cli("serve", "-c", "new", "--cassette-dir", tmp_path / "cassettes",
               "--fault", "latency=-5ms", env=cli_env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert_clean_error(proc, "--fault 'latency=-5ms'", "latency must not be negative")


def test_bad_fault_in_the_configuration_file(cli_env, tmp_path, marker_cmd):
    marker, cmd = marker_cmd
    config = write_config(tmp_path, 'faults = ["status=503,first=1@*", "nope"]\n')
    _cassette(tmp_path / "cassettes")
    proc = cli("replay", "-c", "api", "--cassette-dir", tmp_path / "cassettes", "--config",
               config, "--", *cmd, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 2
    assert_clean_error(proc, str(config), "faults #2", "unknown fault kind 'nope'")
    assert not marker.exists()


def test_faults_from_the_configuration_file_apply(cli_env, tmp_path):
    config = write_config(tmp_path, """\
        faults = [
            "status=503,first=1@GET */json",
            {kind = "status", value = 429, nth = 2, route = "*/json"},
        ]
    """)
    lines, _ = _run_script(tmp_path, cli_env, """
        for _ in range(3):
            out("got", get())
        out("hits", FaultControl().hits())
    """, "--config", str(config))
    assert lines == [
        ["got", [503, "", "fault"]],
        ["got", [429, "", "fault"]],
        ["got", [200, JSON_BODY.decode(), None]],
        ["hits", [1, 1]],
    ]
    assert load_cassette(cassette_path(tmp_path / "cassettes", "api")).interaction(0) \
        .response.status == 200
