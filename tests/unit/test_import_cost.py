"""Importing replayproxy is cheap: heavy libraries are imported where they are used.

``import replayproxy`` (and the modules a pytest plugin touches while collecting:
``model``, ``errors``, ``config``) must not import the engine, the diff library or the
front ends' libraries, so every test run that merely loads the plugin stays fast. Each
check runs in a fresh interpreter, since this one has imported everything already.
Nothing here measures time: ``bench/import_time.py`` does (docs/performance.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = frozenset({
    "mitmproxy",     # the engine: only engines.mitm, the CLI and the proxy run
    "deepdiff",      # ~100 ms with pydantic: only when a diff is computed
    "pydantic",      # imported by deepdiff
    "httpx",         # drift's live calls
    "sqlite_utils",  # drift history
    "rich",          # reports and the CLI
    "typer",         # the CLI
    "click",         # under typer
    "msgpack",       # cassette files: only when one is read or written
    "yaml",          # VCR.py cassettes
    "vcr",
})
"""Top-level packages that ``import replayproxy`` must leave unimported."""

PLUGIN_MODULES = ("replayproxy", "replayproxy.model", "replayproxy.errors", "replayproxy.config",
                  "replayproxy.pytest_plugin")
"""What a pytest plugin imports at collection, before any test asks for a proxy."""


def loaded_after(code: str) -> set[str]:
    """Every module in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return set(json.loads(out.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize("module", PLUGIN_MODULES)
def test_plugin_modules_import_no_heavy_library(module):
    assert heavy(loaded_after(f"import {module}")) == []


def test_import_replayproxy_imports_only_the_package_file():
    loaded = loaded_after("import replayproxy")
    assert sorted(m for m in loaded if m.split(".")[0] == "replayproxy") == ["replayproxy"]
    assert "importlib.metadata" not in loaded  # __version__ is read when asked for


def test_the_lazy_names_still_load_their_modules():
    loaded = loaded_after(
        "import replayproxy\n"
        "assert replayproxy.CassetteSession.__module__ == 'replayproxy.decision.session'\n"
        "assert replayproxy.__version__"
    )
    assert {"replayproxy.decision.session", "msgpack", "importlib.metadata"} <= loaded
    assert "deepdiff" not in loaded


def test_deepdiff_is_imported_only_when_a_diff_is_computed():
    setup = (
        "from replayproxy.matching.diagnostics import compare\n"
        "from replayproxy.drift.compare import compare_responses\n"
        "from replayproxy.matching.rules import MatchRule\n"
        "from replayproxy.model import Request, Response\n"
    )
    assert "deepdiff" not in loaded_after(setup)
    diagnose = ("a = Request('GET', 'https', 'h', 443, '/a')\n"
                "b = Request('GET', 'https', 'h', 443, '/b')\n"
                "assert compare(a, b, MatchRule())")
    assert "deepdiff" in loaded_after(setup + diagnose)
    drift = ("t = (('Content-Type', 'application/json'),)\n"
             "compare_responses(Response(200, 'OK', t, b'{\"a\": 1}'),\n"
             "                  Response(200, 'OK', t, b'{\"a\": 2}'))")
    assert "deepdiff" in loaded_after(setup + drift)
