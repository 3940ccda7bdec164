"""Record a local API through replayproxy's Python API, then replay it with the API down.

Run it: python docs/examples/api_record_replay.py [CASSETTE_DIR]
(tests/integration/test_api.py runs it too). It needs nothing but replayproxy:
the "API" is a small HTTP server on a free port of 127.0.0.1, and the client is a
child process (any program in any language would do) that honours HTTP_PROXY.
"""

import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from replayproxy import ProxyRun

CLIENT = """
import os, urllib.request
print(urllib.request.urlopen(os.environ["API"] + "/v1/greeting").read().decode())
"""


class Greeting(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"hello": "world"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def client(run: ProxyRun, api: str) -> str:
    """Run the client as a child process with the run's environment."""
    env = {"PATH": "/usr/bin:/bin", **run.environment(), "API": api,
           "NO_PROXY": "", "no_proxy": ""}  # send even 127.0.0.1 through the proxy
    done = subprocess.run([sys.executable, "-c", CLIENT], env=env, capture_output=True,
                          text=True, check=True, timeout=60)
    return done.stdout.strip()


def main(cassette_dir: Path) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Greeting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}"

    # record: the cassette is written when the run stops
    with ProxyRun("greeting", "all", cassette_dir=cassette_dir) as run:
        print("recorded:", client(run, api))
    print("recorded interactions:", run.summary.recorded)

    server.shutdown()  # the API is gone from here on
    server.server_close()

    # replay, offline: answered from the cassette
    with ProxyRun("greeting", "none", cassette_dir=cassette_dir) as run:
        print("replayed:", client(run, api))
    verdict = run.verdict()
    print(f"replayed interactions: {run.summary.replayed}, exit code {verdict.exit_code}")
    return verdict.exit_code


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(scratch)))
