"""Several fast-engine processes answering on one port (``serve --workers N``): the
process plumbing. What is checked and how their summaries and control answers are put
back together is the core's (``decision.workers``).

``WorkerPool`` (used by ``ProxyRun`` when ``workers`` > 1) picks the ports once (port 0:
a free one, read back), starts N worker processes in parallel (``multiprocessing``,
spawn: a fresh interpreter that imports the fast engine, never mitmproxy), each a
``ProxyRun`` of its own bound to the same ports with ``SO_REUSEPORT``, and returns when
every one is ready. ``stop`` sends each SIGTERM (by PID) and collects its summary over
its pipe. A worker exits by itself when the serving process dies, even by SIGKILL: it
watches its pipe for end of file, and on Linux asks the kernel for SIGTERM then
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from replayproxy.decision.session import SessionSummary
from replayproxy.decision.workers import worker_exit
from replayproxy.engines.listening import Listening
from replayproxy.errors import ProxyStartError, ReplayproxyError

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from replayproxy.engines.mitm.ca import CA

__all__ = ["SharedNumbers", "WorkerPool"]

log = logging.getLogger("replayproxy")

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1


class SharedNumbers:
    """Request numbers shared by every worker's request log (``decision.requestlog``):
    one sequence, in the order requests came, whichever worker took them."""

    def __init__(self, value: Any) -> None:
        self._value = value  # a multiprocessing.Value("q"), with its lock

    def take(self) -> int:
        with self._value.get_lock():
            self._value.value += 1
            return int(self._value.value)

    def peek(self) -> int:
        return int(self._value.value) + 1


class _Worker:
    """One worker process, as the serving process sees it."""

    def __init__(self, number: int, process: BaseProcess, conn: Connection) -> None:
        self.number = number
        self.process = process
        self.conn = conn
        self.control: tuple[str, str] | None = None
        """The worker's control API URL and token, once ready."""
        self.summary: SessionSummary | None = None
        """What it served, once it has stopped and handed it in."""
        self.ended: str | None = None
        """Why it stopped before it was asked to (``decision.workers.worker_exit``)."""

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid


