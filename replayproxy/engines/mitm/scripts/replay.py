"""Replay a cassette with plain mitmproxy, offline:

    mitmdump -s replay.py --set replayproxy_cassette=NAME --set connection_strategy=lazy
"""

from replayproxy.engines.mitm.cassette import CassetteAddon
from replayproxy.model import RecordMode

addons = [CassetteAddon(default_mode=RecordMode.NONE)]
