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

``/requests`` is the run's request log (``replayproxy.decision.requestlog``): what
clients sent through the proxy, oldest first; ``next`` is the ``since`` that lists only
the requests after these (a test takes it when it starts). ``method`` and ``url``
filter as a route does (``*/v1/charges``: any host).

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from replayproxy.decision.requestlog import RequestLog
from replayproxy.errors import FaultControlError
from replayproxy.faults.plan import FaultPlan
from replayproxy.faults.spec import fault_from_table, parse_fault

__all__ = ["MAX_RULES", "ControlServer", "FaultControl", "FaultControlError"]

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

    def _route(self) -> bool:
        """True for an authorised call to /faults; /requests is served here."""
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.server.token.encode()):
            self._send(401, {"error": _TOKEN_HINT})
            return False
        path, _, query = self.path.partition("?")
        if path.rstrip("/") == "/requests" and self.server.requests is not None \
                and self.command in ("GET", "DELETE"):
            self._requests(self.server.requests, query)
            return False
        if path.rstrip("/") != "/faults":
            self._send(404, {"error": f"no such endpoint {self.path}: use /faults"
                                      f"{' or /requests' if self.server.requests else ''}"})
            return False
        return True

    def _requests(self, log: RequestLog, query: str) -> None:
        if self.command == "DELETE":
            self._send(200, {"cleared": log.clear()})
            return
        params = dict(urllib.parse.parse_qsl(query))
        try:
            since = int(params.get("since", "1"))
            selected = log.select(since, params.get("method"), params.get("url"))
        except ValueError as e:
            self._send(400, {"error": f"{e}; use /requests?since=N&method=POST&"
                                      "url=*/v1/charges"})
            return
        self._send(200, {"requests": [s.as_json() for s in selected], "next": log.next_seq})

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self._route():
            with self.server.lock:
                specs, hits = self.server.plan.list(), self.server.plan.hits()
            self._send(200, {"faults": [{"index": i, "spec": s.text, "hits": h}
                                        for i, (s, h) in enumerate(zip(specs, hits,
                                                                       strict=True))]})

    def do_DELETE(self) -> None:  # noqa: N802
        if self._route():
            with self.server.lock:
                count = len(self.server.plan)
                self.server.plan.clear()
            self._send(200, {"cleared": count})

    def do_POST(self) -> None:  # noqa: N802
        if not self._route():
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= _MAX_BODY:
            self._send(400, {"error": "send a JSON body (at most 64 KiB) such as "
                                      '{"spec": "status=503,first=2@*"}'})
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError) as e:
            self._send(400, {"error": f"the body is not JSON ({e}); send "
                                      '{"spec": "status=503,first=2@*"}'})
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
        with self.server.lock:
            full = len(self.server.plan) >= MAX_RULES
            index = -1 if full else self.server.plan.add(spec)
        if full:
            self._send(400, {"error": f"at most {MAX_RULES} fault rules; clear some first "
                                      "(DELETE /faults)"})
            return
        self._send(201, {"index": index, "spec": spec.text})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, plan: FaultPlan, lock: threading.Lock, token: str,
                 requests: RequestLog | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.plan = plan
        self.lock = lock
        self.token = token
        self.requests = requests


class ControlServer:
    """Serves the control API for ``plan`` (and ``requests``, the run's request log) on
    127.0.0.1 (a free port) until ``stop``; callers need ``token`` (random unless
    given)."""

    def __init__(self, plan: FaultPlan, lock: threading.Lock, token: str | None = None,
                 requests: RequestLog | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self._server = _Server(plan, lock, self.token, requests)
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
