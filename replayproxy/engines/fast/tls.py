"""TLS for the fast engine: a server context per host, its certificate issued from
replayproxy's CA (the files ``ensure_ca`` keeps), offering HTTP/1.1 alone over ALPN.

Leaf certificates are made as mitmproxy's certificate store makes them (the CA's key,
CN and SAN for the host, serverAuth, the CA's key identifier, no SKI), with
``cryptography`` directly, so the engine never imports mitmproxy.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["Certificates"]

_CA_FILE = "mitmproxy-ca.pem"
"""The CA's key and certificate, as ``ensure_ca`` writes them."""
_VALID = datetime.timedelta(days=365)


class Certificates:
    """Server TLS contexts for the hosts clients tunnel to, made on first use.

    Args:
        ca_dir: the CA directory (``ensure_ca`` made it).
        ca_cert: the CA certificate, sent after the leaf.
    """

    def __init__(self, ca_dir: Path, ca_cert: Path) -> None:
        self.ca_dir = ca_dir
        self.ca_cert = ca_cert
        self._ca: tuple[Any, Any] | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._dir: str | None = None
        self._lock = threading.Lock()

    def context(self, host: str) -> ssl.SSLContext:
        """The server context presenting a certificate for ``host``."""
        ctx = self._contexts.get(host)
        if ctx is None:
            with self._lock:
                ctx = self._contexts.get(host) or self._make(host)
                self._contexts[host] = ctx
        return ctx

    def _make(self, host: str) -> ssl.SSLContext:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        if self._ca is None:
            pem = (self.ca_dir / _CA_FILE).read_bytes()
            self._ca = (serialization.load_pem_private_key(
                pem, None, unsafe_skip_rsa_key_validation=True),  # checked at start
                x509.load_pem_x509_certificate(pem))
            self._dir = tempfile.mkdtemp(prefix="replayproxy-tls-")
        key: Any = self._ca[0]
        ca: Any = self._ca[1]
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        now = datetime.datetime.now(datetime.UTC)
        named = len(host) < 64
        builder = (
            x509.CertificateBuilder()
            .issuer_name(ca.subject)
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]
                                    if named else []))
            .public_key(ca.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=2))
            .not_valid_after(now + _VALID)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=not named)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.public_key()), critical=False)
        )
        cert = builder.sign(private_key=key, algorithm=hashes.SHA256())
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        assert self._dir is not None
        path = os.path.join(self._dir, f"{len(self._contexts)}.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM) + self.ca_cert.read_bytes()
                    + key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(path)
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = self._sni(host)
        return ctx

    def _sni(self, host: str) -> Any:
        def switch(obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if name and name.lower() != host.lower():
                obj.context = self.context(name.lower())
        return switch

    def close(self) -> None:
        """Delete the certificate files."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
