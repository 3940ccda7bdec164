"""`make demo`: record a payments client against a local sandbox, then replay it offline.

1. start the sandbox payments API (demo/sandbox.py: HTTPS on 127.0.0.1, its own CA);
2. `replayproxy record` the client (demo/client.py, standard library only) against it;
3. stop the sandbox, so nothing answers on its port any more;
4. show the cassette;
5. `replayproxy replay` the same client command, offline, from the cassette;
6. replay it again with two faults injected on the charge: the first attempt's
   connection is dropped, the second gets a 503; the client retries and carries on;
7. start the sandbox as v2 (a field renamed, a type changed) and run the drift check
   against it: it must report exactly those changes as breaking, and the volatile
   ``created`` times as noise (HTML, JUnit and JSON reports in demo/.work/drift);
then compare what the client printed in the three runs. Exit status 0 only when every
step worked, all three runs printed the same lines, the client retried twice and the
drift check found what v2 changed and nothing else.

Everything lives in demo/.work (cassettes, the sandbox's CA, replayproxy's own CA via
REPLAYPROXY_CA_DIR), so ~/.replayproxy is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
WORK = DEMO / ".work"
CASSETTES = WORK / "cassettes"
SANDBOX_DIR = WORK / "sandbox"
CASSETTE = "payments"

READY_TIMEOUT = 20.0  # seconds for the sandbox to start listening
STOP_TIMEOUT = 5.0  # seconds for a process to exit after SIGTERM
RUN_TIMEOUT = 120.0  # seconds for one `replayproxy record/replay` run
STEPS = 8
# step 6: both rules see every charge; the first drops attempt 1, the second answers
# attempt 2 (only) with a 503, so attempt 3 gets the recorded answer
FAULTS = ("reset,first=1@POST */v1/charges", "status=503,nth=2@POST */v1/charges")
DRIFT = WORK / "drift"
API_KEY = "sk_test_demo_4242"  # the client's default key (demo/client.py)
# what v2 changes, as the drift check must report it (kind, location), and nothing else
EXPECTED_BREAKING = {("field_missing", "body $.customer"), ("type_changed", "body $.amount")}


class DemoError(Exception):
    pass


def show_path(path: Path | str) -> str:
    """A path relative to the repository (where the commands run), for short output."""
    path = Path(path)
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(ROOT))
    return str(path)


def show_cmd(cmd: list[str], width: int = 90) -> str:
    """The command as a user would type it (`replayproxy`, `python`), wrapped at options."""
    shown: list[str] = []
    for i, arg in enumerate(cmd):
        if arg == sys.executable:
            shown.append("python")
        elif arg == "-m" and i > 0 and cmd[i - 1] == sys.executable:
            continue
        elif arg == "replayproxy" and i > 1 and cmd[i - 1] == "-m":
            shown[-1] = "replayproxy"
        else:
            shown.append(arg)
    words = [shlex.quote(a) for a in shown]
    units: list[str] = []  # an option together with its value, never split
    for word in words:
        if units and units[-1].startswith("-") and units[-1] != "--" \
                and " " not in units[-1] and not word.startswith("-"):
            units[-1] += " " + word
        else:
            units.append(word)
    lines = [units[0]]
    for unit in units[1:]:
        if unit == "--" or len(lines[-1]) + 1 + len(unit) > width:
            lines[-1] += " \\"
            lines.append("  " + unit)
        else:
            lines[-1] += " " + unit
    return "\n        ".join(lines)


def step(n: int, text: str) -> None:
    print(f"\n[{n}/{STEPS}] {text}", flush=True)


def detail(text: str, prefix: str = "      ") -> None:
    for line in text.rstrip("\n").splitlines():
        print(f"{prefix}{line}", flush=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["REPLAYPROXY_CA_DIR"] = str(WORK / "ca")  # the demo's own proxy CA
    env["REPLAYPROXY_HOME"] = str(WORK / "home")
    env["REPLAYPROXY_REPORT_DB"] = str(WORK / "runs.db")  # this demo's runs only
    env.pop("REPLAYPROXY_CASSETTE_DIR", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def stop_process(proc: subprocess.Popen[Any], name: str) -> None:
    """SIGTERM this process (by its own PID), wait, SIGKILL if it does not exit."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"      {name} (PID {proc.pid}) ignored SIGTERM for {STOP_TIMEOUT:.0f} s; "
              "killing it", flush=True)
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def start_sandbox(env: dict[str, str], log_path: Path, version: str = "v1"
                  ) -> tuple[subprocess.Popen[Any], dict[str, Any]]:
    ready = SANDBOX_DIR / "ready.json"
    ready.unlink(missing_ok=True)
    cmd = [sys.executable, str(DEMO / "sandbox.py"), "--port", "0", "--ready-file", str(ready),
           "--work-dir", str(SANDBOX_DIR), "--log-file", str(log_path), "--version", version]
    errors = SANDBOX_DIR / "stderr.log"  # a file, not a pipe: it can never fill up and block
    with open(errors, "wb") as err_file:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        while not ready.exists():
            if proc.poll() is not None:
                err = errors.read_text(errors="replace").strip()
                raise DemoError(f"the sandbox exited with status {proc.returncode} before it "
                                f"was ready:\n{err}")
            if time.monotonic() > deadline:
                raise DemoError(f"the sandbox did not write {show_path(ready)} within "
                                f"{READY_TIMEOUT:.0f} s")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
    except BaseException:
        stop_process(proc, "the sandbox")
        raise
    return proc, info


