"""replayproxy: record HTTP(S) traffic into cassettes and replay it offline.

The public names below need no mitmproxy import; a proxy run (``replayproxy.run.ProxyRun``)
imports the mitm engine when it starts.
"""

from importlib.metadata import PackageNotFoundError, version

from replayproxy.cassette.store import CassetteFile, load_cassette, save_cassette
from replayproxy.decision.session import CassetteSession
from replayproxy.decision.verdict import Verdict
from replayproxy.errors import (
    CassetteError,
    CommandError,
    ConfigError,
    ProxyStartError,
    ReplayproxyError,
)
from replayproxy.matching.index import ReplayIndex
from replayproxy.model import Interaction, RecordMode, Request, Response
from replayproxy.run import ProxyRun

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
    "ProxyRun",
    "ProxyStartError",
    "RecordMode",
    "ReplayIndex",
    "ReplayproxyError",
    "Request",
    "Response",
    "Verdict",
    "__version__",
    "load_cassette",
    "save_cassette",
]
