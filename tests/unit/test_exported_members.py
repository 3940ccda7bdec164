"""The public API: every name in ``replayproxy.__all__`` resolves, and nothing else is public.

The names are imported on first access (``replayproxy.__getattr__``), so a name listed
in ``__all__`` but missing from the lazy table would only fail when a user reaches for
it; these tests reach for every one (as httpx's ``tests/test_exported_members.py``).
"""

from __future__ import annotations

import importlib
import types

import pytest

import replayproxy


@pytest.mark.parametrize("name", replayproxy.__all__)
def test_every_exported_name_resolves(name):
    value = getattr(replayproxy, name)
    assert value is not None
    if name != "__version__":
        # the object itself, not a copy: isinstance and except clauses must work
        assert getattr(importlib.import_module(value.__module__), name) is value
        assert value.__module__.startswith("replayproxy.")


def test_from_import_works_for_every_exported_name():
    namespace: dict[str, object] = {}
    exec(f"from replayproxy import {', '.join(replayproxy.__all__)}", namespace)
    assert all(namespace[name] is getattr(replayproxy, name) for name in replayproxy.__all__)


def test_dir_lists_every_exported_name():
    assert set(replayproxy.__all__) <= set(dir(replayproxy))


def test_all_holds_exactly_the_public_names():
    for name in replayproxy.__all__:
        getattr(replayproxy, name)
    public = {
        name for name, value in vars(replayproxy).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)  # subpackages, set by their imports
        and name != "TYPE_CHECKING"  # the typing-free spelling of typing.TYPE_CHECKING
    }
    assert public == {n for n in replayproxy.__all__ if not n.startswith("_")}
    assert replayproxy.__all__ == sorted(replayproxy.__all__)


def test_version_is_a_string():
    assert isinstance(replayproxy.__version__, str)
    assert replayproxy.__version__


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        replayproxy.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec("from replayproxy import no_such_name", {})
