"""Project configuration: ``[tool.replayproxy]`` in pyproject.toml or a replayproxy.toml.

Looked up in the current directory: ``replayproxy.toml`` (settings at its top level)
first, else ``pyproject.toml`` (settings under ``[tool.replayproxy]``); or the file
given with ``--config``. Command-line flags override or extend what the file says.

Every key is checked when the file is read; an unknown key, a wrong type, an invalid
JSON path, regular expression or route gives a ``ConfigError`` naming the file, the key
and what is allowed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from replayproxy.cassette.quiet import Quiet
from replayproxy.drift.plan import DriftConfig, DriftRoute, parse_origin, parse_rate
from replayproxy.errors import ConfigError
from replayproxy.faults.spec import FaultSpec, fault_from_table, parse_fault
from replayproxy.faults.values import duration_seconds
from replayproxy.limits import DEFAULT_LIMITS, Limits
from replayproxy.matching.rules import (
    EXACT_MATCHERS,
    MATCHER_NAMES,
    RULE_MATCHERS,
    BodyKind,
    Exhausted,
    MatchConfig,
    MatchRule,
    compile_json_path,
    extend_rule,
)
from replayproxy.model import RecordMode
from replayproxy.redaction.redactor import RedactionConfig
from replayproxy.redaction.secrets import ValuePattern
from replayproxy.routes import Route, parse_route
from replayproxy.streams import parse_pace
from replayproxy.userregex import UserPattern

__all__ = ["PytestSettings", "Settings", "find_config", "home_dir", "load_settings",
           "parse_settings", "project_dir"]


def home_dir() -> Path:
    """replayproxy's own directory: ``$REPLAYPROXY_HOME``, else ``~/.replayproxy``
    (running servers' state, the redaction key, the CA by default)."""
    return Path(os.environ.get("REPLAYPROXY_HOME") or Path.home() / ".replayproxy").expanduser()


@dataclass(frozen=True, slots=True)
class PytestSettings:
    """``[pytest]``: the pytest plugin's defaults (its ``--replayproxy-*`` options win).
    Paths are as written (relative ones are relative to the configuration file)."""

    record_mode: str | None = None
    upstream_ca: tuple[str, ...] = ()
    upstream_insecure: bool = False
    upstream_proxy: str | None = None
    ca_dir: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    """Hosts (``HOST`` or ``HOST:PORT``) a replaying test may connect to directly."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the configuration file can set."""

    source: Path | None = None
    cassette_dir: str | None = None
    strict: bool = False
    fail_on_unused: bool = False
    match: MatchConfig = field(default_factory=MatchConfig)
    redact: RedactionConfig = field(default_factory=RedactionConfig)
    faults: tuple[FaultSpec, ...] = ()
    drift: DriftConfig = field(default_factory=DriftConfig)
    quiet: Quiet = field(default_factory=Quiet)
    """What a re-recording keeps as recorded (``volatile`` and ``[drift] ignore``)."""
    pytest: PytestSettings = field(default_factory=PytestSettings)
    limits: Limits = DEFAULT_LIMITS
    pace: float = 1.0
    """How fast recorded streams are replayed (see ``replayproxy.streams``)."""


def project_dir(settings: Settings) -> Path:
    """The project directory: the configuration file's, else the current one (where
    ``.replayproxy/`` keeps the drift history and the runs database)."""
    return settings.source.parent if settings.source is not None else Path.cwd()


_TOP_KEYS: dict[str, type | tuple[type, ...]] = {
    "cassette_dir": str, "strict": bool, "fail_on_unused": bool, "match": dict,
    "redact": dict, "faults": list, "drift": dict, "volatile": list, "pytest": dict,
    "limits": dict, "pace": (int, float)}
_LIMIT_KEYS = {
    "header_timeout": "a duration such as \"30s\": how long a request's headers may take",
    "idle_timeout": "a duration such as \"5min\": how long a connection with no request "
                    "in progress may stay silent",
    "max_connections": "a whole number of client connections open at once, 1 or more",
}
_PYTEST_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "record_mode": (str, "one of " + ", ".join(m.value for m in RecordMode)),
    "upstream_ca": ((str, list), "a PEM file, or a list of them"),
    "upstream_insecure": (bool, "true or false"),
    "upstream_proxy": (str, "http://[USER:PASSWORD@]HOST:PORT, or \"none\""),
    "ca_dir": (str, "a directory"),
    "allowed_hosts": ((str, list), "a list of HOST or HOST:PORT"),
}
_DRIFT_KEYS = {
    "credentials": "table of placeholder, header or rule name = \"ENV_VAR\"",
    "ignore": "list of JSON paths ($.meta.request_id) and header names never compared",
    "allow_unsafe": "true or false: re-send POST, PUT, PATCH, DELETE...",
    "origins": "table of recorded origin = live origin, such as "
               "\"https://api.example.com\" = \"https://sandbox.example.com\"",
    "concurrency": "a whole number of requests in flight, 1 or more",
    "rate": "requests per second per host, such as \"5/s\" or \"120/min\"",
    "timeout": "a duration such as \"10s\"",
    "repeat": "true or false: send safe requests twice to learn volatile values",
    "database": "path of the drift history database",
    "routes": "array of tables [[drift.routes]] with route, ignore, allow_unsafe, skip",
}
_DRIFT_ROUTE_KEYS = {"route", "ignore", "allow_unsafe", "skip"}
_REDACT_KEYS = {
    "headers": "list of header names to redact",
    "keep_headers": "list of header names a default rule would redact, to keep",
    "fields": "list of query parameter, form field or JSON key names to redact",
    "json": "list of JSON paths to redact, such as $.card.number",
    "patterns": "list of regular expressions (or tables {name, regex}) to redact in text",
    "same_value": "list of rule names whose redacted values must be equal to match",
    "on_leak": "error or warn",
    "defaults": "true or false: use the built-in rules",
    "scan": "true or false: scan each interaction for secrets before writing it",
}
_RULE_KEYS: dict[str, str] = {
    "matchers": "list of matcher names",
    "ignore_query": "list of query parameter names",
    "headers": 'list of header names to compare, or ["*"]',
    "ignore_headers": "list of header names",
    "ignore_json": "list of JSON paths such as $.request_id",
    "ignore_form": "list of form field names",
    "ignore_regex": "list of regular expressions",
    "body": "one of " + ", ".join(k.value for k in BodyKind),
    "on_exhausted": "one of " + ", ".join(k.value for k in Exhausted),
}


