"""Record into a cassette with plain mitmproxy:

    mitmdump -s addons/record.py --set replayproxy_cassette=NAME [--set connection_strategy=lazy]
"""

from replayproxy.addons.cassette import CassetteAddon
from replayproxy.core.model import RecordMode

addons = [CassetteAddon(default_mode=RecordMode.ALL)]
