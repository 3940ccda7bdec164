"""What a child process needs in its environment to use the proxy.

Clients disagree on which variable names the proxy and which names the trusted CA
file (measured: curl reads CURL_CA_BUNDLE and SSL_CERT_FILE, requests reads
REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE, httpx and urllib read SSL_CERT_FILE, Node adds
NODE_EXTRA_CA_CERTS to its own roots), and one that is already set elsewhere hides a
single override, so all of them are set.

Clients with their own configuration get theirs too (``client_environment``): wget a
wgetrc, pip ``PIP_CERT``, npm its ``npm_config_*``, Node a preload that sends the
http/https modules and fetch through the proxy, Java ``JAVA_TOOL_OPTIONS`` with proxy
properties and a trust store, gRPC its roots file. See docs/clients.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from replayproxy.clients import (
    NODE_PRELOAD,
    TRUSTSTORE_NAME,
    TRUSTSTORE_PASSWORD,
    WGETRC_NAME,
)

__all__ = ["BUNDLE_VARIABLES", "PROXY_VARIABLES", "build_trust_bundle", "client_environment",
           "export_lines", "java_non_proxy_hosts", "proxy_environment", "reverse_variable"]

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
    reverses = dict(reverse_urls or {})
    first = reverse_url or next(iter(reverses.values()), None)
    if first:
        env["REPLAYPROXY_REVERSE_URL"] = first
    for target, local in reverses.items():
        env[reverse_variable(target)] = local
    env.update(client_environment(proxy_url, bundle, ca_cert, no_proxy=env.get("NO_PROXY")))
    if proxy_url:  # last: a reader of `serve`'s export lines has them all once it sees it
        env["REPLAYPROXY_URL"] = proxy_url
    return env


def reverse_variable(target: str) -> str:
    """The variable naming the local base URL of reverse upstream ``target``:
    ``REPLAYPROXY_REVERSE_URL_`` and its host (with the port when the URL gives one),
    upper-cased, every other character than a letter or digit an underscore:
    ``https://api.example.com`` -> ``REPLAYPROXY_REVERSE_URL_API_EXAMPLE_COM``,
    ``http://127.0.0.1:8080`` -> ``REPLAYPROXY_REVERSE_URL_127_0_0_1_8080``."""
    netloc = target.split("://", 1)[-1].strip("/")
    return "REPLAYPROXY_REVERSE_URL_" + re.sub(r"[^A-Z0-9]", "_", netloc.upper())


