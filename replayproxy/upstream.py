"""How replayproxy reaches the real upstreams: whom it trusts and which proxy it uses.

Engine-neutral (no mitmproxy, no httpx): the mitm engine and drift's live calls both
use it, so recording and drift trust the same CAs and take the same route.

Trust: mitmproxy verifies upstreams against certifi only, and its option *replaces*
that store, so replayproxy writes one bundle of everything this machine trusts, as it
was when replayproxy started: certifi, the system store, ``SSL_CERT_FILE`` and the PEM
files of ``SSL_CERT_DIR``, plus every ``upstream_ca`` given.

Egress: a corporate network often allows HTTPS out only through its proxy. The
``HTTPS_PROXY``/``HTTP_PROXY`` variables (either case) of replayproxy's own
environment, with its ``NO_PROXY``, say which; ``upstream_proxy`` overrides them, and
``"none"`` switches it off.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from replayproxy.errors import ConfigError

__all__ = ["DIRECT", "Egress", "EgressProxy", "egress_from", "netloc", "read_pem_ca",
           "reverse_spec", "reverse_targets", "trust_bundle"]

DIRECT = "none"
"""The ``upstream_proxy`` value that switches an egress proxy off (go direct)."""

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_MAX_CA_FILE = 16 * 1024 * 1024
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----",
                        re.DOTALL)


# -- trust --------------------------------------------------------------------------------


def read_pem_ca(path: Path) -> bytes:
    """The PEM bytes of an ``upstream_ca`` file; ConfigError if missing or not PEM."""
    if not path.exists():
        raise ConfigError(f"{{upstream_ca}} {path} does not exist: pass a PEM CA file "
                          "(the CA certificate)", path=str(path))
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {{upstream_ca}} {path}: {e.strerror}; pass a "
                          "readable PEM CA certificate", path=str(path)) from None
    if _BEGIN not in data:
        raise ConfigError(f"{{upstream_ca}} {path} holds no PEM certificate "
                          "('-----BEGIN CERTIFICATE-----'); pass the CA certificate in PEM "
                          "form (openssl x509 -inform der -in CA.der -out CA.pem)",
                          path=str(path))
    return data


def _system_files(environ: Mapping[str, str]) -> Iterable[Path]:
    """CA files this machine trusts: certifi, the system store, SSL_CERT_FILE and the
    PEM files of SSL_CERT_DIR."""
    with contextlib.suppress(ImportError):
        import certifi

        yield Path(certifi.where())
    default = ssl.get_default_verify_paths()
    for candidate in (default.cafile, default.openssl_cafile):
        if candidate:
            yield Path(candidate)
    yield Path("/etc/ssl/certs/ca-certificates.crt")
    if environ.get("SSL_CERT_FILE"):
        yield Path(environ["SSL_CERT_FILE"])
    for entry in filter(None, environ.get("SSL_CERT_DIR", "").split(os.pathsep)):
        directory = Path(entry)
        if directory.is_dir():
            with contextlib.suppress(OSError):
                yield from sorted(directory.iterdir())
        else:
            yield directory  # some set-ups (this machine's) name a bundle file here


def trust_bundle(extra: Sequence[bytes] = (),
                 environ: Mapping[str, str] | None = None) -> bytes:
    """One PEM bundle: the machine's trust (see ``_system_files``) and ``extra``."""
    parts: list[bytes] = []
    seen: set[tuple[int, int]] = set()
    for path in _system_files(os.environ if environ is None else environ):
        try:
            info = os.stat(path)  # follows links: one read per file however it is named
            if (info.st_dev, info.st_ino) in seen or info.st_size > _MAX_CA_FILE:
                continue
            seen.add((info.st_dev, info.st_ino))
            data = Path(path).read_bytes()
        except OSError:
            continue
        if _BEGIN in data:
            parts.append(data)
    parts.extend(extra)
    # each certificate once (the system store, its directory and certifi overlap)
    blocks = dict.fromkeys(_PEM_BLOCK.findall(b"\n".join(parts)))
    return b"\n".join(blocks) + b"\n"


# -- reverse ----------------------------------------------------------------------------


def reverse_spec(url: str) -> str:
    """Validate a ``--reverse`` URL and return it (scheme://host[:port])."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ConfigError(
            f"invalid {{reverse}} {url!r}: give the upstream's base URL, "
            "e.g. {reverse} https://api.example.com"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"invalid {{reverse}} {url!r}: give the upstream's base URL, "
            "e.g. {reverse} https://api.example.com"
        )
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(
            f"invalid {{reverse}} {url!r}: only scheme, host and port are used; drop the path"
        )
    return f"{parts.scheme}://{parts.netloc}"


def reverse_targets(reverse: str | Sequence[str] | None) -> list[str]:
    """The validated ``reverse`` base URLs, each once."""
    urls = [reverse] if isinstance(reverse, str) else list(reverse or ())
    targets: list[str] = []
    for url in urls:
        target = reverse_spec(url)
        if target in targets:
            raise ConfigError(f"{{reverse}} {target} is given twice: give each upstream once")
        targets.append(target)
    return targets


def netloc(addr: tuple[str, int]) -> str:
    """``host:port`` of a listen address (an IPv6 host in brackets)."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- egress -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EgressProxy:
    """An HTTP proxy to reach upstreams through."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    source: str = "upstream_proxy"
    """Where it came from: ``upstream_proxy`` or the variable's name."""

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        """The URL without credentials (safe to print)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value for its credentials, if any."""
        if self.username is None:
            return None
        token = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")


