"""Replay a cassette with plain mitmproxy, offline (the same script ships in the package,
``replayproxy/engines/mitm/scripts/replay.py``):

    mitmdump -s addons/replay.py --set replayproxy_cassette=NAME --set connection_strategy=lazy
"""

from replayproxy.engines.mitm.scripts.replay import addons

__all__ = ["addons"]