def run_captured(cmd: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run cmd, return (exit status, stdout, stderr); bounded by RUN_TIMEOUT."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        stop_process(proc, "replayproxy")  # it passes SIGTERM on to the command it runs
        err = ""
        with contextlib.suppress(subprocess.TimeoutExpired):
            err = proc.communicate(timeout=STOP_TIMEOUT)[1]
        detail(err, "      | ")
        raise DemoError(f"`{show_cmd(cmd)}` did not finish within {RUN_TIMEOUT:.0f} s") \
            from None
    finally:
        stop_process(proc, "replayproxy")
    return proc.returncode, out, err


def refuses_connections(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1.0):
            return False
    except OSError:
        return True


def replayproxy(*args: str) -> list[str]:
    return [sys.executable, "-m", "replayproxy", *args]


def client(url: str) -> list[str]:
    return [sys.executable, show_path(DEMO / "client.py"), "--base-url", url]


def wrapped_run(verb: str, cmd: list[str], env: dict[str, str]) -> tuple[str, str]:
    """Run and show a `replayproxy record/replay`; return the client's stdout and the
    stderr (replayproxy's messages and the client's)."""
    print(f"      $ {show_cmd(cmd)}", flush=True)
    rc, out, err = run_captured(cmd, env)
    detail(err, "      | ")
    if rc != 0:
        detail(out, "      > ")
        raise DemoError(f"{verb} failed with exit status {rc} (see the messages above)")
    return out, err


def print_run(title: str, out: str) -> None:
    print(f"\n  {title}", flush=True)
    detail(out or "(nothing)", "    ")


def demo() -> int:
    started = time.monotonic()
    shutil.rmtree(CASSETTES, ignore_errors=True)  # record afresh every time
    for d in (CASSETTES, SANDBOX_DIR):
        d.mkdir(parents=True, exist_ok=True)
    log_path = SANDBOX_DIR / "requests.log"
    for stale in ("ready.json", log_path.name, "stderr.log"):  # its CA is kept and reused
        (SANDBOX_DIR / stale).unlink(missing_ok=True)
    (WORK / "runs.db").unlink(missing_ok=True)
    env = child_env()

    print("replayproxy demo: record a payments client against a local sandbox API, "
          "then replay it\nwith the sandbox gone. Work files: " + show_path(WORK))

    step(1, "Starting the sandbox payments API (HTTPS on 127.0.0.1, with its own CA)")
    sandbox, info = start_sandbox(env, log_path)
    try:
        url, sandbox_ca = info["url"], info["ca"]
        detail(f"listening on {url}, PID {sandbox.pid}, CA {show_path(sandbox_ca)}")

        step(2, "Recording: the client talks to the sandbox through replayproxy")
        cmd = replayproxy("record", "-c", CASSETTE, "--cassette-dir", show_path(CASSETTES),
                          "--upstream-ca", show_path(sandbox_ca), "--", *client(url))
        recorded, _ = wrapped_run("recording", cmd, env)
        served = sum(1 for line in log_path.read_text().splitlines() if " /v1/" in line)
        detail(f"the sandbox answered {served} requests")
        if not served:
            raise DemoError("the client sent nothing to the sandbox through the proxy")

        step(3, f"Stopping the sandbox (PID {sandbox.pid})")
        stop_process(sandbox, "the sandbox")
    finally:
        stop_process(sandbox, "the sandbox")
    if not refuses_connections(url):
        raise DemoError(f"something still answers on {url} after the sandbox stopped")
    detail(f"stopped; {url} now refuses connections")

    step(4, "The cassette that was written")
    cmd = replayproxy("cassette", "show", "-c", CASSETTE, "--cassette-dir", show_path(CASSETTES),
                      "--brief")
    print(f"      $ {show_cmd(cmd)}", flush=True)
    rc, out, err = run_captured(cmd, env)
    detail(out + err)
    if rc != 0:
        raise DemoError(f"`replayproxy cassette show` failed with exit status {rc}")
    detail("the client's API key (Authorization: Bearer sk_test_...) was redacted before "
           "writing; the scanner proves it:")
    cmd = replayproxy("scan", show_path(CASSETTES))
    print(f"      $ {show_cmd(cmd)}", flush=True)
    rc, out, err = run_captured(cmd, env)
    detail(out + err)
    if rc != 0:
        raise DemoError("`replayproxy scan` found secrets in the cassette")

    step(5, "Replaying offline: the same client command, answered from the cassette")
    cmd = replayproxy("replay", "-c", CASSETTE, "--cassette-dir", show_path(CASSETTES),
                      "--", *client(url))
    replayed, _ = wrapped_run("replaying", cmd, env)

    step(6, "Replaying with faults: the first charge attempt is dropped, the second gets "
            "a 503")
    fault_args = [arg for spec in FAULTS for arg in ("--fault", spec)]
    cmd = replayproxy("replay", "-c", CASSETTE, "--cassette-dir", show_path(CASSETTES),
                      *fault_args, "--", *client(url))
    faulted, err = wrapped_run("replaying with faults", cmd, env)
    retries = [line for line in err.splitlines()
               if line.startswith("client: ") and " retry " in line]
    detail(f"the client retried {len(retries)} times and went on")

    drift_ok = drift_check(env, log_path, url)

    step(8, "The run report: which recorded endpoints the runs exercised")
    cmd = replayproxy("report", "-c", CASSETTE, "--suites", "3")
    print(f"      $ {show_cmd(cmd)}", flush=True)
    rc, out, err = run_captured(cmd, env)
    detail(out + err)
    if rc != 0:
        raise DemoError(f"`replayproxy report` failed with exit status {rc}")

    print("\nWhat the client printed:")
    print_run("while recording (live sandbox):", recorded)
    print_run("while replaying (sandbox stopped, offline):", replayed)
    print_run("while replaying with a reset and a 503 injected (after 2 retries):", faulted)
    elapsed = time.monotonic() - started
    if len(retries) != 2:
        print(f"\nFAILED: the client should have retried twice in step 6, it retried "
              f"{len(retries)} times.", flush=True)
        return 1
    if not drift_ok:
        print("\nFAILED: the drift check did not report what v2 changed (see step 7).",
              flush=True)
        return 1
    if recorded and recorded == replayed == faulted:
        lines = len(recorded.splitlines())
        print(f"\nOK: all three runs printed the same {lines} lines; the second one was "
              "answered from the cassette,\nwith the sandbox stopped; the third survived a "
              f"dropped connection and a 503 by retrying.\nThe drift check against the "
              f"sandbox v2 reported its renamed field and changed type as breaking.\n"
              f"(done in {elapsed:.1f} s)")
        return 0
    print("\nFAILED: the runs printed different output.", flush=True)
    return 1


def drift_check(env: dict[str, str], log_path: Path, recorded_url: str) -> bool:
    """Step 7: the drift check against the sandbox v2; True when it found exactly the
    breaking changes v2 made and called the ``created`` times noise."""
    step(7, "Drift check: the sandbox now runs v2 (`customer` renamed `customer_id`, "
            "`amount` a string)")
    shutil.rmtree(DRIFT, ignore_errors=True)
    DRIFT.mkdir(parents=True)
    sandbox, info = start_sandbox(env, log_path, "v2")
    try:
        detail(f"sandbox v2 listening on {info['url']}; the cassette was recorded against "
               f"{recorded_url}")
        cmd = replayproxy(
            "drift", "-c", CASSETTE, "--cassette-dir", show_path(CASSETTES),
            "--upstream-ca", show_path(info["ca"]), "--origin", f"{recorded_url}={info['url']}",
            "--credential", "authorization=SANDBOX_API_KEY", "--allow-unsafe",
            "--concurrency", "1", "--json", show_path(DRIFT / "drift.json"),
            "--junit", show_path(DRIFT / "drift.xml"), "--html", show_path(DRIFT / "drift.html"),
            "--markdown", show_path(DRIFT / "drift.md"), "--db", show_path(DRIFT / "history.db"))
        print(f"      $ SANDBOX_API_KEY=sk_test_... {show_cmd(cmd)}", flush=True)
        rc, out, err = run_captured(cmd, {**env, "SANDBOX_API_KEY": API_KEY})
        detail(out + err, "      | ")
    finally:
        stop_process(sandbox, "the sandbox v2")
    if rc != 1:
        print(f"      the drift check exited {rc}, expected 1 (breaking drift)", flush=True)
        return False
    report = json.loads((DRIFT / "drift.json").read_text())
    found = [f for r in report["results"] for f in r["findings"]]
    breaking = {(f["kind"], f["location"]) for f in found if f["severity"] == "breaking"}
    noise = {f["location"] for f in found if f["severity"] == "noise"}
    detail(f"breaking: {', '.join(sorted(f'{k} at {loc}' for k, loc in breaking))}")
    detail(f"noise: {', '.join(sorted(noise))}")
    detail(f"reports: {show_path(DRIFT)}/drift.html, drift.xml (JUnit), drift.md, drift.json")
    if breaking != EXPECTED_BREAKING:
        print(f"      expected breaking {sorted(EXPECTED_BREAKING)}, got {sorted(breaking)}",
              flush=True)
        return False
    if "body $.created" not in noise:
        print("      the volatile `created` times were not reported as noise", flush=True)
        return False
    return True


def main() -> int:
    try:
        return demo()
    except DemoError as e:
        print(f"\ndemo: error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
