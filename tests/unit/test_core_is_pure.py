"""replayproxy.core never imports mitmproxy, directly or through another replayproxy module.

Importing ``replayproxy.core.x`` also runs ``replayproxy/__init__.py`` and whatever
the core imports from the package (``replayproxy.errors``), so those are checked too.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "replayproxy"
CORE_FILES = sorted((PACKAGE / "core").glob("*.py"))
CHECKED = [*CORE_FILES, PACKAGE / "__init__.py", PACKAGE / "errors.py"]
PURE_SUBMODULES = ("core", "errors")


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(source: str, module: str = "replayproxy.core.x",
                     is_package: bool = False) -> list[str]:
    """Every module a source file may import: statements, nested ones, import_module()."""
    found = []
    for node in ast.walk(ast.parse(source)):
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
    """mitmproxy, or a replayproxy module outside the core that may import it."""
    parts = name.split(".")
    if parts[0] == "mitmproxy":
        return True
    if parts[0] != "replayproxy" or len(parts) == 1 or parts[1] in PURE_SUBMODULES:
        return False
    # `from replayproxy import CassetteError` names a re-export, not a module
    return (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()


def violations(source: str, module: str = "replayproxy.core.x",
               is_package: bool = False) -> list[str]:
    return [name for name in imported_modules(source, module, is_package) if _is_impure(name)]


def test_the_core_files_are_found():
    names = {p.name for p in CORE_FILES}
    assert {"model.py", "storage.py", "matching.py", "session.py", "view.py",
            "environment.py"} <= names


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_core_does_not_import_mitmproxy(path):
    source = path.read_text(encoding="utf-8")
    bad = violations(source, _module_of(path), path.name == "__init__.py")
    assert not bad, f"{path} imports {bad}: the core must stay free of mitmproxy"


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
        "from replayproxy.addons import cassette",
        "from replayproxy import runtime",
        "import replayproxy.cli",
        "from .. import runtime",
        "from ..addons.cassette import CassetteAddon",
    ],
)
def test_the_checker_catches_impure_imports(source):
    assert violations(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import os\nimport msgpack",
        "import mitmproxyish",
        "from replayproxy.core.model import Request",
        "from replayproxy.errors import CassetteError, ConfigError",
        "from . import model",
        "from .storage import load_cassette",
        "from .. import errors",
        "from replayproxy import errors",
        "from replayproxy import CassetteError",
        "import replayproxy",
        "x = 'import mitmproxy'",
    ],
)
def test_the_checker_allows_pure_imports(source):
    assert violations(source) == [], source
