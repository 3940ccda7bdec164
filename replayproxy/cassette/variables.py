"""Recorded variables: values a test makes on the client side, kept with the cassette.

A test that sends a random value (a fresh customer name, an idempotency key) would
send another one on replay, and match nothing. Instead it asks for the value by name:
while recording, ``factory()`` makes it and it is stored next to the cassette, in
``DIR/NAME.variables.json``; on replay the stored value comes back, so the replayed
requests are the recorded ones without loosening any matcher::

    variables = RecordedVariables(cassette_dir, "stripe", RecordMode.NONE)
    name = variables.get("customer", lambda: f"cust-{uuid4()}")

The file is JSON (sorted keys, stable bytes), replaced atomically under the cassette
directory's lock each time a value is made, so it never holds half a write. Which
value a mode gives:

- ``all`` (recording everything): a new value, replacing the stored one;
- ``new_episodes``: the stored value, else a new one (stored);
- ``none`` (replay): the stored value; none is a ``CassetteError`` saying to re-record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from replayproxy.cassette.store import (
    ensure_cassette_dir,
    locked_dir,
    validate_cassette_name,
    write_atomic,
)
from replayproxy.errors import CassetteError, ConfigError
from replayproxy.model import RecordMode

__all__ = ["FORMAT", "RecordedVariables", "variables_path"]

FORMAT = "replayproxy-variables"
_VERSION = 1


def variables_path(cassette_dir: str | os.PathLike[str], name: str) -> Path:
    """The file holding cassette ``name``'s recorded variables."""
    return Path(cassette_dir) / f"{validate_cassette_name(name)}.variables.json"


def _read(path: Path) -> dict[str, Any]:
    """The variables stored in ``path`` ({} when there is no file)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as e:
        raise CassetteError(f"recorded variables {path} cannot be read ({e}); delete the "
                            "file and record the cassette again", path=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT \
            or not isinstance(data.get("variables"), dict):
        raise CassetteError(f"{path} is not a replayproxy variables file; delete it and "
                            "record the cassette again", path=str(path))
    if data.get("version") != _VERSION:
        raise CassetteError(f"{path} has variables format version {data.get('version')!r}, "
                            f"this replayproxy reads {_VERSION}: upgrade replayproxy",
                            path=str(path))
    return dict(data["variables"])


def _encode(variables: dict[str, Any]) -> bytes:
    doc = {"format": FORMAT, "version": _VERSION, "variables": variables}
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


class RecordedVariables:
    """The variables of one cassette in one record mode (``once`` resolved already: the
    session's mode). Values are made at most once per instance."""

    def __init__(self, cassette_dir: str | os.PathLike[str], cassette: str,
                 mode: RecordMode) -> None:
        if mode is RecordMode.ONCE:
            raise ValueError("resolve 'once' first: pass the cassette session's mode")
        self.path = variables_path(cassette_dir, cassette)
        self.cassette = cassette
        self.mode = mode
        self._made: dict[str, Any] = {}

    def get(self, name: str, factory: Callable[[], Any]) -> Any:
        """The value of variable ``name``: made by ``factory`` and stored while recording,
        read back on replay (see the module's table).

        Raises:
            ConfigError: ``name`` is empty, or ``factory`` made a value JSON cannot hold.
            CassetteError: replaying, and the cassette has no such variable; or the
                variables file is damaged.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError(f"variable name {name!r}: give a non-empty string")
        if name in self._made:
            return self._made[name]
        stored = _read(self.path)
        if name in stored and self.mode is not RecordMode.ALL:
            value = stored[name]
        elif self.mode is RecordMode.NONE:
            raise CassetteError(
                f"variable {name!r} was not recorded with cassette {self.cassette!r} "
                f"({self.path}): record the cassette again ({{record_mode}} all, or "
                "new_episodes to add it)", cassette=self.cassette, path=str(self.path))
        else:
            made = factory()
            try:  # what replay will give back (a tuple comes back a list)
                value = json.loads(json.dumps(made, allow_nan=False))
            except (TypeError, ValueError) as e:
                raise ConfigError(f"variable {name!r}: the factory made {made!r}, which "
                                  f"cannot be stored as JSON ({e}); return a string, number, "
                                  "bool, None, list or dict") from None
            self._store(name, value)
        self._made[name] = value
        return value

    def _store(self, name: str, value: Any) -> None:
        ensure_cassette_dir(self.path.parent)
        with locked_dir(self.path.parent):
            stored = _read(self.path)
            stored[name] = value
            write_atomic(self.path, _encode(stored))
