"""``cassette prune``: remove the recorded interactions the last replays never used."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from replayproxy.cli.options import CassetteDir, CassetteName, Config, Matching, catch_errors
from replayproxy.cli.output import PREFIX, plural
from replayproxy.errors import CassetteError


@catch_errors
def cassette_prune(
    cassette: CassetteName,
    cassette_dir: CassetteDir = None,
    config: Config = None,
    runs: Annotated[int, typer.Option(
        "--runs", metavar="N", min=1, help="Remove only what none of the last N replays "
        "of the cassette (as it is now) used.")] = 1,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be removed; change nothing.")] = False,
) -> None:
    """Remove the interactions the last replay never used (atomically).

    A replay (`replayproxy replay`) keeps which interactions it never served; prune
    removes them. Example: replayproxy cassette prune -c stripe --dry-run
    """
    from replayproxy.cassette.journal import pending_journals
    from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
    from replayproxy.cassette.usage import last_runs, unused_by_all
    from replayproxy.cassette.view import summary_line
    from replayproxy.config import home_dir

    directory = Matching(config, cassette_dir).cassette_directory()
    path = cassette_path(directory, cassette)
    loaded = load_cassette(path, cassette)
    if pending_journals(path):
        raise CassetteError(f"cassette {cassette!r} has an interrupted recording not folded "
                            f"in: fold it in with `replayproxy replay -c {cassette} -- true`, "
                            "replay it, then prune")
    known = last_runs(home_dir(), path, runs)
    unused = [i for i in unused_by_all(known) if i < len(loaded)]
    since = f"the last {plural(len(known), 'replay')}" if len(known) > 1 else "the last replay"
    if not unused:
        typer.echo(f"{PREFIX}nothing to prune: {since} used every interaction of "
                   f"{path}", err=True)
        return
    if len(unused) == len(loaded):
        raise CassetteError(f"{since} of {cassette!r} used none of its "
                            f"{plural(len(loaded), 'interaction')}: pruning would empty it; "
                            "check the replay ran the tests that use it")
    for i in unused:
        typer.echo(summary_line(i + 1, loaded.interaction(i)))
    if dry_run:
        typer.echo(f"{PREFIX}would remove {plural(len(unused), 'interaction')} of "
                   f"{len(loaded)} from {path} (dry run: nothing changed)", err=True)
        return
    drop = set(unused)
    save_cassette(path, [e for i, e in enumerate(loaded.entries) if i not in drop])
    typer.echo(f"{PREFIX}removed {plural(len(unused), 'interaction')} that {since} never "
               f"used; {len(loaded) - len(unused)} left in {path}", err=True)


def note_replay(summary_path: Path, mode_is_replay: bool, requests: int, size: int,
                unused: list[int]) -> None:
    """Keep what a replay left unused, for ``cassette prune`` (a run that no request
    reached says nothing about use)."""
    if not mode_is_replay or not requests or not summary_path.exists():
        return
    from replayproxy.cassette.usage import note_run
    from replayproxy.config import home_dir

    note_run(home_dir(), summary_path, size, unused)
