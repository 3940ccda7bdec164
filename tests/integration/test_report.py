"""`replayproxy report` after real runs: record, replay twice (once with a request the
cassette does not hold), then coverage, the flaky run, JSON and Markdown."""

from __future__ import annotations

import json

from tests.integration.support import cli, offline


def test_report_after_record_and_replays(https_upstream, cli_env, upstream_ca, tmp_path):
    env = {**cli_env, "REPLAYPROXY_REPORT_DB": str(tmp_path / "runs.db")}
    cdir = tmp_path / "cassettes"

    def run(verb: str, *paths: str) -> int:
        script = " && ".join(f"curl -sS -o /dev/null {https_upstream.url(p)}" for p in paths)
        done = cli(verb, "-c", "shop", "--cassette-dir", cdir, "--upstream-ca", upstream_ca.pem,
                   "--", "sh", "-c", script, env=env, cwd=tmp_path)
        return done.returncode

    assert run("record", "/v1/items", "/v1/items/42", "/v1/orders") == 0
    with offline(https_upstream):
        assert run("replay", "/v1/items", "/v1/items/42") == 0
        assert run("replay", "/v1/items", "/v1/unknown") == 1

    done = cli("report", "--suites", "2", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Coverage of cassette shop: 2 of 3 recorded endpoints exercised" in done.stdout
    assert f" never  GET 127.0.0.1:{https_upstream.port}/v1/orders" in done.stdout
    assert "(run of shop) (shop): ok FAIL/1" in done.stdout

    as_json = json.loads(cli("report", "--json", env=env, cwd=tmp_path).stdout)
    assert as_json["suites"] == 3
    assert len(as_json["flaky"]) == 1
    markdown = cli("report", "--markdown", "-c", "shop", env=env, cwd=tmp_path).stdout
    assert markdown.startswith("# replayproxy run report: last 3 suites")
    assert "| endpoint | requests |" in markdown


def test_report_without_runs_is_one_line(cli_env, tmp_path):
    env = {**cli_env, "REPLAYPROXY_REPORT_DB": str(tmp_path / "none.db")}
    done = cli("report", env=env, cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no runs recorded yet" in lines[0]
    assert "Traceback" not in done.stderr
