"""The mitmproxy engine: the only package that imports mitmproxy.

- ``master``: ``Proxy``, a lean mitmproxy master on its own thread and event loop;
- ``ca``: the proxy's certificate authority and the trust bundle clients get;
- ``convert``: flows to replayproxy's model and back;
- ``addon``: ``ReplayproxyAddon``, which carries out the pipeline's plans;
- ``trickle``: slow bodies, sent a few bytes at a time by a loopback server;
- ``scripts``: ``record.py`` and ``replay.py`` for ``mitmdump -s``.
"""
