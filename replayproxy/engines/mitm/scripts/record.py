"""Record into a cassette with plain mitmproxy:

    mitmdump -s record.py --set replayproxy_cassette=NAME [--set connection_strategy=lazy]
"""

from replayproxy.engines.mitm.addon import ReplayproxyAddon
from replayproxy.model import RecordMode

addons = [ReplayproxyAddon(default_mode=RecordMode.ALL)]