def parse_proxy_url(value: str, source: str) -> EgressProxy:
    """Parse an egress proxy URL (``http://[user:pw@]host[:port]``).

    ``source`` is ``upstream_proxy`` (the flag: a scheme is required) or a variable's
    name (like curl, a value without a scheme means ``http://``).
    """
    flag = source == "upstream_proxy"
    where = "{upstream_proxy}" if flag else source
    fix = ("give http://HOST:PORT (credentials as http://USER:PASSWORD@HOST:PORT), or "
           f"{{upstream_proxy}} {DIRECT} to go direct")
    text = value.strip()
    value = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", text)  # no password in messages
    if "://" not in text:
        if flag:
            raise ConfigError(f"invalid {where} {value!r}: no scheme; {fix}")
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigError(f"invalid {where} {value!r}: unsupported scheme "
                          f"{parts.scheme!r} (only http and https proxies); {fix}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(f"invalid {where} {value!r}: bad port; {fix}") from None
    if not host:
        raise ConfigError(f"invalid {where} {value!r}: no host; {fix}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"invalid {where} {value!r}: a proxy URL has no path; {fix}")
    scheme = parts.scheme.lower()
    return EgressProxy(scheme, host, port or (443 if scheme == "https" else 80),
                       unquote(parts.username) if parts.username is not None else None,
                       unquote(parts.password) if parts.password is not None else None,
                       source)


def _variable(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """The value of ``name`` (lower case first, as curl and requests read it)."""
    for key in (name.lower(), name.upper()):
        if environ.get(key, "").strip():
            return key, environ[key]
    return None


@dataclass(frozen=True)
class Egress:
    """Which proxy (if any) each upstream is reached through."""

    https: EgressProxy | None = None
    http: EgressProxy | None = None
    no_proxy: str = ""

    def __bool__(self) -> bool:
        return self.https is not None or self.http is not None

    def proxies(self) -> list[EgressProxy]:
        """The distinct proxies in use."""
        return list(dict.fromkeys(p for p in (self.https, self.http) if p is not None))

    def for_url(self, scheme: str, host: str, port: int) -> EgressProxy | None:
        """The proxy for an upstream, or None to go direct (``NO_PROXY`` matched)."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None:
            return None
        if self.no_proxy and _bypass(host, port, self.no_proxy):
            return None
        return proxy

    def describe(self) -> str:
        """One line for the start-up log (no credentials)."""
        seen = []
        for proxy in self.proxies():
            schemes = "+".join(s for s, p in (("https", self.https), ("http", self.http))
                               if p == proxy)
            given = "" if proxy.source == "upstream_proxy" else f" (from {proxy.source})"
            seen.append(f"{proxy.url} for {schemes}{given}")
        bypass = f"; direct for NO_PROXY {self.no_proxy}" if self.no_proxy else ""
        return "upstream proxy " + ", ".join(seen) + bypass


def _bypass(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names this upstream: ``*``; a host name and its subdomains
    (``example.com``, ``.example.com``); an IP address or a CIDR range; any of them
    with ``:PORT`` for that port only. Case-insensitive, as curl and requests read it."""
    host = host.strip("[]").lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, only_port = entry, None
        head, sep, tail = entry.rpartition(":")
        if sep and tail.isdigit() and (not head.count(":") or head.endswith("]")):
            name, only_port = head, int(tail)
        if only_port is not None and only_port != port:
            continue
        name = name.strip("[]").lstrip("*").lstrip(".").rstrip(".")
        if address is not None:
            with contextlib.suppress(ValueError):
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


def egress_from(upstream_proxy: str | None, environ: Mapping[str, str] | None = None
                ) -> Egress:
    """The egress for a run: ``upstream_proxy`` if given (``"none"``: direct), else the
    proxy variables of ``environ`` [default: this process's]; ``NO_PROXY`` applies to
    both."""
    environ = os.environ if environ is None else environ
    found = _variable(environ, "no_proxy")
    no_proxy = found[1].strip() if found else ""
    if upstream_proxy is not None:
        if upstream_proxy.strip().lower() in (DIRECT, ""):
            return Egress()
        proxy = parse_proxy_url(upstream_proxy, "upstream_proxy")
        return Egress(proxy, proxy, no_proxy)
    chosen: dict[str, EgressProxy | None] = {}
    ours = environ.get("REPLAYPROXY_URL", "").strip()
    for scheme in ("https", "http"):
        var = _variable(environ, f"{scheme}_proxy")
        if var and ours and var[1].strip() == ours:
            var = None  # set by a replayproxy run for its command: not an egress
        chosen[scheme] = parse_proxy_url(var[1], var[0]) if var else None
    return Egress(chosen["https"], chosen["http"], no_proxy)
