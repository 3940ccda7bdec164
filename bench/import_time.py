"""Import cost: how long a fresh interpreter takes to import replayproxy, against a bare one.

Runs each command below in a fresh process, ``--rounds`` times (default 15), the
commands interleaved round by round so that noise from other work on the machine falls
on all of them alike, after ``--warmup`` untimed runs of each (bytecode compiled and
cached, files in the page cache):

- ``python -c pass``: the baseline, an interpreter that imports nothing of ours;
- ``python -c "import replayproxy"`` (target: at most baseline + 50 ms);
- the modules a pytest plugin imports at collection: ``replayproxy.model``,
  ``replayproxy.errors``, ``replayproxy.config``; and ``import pytest, replayproxy.config``
  against ``import pytest``, the plugin's share of a pytest start (pytest has imported
  much of the standard library already);
- ``replayproxy.CassetteSession`` first used: the replay core, where the cost moved to;
- ``replayproxy --help``, the console script next to this interpreter (target: < 0.4 s),
  and ``python -m replayproxy --help``.

Each figure is the median wall time of the process (fork, exec, start, import, exit);
"difference" and "ratio" are the medians of the per-round differences and ratios to the
row named in "compared with", measured in the same round. Bytecode goes to
``<work>/pycache`` (``PYTHONPYCACHEPREFIX``), never into the source tree, and
``PYTHONDONTWRITEBYTECODE`` is dropped: an installed package has its bytecode compiled,
so that is what users pay. The tree measured is the one this file is in (put first
on ``PYTHONPATH``).

Run: ``python bench/import_time.py [--rounds 15] [--warmup 2]``; results also go to
``<work>/import_time.json``. ``--breakdown`` adds ``-X importtime``'s slowest imports of
``import replayproxy.config`` and of ``replayproxy --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
SCRIPT = Path(PY).parent / "replayproxy"
TIMEOUT = 30.0

IMPORT_BUDGET_MS = 50.0  # import replayproxy: at most this much over the baseline
HELP_BUDGET_MS = 400.0  # replayproxy --help: under this, start to exit
FIRST_USE = "replayproxy.CassetteSession"  # the replay core: session, index, store, msgpack


BASE = "python -c pass"
PYTEST = "import pytest"


def commands() -> dict[str, tuple[list[str], str]]:
    """What is timed, by label: the command and the label of the row it is compared with."""
    cmds = {
        BASE: ([PY, "-c", "pass"], BASE),
        "import replayproxy": ([PY, "-c", "import replayproxy"], BASE),
        "import replayproxy.model": ([PY, "-c", "import replayproxy.model"], BASE),
        "import replayproxy.errors": ([PY, "-c", "import replayproxy.errors"], BASE),
        "import replayproxy.config": ([PY, "-c", "import replayproxy.config"], BASE),
        "replayproxy.CassetteSession": ([PY, "-c", f"import replayproxy; {FIRST_USE}"], BASE),
        # a pytest plugin's share: pytest has already imported much of the standard library
        PYTEST: ([PY, "-c", "import pytest"], BASE),
        "import pytest, replayproxy.config": (
            [PY, "-c", "import pytest, replayproxy.config"], PYTEST),
        "python -m replayproxy --help": ([PY, "-m", "replayproxy", "--help"], BASE),
    }
    if SCRIPT.exists():  # the console script, as users type it
        cmds["replayproxy --help"] = ([str(SCRIPT), "--help"], BASE)
    return cmds


def child_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Wall time in ms of one process, start to exit; fails loudly if it fails."""
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=BENCH, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, check=True, timeout=TIMEOUT)
    return (time.perf_counter() - start) * 1000


def measure(rounds: int, warmup: int, env: dict[str, str]) -> dict[str, list[float]]:
    cmds = commands()
    for _ in range(warmup):
        for argv, _base in cmds.values():
            run_once(argv, env)
    times: dict[str, list[float]] = {label: [] for label in cmds}
    for _ in range(rounds):
        for label, (argv, _base) in cmds.items():
            times[label].append(run_once(argv, env))
    return times


