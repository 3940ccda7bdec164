"""The fault control API: add, list and clear faults while the proxy runs.

A small HTTP server on 127.0.0.1 (its own thread, standard library only) shares the
proxy's ``FaultPlan`` under a lock::

    GET    /faults          -> {"faults": [{"index": 0, "spec": "...", "hits": 3}, ...]}
    POST   /faults          {"spec": "status=503,first=2@*"}  or a table
                            {"kind": "status", "value": 503, "first": 2, "route": "*"}
                            -> 201 {"index": N, "spec": "..."}; 400 {"error": "..."}
    DELETE /faults          -> {"cleared": N}
    GET    /requests?since=SEQ&method=POST&url=*/v1/charges
                            -> {"requests": [{"seq": 1, "method": "POST", "url": "...",
                                "headers": [[name, value]], "body": "...",
                                "body_encoding": "utf-8", "json": {...},
                                "outcome": "replayed"}, ...], "next": SEQ}
    DELETE /requests        -> {"cleared": N}

``/requests`` is the request log (``replayproxy.decision.requestlog``): what clients
sent through the proxy, oldest first; ``next`` is the ``since`` that lists only the
requests after these (a test takes it when it starts). ``method`` and ``url`` filter as
a route does (``*/v1/charges``: any host). ``/sessions/NAME/requests`` is a named
session's.

Every call carries the run's token, ``Authorization: Bearer TOKEN`` (a random value
made per run): another local user, or a program not started by the run, cannot change
the faults (401). ``FaultControl`` is the Python client; ``replayproxy
record/replay/serve`` export the server's URL as ``REPLAYPROXY_CONTROL_URL`` and the
token as ``REPLAYPROXY_CONTROL_TOKEN``. At most ``MAX_RULES`` rules; a request body is
read with a timeout.
"""

from __future__ import annotations

import builtins
import hmac
import json
import os
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from replayproxy.decision.pipeline import Pipeline
from replayproxy.decision.sessions import SessionRefused, Sessions, SessionSettings, session_url
from replayproxy.decision.verdict import verdict
from replayproxy.decision.workers import merge_answers
from replayproxy.errors import FaultControlError
from replayproxy.faults.plan import FaultPlan
from replayproxy.faults.spec import fault_from_table, parse_fault

__all__ = ["MAX_RULES", "ControlServer", "FaultControl", "FaultControlError",
           "WorkersControlServer"]