def client_environment(
    proxy_url: str | None,
    bundle: Path,
    ca_cert: Path,
    no_proxy: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Variables for clients that read neither the proxy nor the CA variables alone.

    The wgetrc and the Java trust store are used when they exist beside ``ca_cert``
    (``ensure_ca`` writes them). ``no_proxy`` is the child's NO_PROXY (for Java's
    ``http.nonProxyHosts``); ``environ`` the variables the child inherits
    [default: this process's], whose NODE_OPTIONS and JAVA_TOOL_OPTIONS are kept.
    """
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    env.update(_wget_environment(ca_cert.parent / WGETRC_NAME))
    env.update(_python_environment(bundle))
    env.update(_npm_environment(proxy_url, bundle, no_proxy))
    env.update(_node_environment(proxy_url, environ))
    env.update(_java_environment(proxy_url, ca_cert.parent / TRUSTSTORE_NAME, no_proxy,
                                 environ))
    env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(bundle)
    return env


def _wget_environment(wgetrc: Path) -> dict[str, str]:
    """wget's GnuTLS builds ignore SSL_CERT_FILE; the wgetrc names the bundle."""
    return {"WGETRC": str(wgetrc)} if wgetrc.is_file() else {}


def _python_environment(bundle: Path) -> dict[str, str]:
    """pip's ``cert`` (PIP_CERT, pip.conf) wins over REQUESTS_CA_BUNDLE."""
    return {"PIP_CERT": str(bundle)}


def _npm_environment(proxy_url: str | None, bundle: Path, no_proxy: str | None
                     ) -> dict[str, str]:
    """npm and pnpm read ``npm_config_*`` before any .npmrc (whose ``cafile`` would beat
    NODE_EXTRA_CA_CERTS); the CA file replaces Node's roots, so it is the whole bundle.
    Yarn 2+ reads ``YARN_HTTP(S)_PROXY`` and trusts NODE_EXTRA_CA_CERTS: its CA setting
    was renamed in Yarn 4 (``caFilePath``, then ``httpsCaFilePath``) and Yarn refuses to
    start when the environment names a setting it does not know, so none is given."""
    env = {"npm_config_cafile": str(bundle)}
    if proxy_url:
        env.update(npm_config_proxy=proxy_url, npm_config_https_proxy=proxy_url,
                   YARN_HTTP_PROXY=proxy_url, YARN_HTTPS_PROXY=proxy_url)
        if no_proxy is not None:
            env["npm_config_noproxy"] = no_proxy
    return env


def _quote_option(value: str) -> str:
    """A NODE_OPTIONS / JAVA_TOOL_OPTIONS word: double-quoted when it holds a space."""
    return f'"{value}"' if any(c.isspace() for c in value) else value


def _append(existing: str | None, words: list[str]) -> str:
    return " ".join(filter(None, [(existing or "").strip(), *words]))


def _node_environment(proxy_url: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """Node before 24 ignores the proxy variables: a preload sends every http/https Agent
    and fetch through the proxy (and does nothing on a Node that honours
    NODE_USE_ENV_PROXY). The user's NODE_OPTIONS are kept in front."""
    if not proxy_url:
        return {}
    existing = environ.get("NODE_OPTIONS", "")
    preload = str(NODE_PRELOAD)
    words = [] if preload in existing else ["--require", _quote_option(preload)]
    return {"NODE_USE_ENV_PROXY": "1", "NODE_OPTIONS": _append(existing, words)}


def java_non_proxy_hosts(no_proxy: str) -> str:
    """NO_PROXY (``a.com,.b.com,10.0.0.1``) as Java's ``http.nonProxyHosts``
    (``a.com|*.b.com|10.0.0.1``). An empty one also drops Java's own default
    (``localhost|127.*|[::1]``), so local sandboxes go through the proxy as for others."""
    hosts = []
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        if entry.startswith("."):
            entry = "*" + entry
        elif entry.count(":") == 1:
            entry = entry.partition(":")[0]  # Java matches host names only
        hosts.append(entry)
    return "|".join(dict.fromkeys(hosts))


def _java_environment(proxy_url: str | None, truststore: Path, no_proxy: str | None,
                      environ: Mapping[str, str]) -> dict[str, str]:
    """Java ignores HTTPS_PROXY and the PEM variables: system properties through
    JAVA_TOOL_OPTIONS (every JVM reads it, Maven's and Gradle's test JVMs too), after the
    user's own. Nothing without the trust store (no keytool: no JDK)."""
    if not truststore.is_file():
        return {}
    words = [f"-Djavax.net.ssl.trustStore={truststore}", "-Djavax.net.ssl.trustStoreType=PKCS12",
             f"-Djavax.net.ssl.trustStorePassword={TRUSTSTORE_PASSWORD}"]
    if proxy_url:
        url = urlsplit(proxy_url)
        host, port = url.hostname or "127.0.0.1", str(url.port or 80)
        for scheme in ("http", "https"):
            words += [f"-D{scheme}.proxyHost={host}", f"-D{scheme}.proxyPort={port}"]
        if no_proxy is not None:
            words.append(f"-Dhttp.nonProxyHosts={java_non_proxy_hosts(no_proxy)}")
    existing = environ.get("JAVA_TOOL_OPTIONS", "")
    words = [_quote_option(w) for w in words if w not in existing.split()]
    return {"JAVA_TOOL_OPTIONS": _append(existing, words)}


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
