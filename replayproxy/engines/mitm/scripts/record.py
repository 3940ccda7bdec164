"""Record into a cassette with plain mitmproxy:

    mitmdump -s record.py --set replayproxy_cassette=NAME [--set connection_strategy=lazy]
"""

from replayproxy.engines.mitm.cassette import CassetteAddon
from replayproxy.model import RecordMode

addons = [CassetteAddon(default_mode=RecordMode.ALL)]
