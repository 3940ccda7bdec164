"""A tiny Server-Sent Events endpoint for trying streams: five events half a second
apart at http://127.0.0.1:PORT/events (PORT: the first argument, default 8765).

    python docs/examples/sse_server.py 8765
"""

from __future__ import annotations

import http.server
import json
import sys
import time


class Events(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for n in range(5):
            data = f"data: {json.dumps({'n': n, 'at': round(time.time() % 60, 1)})}\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data.encode()))
            self.wfile.flush()
            time.sleep(0.5)
        self.wfile.write(b"0\r\n\r\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Events).serve_forever()
