"""Several engine processes serving one port (``serve --workers N``): which runs may,
and how what each process saw is put back together.

Each worker is a fast engine of its own, with its own copy of the cassette session and
fault rules: the kernel spreads connections over them (``SO_REUSEPORT``). So a
recorded sequence (the Nth identical request gets the Nth recorded answer) and a
count-based fault (``first=3``) are kept per worker. What a user reads is one run:

- ``merge_summaries``: one summary with the totals (the run report and the exit code
  are judged from it as for one process);
- ``merge_answers``: one control API answer from every worker's (a fault's hits
  summed, the request logs merged in the order the requests came: the workers number
  them from one shared counter; each request says which worker took it).

Pure: no processes, no sockets.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from replayproxy.decision.session import Capped, SessionSummary
from replayproxy.decision.tally import Tally
from replayproxy.errors import ConfigError
from replayproxy.model import Interaction, RecordMode

__all__ = ["MAX_WORKERS", "check_workers", "merge_answers", "merge_summaries",
           "worker_exit", "worker_limit"]

MAX_WORKERS = 64
"""The most workers a run may have, whatever the machine (and never more than four per
CPU: beyond one per core they only share it)."""

T = TypeVar("T")


def worker_limit(cpus: int | None) -> int:
    """The most workers on a machine of ``cpus`` CPUs (None: unknown, counted as 1)."""
    return min(MAX_WORKERS, 4 * max(cpus or 1, 1))


def check_workers(count: int, *, cpus: int | None, mode: RecordMode, engine: str,
                  why_not_fast: str | None, reuse_port: bool) -> None:
    """Refuse a worker count the run cannot have, in one line naming the fix.

    Args:
        count: the workers asked for (1: one engine in the serving process, as always).
        cpus: this machine's CPU count.
        mode: the session's record mode (``once`` resolved).
        engine: the engine asked for (``auto``, ``fast``, ``mitmproxy``).
        why_not_fast: why the fast engine cannot serve the run (``engines.choice``),
            None when it can.
        reuse_port: the platform has ``SO_REUSEPORT``.

    Raises:
        ConfigError: the count is out of range, or several workers cannot serve the run.
    """
    limit = worker_limit(cpus)
    if count < 1:
        raise ConfigError(f"{{workers}} {count}: use 1 (one process) or more")
    if count > limit:
        raise ConfigError(f"{{workers}} {count} is more than this machine can use: at most "
                          f"{limit} (4 per CPU, {MAX_WORKERS} in all)")
    if count == 1:
        return
    if not reuse_port:
        raise ConfigError(f"{{workers}} {count} needs SO_REUSEPORT (Linux, BSD, macOS), "
                          "which this platform lacks: use {workers} 1")
    if engine == "mitmproxy":
        raise ConfigError(f"{{workers}} {count} runs the fast engine only: drop {{engine}} "
                          "mitmproxy, or use {workers} 1")
    if mode is not RecordMode.NONE:
        raise ConfigError(f"{{workers}} {count} replays only, and this run would record "
                          f"(record mode {mode.value}): record first with {{workers}} 1, "
                          "then serve with {record_mode} none")
    if why_not_fast is not None:
        raise ConfigError(f"{{workers}} {count} runs the fast engine only, which cannot "
                          f"serve this run ({why_not_fast}): use {{workers}} 1")


def worker_exit(number: int, pid: int, exitcode: int | None, *,
                handed_in: bool = False) -> str:
    """One line for a worker that stopped before the serving process asked it to
    (``exitcode`` as ``multiprocessing`` gives it: negative for a signal, None if
    unknown; ``handed_in``: it stopped cleanly, sent its summary, as when a signal
    reaches the whole process group)."""
    if handed_in and exitcode == 0:
        return (f"worker {number} (PID {pid}) was stopped by a signal from outside: the "
                "other workers were stopped too")
    if exitcode is None:
        how = "stopped"
    elif exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited with status {exitcode}"
    return (f"worker {number} (PID {pid}) {how}: the summary misses what it served; "
            "the other workers were stopped")


def _capped(lists: Iterable[Capped[T]], *, unique: bool = False) -> Capped[T]:
    """The events of every list, capped as one list is (``unique``: each once)."""
    out: Capped[T] = Capped()
    for items in lists:
        for item in items:
            if not (unique and item in out):
                out.append(item)
        out.dropped += items.dropped
    return out


def _common(lists: Sequence[list[T]]) -> list[T]:
    """The items of the first list found in every other, in its order."""
    if not lists:
        return []
    rest = [set(items) for items in lists[1:]]
    return [item for item in lists[0] if all(item in other for other in rest)]


def merge_summaries(summaries: Sequence[SessionSummary],
                    decode: Callable[[int], Interaction | None]) -> SessionSummary:
    """One summary of the same cassette served by several processes: counts added,
    events listed (capped as in one), an interaction unused only if no process served
    it, a route unused only if no process that had requests used it. ``decode`` reads
    an interaction of the cassette (for the first 100 unused ones); the first summary
    gives the cassette, its path, mode and size.
    """
    if not summaries:
        raise ValueError("no summary to merge")
    first = summaries[0]
    tally = Tally()
    for s in summaries:
        tally.add(s.tally)
    unused = _common([s.unused for s in summaries])
    return SessionSummary(
        cassette=first.cassette, path=first.path, mode=first.mode,
        replayed=sum(s.replayed for s in summaries),
        recorded=sum(s.recorded for s in summaries),
        recovered=sum(s.recovered for s in summaries),
        errors=_capped(s.errors for s in summaries),
        journals=sum(s.journals for s in summaries),
        unmatched=_capped(s.unmatched for s in summaries),
        unexpected_messages=_capped(s.unexpected_messages for s in summaries),
        unused=unused,
        unused_interactions=[decode(i) for i in unused[:100]],
        leaks=_capped(s.leaks for s in summaries),
        leaks_written=any(s.leaks_written for s in summaries),
        requests=sum(s.requests for s in summaries),
        connections=sum(s.connections for s in summaries),
        cassette_size=max(s.cassette_size for s in summaries),
        upstream_failures=_capped(s.upstream_failures for s in summaries),
        replayed_failures=_capped(s.replayed_failures for s in summaries),
        client_refusals=_capped((s.client_refusals for s in summaries), unique=True),
        unused_routes=_common([s.unused_routes for s in summaries if s.requests]),
        tally=tally,
    )


def _merge_requests(payloads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``GET /requests`` of every worker as one: by number (the order they came), each
    with the ``worker`` (1, 2...) that took it."""
    requests = sorted(({**r, "worker": number} for number, p in enumerate(payloads, 1)
                       for r in p["requests"]), key=lambda r: r["seq"])
    return {"requests": requests, "next": max(int(p["next"]) for p in payloads)}


