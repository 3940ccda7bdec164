"""The ``replayproxy`` command: parse, call the capabilities and the proxy run, print.

Messages of replayproxy itself go to stderr, so a wrapped command's stdout passes
through untouched. Every ``ReplayproxyError`` becomes one line
``replayproxy: error: …`` and a non-zero exit, never a traceback (``options.catch_errors``).

The commands live by topic: ``proxy`` (record, replay, serve, env, ca), ``cassettes``
(cassette ls/show, scan, redact), ``explain``, ``drift`` (drift, drift history). This
module only builds the app and registers them. Heavy libraries (mitmproxy, deepdiff,
httpx, sqlite-utils, pydantic) are imported inside the commands that use them, so
``replayproxy --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand

from replayproxy.cli import cassettes, drift, explain, proxy, report
from replayproxy.cli.options import CMD_CONTEXT

__all__ = ["app", "main"]

app = typer.Typer(
    name="replayproxy",
    help="Record HTTP(S) traffic into cassettes and replay it offline, for any client.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
cassette_app = typer.Typer(help="Look at the cassettes in a cassette directory.",
                           no_args_is_help=True, rich_markup_mode=None)
app.add_typer(cassette_app, name="cassette")
drift_app = typer.Typer(rich_markup_mode=None)
app.add_typer(drift_app, name="drift")


class _Argument(TyperArgument):
    """An argument whose help shows its metavar alone (``CMD...``), not a Python type
    after it (``CMD... <list[str]>``)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None if self.metavar else super().display_type_rich(ctx)


class _Command(TyperCommand):
    """Every command of the app: its arguments are ``_Argument``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _Argument


def _version(value: bool) -> None:
    if value:
        from replayproxy import __version__

        typer.echo(f"replayproxy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Record HTTP(S) traffic into cassettes and replay it offline, for any client."""


app.command("record", cls=_Command, context_settings=CMD_CONTEXT)(proxy.record)
app.command("replay", cls=_Command, context_settings=CMD_CONTEXT)(proxy.replay)
app.command("serve", cls=_Command)(proxy.serve)
app.command("explain", cls=_Command)(explain.explain)
app.command("scan", cls=_Command)(cassettes.scan)
app.command("redact", cls=_Command)(cassettes.redact)
app.command("env", cls=_Command)(proxy.env_command)
app.command("ca", cls=_Command)(proxy.ca)
app.command("report", cls=_Command)(report.report)
cassette_app.command("ls", cls=_Command)(cassettes.cassette_ls)
cassette_app.command("show", cls=_Command)(cassettes.cassette_show)
drift_app.callback(invoke_without_command=True)(drift.drift)
drift_app.command("history", cls=_Command)(drift.drift_history)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
