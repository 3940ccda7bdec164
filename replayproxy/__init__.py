"""replayproxy: record HTTP(S) traffic into cassettes and replay it offline.

The public names below need no mitmproxy import: a proxy run (``ProxyRun``, see
docs/api.md) imports the mitm engine when it starts.

``import replayproxy`` imports nothing but this file: each public name is imported from
its module on first use (PEP 562), and ``__version__`` is read from the package metadata
only when asked for, so a pytest plugin or a script that imports replayproxy pays for
what it uses (see docs/performance.md, "Import cost").
"""

from importlib import import_module as _import_module

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers know it)
if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from replayproxy.cassette.store import CassetteFile, load_cassette, save_cassette
    from replayproxy.decision.session import CassetteSession, SessionSummary
    from replayproxy.decision.verdict import Verdict
    from replayproxy.errors import (
        CassetteError,
        CommandError,
        ConfigError,
        FaultControlError,
        LiveError,
        ProxyStartError,
        ReplayproxyError,
    )
    from replayproxy.faults.control import FaultControl
    from replayproxy.matching.index import ReplayIndex
    from replayproxy.model import Interaction, RecordMode, Request, Response
    from replayproxy.run import ProxyRun

    __version__: str

_SOURCES = {
    "CassetteError": "replayproxy.errors",
    "CassetteFile": "replayproxy.cassette.store",
    "CassetteSession": "replayproxy.decision.session",
    "CommandError": "replayproxy.errors",
    "ConfigError": "replayproxy.errors",
    "FaultControl": "replayproxy.faults.control",
    "FaultControlError": "replayproxy.errors",
    "LiveError": "replayproxy.errors",
    "ProxyRun": "replayproxy.run",
    "SessionSummary": "replayproxy.decision.session",
    "Verdict": "replayproxy.decision.verdict",
    "Interaction": "replayproxy.model",
    "ProxyStartError": "replayproxy.errors",
    "RecordMode": "replayproxy.model",
    "ReplayIndex": "replayproxy.matching.index",
    "ReplayproxyError": "replayproxy.errors",
    "Request": "replayproxy.model",
    "Response": "replayproxy.model",
    "load_cassette": "replayproxy.cassette.store",
    "save_cassette": "replayproxy.cassette.store",
}
"""Each public name and the module that defines it."""

__all__ = [
    "CassetteError",
    "CassetteFile",
    "CassetteSession",
    "CommandError",
    "ConfigError",
    "FaultControl",
    "FaultControlError",
    "Interaction",
    "LiveError",
    "ProxyRun",
    "ProxyStartError",
    "RecordMode",
    "ReplayIndex",
    "ReplayproxyError",
    "Request",
    "Response",
    "SessionSummary",
    "Verdict",
    "__version__",
    "load_cassette",
    "save_cassette",
]


def _version() -> str:
    """The installed distribution's version (importlib.metadata costs ~40 ms to import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("replayproxy")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"


def _load(name: str) -> object:
    """Import a public name on first access and keep it in the module's namespace."""
    if name == "__version__":
        value: object = _version()
    elif name in _SOURCES:
        value = getattr(_import_module(_SOURCES[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups find it without calling __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name stays an error
    __getattr__ = _load
