"""A payments client for the demo sandbox, written with the Python standard library only.

It stands for "any client": it knows nothing about replayproxy. urllib reads the proxy
from HTTPS_PROXY/https_proxy and trusts the CA file named by SSL_CERT_FILE, which is all
`replayproxy record/replay` give it.

The flow: create a customer, charge them, poll the charge until it has succeeded (a
bounded loop), read the balance. One line per step on stdout, results only, so two runs
against the same API print the same lines. Errors go to stderr, with exit status 1.

Like any client of a remote API it retries what may pass on a second try: a dropped
connection, a timeout, a body cut short, a 500, 502, 503 or 504 answer (the 5xx that
mean "try again later"; 501 or 505 will not change). At most RETRIES more attempts,
waiting BACKOFF seconds before the first and twice as long before each next one; each
retry is reported on stderr. (A real payments client would also send an
Idempotency-Key, so that a retried POST never charges twice; the sandbox has none.)

    python demo/client.py --base-url https://127.0.0.1:PORT [--cafile CA.pem]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from typing import Any

MAX_POLLS = 10
POLL_INTERVAL = 0.1  # seconds between polls
TIMEOUT = 10.0  # seconds per request
RETRIES = 3  # attempts after the first one, at most
BACKOFF = 0.1  # seconds before the first retry, doubled before each next one
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class ClientError(Exception):
    pass


class TransientError(ClientError):
    """A failure that another attempt may not have: connection, timeout, some 5xx."""


class Api:
    def __init__(self, base_url: str, api_key: str, cafile: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        # None: urllib's default context, which honours SSL_CERT_FILE
        self.context = ssl.create_default_context(cafile=cafile) if cafile else None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             ) -> tuple[dict[str, Any], str | None]:
        """Send a request, retrying transient failures; return the decoded JSON body and
        its Content-Encoding."""
        for retry in range(RETRIES + 1):
            try:
                return self.call_once(method, path, body)
            except TransientError as e:
                first_line, newline, details = str(e).partition("\n")
                if retry == RETRIES:
                    raise ClientError(f"{first_line} (gave up after {RETRIES + 1} attempts)"
                                      f"{newline}{details}") from None
                delay = BACKOFF * 2 ** retry
                print(f"client: {first_line}; retry {retry + 1} of {RETRIES} in {delay:.1f} s",
                      file=sys.stderr, flush=True)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def call_once(self, method: str, path: str, body: dict[str, Any] | None = None,
                  ) -> tuple[dict[str, Any], str | None]:
        """Send one request; return the decoded JSON body and its Content-Encoding."""
        data = None if body is None else json.dumps(body, sort_keys=True).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.api_key}")
        request.add_header("Accept", "application/json")
        request.add_header("Accept-Encoding", "gzip")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self.context) as resp:
                raw, encoding = resp.read(), resp.headers.get("Content-Encoding")
        except urllib.error.HTTPError as e:
            error = TransientError if e.code in RETRY_STATUSES else ClientError
            raise error(f"{method} {path}: HTTP {e.code} {e.reason}"
                        + describe_error(e.read())) from None
        except urllib.error.URLError as e:
            raise TransientError(f"{method} {path}: cannot reach {self.base_url}: "
                                 f"{e.reason}") from None
        except TimeoutError:
            raise TransientError(f"{method} {path}: no answer within {TIMEOUT:.0f} s") \
                from None
        except (OSError, http.client.HTTPException) as e:
            # the connection dropped before or during the answer (urllib lets these through)
            raise TransientError(f"{method} {path}: connection dropped "
                                 f"({type(e).__name__}: {e})") from None
        if encoding == "gzip":
            raw = gzip.decompress(raw)  # urllib leaves Content-Encoding to the caller
        try:
            return json.loads(raw), encoding
        except ValueError:
            raise ClientError(f"{method} {path}: the response is not JSON: {raw[:80]!r}") \
                from None


def describe_error(body: bytes, max_lines: int = 20) -> str:
    """The API's error message, or the body's text (indented lines), or nothing."""
    text = body.decode("utf-8", "replace").strip()
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = None
    if isinstance(message, str):
        return f": {message}"
    lines = text.splitlines()
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more lines)"]
    return "".join(f"\n  {line}" for line in lines)


def money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency.upper()}"


def run(api: Api) -> None:
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        print(f"{step}. {text}", flush=True)

    customer, _ = api.call("POST", "/v1/customers",
                           {"email": "ada@example.com", "name": "Ada Lovelace"})
    say(f"created customer {customer['id']}: {customer['name']} <{customer['email']}>")

    charge, _ = api.call("POST", "/v1/charges",
                         {"amount": 2500, "currency": "eur", "customer": customer["id"],
                          "description": "Order #1001"})
    say(f"created charge {charge['id']}: {money(charge['amount'], charge['currency'])} "
        f"for {charge['customer']}, status {charge['status']}")

    for _ in range(MAX_POLLS):
        charge, _ = api.call("GET", f"/v1/charges/{charge['id']}")
        say(f"polled charge {charge['id']}: {charge['status']}")
        if charge["status"] != "pending":
            break
        time.sleep(POLL_INTERVAL)
    if charge["status"] != "succeeded":
        raise ClientError(f"charge {charge['id']} is {charge['status']} after "
                          f"{MAX_POLLS} polls, expected succeeded")

    balance, encoding = api.call("GET", "/v1/balance")

    def total(bucket: str) -> str:
        return ", ".join(money(b["amount"], b["currency"]) for b in balance[bucket]) or "nothing"

    say(f"balance: {total('available')} available, {total('pending')} pending "
        f"(response {encoding or 'not'}-encoded)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="e.g. https://127.0.0.1:8443")
    parser.add_argument("--api-key", default=os.environ.get("SANDBOX_API_KEY",
                                                             "sk_test_demo_4242"),
                        help="sandbox key [default: $SANDBOX_API_KEY or a demo key]")
    parser.add_argument("--cafile", help="CA certificate to trust instead of the default "
                        "store (to talk to the sandbox directly, without a proxy)")
    args = parser.parse_args(argv)
    try:
        run(Api(args.base_url, args.api_key, args.cafile))
    except ClientError as e:
        print(f"client: error: {e}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError) as e:
        # the shape this client was written for is gone: what a provider's API change does
        print(f"client: error: unexpected response from the API ({type(e).__name__}: {e}); "
              "has the API changed?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
