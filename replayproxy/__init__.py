"""replayproxy: record HTTP(S) traffic into cassettes and replay it offline.

The public names below need no mitmproxy import; the proxy itself is
``replayproxy.runtime.Proxy`` and the addon ``replayproxy.addons.cassette.CassetteAddon``.
"""

from importlib.metadata import PackageNotFoundError, version

from replayproxy.core.matching import ReplayIndex
from replayproxy.core.model import Interaction, RecordMode, Request, Response
from replayproxy.core.session import CassetteSession
from replayproxy.core.storage import CassetteFile, load_cassette, save_cassette
from replayproxy.errors import (
    CassetteError,
    CommandError,
    ConfigError,
    ProxyStartError,
    ReplayproxyError,
)

try:
    __version__ = version("replayproxy")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "CassetteError",
    "CassetteFile",
    "CassetteSession",
    "CommandError",
    "ConfigError",
    "Interaction",
    "ProxyStartError",
    "RecordMode",
    "ReplayIndex",
    "ReplayproxyError",
    "Request",
    "Response",
    "__version__",
    "load_cassette",
    "save_cassette",
]
