"""What a child process needs in its environment to use the proxy.

Clients disagree on which variable names the proxy and which names the trusted CA
file (measured: curl reads CURL_CA_BUNDLE and SSL_CERT_FILE, requests reads
REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE, httpx and urllib read SSL_CERT_FILE, Node adds
NODE_EXTRA_CA_CERTS to its own roots), and one that is already set elsewhere hides a
single override, so all of them are set.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["BUNDLE_VARIABLES", "PROXY_VARIABLES", "build_trust_bundle", "export_lines",
           "proxy_environment", "reverse_variable"]

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
BUNDLE_VARIABLES = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "AWS_CA_BUNDLE",
    "NIX_SSL_CERT_FILE",
    "GIT_SSL_CAINFO",
    "HTTPLIB2_CA_CERTS",
)
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")


def proxy_environment(
    proxy_url: str | None,
    bundle: Path,
    ca_cert: Path,
    reverse_url: str | None = None,
    *,
    reverse_urls: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the variables to add to a child's environment.

    ``NO_PROXY`` is emptied so that requests to local sandboxes go through the proxy too
    (clients that honour it send their requests for a reverse base URL to the forward
    proxy, which serves them as the reverse listener would: curl, for one, ignores a
    port in ``NO_PROXY``, so naming the listener there would not do).

    ``reverse_urls`` maps each reverse upstream (``https://api.example.com``) to its
    local base URL: the first is ``REPLAYPROXY_REVERSE_URL`` (as is ``reverse_url``),
    each also ``REPLAYPROXY_REVERSE_URL_<HOST>`` (see ``reverse_variable``).
    """
    env: dict[str, str] = {}
    if proxy_url:
        env.update(dict.fromkeys(PROXY_VARIABLES, proxy_url))
        env.update(dict.fromkeys(NO_PROXY_VARIABLES, ""))
    env.update(dict.fromkeys(BUNDLE_VARIABLES, str(bundle)))
    env["NODE_EXTRA_CA_CERTS"] = str(ca_cert)
    if proxy_url:
        env["REPLAYPROXY_URL"] = proxy_url
    reverses = dict(reverse_urls or {})
    first = reverse_url or next(iter(reverses.values()), None)
    if first:
        env["REPLAYPROXY_REVERSE_URL"] = first
    for target, local in reverses.items():
        env[reverse_variable(target)] = local
    return env


def reverse_variable(target: str) -> str:
    """The variable naming the local base URL of reverse upstream ``target``:
    ``REPLAYPROXY_REVERSE_URL_`` and its host (with the port when the URL gives one),
    upper-cased, every other character than a letter or digit an underscore:
    ``https://api.example.com`` -> ``REPLAYPROXY_REVERSE_URL_API_EXAMPLE_COM``,
    ``http://127.0.0.1:8080`` -> ``REPLAYPROXY_REVERSE_URL_127_0_0_1_8080``."""
    netloc = target.split("://", 1)[-1].strip("/")
    return "REPLAYPROXY_REVERSE_URL_" + re.sub(r"[^A-Z0-9]", "_", netloc.upper())


def export_lines(env: Mapping[str, str]) -> list[str]:
    """Return ``export NAME=value`` lines for a POSIX shell."""
    return [f"export {k}={shlex.quote(v)}" for k, v in env.items()]


def _existing_roots(environ: Mapping[str, str]) -> Iterable[Path]:
    """CA files the user's clients trust today: their variables, the system, certifi."""
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if environ.get(name):
            yield Path(environ[name])
    default = ssl.get_default_verify_paths()
    for candidate in (default.cafile, default.openssl_cafile):
        if candidate:
            yield Path(candidate)
    yield Path("/etc/ssl/certs/ca-certificates.crt")
    with contextlib.suppress(ImportError):
        import certifi

        yield Path(certifi.where())


def build_trust_bundle(
    ca_cert: Path, out: Path, environ: Mapping[str, str] | None = None
) -> Path:
    """Write ``out``: the proxy's CA certificate followed by the roots already trusted.

    So a client given this bundle trusts the proxy and still trusts everything else
    (the variables replace the default trust store rather than adding to it).
    """
    parts = [ca_cert.read_bytes().strip()]
    seen: set[Path] = set()
    for path in _existing_roots(os.environ if environ is None else environ):
        try:
            resolved = path.resolve()
            if resolved in seen or resolved == out.resolve():
                continue
            seen.add(resolved)
            parts.append(path.read_bytes().strip())
        except OSError:
            continue
    data = b"\n".join(parts) + b"\n"
    if not out.exists() or out.read_bytes() != data:
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    return out