def _bind(host: str, port: int, *, share: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        why = "the port is taken" if e.errno == errno.EADDRINUSE else e.strerror
        raise ProxyStartError(f"cannot listen on {host}:{port}: {why}; choose another "
                              "with {port}, or {port} 0 for a free one", port=port) from None
    return sock


def _reserve(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host:port`` with SO_REUSEPORT: it holds the
    port while the workers bind it too, and takes no connection. A port given is first
    bound alone, so one another process shares (another ``serve --workers``) is
    refused as taken."""
    if port:
        _bind(host, port, share=False).close()
    return _bind(host, port, share=True)


class WorkerPool(Listening):
    """N worker processes serving one run on one port (see the module's docstring).

    Args:
        args: the keyword arguments of each worker's ``ProxyRun`` (picklable), without
            ``port``, ``reverse`` and ``shared``.
        count: how many workers.
        ca: the CA every worker issues certificates from (made before they start).
        host, port: where they listen (port 0: a free one).
        reverse: upstream base URLs, each served on a port of its own, shared too.
        configure: run first in each worker (logging set up as the serving process's).
    """

    ca: CA

    def __init__(self, args: dict[str, Any], count: int, *, ca: CA, host: str, port: int,
                 reverse: Sequence[str], configure: Callable[[], None] | None = None) -> None:
        self.args = args
        self.count = count
        self.ca = ca
        self.host = host
        self.port = port
        self.reverse = list(reverse)
        self.configure = configure
        self.proxy_address: tuple[str, int] | None = None
        self.reverse_addresses: dict[str, tuple[str, int]] = {}
        self.workers: list[_Worker] = []
        self.failures: list[str] = []
        """A line for each worker that stopped before it was asked to without handing
        in its summary (killed, crashed): the run fails."""
        self._stopping = False

    @property
    def controls(self) -> list[tuple[str, str]]:
        """Each worker's control API URL and token."""
        return [w.control for w in self.workers if w.control is not None]

    def start(self) -> WorkerPool:
        """Start every worker; return when all accept connections.

        Raises:
            ProxyStartError: a port could not be bound, or a worker did not start (its
                reason).
        """
        held = [_reserve(self.host, self.port)]
        try:
            held += [_reserve(self.host, 0) for _ in self.reverse]
            ports = [int(s.getsockname()[1]) for s in held]
            context = multiprocessing.get_context("spawn")
            numbers = context.Value("q", 0)
            for number in range(1, self.count + 1):
                mine, theirs = context.Pipe()
                process = context.Process(
                    target=_serve, name=f"replayproxy-worker-{number}",
                    args=(self.args, self.host, ports, self.reverse, numbers, theirs,
                          os.getpid(), self.configure))
                process.start()
                theirs.close()
                self.workers.append(_Worker(number, process, mine))
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        finally:
            for sock in held:
                sock.close()
        self.proxy_address = (self.host, ports[0])
        self.reverse_addresses = {target: (self.host, port)
                                  for target, port in zip(self.reverse, ports[1:],
                                                          strict=True)}
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        waiting = {w.conn: w for w in self.workers}
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProxyStartError(f"{len(waiting)} of {self.count} workers did not start "
                                      f"within {_START_TIMEOUT:.0f} s")
            for conn in wait(list(waiting), left):
                worker = waiting.pop(conn)  # type: ignore[call-overload]
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    worker.process.join(5)
                    raise ProxyStartError(
                        f"worker {worker.number} (PID {worker.pid}) ended before it was "
                        f"ready (exit code {worker.process.exitcode}); see the lines "
                        "above") from None
                if message[0] == "error":
                    raise ProxyStartError(f"worker {worker.number}: {message[1]}")
                worker.control = (message[1], message[2])

    def poll(self) -> list[str]:
        """A line for each worker that has stopped before it was asked to (then stop
        them all): killed or crashed (kept in ``failures``), or stopped cleanly by a
        signal from outside (a ``kill`` of the whole process group: logged, its summary
        handed in)."""
        if not self._stopping:
            for worker in self.workers:
                code = worker.process.exitcode
                if code is None or worker.ended is not None:
                    continue
                worker.summary = _summary_of(worker, time.monotonic())
                handed_in = worker.summary is not None
                worker.ended = worker_exit(worker.number, worker.pid, code,
                                           handed_in=handed_in)
                if handed_in and code == 0:
                    log.info("%s", worker.ended)
                else:
                    self.failures.append(worker.ended)
        return [w.ended for w in self.workers if w.ended is not None]

    def stop(self) -> list[tuple[int, int, SessionSummary]]:
        """Stop every worker (SIGTERM by PID; SIGKILL after 30 s); the number, PID and
        summary of each that handed one in. Idempotent."""
        self.poll()
        self._stopping = True
        for worker in self.workers:
            if worker.process.exitcode is None and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        summaries = []
        for worker in self.workers:
            summary = worker.summary or _summary_of(worker, deadline)
            if summary is not None:
                summaries.append((worker.number, worker.pid, summary))
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                log.warning("worker %d (PID %d) did not stop: killed", worker.number,
                            worker.pid)
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()
        self.workers = []
        return summaries


def _summary_of(worker: _Worker, deadline: float) -> SessionSummary | None:
    """The summary a stopping worker sends (None if it sends none in time)."""
    if worker.conn.closed:
        return None
    try:
        if not worker.conn.poll(max(0.0, deadline - time.monotonic())):
            return None
        message = worker.conn.recv()
    except (EOFError, OSError):
        return None
    return message[1] if message[0] == "summary" else None


# -- in the worker process ----------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Be sent SIGTERM when the serving process dies (Linux), even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before that
        os.kill(os.getpid(), signal.SIGTERM)


def _serve(args: dict[str, Any], host: str, ports: list[int], reverse: list[str],
           numbers: Any, conn: Connection, parent: int,
           configure: Callable[[], None] | None) -> None:
    """A worker: serve the run until SIGTERM (or the serving process is gone), then
    hand the summary in."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the serving process
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _die_with_parent(parent)
    if configure is not None:
        configure()
    from replayproxy.run import ProxyRun, SharedPort

    try:
        run = ProxyRun(**args, host=host, port=ports[0], reverse=reverse,
                       shared=SharedPort(tuple(ports[1:]), SharedNumbers(numbers)))
        run.start()
    except ReplayproxyError as e:
        conn.send(("error", e.template))
        return
    except Exception as e:  # reported by the serving process, which exits non-zero
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", run.control_url, run.control_token))

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            conn.recv()  # nothing is sent: this returns when the serving process is gone
        stop.set()

    threading.Thread(target=watch, name="replayproxy-parent", daemon=True).start()
    while not stop.wait(0.5):
        pass
    run.stop()
    with contextlib.suppress(OSError, ValueError):
        conn.send(("summary", run.summary))
