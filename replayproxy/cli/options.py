"""What the commands share: the options (declared once, as ``Annotated`` aliases), the
one place errors are caught, and the matching flags merged over the configuration.

Nothing here imports more than typer and replayproxy's model at module level:
``replayproxy --help`` must not pay for pydantic, deepdiff or mitmproxy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from replayproxy.errors import CLI_WORDS, ConfigError, ReplayproxyError
from replayproxy.model import RecordMode

if TYPE_CHECKING:
    from replayproxy.config import Settings
    from replayproxy.decision.session import CassetteSession
    from replayproxy.redaction.redactor import Redactor

P = ParamSpec("P")
R = TypeVar("R")

CassetteName = Annotated[str, typer.Option("--cassette", "-c", metavar="NAME",
                                           help="Cassette name.", show_default=False)]
_CASSETTE_DIR_HELP = ("Directory holding the cassettes [default: cassette_dir from the "
                      "configuration, else ./cassettes].")
CassetteDir = Annotated[
    Path | None,
    typer.Option("--cassette-dir", "-d", envvar="REPLAYPROXY_CASSETTE_DIR", show_default=False,
                 metavar="DIR", help=_CASSETTE_DIR_HELP),
]
CassetteDirLong = Annotated[
    Path | None,
    typer.Option("--cassette-dir", envvar="REPLAYPROXY_CASSETTE_DIR", show_default=False,
                 metavar="DIR", help=_CASSETTE_DIR_HELP),
]
"""``--cassette-dir`` without ``-d``, for ``explain``, where ``-d`` is curl's ``--data``."""
Config = Annotated[
    Path | None,
    typer.Option("--config", show_default=False, metavar="FILE",
                 help="Configuration file [default: ./replayproxy.toml, else "
                 "[tool.replayproxy] in ./pyproject.toml]."),
]
IgnoreQuery = Annotated[
    list[str] | None,
    typer.Option("--ignore-query", show_default=False, metavar="NAME",
                 help="Query parameter never compared (repeatable)."),
]
IgnoreHeader = Annotated[
    list[str] | None,
    typer.Option("--ignore-header", show_default=False, metavar="NAME",
                 help="Header never compared (repeatable)."),
]
MatchHeader = Annotated[
    list[str] | None,
    typer.Option("--match-header", show_default=False, metavar="NAME",
                 help="Header that must equal the recording; '*' for all (repeatable)."),
]
IgnoreJson = Annotated[
    list[str] | None,
    typer.Option("--ignore-json", show_default=False, metavar="PATH",
                 help="JSON path in request bodies never compared, e.g. $.nonce "
                 "(repeatable)."),
]
Faults = Annotated[
    list[str] | None,
    typer.Option("--fault", show_default=False, metavar="SPEC",
                 help="Inject a fault: KIND[=VALUE][,OPTION=VALUE...][@ROUTE], e.g. "
                 "'status=503,first=2@POST */v1/charges' (repeatable; see docs/faults.md)."),
]
Pace = Annotated[
    float | None,
    typer.Option("--pace", metavar="FACTOR", show_default=False,
                 help="Replay recorded streams (SSE, chunked, big bodies) at their recorded "
                 "pacing times FACTOR: 0 as fast as possible, 1 real time, 2 twice as slow "
                 "[default: the configuration's pace, else 1]."),
]
FailOnUnused = Annotated[
    bool,
    typer.Option("--fail-on-unused", help="Exit non-zero when recorded interactions were "
                 "never used (stale cassette entries)."),
]
UpstreamCA = Annotated[
    list[Path] | None,
    typer.Option("--upstream-ca", metavar="FILE", show_default=False,
                 help="PEM CA certificate to trust for upstream servers (e.g. a local "
                 "sandbox), besides certifi, the system store and SSL_CERT_FILE/"
                 "SSL_CERT_DIR (repeatable)."),
]
UpstreamInsecure = Annotated[
    bool,
    typer.Option("--upstream-insecure", help="Do not verify upstream certificates at all "
                 "(a throwaway sandbox only; prints a warning)."),
]
UpstreamProxy = Annotated[
    str | None,
    typer.Option("--upstream-proxy", metavar="URL", show_default=False,
                 help="Reach upstreams through this HTTP proxy, "
                 "http://[USER:PASSWORD@]HOST:PORT; 'none' to go direct [default: "
                 "HTTPS_PROXY/HTTP_PROXY as set when replayproxy starts; NO_PROXY "
                 "applies]."),
]
CADir = Annotated[
    Path | None,
    typer.Option("--ca-dir", envvar="REPLAYPROXY_CA_DIR", show_default=False, metavar="DIR",
                 help="Directory of the proxy's CA [default: ~/.replayproxy/ca]."),
]
Port = Annotated[int, typer.Option("--port", "-p", metavar="PORT",
                                   help="Proxy port on 127.0.0.1; 0 picks a free one.")]
