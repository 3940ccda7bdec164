"""The replay engines side by side: `make bench` (or `.venv/bin/python bench/engines.py`).

Measures in one run, on 127.0.0.1 only, with bench/loadgen.py (keep-alive, one request in
flight per connection) at concurrency 1 and 32:

- the upstream answering directly (the baseline for added latency);
- `replayproxy serve --engine fast`: forward proxy (plain HTTP), reverse (base URL),
  HTTPS through CONNECT with keep-alive;
- `replayproxy serve --engine mitmproxy`: forward proxy and HTTPS through CONNECT;
- `mitmdump --server-replay`: forward proxy and HTTPS through CONNECT;
- Talkback (Node), base URL, installed with npm into bench/.work (skipped, with the
  reason printed, where npm is absent or the install fails);
- the fast engine on a 1,000 and a 100,000-interaction cassette (per-request CPU);
- time to ready: `replayproxy serve` from exec to accepting, and ``ProxyRun.start()``
  alone (engine imported, CA read, listening) with the cassette already open.

All serve the same synthetic interactions (GET /items/N?page=N%10, small JSON bodies).
The machine is shared and has 2 cores: the load generator and the server share them,
so compare the ratios within a run, and read "server CPU us/req" as the engine's own
cost (the load generator caps what req/s can show). Results: bench/.work/engines.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from loadgen import build_requests  # noqa: E402
from run import (  # noqa: E402
    BIN,
    HOST,
    PY,
    ROOT,
    Child,
    Target,
    children,
    clean_env,
    free_port,
    log,
    measure_cell,
    start_upstream,
    synthetic,
    wait_accepting,
    write_flows,
)
from upstream import item_body  # noqa: E402

from replayproxy.cassette.format import encode_interaction  # noqa: E402
from replayproxy.cassette.store import save_cassette  # noqa: E402
from replayproxy.model import Interaction  # noqa: E402

API = "api.bench.test"
N = 100
TALKBACK = "talkback@4.2.0"


def https_of(interactions: list[Interaction]) -> list[Interaction]:
    return [dataclasses.replace(it, request=dataclasses.replace(
        it.request, scheme="https", port=443)) for it in interactions]


def serve(work: Path, cassettes: Path, name: str, engine: str, started: list[Child],
          *extra: str) -> tuple[Child, dict[str, str], float]:
    """`replayproxy serve` replaying ``name``; (child, its exports, seconds to ready)."""
    t0 = time.monotonic()
    argv = [PY, "-m", "replayproxy", "serve", "-c", name, "--cassette-dir", str(cassettes),
            "--record-mode", "none", "--ca-dir", str(work / "ca"), "--engine", engine,
            "--quiet", *extra]
    child = Child(f"serve {name} {engine} {' '.join(extra)}", argv,
                  env=clean_env(REPLAYPROXY_HOME=str(work / "home")),
                  stderr=work / f"serve-{name}-{engine}{len(started)}.err")
    started.append(child)
    exports: dict[str, str] = {}
    while "REPLAYPROXY_URL" not in exports:
        line = child.wait_line("export ", 120)
        key, _, value = line[len("export "):].partition("=")
        exports[key] = value.strip("'\"")
    ready = wait_accepting(int(exports["REPLAYPROXY_URL"].rsplit(":", 1)[1]), child, 10)
    return child, exports, ready - t0


def mitmdump(work: Path, flows: Path, started: list[Child]) -> tuple[Child, int]:
    port = free_port()
    child = Child(
        f"mitmdump {flows.name}",
        [str(BIN / "mitmdump"), "-q", "--listen-host", HOST, "--listen-port", str(port),
         "--set", f"confdir={work / 'mitmconf'}", "--set", "connection_strategy=lazy",
         "--server-replay", str(flows), "--set", "server_replay_reuse=true",
         "--set", "server_replay_extra=404"],
        env=clean_env(), stderr=work / f"mitmdump-{flows.stem}.err")
    started.append(child)
    wait_accepting(port, child, 180)
    return child, port


def talkback(work: Path, interactions: list[Interaction], started: list[Child]
             ) -> tuple[Child, int] | str:
    """Talkback serving the same interactions as tapes; or why it cannot run."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return "npm/node not found"
    where = work / "talkback"
    where.mkdir(exist_ok=True)
    if not (where / "node_modules" / "talkback").exists():
        log(f"installing {TALKBACK} with npm ...")
        proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent",
                               "--prefix", str(where), TALKBACK], capture_output=True,
                              text=True, timeout=300, check=False)
        if proc.returncode != 0:
            return f"npm install {TALKBACK} failed: {proc.stderr.strip()[-300:]}"
    tapes = where / "tapes"
    shutil.rmtree(tapes, ignore_errors=True)
    tapes.mkdir()
    for i, it in enumerate(interactions):
        q, r = it.request, it.response
        tape = {"meta": {"createdAt": "2026-01-01T00:00:00.000Z", "host": f"http://{API}",
                         "resHumanReadable": True},
                "req": {"url": q.path + (f"?{q.query}" if q.query else ""), "method": q.method,
                        "headers": {}, "body": ""},
                "res": {"status": r.status, "headers": {k.lower(): [v] for k, v in r.headers},
                        "body": r.body.decode()}}
        (tapes / f"tape-{i}.json5").write_text(json.dumps(tape))
    port = free_port()
    script = where / "serve.js"
    script.write_text(f"""
const talkback = require("talkback");
const server = talkback({{
  host: "http://127.0.0.1:9", path: {json.dumps(str(tapes))}, port: {port},
  record: talkback.Options.RecordMode.DISABLED, silent: true, summary: false,
  allowHeaders: [], fallbackMode: talkback.Options.FallbackMode.NOT_FOUND,
}});
server.start(() => console.log("PORT {port}"));
""")
    child = Child("talkback", ["node", str(script)], env=clean_env(NODE_PATH=str(
        where / "node_modules")), stderr=work / "talkback.err", cwd=where)
    started.append(child)
    try:
        child.wait_line("PORT ", 60)
    except RuntimeError as e:
        return f"talkback did not start: {e}"
    return child, port


