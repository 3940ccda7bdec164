"""Engines carry the decision pipeline's plans out on the wire.

``mitm``: mitmproxy in-process (record, TLS, HTTP/2, WebSocket, every fault).
"""
