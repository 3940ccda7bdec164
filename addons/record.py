"""Record into a cassette with plain mitmproxy (the same script ships in the package,
``replayproxy/engines/mitm/scripts/record.py``):

    mitmdump -s addons/record.py --set replayproxy_cassette=NAME [--set connection_strategy=lazy]
"""

from replayproxy.engines.mitm.scripts.record import addons

__all__ = ["addons"]
