"""A replay proxy like `replayproxy serve --record-mode none`, for `bench/run.py --variants`.

Builds the same ``ProxyRun`` as the CLI (without the control API). With ``--freeze`` it
freezes the collector once the proxy is up (``freeze_gc``, as the CLI does). Either
way it records how long each garbage collection takes and prints the statistics as one
JSON line on stderr when stopped with SIGTERM.

Prints ``export REPLAYPROXY_URL=http://127.0.0.1:PORT`` on stdout when ready.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import threading
import time
from pathlib import Path

from replayproxy.config import Settings
from replayproxy.model import RecordMode
from replayproxy.run import ProxyRun


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("cassette_dir")
    ap.add_argument("name")
    ap.add_argument("ca_dir")
    ap.add_argument("--freeze", action="store_true")
    args = ap.parse_args()

    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started[0])

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run = ProxyRun(args.name, RecordMode.NONE, cassette_dir=args.cassette_dir,
                   settings=Settings(), ca_dir=Path(args.ca_dir), control=False,
                   freeze_gc=args.freeze)
    with run as proxy:
        gc.callbacks.append(on_gc)
        print(f"export REPLAYPROXY_URL={proxy.proxy_url}", flush=True)
        while not stop.wait(0.5):
            pass
        gc.callbacks.remove(on_gc)
    stats: dict[str, object] = {}
    for gen, values in pauses.items():
        values.sort()
        stats[f"gen{gen}"] = {
            "count": len(values),
            "median_ms": values[len(values) // 2] * 1000 if values else 0.0,
            "max_ms": values[-1] * 1000 if values else 0.0,
            "total_ms": sum(values) * 1000,
        }
    stats["tracked_objects"] = len(gc.get_objects())
    stats["frozen_objects"] = gc.get_freeze_count()
    sys.stderr.write("GCSTATS " + json.dumps(stats) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