_SHOWN = 80
"""How many characters of a value a message shows (a 1 MB value is not echoed)."""
_LONGEST = 600
"""Messages longer than this lose their middle (text quoted from another module)."""


def _show(value: Any) -> str:
    """``repr(value)`` for a message, cut to about ``_SHOWN`` characters."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<a {type(value).__name__} nested too deeply to show>"
    if len(text) <= _SHOWN:
        return text
    return f"{text[:_SHOWN]}… ({len(text)} characters)"


def _clip(message: str) -> str:
    """``message`` with its middle cut when it is too long to read (keeps where and the
    advice at the end)."""
    if len(message) <= _LONGEST:
        return message
    head, tail = _LONGEST // 2, _LONGEST // 4
    return f"{message[:head]}… ({len(message) - head - tail} characters cut) …" \
           f"{message[-tail:]}"


class _Where:
    """Builds messages naming the file and the key."""

    def __init__(self, source: Path | None, section: str) -> None:
        self.source = source
        self.section = section

    def error(self, key: str, problem: str) -> ConfigError:
        where = f"{self.source}: " if self.source else ""
        table = f"[{self.section}] " if self.section else ""
        shown = key if len(key) <= _SHOWN else _show(key)
        return ConfigError(_clip(f"{where}{table}{shown}: {problem}"))

    def child(self, section: str) -> _Where:
        return _Where(self.source, section)


def _string_list(where: _Where, key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise where.error(key, f"expected a {_RULE_KEYS.get(key, 'list of strings')}, "
                               f"got {_show(value)}")
    return list(value)


def _rule_settings(where: _Where, table: Mapping[str, Any], *, route: bool) -> dict[str, Any]:
    """Validate a table of rule keys and return settings for ``extend_rule``."""
    settings: dict[str, Any] = {}
    for key, value in table.items():
        if key == "route" and route:
            continue
        if key == "routes" and not route:
            continue
        if key not in _RULE_KEYS:
            allowed = ", ".join(sorted([*_RULE_KEYS, "route" if route else "routes"]))
            raise where.error(key, f"unknown setting; allowed: {allowed}")
        if key in ("body", "on_exhausted"):
            kind = BodyKind if key == "body" else Exhausted
            try:
                settings[key] = kind(value)
            except ValueError:
                raise where.error(key, f"expected {_RULE_KEYS[key]}, got {_show(value)}") from None
            continue
        items = _string_list(where, key, value)
        if key == "matchers":
            allowed_names = RULE_MATCHERS if route else MATCHER_NAMES
            for name in items:
                if name not in allowed_names:
                    hint = (" (a route may only choose among query, headers, body; method, "
                            "scheme, host, port and path decide which route applies)"
                            if route and name in MATCHER_NAMES else "")
                    raise where.error(key, f"unknown matcher {_show(name)}; allowed: "
                                           f"{', '.join(allowed_names)}{hint}")
        elif key == "ignore_json":
            _check_json_paths(where, key, items)
        elif key == "ignore_regex":
            compiled = []
            for pattern in items:
                try:
                    compiled.append(UserPattern(pattern, f"[{where.section}] {key}"))
                except re.error as e:
                    raise where.error(
                        key, f"invalid regular expression {_show(pattern)}: {e}") from None
            settings[key] = compiled
            continue
        settings[key] = items
    return settings


def parse_settings(data: Mapping[str, Any], source: Path | None = None,
                   section: str = "tool.replayproxy") -> Settings:
    """Validate the settings table ``data`` (already parsed TOML)."""
    where = _Where(source, section)
    for key, value in data.items():
        if key not in _TOP_KEYS:
            raise where.error(key, "unknown setting; allowed: " + ", ".join(sorted(_TOP_KEYS)))
        kind = _TOP_KEYS[key]
        if not isinstance(value, kind) or (kind is not bool and type(value) is bool):
            named = kind.__name__ if isinstance(kind, type) else "a number"
            raise where.error(key, f"expected {named}, got {_show(value)}")
    try:
        pace = parse_pace(data.get("pace", 1.0))
    except ValueError as e:
        raise where.error("pace", str(e)) from None
    match = data.get("match", {})
    prefix = f"{section}." if section else ""
    mwhere = where.child(f"{prefix}match")
    base_settings = _rule_settings(mwhere, match, route=False)
    matchers = base_settings.pop("matchers", list(MATCHER_NAMES))
    exact = tuple(m for m in EXACT_MATCHERS if m in matchers)
    base = extend_rule(MatchRule(), str(source or "defaults"),
                       matchers=[m for m in matchers if m in RULE_MATCHERS], **base_settings)
    routes = [(route, _rule_settings(rwhere, table, route=True))
              for route, table, rwhere in _route_tables(where, match, f"{prefix}match",
                                                        "POST api.example.com/v1/*")]
    rwhere = where.child(f"{prefix}redact")
    redact = _redaction(rwhere, data.get("redact", {}), prefix)
    faults = []
    for i, item in enumerate(data.get("faults", [])):
        fwhere = where.child(f"{prefix}faults #{i + 1}")
        try:
            if isinstance(item, str):
                faults.append(parse_fault(item))
            elif isinstance(item, dict):
                faults.append(fault_from_table(item))
            else:
                raise ValueError("expected a spec string or a table")
        except ValueError as e:
            raise fwhere.error("fault", str(e)) from None
    drift = _drift(where.child(f"{prefix}drift"), data.get("drift", {}), prefix)
    volatile = _string_list(where, "volatile", data.get("volatile", []))
    _check_json_paths(where, "volatile", [v for v in volatile if v.strip().startswith("$")])
    plugin = _pytest(where.child(f"{prefix}pytest"), data.get("pytest", {}))
    limits = _limits(where.child(f"{prefix}limits"), data.get("limits", {}))
    return Settings(
        pytest=plugin,
        quiet=Quiet(ignore=(*volatile, *drift.ignore)),
        source=source,
        redact=redact,
        faults=tuple(faults),
        drift=drift,
        cassette_dir=data.get("cassette_dir"),
        strict=bool(data.get("strict", False)),
        fail_on_unused=bool(data.get("fail_on_unused", False)),
        match=MatchConfig(exact=exact, base=base, routes=tuple(routes)),
        limits=limits,
        pace=pace,
    )


def _pytest(where: _Where, table: Mapping[str, Any]) -> PytestSettings:
    """Validate ``[pytest]``: the plugin's record mode, upstream trust, CA, hosts."""
    values: dict[str, Any] = {}
    for key, raw in table.items():
        value: Any = raw
        if key not in _PYTEST_KEYS:
            raise where.error(key, "unknown setting; allowed: " + ", ".join(sorted(_PYTEST_KEYS)))
        kinds, what = _PYTEST_KEYS[key]
        if not isinstance(raw, kinds) or (isinstance(raw, list)
                                          and not all(isinstance(v, str) for v in raw)):
            raise where.error(key, f"expected {what}, got {_show(value)}")
        if key == "record_mode":
            try:
                RecordMode.parse(value)
            except ValueError as e:
                raise where.error(key, str(e)) from None
        values[key] = tuple([value] if isinstance(value, str) else value) \
            if key in ("upstream_ca", "allowed_hosts") else value
    return PytestSettings(**values)


