"""Engines carry the decision pipeline's plans out on the wire.

``mitm``: mitmproxy in-process (record, TLS, HTTP/2, WebSocket, every fault).
``fast``: a lean asyncio HTTP/1.1 server for replay (plain, reverse, CONNECT + TLS).
``choice``: which of the two serves a run.
"""
