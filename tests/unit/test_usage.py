"""What replays used, kept for `cassette prune` (#15)."""

from __future__ import annotations

import pytest

from replayproxy.cassette.store import save_cassette
from replayproxy.cassette.usage import KEPT, last_runs, note_run, unused_by_all
from replayproxy.errors import CassetteError
from tests.factories import interaction


def test_runs_are_kept_per_cassette_and_expire_when_it_changes(tmp_path):
    home, path = tmp_path / "home", tmp_path / "c" / "a.cassette"
    save_cassette(path, [interaction(f"/{i}") for i in range(4)])
    with pytest.raises(CassetteError, match="replay it first"):
        last_runs(home, path, 1)
    note_run(home, path, 4, [1, 2])
    note_run(home, path, 4, [2, 3])
    assert unused_by_all(last_runs(home, path, 1)) == [2, 3]
    assert unused_by_all(last_runs(home, path, 2)) == [2]
    assert not (path.parent / ".a.cassette.usage").exists()  # nothing next to the cassette
    save_cassette(path, [interaction("/0")])
    with pytest.raises(CassetteError, match="or it changed since"):
        last_runs(home, path, 1)


def test_only_the_last_runs_are_kept(tmp_path):
    home, path = tmp_path / "home", tmp_path / "a.cassette"
    save_cassette(path, [interaction("/")])
    for i in range(KEPT + 5):
        note_run(home, path, 1, [i])
    runs = last_runs(home, path, 100)
    assert len(runs) == KEPT and runs[-1].unused == (KEPT + 4,)


def test_a_damaged_record_starts_again(tmp_path):
    home, path = tmp_path / "home", tmp_path / "a.cassette"
    save_cassette(path, [interaction("/")])
    note_run(home, path, 1, [0])
    [record] = (home / "usage").iterdir()
    record.write_text("{not json")
    note_run(home, path, 1, [])
    assert [r.unused for r in last_runs(home, path, 5)] == [()]