def _limits(where: _Where, table: Mapping[str, Any]) -> Limits:
    """Validate ``[limits]``: the client connections' timeouts and cap."""
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _LIMIT_KEYS:
            raise where.error(key, "unknown setting; allowed: " + ", ".join(sorted(_LIMIT_KEYS)))
        if key == "max_connections":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise where.error(key, f"expected {_LIMIT_KEYS[key]}, got {_show(value)}")
            changes[key] = value
            continue
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(f"expected {_LIMIT_KEYS[key]}, got {_show(value)}")
            seconds = duration_seconds(key, f"{value}s" if isinstance(value, int | float)
                                       else value)
        except ValueError as e:
            raise where.error(key, str(e)) from None
        changes[key] = seconds
    return replace(DEFAULT_LIMITS, **changes)


def _string_table(where: _Where, key: str, value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, dict) or not all(isinstance(v, str) and v.strip()
                                              for v in value.values()):
        raise where.error(key, f"expected a {_DRIFT_KEYS[key]}, got {_show(value)}")
    return [(k, v.strip()) for k, v in value.items()]


def _drift(where: _Where, table: Mapping[str, Any], prefix: str) -> DriftConfig:
    """Validate ``[drift]``: credentials, ignore, safety, pacing, history, routes."""
    kinds: dict[str, type | tuple[type, ...]] = {
        "credentials": dict, "ignore": (list, str), "allow_unsafe": bool, "origins": dict,
        "concurrency": int, "rate": (str, int, float), "timeout": (str, int, float),
        "repeat": bool, "database": str, "routes": list}
    for key, value in table.items():
        if key not in _DRIFT_KEYS:
            raise where.error(key, "unknown setting; allowed: " + ", ".join(sorted(_DRIFT_KEYS)))
        if not isinstance(value, kinds[key]) or isinstance(value, bool) != (kinds[key] is bool):
            raise where.error(key, f"expected {_DRIFT_KEYS[key]}, got {_show(value)}")
    config = DriftConfig()
    changes: dict[str, Any] = {}
    if "credentials" in table:
        changes["credentials"] = tuple(_string_table(where, "credentials",
                                                     table["credentials"]))
    if "ignore" in table:
        changes["ignore"] = tuple(_drift_ignore(where, "ignore", table["ignore"]))
    if "origins" in table:
        pairs = _string_table(where, "origins", table["origins"])
        try:
            changes["origins"] = tuple((parse_origin("origin", a), parse_origin("origin", b))
                                       for a, b in pairs)
        except ValueError as e:
            raise where.error("origins", str(e)) from None
    if "concurrency" in table:
        if table["concurrency"] < 1:
            raise where.error("concurrency", f"expected {_DRIFT_KEYS['concurrency']}, "
                                             f"got {_show(table['concurrency'])}")
        changes["concurrency"] = table["concurrency"]
    if "rate" in table:
        try:
            changes["rate"] = parse_rate("rate", str(table["rate"]))
        except ValueError as e:
            raise where.error("rate", str(e)) from None
    if "timeout" in table:
        raw = table["timeout"]
        try:
            changes["timeout"] = duration_seconds(
                "timeout", f"{raw}s" if isinstance(raw, int | float) else raw)
        except ValueError as e:
            raise where.error("timeout", str(e)) from None
    for key in ("allow_unsafe", "repeat", "database"):
        if key in table:
            changes[key] = table[key]
    routes = []
    for route, item, rwhere in _route_tables(where.child(""), table, f"{prefix}drift",
                                             "GET api.example.com/v1/charges/*"):
        for key, value in item.items():
            if key not in _DRIFT_ROUTE_KEYS:
                raise rwhere.error(key, "unknown setting; allowed: "
                                        + ", ".join(sorted(_DRIFT_ROUTE_KEYS)))
            if key in ("allow_unsafe", "skip") and not isinstance(value, bool):
                raise rwhere.error(key, f"expected true or false, got {_show(value)}")
        routes.append(DriftRoute(route, tuple(_drift_ignore(rwhere, "ignore",
                                                             item.get("ignore", []))),
                                 item.get("allow_unsafe"), bool(item.get("skip", False))))
    changes["routes"] = tuple(routes)
    return replace(config, **changes)


