"""A small local sandbox payments API, served over HTTPS on 127.0.0.1 with its own CA.

It plays the part of an external provider's sandbox (think of a payments service) for
the replayproxy demo: a few JSON endpoints, a charge that has to be polled until it
succeeds, and a gzip-encoded balance. Ids come from counters; customers and charges
carry a ``created`` time (epoch seconds), as real APIs do, which the drift check learns
to treat as noise.

Endpoints (all need ``Authorization: Bearer sk_test_...``):

    POST /v1/customers        {"email", "name"}                  -> 201 customer
    POST /v1/charges          {"amount", "currency", "customer"} -> 201 charge, "pending"
    GET  /v1/charges/{id}     first call "pending", then "succeeded"
    GET  /v1/balance          available/pending sums; gzip if the client accepts it

``--version v2`` starts a changed API, as a provider might ship one day: in charges the
field ``customer`` is renamed ``customer_id`` and ``amount`` becomes a decimal string
("25.00") instead of an integer number of cents. Requests are the same in both versions.

Run it:

    python demo/sandbox.py --port 0 --ready-file /tmp/sandbox.json

It makes a CA (with ``trustme``) in ``--work-dir`` (default: the ready file's
directory), or reuses the one already there; binds 127.0.0.1 on the given port (0: a
free one); then writes the ready file, a JSON object {"url", "ca", "pid", "version"},
and prints the same on stdout. SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

HOST = "127.0.0.1"
VERSIONS = ("v1", "v2")
CURRENCIES = ("eur", "usd", "gbp")


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class Ledger:
    """The sandbox's state: customers and charges, ids from counters. Thread-safe."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.lock = threading.Lock()
        self.customers: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.requests = 0

    def next_request_id(self) -> str:
        with self.lock:
            self.requests += 1
            return f"req_{self.requests:04d}"

    def create_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        email, name = body.get("email"), body.get("name")
        if not isinstance(email, str) or "@" not in email:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_request_error",
                           "email: a valid e-mail address is required")
        if name is not None and not isinstance(name, str):
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_request_error",
                           "name: must be a string")
        with self.lock:
            cid = f"cus_{len(self.customers) + 1:04d}"
            customer = {"id": cid, "object": "customer", "email": email, "name": name,
                        "created": int(time.time())}
            self.customers[cid] = customer
            return dict(customer)

    def create_charge(self, body: dict[str, Any]) -> dict[str, Any]:
        amount, currency, customer = body.get("amount"), body.get("currency"), \
            body.get("customer")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_request_error",
                           "amount: a positive integer number of cents is required")
        if currency not in CURRENCIES:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_request_error",
                           f"currency: one of {', '.join(CURRENCIES)} is required")
        with self.lock:
            if customer not in self.customers:
                raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_request_error",
                               f"customer: no such customer {customer!r}")
            chid = f"ch_{len(self.charges) + 1:04d}"
            charge = {"id": chid, "amount": amount, "currency": currency,
                      "customer": customer, "description": body.get("description"),
                      "status": "pending", "polls": 0, "created": int(time.time())}
            self.charges[chid] = charge
            return self.render_charge(charge)

    def poll_charge(self, chid: str) -> dict[str, Any]:
        with self.lock:
            charge = self.charges.get(chid)
            if charge is None:
                raise ApiError(HTTPStatus.NOT_FOUND, "invalid_request_error",
                               f"no such charge {chid!r}")
            charge["polls"] += 1
            if charge["polls"] >= 2:  # the first poll still sees "pending"
                charge["status"] = "succeeded"
            return self.render_charge(charge)

    def balance(self) -> dict[str, Any]:
        with self.lock:
            totals: dict[str, dict[str, int]] = {}
            for charge in self.charges.values():
                bucket = "available" if charge["status"] == "succeeded" else "pending"
                per = totals.setdefault(bucket, {})
                per[charge["currency"]] = per.get(charge["currency"], 0) + charge["amount"]
        return {
            "object": "balance",
            "available": [{"amount": a, "currency": c}
                          for c, a in sorted(totals.get("available", {}).items())],
            "pending": [{"amount": a, "currency": c}
                        for c, a in sorted(totals.get("pending", {}).items())],
        }

    def render_charge(self, charge: dict[str, Any]) -> dict[str, Any]:
        if self.version == "v1":
            return {"id": charge["id"], "object": "charge", "amount": charge["amount"],
                    "currency": charge["currency"], "customer": charge["customer"],
                    "description": charge["description"], "status": charge["status"],
                    "created": charge["created"]}
        # v2: `customer` renamed `customer_id`, `amount` a decimal string
        return {"id": charge["id"], "object": "charge",
                "amount": f"{charge['amount'] // 100}.{charge['amount'] % 100:02d}",
                "currency": charge["currency"], "customer_id": charge["customer"],
                "description": charge["description"], "status": charge["status"],
                "created": charge["created"]}