def start_time(work: Path, cassettes: Path, name: str, engine: str) -> float:
    """Seconds ``ProxyRun.start()`` takes (engine imported, CA read, listening), in a
    fresh process, the cassette already open."""
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
            "from replayproxy.run import ProxyRun\n"
            f"run = ProxyRun({name!r}, 'none', cassette_dir={str(cassettes)!r}, "
            f"ca_dir={str(work / 'ca')!r}, engine={engine!r})\n"
            "run.open(); t = time.perf_counter(); run.start()\n"
            "print(time.perf_counter() - t); run.stop()\n")
    out = subprocess.run([PY, "-c", code], env=clean_env(REPLAYPROXY_HOME=str(work / "home")),
                         capture_output=True, text=True, timeout=120, check=True)
    return float(out.stdout.split()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds (median)")
    ap.add_argument("--seconds", type=float, default=1.5, help="seconds per cell")
    ap.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds per cell")
    ap.add_argument("--work", type=Path, default=BENCH / ".work" / "engines")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 20 or not 0.1 <= args.seconds <= 60:
        ap.error("--rounds must be 1..20 and --seconds 0.1..60")
    work: Path = args.work.resolve()
    shutil.rmtree(work / "cassettes", ignore_errors=True)
    (work / "cassettes").mkdir(parents=True)
    cdir = work / "cassettes"
    small = synthetic(N)
    save_cassette(cdir / "plain.cassette", [encode_interaction(it) for it in small])
    save_cassette(cdir / "tls.cassette", [encode_interaction(it) for it in https_of(small)])
    for n in (1_000, 100_000):
        save_cassette(cdir / f"size-{n}.cassette",
                      [encode_interaction(it) for it in synthetic(n)])
    flows_plain, flows_tls = work / "plain.flows", work / "tls.flows"
    write_flows(small, flows_plain)
    write_flows(https_of(small), flows_tls)
    targets_ = [f"/items/{i}?page={i % 10}" for i in range(N)]
    bodies = [item_body(i) for i in range(N)]
    res: dict[str, Any] = {"ready_s": {}, "skipped": {}, "start_s": {}}
    with children() as started:
        up, up_port = start_upstream(work, started)
        direct = Target("direct (upstream)", up_port, up,
                        build_requests(f"{HOST}:{up_port}",
                                       [f"/items/{i}" for i in range(N)], proxy=False),
                        bodies, replay=False)
        forward = build_requests(API, targets_, proxy=True)
        origin = build_requests(API, targets_, proxy=False)
        tgts: list[tuple[Target, dict[str, Any]]] = [(direct, {})]
        for engine in ("fast", "mitmproxy"):
            child, env, ready = serve(work, cdir, "plain", engine, started,
                                      *(("--reverse", f"http://{API}") if engine == "fast"
                                        else ()))
            res["ready_s"][engine] = ready
            port = int(env["REPLAYPROXY_URL"].rsplit(":", 1)[1])
            tgts.append((Target(f"{engine} forward", port, child, forward, bodies), {}))
            if engine == "fast":
                rport = int(env["REPLAYPROXY_REVERSE_URL"].rsplit(":", 1)[1])
                tgts.append((Target("fast reverse", rport, child, origin, bodies), {}))
            tchild, tenv, _ = serve(work, cdir, "tls", engine, started)
            tgts.append((Target(f"{engine} HTTPS CONNECT", int(
                tenv["REPLAYPROXY_URL"].rsplit(":", 1)[1]), tchild, origin, bodies),
                {"tunnel": (API, 443), "cafile": tenv["SSL_CERT_FILE"]}))
        md, md_port = mitmdump(work, flows_plain, started)
        tgts.append((Target("mitmdump forward", md_port, md, forward, bodies), {}))
        mdt, mdt_port = mitmdump(work, flows_tls, started)
        tgts.append((Target("mitmdump HTTPS CONNECT", mdt_port, mdt, origin, bodies),
                     {"tunnel": (API, 443),
                      "cafile": str(work / "mitmconf" / "mitmproxy-ca-cert.pem")}))
        tb = talkback(work, small, started)
        if isinstance(tb, str):
            res["skipped"]["talkback"] = tb
            log(f"Talkback skipped: {tb}")
        else:
            tgts.append((Target("talkback base URL", tb[1], tb[0], origin, bodies), {}))
        for n in (1_000, 100_000):
            child, env, ready = serve(work, cdir, f"size-{n}", "fast", started)
            res["ready_s"][f"fast, {n:,} interactions"] = ready
            picks = range(0, n, max(1, n // 1000))
            tgts.append((Target(
                f"fast, {n:,}-interaction cassette", int(
                    env["REPLAYPROXY_URL"].rsplit(":", 1)[1]), child,
                build_requests(API, [f"/items/{i}?page={i % 10}" for i in picks], proxy=True),
                [item_body(i) for i in picks]), {}))
        rows: dict[str, dict[int, list[dict[str, float]]]] = {
            t.name: {1: [], 32: []} for t, _ in tgts}
        for rnd in range(args.rounds):
            for c in (1, 32):
                for t, extra in tgts:
                    rows[t.name][c].append(measure_cell(
                        t, c, args.seconds, args.warmup, f"round {rnd + 1}/{args.rounds}",
                        **extra))
    for engine in ("fast", "mitmproxy"):
        for name in ("plain", "size-100000"):
            times = [start_time(work, cdir, name, engine) for _ in range(3)]
            res["start_s"][f"{engine}, {name}"] = statistics.median(times)
            log(f"ProxyRun.start() {engine} {name}: {statistics.median(times):.3f} s")
    res["throughput"] = {name: {str(c): {k: statistics.median(r[k] for r in cells)
                                         for k in cells[0]} for c, cells in per.items()}
                         for name, per in rows.items()}
    (work / "engines.json").write_text(json.dumps(res, indent=1))
    print(report(res))
    return 0


def report(res: dict[str, Any]) -> str:
    tp = res["throughput"]
    base = tp["direct (upstream)"]
    fast = tp["fast forward"]
    lines = ["", "## Replay engines (median of rounds; ratios within this run)", "",
             "| server | c1 req/s | c32 req/s | p50 c1 ms | added p50 c1 ms | server CPU us/req"
             " c32 | vs fast forward c1 / c32 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, per in tp.items():
        c1, c32 = per["1"], per["32"]
        added = c1["p50_ms"] - base["1"]["p50_ms"]
        lines.append(
            f"| {name} | {c1['rps']:,.0f} | {c32['rps']:,.0f} | {c1['p50_ms']:.3f} | "
            f"{added:+.3f} | {c32['server_cpu_us_per_req']:.0f} | "
            f"{c1['rps'] / fast['1']['rps']:.2f}x / {c32['rps'] / fast['32']['rps']:.2f}x |")
    checks = []
    tb = tp.get("talkback base URL")
    for mode in ("forward", "reverse"):
        if tb is not None:
            for c in ("1", "32"):
                ours = tp[f"fast {mode}"][c]["rps"]
                checks.append((f"fast {mode} >= Talkback at c{c}: "
                               f"{ours / tb[c]['rps']:.2f}x", ours >= tb[c]["rps"]))
    for c in ("1", "32"):
        ours, theirs = tp["fast HTTPS CONNECT"][c]["rps"], tp["mitmdump HTTPS CONNECT"][c]["rps"]
        checks.append((f"fast HTTPS CONNECT >= 5x mitmdump at c{c}: {ours / theirs:.1f}x",
                       ours >= 5 * theirs))
    added = fast["1"]["p50_ms"] - base["1"]["p50_ms"]
    checks.append((f"fast forward added p50 at c1 < 0.1 ms: {added:.3f} ms", added < 0.1))
    small = tp["fast, 1,000-interaction cassette"]["32"]["server_cpu_us_per_req"]
    big = tp["fast, 100,000-interaction cassette"]["32"]["server_cpu_us_per_req"]
    checks.append((f"per-request CPU 100k vs 1k cassette: {big / small:.2f}x", big <= small * 1.2))
    for what, ready in res["ready_s"].items():
        lines.append(f"- `replayproxy serve` ({what}) from exec to accepting: {ready:.2f} s")
    for what, ready in res["start_s"].items():
        if what.startswith("fast"):
            checks.append((f"ProxyRun.start() {what}: {ready:.3f} s (< 0.5 s)", ready < 0.5))
        else:
            lines.append(f"- ProxyRun.start() {what}: {ready:.3f} s")
    lines += ["", "Targets:"] + [f"- [{'x' if ok else ' '}] {text}" for text, ok in checks]
    lines += [f"- skipped {k}: {v}" for k, v in res["skipped"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
