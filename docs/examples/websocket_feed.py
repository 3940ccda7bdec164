"""Record a WebSocket feed through replayproxy's Python API, then replay it with the feed
down.

Run it: python docs/examples/websocket_feed.py [CASSETTE_DIR]
(tests/integration/test_websocket.py runs it too). It needs replayproxy and the
``websockets`` package: the "feed" is a small WebSocket server on a free port of
127.0.0.1, and the client is a child process that goes through the proxy named in its
environment (``websockets`` honours HTTP_PROXY/HTTPS_PROXY).
"""

import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from websockets.sync.server import ServerConnection, serve

from replayproxy import ProxyRun

CLIENT = """
import sys
from websockets.sync.client import connect

with connect(sys.argv[1]) as ws:
    print(ws.recv())                                   # the feed speaks first
    ws.send('{"op": "subscribe", "symbol": "ACME"}')
    print(ws.recv())                                   # the confirmation
    print(ws.recv())                                   # a price, 0.2 s later
    ws.send("bye")
    try:
        ws.recv()
    except Exception as e:                             # the feed closes
        print("closed", e.rcvd.code if e.rcvd else None)
"""


def feed(conn: ServerConnection) -> None:
    conn.send("welcome")
    for message in conn:
        if message == "bye":
            conn.close(1000, "bye")
            return
        symbol = json.loads(message)["symbol"]
        conn.send(json.dumps({"subscribed": symbol}))
        threading.Event().wait(0.2)
        conn.send(json.dumps({"symbol": symbol, "price": 42.5}))


def run_client(run: ProxyRun, url: str) -> str:
    env = {"PATH": "/usr/bin:/bin", **run.environment()}
    return subprocess.run([sys.executable, "-c", CLIENT, url], env=env, capture_output=True,
                          text=True, timeout=60, check=True).stdout


def main(cassette_dir: Path) -> None:
    server = serve(feed, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/prices"
    with ProxyRun("feed", "all", cassette_dir=cassette_dir) as run:
        recorded = run_client(run, url)
    server.shutdown()  # the feed is gone: replay is offline
    with ProxyRun("feed", "none", cassette_dir=cassette_dir) as run:
        replayed = run_client(run, url)
    print(replayed, end="")
    assert replayed == recorded, (recorded, replayed)
    assert run.verdict().exit_code == 0


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "cassettes")