CHARGE_PATH = re.compile(r"^/v1/charges/(?P<id>[A-Za-z0-9_]+)$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response has a Content-Length
    server_version = "sandbox-payments"
    sys_version = ""
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    server: SandboxServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        ledger = self.server.ledger
        request_id = ledger.next_request_id()
        body = self._read_body()
        try:
            self._authorize()
            status, payload = self._route(method, ledger, body)
        except ApiError as e:
            status, payload = e.status, {"error": {"type": e.kind, "message": e.message}}
        self._send_json(status, payload, request_id)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _authorize(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer sk_test_"):
            raise ApiError(HTTPStatus.UNAUTHORIZED, "authentication_error",
                           "send your sandbox key as `Authorization: Bearer sk_test_...`")

    def _route(self, method: str, ledger: Ledger, raw: bytes) -> tuple[HTTPStatus, Any]:
        path = self.path.split("?", 1)[0]
        if path == "/v1/customers" and method == "POST":
            return HTTPStatus.CREATED, ledger.create_customer(self._json(raw))
        if path == "/v1/charges" and method == "POST":
            return HTTPStatus.CREATED, ledger.create_charge(self._json(raw))
        if (m := CHARGE_PATH.match(path)) and method == "GET":
            return HTTPStatus.OK, ledger.poll_charge(m["id"])
        if path == "/v1/balance" and method == "GET":
            return HTTPStatus.OK, ledger.balance()
        if path in ("/v1/customers", "/v1/charges", "/v1/balance") or CHARGE_PATH.match(path):
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "invalid_request_error",
                           f"{method} is not allowed on {path}")
        raise ApiError(HTTPStatus.NOT_FOUND, "invalid_request_error",
                       f"unknown endpoint {method} {path}")

    @staticmethod
    def _json(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_request_error",
                           "the request body must be a JSON object")
        return body

    def _send_json(self, status: HTTPStatus, payload: Any, request_id: str) -> None:
        data = json.dumps(payload, indent=2).encode() + b"\n"
        gzipped = self.path.startswith("/v1/balance") and "gzip" in \
            self.headers.get("Accept-Encoding", "")
        if gzipped:
            data = gzip.compress(data, mtime=0)  # mtime=0: the same bytes every time
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Request-Id", request_id)
        self.send_header("Sandbox-Version", self.server.ledger.version)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log(format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        code_value = code.value if isinstance(code, HTTPStatus) else code
        self.server.log(f"{self.command} {self.path} {code_value}")


class SandboxServer(ThreadingHTTPServer):
    """One TLS handshake per connection, in that connection's thread (not in accept)."""

    daemon_threads = True

    def __init__(self, port: int, context: ssl.SSLContext, ledger: Ledger,
                 log_file: Path | None) -> None:
        super().__init__((HOST, port), Handler)
        self.context = context
        self.ledger = ledger
        self.log_lock = threading.Lock()
        self.log_stream = sys.stderr
        if log_file:
            self.log_stream = open(log_file, "a", buffering=1)  # noqa: SIM115 (closed below)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(Handler.timeout)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.log(f"TLS handshake with {client_address[0]}:{client_address[1]} failed: {e}")
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.log(f"error while serving {client_address[0]}:{client_address[1]}: "
                 f"{sys.exc_info()[1]!r}")

    def log(self, line: str) -> None:
        with self.log_lock:
            print(f"sandbox: {line}", file=self.log_stream, flush=True)

    def server_close(self) -> None:
        super().server_close()
        if self.log_stream is not sys.stderr:
            self.log_stream.close()


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # a reader never sees half a file


def load_or_make_ca(work_dir: Path) -> tuple[trustme.CA, Path]:
    """The sandbox's CA: reused from work_dir (ca.pem, ca-key.pem) if there, else made.

    Reusing it keeps the CA that clients are told to trust the same from run to run.
    """
    cert_path, key_path = work_dir / "ca.pem", work_dir / "ca-key.pem"
    if cert_path.is_file() and key_path.is_file():
        try:
            return trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes()), cert_path
        except ValueError:
            pass  # unreadable: make a new one
    ca = trustme.CA(organization_name="replayproxy demo sandbox")
    _write_atomic(key_path, ca.private_key_pem.bytes(), 0o600)
    _write_atomic(cert_path, ca.cert_pem.bytes())
    return ca, cert_path


def make_tls(work_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1 and localhost, and the path of its CA certificate."""
    ca, ca_path = load_or_make_ca(work_dir)
    cert = ca.issue_cert(HOST, "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context, ca_path


def write_ready(path: Path, info: dict[str, Any]) -> None:
    _write_atomic(path, (json.dumps(info, indent=2) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0,
                        help="port on 127.0.0.1; 0 (default) picks a free one")
    parser.add_argument("--ready-file", type=Path,
                        help="write {url, ca, pid, version} here (JSON) once listening")
    parser.add_argument("--work-dir", type=Path,
                        help="where the CA lives (ca.pem, ca-key.pem; made if missing, "
                        "reused otherwise) [default: the ready file's directory, else the "
                        "current one]")
    parser.add_argument("--version", choices=VERSIONS, default="v1", dest="api_version",
                        help="API version to serve (v2: a changed API) [default: v1]")
    parser.add_argument("--log-file", type=Path,
                        help="append one line per request here [default: stderr]")
    args = parser.parse_args(argv)

    work_dir = args.work_dir or (args.ready_file.parent if args.ready_file else Path.cwd())
    work_dir.mkdir(parents=True, exist_ok=True)
    context, ca_path = make_tls(work_dir)
    try:
        server = SandboxServer(args.port, context, Ledger(args.api_version), args.log_file)
    except OSError as e:
        print(f"sandbox: error: cannot listen on {HOST}:{args.port}: {e.strerror}; "
              "choose another --port (0 picks a free one)", file=sys.stderr)
        return 2

    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="sandbox", daemon=True)
    thread.start()
    port = server.server_address[1]
    info = {"url": f"https://{HOST}:{port}", "ca": str(ca_path.resolve()), "pid": os.getpid(),
            "version": args.api_version}
    try:
        if args.ready_file:
            write_ready(args.ready_file, info)
        print(f"sandbox {args.api_version} listening on {info['url']} (CA {info['ca']})",
              flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.log(f"stopped after {server.ledger.requests} requests")
        server.server_close()
        if args.ready_file:
            args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