def _merge_faults(payloads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``GET /faults`` of every worker as one: the same rules, their hits added."""
    faults = [dict(f) for f in payloads[0]["faults"]]
    for payload in payloads[1:]:
        for mine, theirs in zip(faults, payload["faults"], strict=False):
            if mine["spec"] == theirs["spec"]:
                mine["hits"] += theirs["hits"]
    return {"faults": faults}


def merge_answers(what: str, method: str, answers: Sequence[tuple[int, Any]]
                  ) -> tuple[int, Any]:
    """The control API's answer to ``method /what`` (``faults`` or ``requests``) from
    every worker's ``(status, JSON payload)``: the first error if any worker refused;
    else the request logs merged, the fault hits added, the requests cleared added up;
    else (a fault added or the faults cleared: every worker holds the same rules) the
    first worker's answer."""
    if not answers:
        raise ValueError("no answer to merge")
    for status, payload in answers:
        if not 200 <= status < 300:
            return status, payload
    payloads = [payload for _, payload in answers]
    if what == "requests" and method == "GET":
        return 200, _merge_requests(payloads)
    if what == "requests" and method == "DELETE":
        return 200, {"cleared": sum(int(p["cleared"]) for p in payloads)}
    if what == "faults" and method == "GET":
        return 200, _merge_faults(payloads)
    return answers[0]
