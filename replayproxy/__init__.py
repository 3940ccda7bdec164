"""replayproxy: record HTTP(S) traffic into cassettes and replay it offline.

The public names below need no mitmproxy import; the proxy itself is
``replayproxy.engines.mitm.master.Proxy`` and the addon
``replayproxy.engines.mitm.cassette.CassetteAddon``.

They are imported on first use (PEP 562), so ``import replayproxy.cli`` and
``replayproxy --help`` do not pay for deepdiff, msgpack or importlib.metadata.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replayproxy.cassette.store import CassetteFile, load_cassette, save_cassette
    from replayproxy.decision.session import CassetteSession
    from replayproxy.errors import (
        CassetteError,
        CommandError,
        ConfigError,
        ProxyStartError,
        ReplayproxyError,
    )
    from replayproxy.matching.index import ReplayIndex
    from replayproxy.model import Interaction, RecordMode, Request, Response

    __version__: str

_HOMES = {
    "CassetteFile": "replayproxy.cassette.store",
    "load_cassette": "replayproxy.cassette.store",
    "save_cassette": "replayproxy.cassette.store",
    "CassetteSession": "replayproxy.decision.session",
    "CassetteError": "replayproxy.errors",
    "CommandError": "replayproxy.errors",
    "ConfigError": "replayproxy.errors",
    "ProxyStartError": "replayproxy.errors",
    "ReplayproxyError": "replayproxy.errors",
    "ReplayIndex": "replayproxy.matching.index",
    "Interaction": "replayproxy.model",
    "RecordMode": "replayproxy.model",
    "Request": "replayproxy.model",
    "Response": "replayproxy.model",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("replayproxy")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'replayproxy' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES, "__version__"])


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