_MAX_BODY = 64 * 1024
MAX_RULES = 1000
"""Fault rules the control API accepts in one run."""
_TOKEN_HINT = ("missing or wrong token: send Authorization: Bearer "
               "$REPLAYPROXY_CONTROL_TOKEN (set for commands run by replayproxy)")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that stalls mid-request frees its thread after this

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        """True if the call carries the run's token; else answers 401."""
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.server.token.encode()):
            self._send(401, {"error": _TOKEN_HINT})
            return False
        return True

    def _parts(self) -> list[str]:
        return [urllib.parse.unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]

    def _route(self) -> tuple[str, str] | None:
        """``("faults", session)``, ``("sessions", "")`` or ``("session", name)`` for the
        path asked (session ``""``: the run's own); None after answering an error."""
        if not self._authorized():
            return None
        parts = self._parts()
        if parts in (["faults"], ["requests"]):
            if self.server.default is None:
                self._send(404, {"error": "this proxy serves named sessions only: use "
                                          f"/sessions/NAME/{parts[0]}"})
                return None
            return parts[0], ""
        if parts == ["sessions"]:
            return "sessions", ""
        if len(parts) in (2, 3) and parts[0] == "sessions" and parts[1] \
                and parts[2:] in ([], ["faults"], ["requests"]):
            return (parts[2] if len(parts) == 3 else "session"), parts[1]
        self._send(404, {"error": f"no such endpoint {self.path[:80]}: use /faults, "
                                  "/requests, /sessions or /sessions/NAME[/faults|/requests]"})
        return None

    def _requests(self, name: str) -> None:
        """``GET``: the requests sent (``?since=N&method=POST&url=*/v1/charges``);
        ``DELETE``: forget them."""
        pipeline = self.server.default if not name else self.server.find(name)
        if pipeline is None:
            self._send(404, {"error": f"no open session {name[:80]!r}"})
            return
        log = pipeline.requests
        if self.command == "DELETE":
            self._send(200, {"cleared": log.clear()})
            return
        params = dict(urllib.parse.parse_qsl(self.path.partition("?")[2]))
        try:
            since = int(params.get("since", "1"))
            selected = log.select(since, params.get("method"), params.get("url"))
        except ValueError as e:
            self._send(400, {"error": f"{e}; use /requests?since=N&method=POST&"
                                      "url=*/v1/charges"})
            return
        self._send(200, {"requests": [s.as_json() for s in selected], "next": log.next_seq})

    def _plan(self, name: str) -> tuple[FaultPlan, threading.Lock] | None:
        pipeline = self.server.default if not name else self.server.find(name)
        if pipeline is None:
            self._send(404, {"error": f"no open session {name[:80]!r}: open it first "
                                      "(POST /sessions)"})
            return None
        return pipeline.faults, pipeline.lock

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        route = self._route()
        if route is None:
            return
        what, name = route
        if what == "requests":
            self._requests(name)
            return
        if what == "sessions":
            self._send(200, {"sessions": [self._describe(n, p)
                                          for n, p in self.server.sessions]})
            return
        if what == "session":
            pipeline = self.server.find(name)
            if pipeline is None:
                self._send(404, {"error": f"no open session {name[:80]!r}"})
            else:
                self._send(200, self._describe(name, pipeline))
            return
        found = self._plan(name)
        if found is None:
            return
        plan, lock = found
        with lock:
            specs, hits = plan.list(), plan.hits()
        self._send(200, {"faults": [{"index": i, "spec": s.text, "hits": h}
                                    for i, (s, h) in enumerate(zip(specs, hits,
                                                                   strict=True))]})

    def _describe(self, name: str, pipeline: Pipeline) -> dict[str, Any]:
        summary = pipeline.session.summary
        return {"name": name, "proxy_url": session_url(self.server.proxy_url, name),
                "mode": pipeline.session.mode.value, "replayed": summary.replayed,
                "recorded": summary.recorded, "unmatched": summary.unmatched.total}

    def do_DELETE(self) -> None:  # noqa: N802
        route = self._route()
        if route is None:
            return
        what, name = route
        if what == "requests":
            self._requests(name)
            return
        if what == "session":
            try:
                summary = self.server.sessions.close(name)
            except SessionRefused as e:
                self._send(404, {"error": str(e)})
                return
            self._send(200, {"name": name, "replayed": summary.replayed,
                             "recorded": summary.recorded,
                             "unmatched": summary.unmatched.total,
                             "passed": verdict(summary, command=False).passed})
            return
        if what == "sessions":
            self._send(405, {"error": "close one session at a time: DELETE /sessions/NAME"})
            return
        found = self._plan(name)
        if found is None:
            return
        plan, lock = found
        with lock:
            count = len(plan)
            plan.clear()
        self._send(200, {"cleared": count})

    def _json_body(self, example: str) -> Any:
        """The request's JSON body; None after answering 400."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= _MAX_BODY:
            self._send(400, {"error": f"send a JSON body (at most 64 KiB) such as {example}"})
            return None
        try:
            return json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError) as e:
            self._send(400, {"error": f"the body is not JSON ({e}); send {example}"})
            return None

    def do_POST(self) -> None:  # noqa: N802
        route = self._route()
        if route is None:
            return
        what, name = route
        if what == "requests":
            self._send(405, {"error": "the request log is read (GET) or cleared (DELETE)"})
            return
        if what == "sessions":
            self._open_session()
            return
        if what == "session":
            self._send(405, {"error": "open a session with POST /sessions "
                                      '{"cassette": "NAME"}'})
            return
        found = self._plan(name)
        if found is None:
            return
        plan, lock = found
        payload = self._json_body('{"spec": "status=503,first=2@*"}')
        if payload is None:
            return
        try:
            if isinstance(payload, dict) and set(payload) == {"spec"}:
                if not isinstance(payload["spec"], str):
                    raise ValueError("'spec' must be a string such as 'reset,p=0.5@*'")
                spec = parse_fault(payload["spec"])
            elif isinstance(payload, dict):
                spec = fault_from_table(payload)
            else:
                raise ValueError('expected a JSON object: {"spec": "..."} or a fault table')
        except ValueError as e:
            self._send(400, {"error": str(e)})
            return
        with lock:
            full = len(plan) >= MAX_RULES
            index = -1 if full else plan.add(spec)
        if full:
            self._send(400, {"error": f"at most {MAX_RULES} fault rules; clear some first "
                                      "(DELETE /faults)"})
            return
        self._send(201, {"index": index, "spec": spec.text})

    def _open_session(self) -> None:
        example = '{"cassette": "NAME", "mode": "none", "faults": ["status=503@*"]}'
        payload = self._json_body(example)
        if payload is None:
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("cassette"), str) \
                or not set(payload) <= {"cassette", "mode", "faults", "strict"}:
            self._send(400, {"error": f"expected {example} (mode, faults and strict are "
                                      "optional)"})
            return
        mode, faults, strict = payload.get("mode"), payload.get("faults", []), \
            payload.get("strict")
        if not (mode is None or isinstance(mode, str)) \
                or not (isinstance(faults, list) and all(isinstance(f, str) for f in faults)) \
                or not (strict is None or isinstance(strict, bool)):
            self._send(400, {"error": f"mode is a record mode name, faults a list of fault "
                                      f"specs, strict true or false: {example}"})
            return
        name = payload["cassette"]
        try:
            self.server.sessions.open(name, SessionSettings(mode, tuple(faults), strict))
        except SessionRefused as e:
            self._send(409 if "open already" in str(e) else 400, {"error": str(e)})
            return
        named = session_url(self.server.proxy_url, name)
        own = named
        if self.server.listen is not None:
            try:
                host, port = self.server.listen()
            except Exception as e:  # the named URL still works
                self._send(201, {"name": name, "proxy_url": named, "named_proxy_url": named,
                                 "warning": f"no port of its own: {e}"})
                return
            self.server.sessions.bind_port(name, port)
            own = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self._send(201, {"name": name, "proxy_url": own, "named_proxy_url": named})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, default: Pipeline | None, sessions: Sessions, token: str,
                 proxy_url: str, listen: Callable[[], tuple[str, int]] | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.default = default
        self.sessions = sessions
        self.token = token
        self.proxy_url = proxy_url
        self.listen = listen

    def find(self, name: str) -> Pipeline | None:
        """The open session ``name`` (the run's own cassette's name included)."""
        if name == self.sessions.default_name:
            return self.default
        return dict(iter(self.sessions)).get(name)


class ControlServer:
    """Serves the control API for a run's own pipeline (``default``, None for a run of
    named sessions only) and its ``sessions`` on 127.0.0.1 (a free port) until
    ``stop``; callers need ``token`` (random unless given). ``proxy_url`` is the proxy's,
    for the session URLs it hands out; ``listen`` opens one more proxy port (for a
    session of its own), returning its address."""

    def __init__(self, default: Pipeline | None, sessions: Sessions | None = None, *,
                 proxy_url: str = "http://127.0.0.1:0", token: str | None = None,
                 listen: Callable[[], tuple[str, int]] | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self._server: ThreadingHTTPServer = _Server(
            default, sessions or Sessions(_no_sessions, default), self.token, proxy_url,
            listen)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="replayproxy-control", daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for an unstarted loop
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()


class _WorkersHandler(_Handler):
    """Passes each call on to every worker's control API and answers with their answers
    merged (``decision.workers.merge_answers``)."""

    server: _WorkersServer  # type: ignore[assignment]

    def _fan_out(self) -> None:
        if not self._authorized():
            return
        parts = self._parts()
        if parts[0] == "sessions":
            self._send(400, {"error": "named sessions are not served by a proxy of several "
                                      "workers (serve --workers N): serve them with "
                                      "--workers 1"})
            return
        if parts not in (["faults"], ["requests"]):
            self._send(404, {"error": f"no such endpoint {self.path[:80]}: a proxy of "
                                      "several workers serves /faults and /requests"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if 0 < length <= _MAX_BODY else None
        answers = [_call(url, token, self.command, self.path, body, number)
                   for number, (url, token) in enumerate(self.server.workers, 1)]
        status, payload = merge_answers(parts[0], self.command, answers)
        self._send(status, payload)

    do_GET = do_POST = do_DELETE = _fan_out  # noqa: N815 - stdlib names


def _call(url: str, token: str, method: str, path: str, body: bytes | None,
          number: int) -> tuple[int, Any]:
    """One worker's answer to a control call: its status and JSON payload."""
    request = urllib.request.Request(url + path, data=body, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never proxied
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        with e:
            try:
                return e.code, json.loads(e.read())
            except ValueError:
                return e.code, {"error": f"worker {number}: {e}"}
    except (OSError, ValueError) as e:
        return 502, {"error": f"worker {number} did not answer ({e}); see the serve log"}


class _WorkersServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, workers: Sequence[tuple[str, str]], token: str) -> None:
        super().__init__(("127.0.0.1", 0), _WorkersHandler)
        self.workers = list(workers)
        self.token = token