def _drift_ignore(where: _Where, key: str, value: Any) -> list[str]:
    items = _string_list(where, key, value)
    _check_json_paths(where, key, [i for i in items if i.strip().startswith("$")])
    return items


def _check_json_paths(where: _Where, key: str, paths: list[str]) -> None:
    """Raise the ConfigError naming ``key`` for the first path that does not parse."""
    for path in paths:
        try:
            compile_json_path(path)
        except ValueError as e:
            raise where.error(key, str(e)) from None


def _names(where: _Where, key: str, value: Any) -> frozenset[str]:
    return frozenset(v.lower() for v in _string_list(where, key, value))


def _patterns(where: _Where, key: str, value: Any) -> tuple[ValuePattern, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            name, regex = f"pattern-{i + 1}", item
        elif isinstance(item, dict) and isinstance(item.get("regex"), str):
            name, regex = str(item.get("name", f"pattern-{i + 1}")), item["regex"]
            if not re.fullmatch(r"[a-z0-9_.\-]+", name):
                raise where.error(key, f"pattern name {_show(name)} must be lower-case letters, "
                                       "digits, '_', '-' or '.'")
        else:
            raise where.error(key, f"expected a {_REDACT_KEYS[key]}, got {_show(item)}")
        try:
            out.append(ValuePattern(name, UserPattern(regex, f"[{where.section}] {key}")))
        except re.error as e:
            raise where.error(key, f"invalid regular expression {_show(regex)}: {e}") from None
    return tuple(out)


def _redact_table(where: _Where, table: Mapping[str, Any], allowed: set[str]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for key, value in table.items():
        if key not in allowed:
            raise where.error(key, "unknown setting; allowed: " + ", ".join(sorted(allowed)))
        if key in ("headers", "keep_headers", "fields", "same_value"):
            extra[key] = _names(where, key, value)
        elif key == "json":
            paths = _string_list(where, key, value)
            _check_json_paths(where, key, paths)
            extra["json_paths"] = tuple(paths)
        elif key == "patterns":
            extra["patterns"] = _patterns(where, key, value)
        elif key == "on_leak":
            if value not in ("error", "warn"):
                raise where.error(key, f"expected error or warn, got {_show(value)}")
            extra[key] = value
        elif key in ("defaults", "scan"):
            if not isinstance(value, bool):
                raise where.error(key, f"expected true or false, got {_show(value)}")
            extra[key] = value
    return extra


def _redaction(where: _Where, table: Any, prefix: str) -> RedactionConfig:
    if not isinstance(table, dict):
        raise where.error("redact", "expected a table")
    base = _redact_table(where, {k: v for k, v in table.items() if k != "routes"},
                         set(_REDACT_KEYS))
    defaults = base.pop("defaults", True)
    config = RedactionConfig() if defaults else RedactionConfig(
        headers=frozenset(), header_words=frozenset(), fields=frozenset(), patterns=())
    config = replace(
        config,
        headers=config.headers | base.get("headers", frozenset()),
        keep_headers=base.get("keep_headers", frozenset()),
        fields=config.fields | base.get("fields", frozenset()),
        json_paths=base.get("json_paths", ()),
        patterns=(*config.patterns, *base.get("patterns", ())),
        same_value=base.get("same_value", frozenset()),
        on_leak=base.get("on_leak", "error"),
        defaults=defaults,
        scan=base.get("scan", True),
    )
    routes = [(route, _redact_table(rwhere, {k: v for k, v in item.items() if k != "route"},
                                    {"headers", "keep_headers", "fields", "json", "patterns"}))
              for route, item, rwhere in _route_tables(where, table, f"{prefix}redact",
                                                       "POST api.example.com/oauth/*")]
    return replace(config, routes=tuple(routes))


def _route_tables(where: _Where, table: Mapping[str, Any], section: str, example: str
                  ) -> list[tuple[Route, Mapping[str, Any], _Where]]:
    """The ``routes`` array of ``table``: each entry's parsed route, the entry, and where
    it is (for messages)."""
    raw = table.get("routes", [])
    if not isinstance(raw, list):
        raise where.child(section).error("routes", f"expected an array of tables "
                                                   f"[[...{section}.routes]]")
    out: list[tuple[Route, Mapping[str, Any], _Where]] = []
    for i, item in enumerate(raw):
        rwhere = where.child(f"{section}.routes #{i + 1}")
        if not isinstance(item, dict):
            raise rwhere.error("route", "expected a table with a 'route' key")
        if not isinstance(item.get("route"), str):
            raise rwhere.error("route", f"missing; give a pattern such as '{example}'")
        try:
            out.append((parse_route(item["route"]), item, rwhere))
        except ValueError as e:
            raise rwhere.error("route", str(e)) from None
    return out


def find_config(directory: Path) -> tuple[Path, str] | None:
    """The configuration file in ``directory`` and its settings section, if any."""
    own = directory / "replayproxy.toml"
    if own.is_file():
        return own, ""
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        return pyproject, "tool.replayproxy"
    return None


def load_settings(path: Path | None = None, directory: Path | None = None) -> Settings:
    """Read the configuration from ``path``, or find it in ``directory`` (default: cwd).

    Returns default settings when there is no configuration file.
    """
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist: check --config")
        section = "tool.replayproxy" if path.name == "pyproject.toml" else ""
    else:
        found = find_config(directory or Path.cwd())
        if found is None:
            return Settings()
        path, section = found
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}; fix the syntax") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply to "
                          "read; fix the file (no setting nests more than a few levels)"
                          ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read configuration file {path}: {e}") from None
    table: Any = data
    for part in section.split(".") if section else []:
        table = table.get(part, {}) if isinstance(table, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{section}] must be a table")
    try:
        return parse_settings(table, path, section)
    except RecursionError:
        raise ConfigError(f"{path}: [{section or 'settings'}] nests values too deeply to "
                          "check; no setting nests more than a few levels") from None
