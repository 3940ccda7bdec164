"""Reviewing cassettes in git (#15): `replayproxy git-setup` in a real repository makes
`git diff` and `git log -p` show a cassette as text, with no temporary path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, save_cassette
from tests.factories import interaction, response
from tests.integration.support import assert_clean_error, cli


def git_env(cli_env: dict[str, str], home: Path) -> dict[str, str]:
    """``cli_env`` with a git of its own: no global or system configuration (and the
    PYTHONPATH made absolute: git runs the textconv driver in the repository)."""
    path = os.pathsep.join(str(Path(p).resolve())
                           for p in cli_env.get("PYTHONPATH", "").split(os.pathsep) if p)
    return {**cli_env, "PYTHONPATH": path, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(home / "gitconfig"), "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_PAGER": "cat", "PAGER": "cat"}


def git(repo: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path, cli_env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A git repository with `replayproxy git-setup` run in it."""
    home = tmp_path / "githome"
    home.mkdir()
    env = git_env(cli_env, home)
    root = tmp_path / "repo"
    root.mkdir()
    git(root, env, "init", "-q", "-b", "main")
    (root / ".gitattributes").write_text("*.png binary")  # no final newline: kept
    setup = cli("git-setup", "--repo", root, env=env)
    assert setup.returncode == 0, setup.stderr
    assert (root / ".gitattributes").read_text() == "*.png binary\n*.cassette diff=replayproxy\n"
    again = cli("git-setup", "--repo", root, env=env)  # idempotent
    assert again.returncode == 0 and (root / ".gitattributes").read_text().count("cassette") == 1
    assert "cassette text" in git(root, env, "config", "--local", "diff.replayproxy.textconv")
    return root, env


def _payment(amount: int) -> list:
    return [interaction("/v1/customers/cus_1", response(json={"id": "cus_1", "name": "Ada"})),
            interaction("/v1/payments/pay_1", response(json={"id": "pay_1", "amount": amount,
                                                             "currency": "eur"}))]


def test_git_diff_and_log_show_a_cassette_as_text(repo, tmp_path):
    root, env = repo
    path = cassette_path(root / "cassettes", "pay")
    save_cassette(path, _payment(1200))
    git(root, env, "add", "-A")
    git(root, env, "commit", "-qm", "record")
    save_cassette(path, _payment(1500))

    diff = git(root, env, "diff")
    changed = [line for line in diff.splitlines() if line.startswith(("-", "+"))
               and not line.startswith(("---", "+++"))]
    assert changed == ['-      "amount": 1200,', '+      "amount": 1500,']
    assert "a/cassettes/pay.cassette" in diff and "Binary files" not in diff
    assert "/tmp" not in diff and str(tmp_path) not in diff  # no temporary path

    git(root, env, "commit", "-qam", "re-record")
    log = git(root, env, "log", "-p", "-1")
    assert '+      "amount": 1500,' in log and "/tmp" not in log


def test_git_setup_outside_a_repository_is_one_line(tmp_path, cli_env):
    outside = tmp_path / "plain"
    outside.mkdir()
    env = git_env(cli_env, tmp_path)
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    assert_clean_error(cli("git-setup", "--repo", outside, env=env),
                       "is not in a git repository", "--repo DIR")
