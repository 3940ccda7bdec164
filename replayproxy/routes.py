"""Route patterns: which requests a rule (a matching rule, later a fault) applies to.

A pattern is ``[METHOD ]TARGET``:

- ``METHOD`` is an HTTP method, several joined with ``|`` (``GET|HEAD``), or ``*``;
  without it every method matches.
- ``TARGET`` is a glob (``*`` any characters, ``?`` one) matched against
  ``host/path`` when it has no ``://`` (``api.example.com/v1/*``, ``*/search*``: any
  port), against ``host:port/path`` when its host names a port
  (``127.0.0.1:8443/v1/*``, the natural form for a local sandbox), or against the full
  URL without the query when it has ``://`` (``https://api.example.com:8443/v1/*``). A
  ``re:`` prefix makes it a regular expression searched in ``host/path``, or the full
  URL when it contains ``://`` (``re:^api\\.example\\.com/v1/charges/\\w+$``).

Examples: ``POST api.example.com/v1/*``, ``*/search*``, ``GET|HEAD *``, ``*``,
``127.0.0.1:8443/v1/*``.

A route that could never apply is a ValueError saying why: an unknown method, a
malformed host or port, a path without a host (``/v1/*``: write ``*/v1/*``).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from replayproxy.model import Request, format_url
from replayproxy.userregex import UserPattern

__all__ = ["Route", "parse_route"]

_METHOD = re.compile(r"(\*|[A-Za-z]+(\|[A-Za-z]+)*)")

METHODS = frozenset({
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    "QUERY", "PURGE", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK",
    "REPORT", "SEARCH", "MKCALENDAR", "ACL", "BIND", "UNBIND", "REBIND", "LINK", "UNLINK",
})
"""The request methods a route may name (HTTP's, WebDAV's and the common extensions)."""

_HOST_GLOB = re.compile(r"[A-Za-z0-9.*?_\-]+")
_PORT_GLOB = re.compile(r"[0-9*?]+")
_SCHEME_GLOB = re.compile(r"[A-Za-z*?][A-Za-z0-9+.*?\-]*")


@dataclass(frozen=True, slots=True)
class Route:
    """A parsed route pattern; ``matches(request)`` says whether it applies."""

    text: str
    methods: frozenset[str] | None
    """Upper-case methods, or None for any."""
    pattern: re.Pattern[str] | UserPattern
    full_url: bool
    """Match against ``scheme://host[:port]/path`` rather than ``host/path``."""
    with_port: bool = False
    """Match against ``host:port/path`` (the route's host names a port)."""

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
        elif self.with_port:
            target = f"{host.lower()}:{port}{path}"
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
    if " " in target and not target.startswith("re:"):
        raise ValueError(
            f"invalid route {text!r}: expected '[METHOD ]HOST/PATH-GLOB' such as "
            "'POST api.example.com/v1/*'"
        )
    _check_methods(text, methods)
    if target.startswith("re:"):
        try:
            pattern = UserPattern(target[3:], f"route {text!r}")
        except re.error as e:
            raise ValueError(f"invalid regular expression in route {text!r}: {e}") from None
        return Route(text, methods, pattern, "://" in target)
    full_url = "://" in target
    if full_url:
        scheme, _, rest = target.partition("://")
        netloc = rest.partition("/")[0]
        if not _SCHEME_GLOB.fullmatch(scheme):
            raise ValueError(f"invalid route {text!r}: malformed scheme {scheme!r}: use "
                             "http, https or a glob such as 'http*'")
        _check_netloc(text, netloc, required=True)
        return Route(text, methods, re.compile(r"\A" + fnmatch.translate(_url_glob(target))),
                     True)
    host, slash, path = target.partition("/")
    with_port = _check_netloc(text, host, required=False)
    glob = host.lower() + slash + path  # paths keep case
    if "/" not in glob and not glob.endswith("*"):
        glob += "/*"  # a bare host means every path on it
    # anchored at the start too: "api.example.com/*" must not match "evilapi.example.com/"
    return Route(text, methods, re.compile(r"\A" + fnmatch.translate(glob)), False,
                 with_port)


def _check_methods(text: str, methods: frozenset[str] | None) -> None:
    unknown = sorted((methods or frozenset()) - METHODS)
    if unknown:
        raise ValueError(
            f"route {text!r} can never apply: unknown method {unknown[0]!r}; use "
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (several joined with '|') or '*'")


def _check_netloc(text: str, netloc: str, *, required: bool) -> bool:
    """Check a route's ``host[:port]``; return True if it names a port."""
    if not netloc:
        if required:
            raise ValueError(f"route {text!r} can never apply: the URL has no host")
        raise ValueError(
            f"route {text!r} can never apply: it has no host (a route is "
            "'[METHOD ]HOST[:PORT]/PATH'); for any host write '*' + the path, e.g. "
            "'*/v1/*'")
    host, port = netloc, None
    if ":" in netloc:
        host, _, port = netloc.partition(":")
    if not _HOST_GLOB.fullmatch(host) or ".." in host or (
            host.startswith(".") and not host.startswith(".*")):
        raise ValueError(
            f"route {text!r} can never apply: malformed host {host!r}; use a host name, "
            "an IP address or a glob such as '*.example.com', optionally with ':PORT'")
    if port is not None:
        if not _PORT_GLOB.fullmatch(port) or (port.isdigit() and not 0 < int(port) < 65536):
            raise ValueError(
                f"route {text!r} can never apply: malformed port {port!r}; use a number "
                "from 1 to 65535 or a glob such as '84*'")
        return True
    return False