def breakdown(argv: list[str], env: dict[str, str], top: int = 12) -> list[tuple[float, str]]:
    """The ``top`` largest cumulative import times (ms) of one run under -X importtime."""
    proc = subprocess.run([PY, "-X", "importtime", *argv], env=env, cwd=BENCH,
                          capture_output=True, text=True, check=True, timeout=TIMEOUT)
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            rows.append((int(cumulative) / 1000, name.rstrip()))
    return sorted(rows, reverse=True)[:top]


@dataclass(frozen=True)
class Row:
    what: str
    median_ms: float
    min_ms: float
    vs: str  # the row compared with
    minus_vs_ms: float  # median of the per-round differences to that row
    ratio: float  # median of the per-round ratios to that row


def summarise(times: dict[str, list[float]]) -> list[Row]:
    rows = []
    for label, (_argv, vs) in commands().items():
        samples, base = times[label], times[vs]
        rows.append(Row(label, statistics.median(samples), min(samples), vs,
                        statistics.median(t - b for t, b in zip(samples, base, strict=True)),
                        statistics.median(t / b for t, b in zip(samples, base, strict=True))))
    return rows


def targets(rows: list[Row]) -> list[tuple[str, str, bool]]:
    """(target, figure, met) for the issue's two import-cost targets."""
    by = {r.what: r for r in rows}
    imp = by["import replayproxy"].minus_vs_ms
    label = "replayproxy --help" if "replayproxy --help" in by else "python -m replayproxy --help"
    helped = by[label].median_ms
    return [
        (f"import replayproxy <= baseline + {IMPORT_BUDGET_MS:.0f} ms",
         f"baseline {imp:+.1f} ms", imp <= IMPORT_BUDGET_MS),
        (f"{label} < {HELP_BUDGET_MS / 1000:.1f} s", f"{helped / 1000:.3f} s",
         helped < HELP_BUDGET_MS),
    ]


def report(rows: list[Row], rounds: int) -> str:
    head = ("what", "median ms", "min ms", "compared with", "difference ms", "ratio")
    cells = [(r.what, f"{r.median_ms:.1f}", f"{r.min_ms:.1f}", r.vs, f"{r.minus_vs_ms:+.1f}",
              f"{r.ratio:.2f}x") for r in rows]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]

    def line(c: tuple[str, ...]) -> str:
        padded = [v.ljust(w) if i in (0, 3) else v.rjust(w)
                  for i, (v, w) in enumerate(zip(c, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    out = [f"Import cost: fresh processes, median of {rounds} interleaved rounds", "",
           line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
           *(line(c) for c in cells), ""]
    for name, measured, met in targets(rows):
        out.append(f"  target {name}: {measured} ({'met' if met else 'NOT MET'})")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15, help="timed runs of each command (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs of each command first")
    ap.add_argument("--work", type=Path, default=BENCH / ".work")
    ap.add_argument("--breakdown", action="store_true",
                    help="also list -X importtime's slowest imports")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 100:
        ap.error("--rounds must be between 1 and 100")
    args.work.mkdir(parents=True, exist_ok=True)
    env = child_env(args.work)
    times = measure(args.rounds, args.warmup, env)
    rows = summarise(times)
    print(report(rows, args.rounds))
    result: dict[str, object] = {"rounds": args.rounds, "python": sys.version.split()[0],
                                 "load_average": os.getloadavg()[0],
                                 "rows": [asdict(r) for r in rows],
                                 "samples_ms": times}
    if args.breakdown:
        cmds = commands()
        for label in ("import replayproxy.config", "python -m replayproxy --help"):
            top = breakdown(cmds[label][0][1:], env)
            result[f"importtime {label}"] = top
            print(f"\n  slowest imports of `{label}` (-X importtime, cumulative ms, one run):")
            for ms, name in top:
                print(f"    {ms:7.1f}  {name.strip()}")
    (args.work / "import_time.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
