"""The reason phrases both engines give the answers of replayproxy's own (faults,
unmatched requests, refusals), so a status line is the same whichever engine serves it,
and whichever mitmproxy release is installed (mitmproxy 12 added phrases 11 lacks).

mitmproxy 11's table (``mitmproxy.net.http.status_codes``); a status not here gets none.
"""

from __future__ import annotations

__all__ = ["reason_for"]

_REASONS = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 205: "Reset Content.", 206: "Partial Content", 207: "Multi-Status",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 305: "Use Proxy", 307: "Temporary Redirect", 400: "Bad Request",
    401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Time-out", 409: "Conflict", 410: "Gone", 411: "Length Required",
    412: "Precondition Failed", 413: "Payload Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Requested Range not satisfiable",
    417: "Expectation Failed", 418: "I'm a teapot", 422: "Unprocessable Content",
    444: "No Response", 499: "Client Closed Request", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Time-out", 505: "HTTP Version not supported",
    507: "Insufficient Storage Space", 510: "Not Extended",
}


def reason_for(status: int) -> str:
    """The reason phrase of ``status`` in replayproxy's own answers ("" when it has
    none: 429, say)."""
    return _REASONS.get(status, "")