Reverse = Annotated[
    list[str] | None,
    typer.Option("--reverse", metavar="URL", show_default=False,
                 help="Also serve this upstream (e.g. https://api.example.com) on a local "
                 "port as a plain base URL, for clients that ignore proxy variables; "
                 "given to the command as REPLAYPROXY_REVERSE_URL (the first) and "
                 "REPLAYPROXY_REVERSE_URL_HOST (repeatable; see docs/proxy.md)."),
]
Engine = Annotated[
    str,
    typer.Option("--engine", metavar="ENGINE", envvar="REPLAYPROXY_ENGINE",
                 help="auto: the fast engine whenever it can serve the run (replay of "
                 "HTTP/1.1 and HTTPS, every fault), else mitmproxy; fast or mitmproxy "
                 "forces one (see docs/replay.md#engines)."),
]
Strict = Annotated[bool, typer.Option("--strict", help="Once a recorded sequence of identical "
                                      "requests is used up, treat more as unmatched instead "
                                      "of repeating the last response.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only warnings and errors.")]
Keep = Annotated[bool, typer.Option(
    "--keep/--no-keep", help="When re-recording, keep the recorded bytes of interactions "
    "that differ only in values that change on every call (Date, ids, timestamps; see "
    "docs/interop.md); --no-keep rewrites every interaction.")]
Command = Annotated[
    list[str] | None,
    typer.Argument(help="The command to run under the proxy, after `--`.", metavar="CMD",
                   show_default=False),
]
CMD_CONTEXT = {"allow_interspersed_args": False, "ignore_unknown_options": True}
"""Context of the commands that run CMD: everything after the cassette flags is CMD's."""


def mode_option() -> Any:
    """The ``--record-mode`` option (a function: each command has its own default)."""
    return typer.Option(
        "--record-mode",
        "-m",
        metavar="MODE",
        help="once: record if the cassette is missing, else replay; new_episodes: replay "
        "what matches, record the rest; all: record everything; none: replay only.",
        case_sensitive=False,
    )


def catch_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """The CLI's one catch point: a ReplayproxyError becomes one line on stderr, its
    settings worded as flags, and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ReplayproxyError as e:
            typer.echo(f"replayproxy: error: {e.render(CLI_WORDS)}", err=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


@dataclass(frozen=True)
class Matching:
    """The matching-related flags of a command, to merge over the configuration file."""

    config: Path | None = None
    cassette_dir: Path | None = None
    strict: bool = False
    fail_on_unused: bool = False
    ignore_query: list[str] | None = None
    ignore_header: list[str] | None = None
    match_header: list[str] | None = None
    ignore_json: list[str] | None = None

    def settings(self) -> Settings:
        """The configuration file's settings with these flags applied."""
        from replayproxy.config import load_settings
        from replayproxy.matching.rules import extend_rule

        settings = load_settings(self.config)
        flags: dict[str, Any] = {}
        for key, values in (("ignore_query", self.ignore_query),
                            ("ignore_headers", self.ignore_header),
                            ("headers", self.match_header),
                            ("ignore_json", self.ignore_json)):
            if values:
                flags[key] = values
        check_json_path_flags("--ignore-json", self.ignore_json or [], "$.nonce")
        match = settings.match
        if flags:
            match = replace(match, base=extend_rule(match.base, "command line", **flags))
        return replace(
            settings,
            cassette_dir=str(self.cassette_dir or settings.cassette_dir or "cassettes"),
            strict=self.strict or settings.strict,
            fail_on_unused=self.fail_on_unused or settings.fail_on_unused,
            match=match,
        )

    def cassette_directory(self) -> Path:
        """The cassette directory: the flag, else the configuration, else ./cassettes."""
        return Path(self.settings().cassette_dir or "cassettes")

    def read_session(self, name: str) -> CassetteSession:
        """Open cassette ``name`` for reading, with the merged settings: nothing on disk
        changes (an interrupted recording's journals are left for a command that
        writes; ``session.pending`` lists them)."""
        from replayproxy.decision.session import CassetteSession

        settings = self.settings()
        assert settings.cassette_dir is not None
        return CassetteSession(settings.cassette_dir, name, RecordMode.NONE,
                               strict=settings.strict, match=settings.match,
                               redactor=redactor(settings), recover=False)


def check_json_path_flags(flag: str, paths: list[str], example: str) -> None:
    """Raise a ConfigError naming ``flag`` and an example for a path that does not parse."""
    if not paths:
        return
    from replayproxy.matching.rules import compile_json_path

    for path in paths:
        try:
            compile_json_path(path)
        except ValueError as e:
            raise ConfigError(f"{flag}: {e}; write e.g. {flag} '{example}'") from None


def redactor(settings: Settings) -> Redactor:
    """The redactor of ``settings``, with this machine's placeholder key."""
    from replayproxy.config import home_dir
    from replayproxy.redaction.redactor import Redactor, load_key

    return Redactor(settings.redact, load_key(home_dir()))
