"""The fast engine: replay over a lean asyncio HTTP/1.1 server, without mitmproxy's
per-flow machinery.

- ``http1``: request heads parsed, bodies framed, responses assembled (bytes only);
- ``answers``: replayproxy's own answers and what faults do to a response;
- ``tls``: server certificates issued from replayproxy's CA, HTTP/1.1 over ALPN;
- ``server``: ``FastProxy``, which carries out the decision pipeline's plans.

``replayproxy.engines.choice`` says when it serves a run.
"""
