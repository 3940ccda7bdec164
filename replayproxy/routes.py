"""Route patterns: which requests a rule (a matching rule, later a fault) applies to.

A pattern is ``[METHOD ]TARGET``:

- ``METHOD`` is an HTTP method, several joined with ``|`` (``GET|HEAD``), or ``*``;
  without it every method matches.
- ``TARGET`` is a glob (``*`` any characters, ``?`` one) matched against
  ``host/path`` when it has no ``://`` (``api.example.com/v1/*``, ``*/search*``),
  or against the full URL without the query when it has one
  (``https://api.example.com:8443/v1/*``). A ``re:`` prefix makes it a regular
  expression searched in the same text (``re:^api\\.example\\.com/v1/charges/\\w+$``).

Examples: ``POST api.example.com/v1/*``, ``*/search*``, ``GET|HEAD *``, ``*``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from replayproxy.model import Request, format_url

__all__ = ["Route", "parse_route"]

_METHOD = re.compile(r"(\*|[A-Za-z]+(\|[A-Za-z]+)*)")


@dataclass(frozen=True, slots=True)
class Route:
    """A parsed route pattern; ``matches(request)`` says whether it applies."""

    text: str
    methods: frozenset[str] | None
    """Upper-case methods, or None for any."""
    pattern: re.Pattern[str]
    full_url: bool
    """Match against ``scheme://host[:port]/path`` rather than ``host/path``."""

    def matches(self, request: Request) -> bool:
        """True if ``request`` falls under this route."""
        return self.matches_fields(request.method, request.scheme, request.host, request.port,
                                   request.path)

    def matches_fields(self, method: str, scheme: str, host: str, port: int, path: str) -> bool:
        """The same as ``matches`` for a request given as fields."""
        if self.methods is not None and method.upper() not in self.methods:
            return False
        if self.full_url:
            target = format_url(scheme.lower(), host.lower(), port, path)
        else:
            target = f"{host.lower()}{path}"
        return self.pattern.search(target) is not None


def _url_glob(target: str) -> str:
    """Lower-case scheme and host, and drop a default port, as ``format_url`` does."""
    scheme, _, rest = target.partition("://")
    netloc, slash, path = rest.partition("/")
    scheme = scheme.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default and netloc.endswith(default):
        netloc = netloc[: -len(default)]
    return f"{scheme}://{netloc.lower()}{slash}{path}"


def parse_route(text: str) -> Route:
    """Parse a route pattern; raise ValueError saying what is wrong with it."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty route: use e.g. 'POST api.example.com/v1/*' or '*'")
    methods: frozenset[str] | None = None
    head, _, rest = stripped.partition(" ")
    if rest.strip() and _METHOD.fullmatch(head):
        if head != "*":
            methods = frozenset(m.upper() for m in head.split("|"))
        target = rest.strip()
    else:
        target = stripped
    if target.startswith("re:"):
        try:
            pattern = re.compile(target[3:])
        except re.error as e:
            raise ValueError(f"invalid regular expression in route {text!r}: {e}") from None
        return Route(text, methods, pattern, "://" in target)
    if " " in target:
        raise ValueError(
            f"invalid route {text!r}: expected '[METHOD ]HOST/PATH-GLOB' such as "
            "'POST api.example.com/v1/*'"
        )
    full_url = "://" in target
    host, slash, path = target.partition("/")
    glob = _url_glob(target) if full_url else host.lower() + slash + path  # paths keep case
    if not full_url and "/" not in glob and not glob.endswith("*"):
        glob += "/*"  # a bare host means every path on it
    # anchored at the start too: "api.example.com/*" must not match "evilapi.example.com/"
    return Route(text, methods, re.compile(r"\A" + fnmatch.translate(glob)), full_url)
