"""`replayproxy cassette prune` (#15): the interactions the last replay never used go,
the others still replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from tests.integration.support import JSON_BODY, assert_clean_error, cli, cli_bytes


def curl(*urls: str) -> list[str]:
    return ["sh", "-c", "; ".join(f"curl -sS --max-time 30 {u}" for u in urls)]


@pytest.fixture
def run(cli_env, upstream_ca, tmp_path):
    cdir = tmp_path / "cassettes"

    def go(verb: str, cmd: list[str]):
        return cli_bytes(verb, "-c", "shop", "--cassette-dir", cdir, "--upstream-ca",
                         upstream_ca.pem, "--", *cmd, env=cli_env, cwd=tmp_path)

    return go


def paths(cdir: Path) -> list[str]:
    return [it.request.path for it in load_cassette(cassette_path(cdir, "shop")).interactions()]


def test_prune_removes_what_the_last_replay_never_used(https_upstream, run, cli_env,
                                                        tmp_path):
    cdir = tmp_path / "cassettes"
    urls = [https_upstream.url(p) for p in ("/json", "/png", "/query?a=1")]
    assert run("record", curl(*urls)).returncode == 0
    assert paths(cdir) == ["/json", "/png", "/query"]

    never = cli("cassette", "prune", "-c", "shop", "-d", cdir, env=cli_env)
    assert_clean_error(never, "no replay of", "replayproxy replay -c shop -- CMD")

    replayed = run("replay", curl(urls[0], urls[2]))
    assert replayed.returncode == 0, replayed.stderr
    before = cassette_path(cdir, "shop").read_bytes()

    dry = cli("cassette", "prune", "-c", "shop", "-d", cdir, "--dry-run", env=cli_env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].startswith(f"#2   GET {urls[1]} -> 200")
    assert "would remove 1 interaction of 3" in dry.stderr and "nothing changed" in dry.stderr
    assert cassette_path(cdir, "shop").read_bytes() == before

    done = cli("cassette", "prune", "-c", "shop", "-d", cdir, env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "removed 1 interaction that the last replay never used; 2 left" in done.stderr
    assert paths(cdir) == ["/json", "/query"]

    again = run("replay", curl(urls[0]))  # what stayed still replays, offline
    assert again.returncode == 0 and again.stdout == JSON_BODY
    # the cassette changed: the replays kept for it no longer count
    stale = cli("cassette", "prune", "-c", "shop", "-d", cdir, "--runs", "2", env=cli_env)
    assert stale.returncode == 0, stale.stderr
    assert "removed 1 interaction" in stale.stderr and paths(cdir) == ["/json"]


def test_prune_refuses_to_empty_a_cassette_the_replay_did_not_use(https_upstream, run,
                                                                  cli_env, tmp_path):
    cdir = tmp_path / "cassettes"
    assert run("record", curl(https_upstream.url("/json"))).returncode == 0
    missed = run("replay", curl(https_upstream.url("/png")))  # unmatched: exit 1
    assert missed.returncode != 0
    refused = cli("cassette", "prune", "-c", "shop", "-d", cdir, env=cli_env)
    assert_clean_error(refused, "used none of its 1 interaction", "would empty it")
    assert paths(cdir) == ["/json"]