class WorkersControlServer(ControlServer):
    """The control API of a run served by several worker processes (``serve --workers``):
    one URL and token; each call goes to every worker's own control API (``workers``:
    their URL and token) and is answered with their answers merged: a fault added or
    cleared on each, hits added up, the request logs merged in the order requests came.
    Named sessions are refused."""

    def __init__(self, workers: Sequence[tuple[str, str]], *, token: str | None = None
                 ) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self._server = _WorkersServer(workers, self.token)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="replayproxy-control", daemon=True)


def _no_sessions(name: str, settings: SessionSettings) -> Pipeline:
    raise SessionRefused("this proxy serves one cassette, no named sessions")


class FaultControl:
    """Client of a running proxy's control API.

    ``FaultControl()`` reads ``$REPLAYPROXY_CONTROL_URL`` and
    ``$REPLAYPROXY_CONTROL_TOKEN`` (set for commands run by ``replayproxy
    record/replay``; ``ProxyRun.fault_control()`` gives one in-process)::

        faults = FaultControl()
        faults.add("status=503,first=2@POST */v1/charges")
        ...
        assert faults.list()[0]["hits"] == 2
        faults.clear()
    """

    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 10.0) -> None:
        url = url or os.environ.get("REPLAYPROXY_CONTROL_URL")
        token = token or os.environ.get("REPLAYPROXY_CONTROL_TOKEN")
        if not url or not token:
            raise FaultControlError("no control URL or token: pass them, or run under "
                                    "replayproxy, which sets REPLAYPROXY_CONTROL_URL and "
                                    "REPLAYPROXY_CONTROL_TOKEN")
        self.url = url.rstrip("/") + "/faults"
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url, data=data, method=method,
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.token}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never proxied
        try:
            with opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            try:
                reason = json.loads(e.read()).get("error", str(e))
            except ValueError:
                reason = str(e)
            raise FaultControlError(reason) from None

    def add(self, spec: str | dict[str, Any]) -> int:
        """Add a fault (a spec string or a table); return its index."""
        payload = {"spec": spec} if isinstance(spec, str) else spec
        return int(self._call("POST", payload)["index"])

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every fault with its index, spec and hit count."""
        return list(self._call("GET")["faults"])

    def hits(self) -> builtins.list[int]:
        """Hit counts by index."""
        return [f["hits"] for f in self.list()]

    def clear(self) -> int:
        """Remove every fault; return how many there were."""
        return int(self._call("DELETE")["cleared"])
