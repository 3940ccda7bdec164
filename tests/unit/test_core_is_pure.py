"""Only the mitm engine imports mitmproxy, directly or through another replayproxy module.

Every module outside ``replayproxy/engines/mitm`` and the front ends that start it (the
CLI, the proxy-run API) is engine-neutral: capabilities and the decision pipeline work
on replayproxy's own types and are tested without sockets.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "replayproxy"
IMPURE = ("replayproxy.engines.mitm", "replayproxy.cli", "replayproxy.run", "replayproxy.workers",
          "replayproxy.__main__", "replayproxy.pytest_plugin")
"""Modules that may import mitmproxy (the engine) or start it (the front ends)."""


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _impure_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in IMPURE)


CHECKED = sorted(p for p in PACKAGE.rglob("*.py") if not _impure_module(_module_of(p)))


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _executed(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (read by type checkers only)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return [n for n in ast.walk(tree) if id(n) not in skipped]


def imported_modules(source: str, module: str = "replayproxy.matching.x",
                     is_package: bool = False) -> list[str]:
    """Every module a source file may import: statements, nested ones, import_module()."""
    found = []
    for node in _executed(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, is_package)
            found.append(target)
            # `from replayproxy import addons` imports the submodule replayproxy.addons
            found += [f"{target}.{alias.name}" for alias in node.names if alias.name != "*"]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("__import__",
                                                                          "import_module"))
            )
        ):
            found.append(node.args[0].value)
    return found


def _is_impure(name: str) -> bool:
    """mitmproxy, or a replayproxy module that may import it."""
    if name.split(".")[0] == "mitmproxy":
        return True
    # `from replayproxy.engines import mitm` imports the package replayproxy.engines.mitm;
    # `from replayproxy import CassetteError` names a re-export, not a module
    return _impure_module(name)


def violations(source: str, module: str = "replayproxy.matching.x",
               is_package: bool = False) -> list[str]:
    return [name for name in imported_modules(source, module, is_package) if _is_impure(name)]


def test_the_pure_modules_are_found():
    names = {_module_of(p) for p in CHECKED}
    assert {"replayproxy", "replayproxy.model", "replayproxy.cassette.store",
            "replayproxy.matching.index", "replayproxy.decision.session",
            "replayproxy.faults.plan", "replayproxy.drift.compare"} <= names
    assert not any(n.startswith("replayproxy.engines.mitm") for n in names)


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_pure_modules_do_not_import_mitmproxy(path):
    source = path.read_text(encoding="utf-8")
    bad = violations(source, _module_of(path), path.name == "__init__.py")
    assert not bad, f"{path} imports {bad}: only replayproxy.engines.mitm may use mitmproxy"


@pytest.mark.parametrize(
    "source",
    [
        "import mitmproxy",
        "import mitmproxy.http",
        "import os, mitmproxy.net.http as h",
        "from mitmproxy import http",
        "from mitmproxy.addons import serverplayback",
        "def f():\n    from mitmproxy import ctx\n    return ctx",
        "try:\n    import mitmproxy\nexcept ImportError:\n    pass",
        "import importlib\nimportlib.import_module('mitmproxy.ctx')",
        "__import__('mitmproxy')",
        "from replayproxy.engines.mitm import cassette",
        "from replayproxy.engines import mitm",
        "import replayproxy.cli",
        "from replayproxy import run",
        "from ..engines.mitm.cassette import CassetteAddon",
        "from ..engines import mitm",
    ],
)
def test_the_checker_catches_impure_imports(source):
    assert violations(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import os\nimport msgpack",
        "import mitmproxyish",
        "from replayproxy.model import Request",
        "from replayproxy.errors import CassetteError, ConfigError",
        "from . import rules",
        "from .index import ReplayIndex",
        "from replayproxy.engines import fast",
        "from .. import errors",
        "from replayproxy import errors",
        "from replayproxy import CassetteError",
        "import replayproxy",
        "x = 'import mitmproxy'",
        "if TYPE_CHECKING:\n    from replayproxy.engines.mitm.ca import CA",
        "if typing.TYPE_CHECKING:\n    import mitmproxy",
    ],
)
def test_the_checker_allows_pure_imports(source):
    assert violations(source) == [], source
