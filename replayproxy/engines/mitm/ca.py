"""The proxy's certificate authority: made once, kept owner-only, reused by every run.

mitmproxy's certificate store makes the CA; replayproxy adds the trust
bundle clients are given (this CA followed by the roots already trusted here) and the
files of clients with their own configuration (a wgetrc, a Java trust store).
"""

from __future__ import annotations

import fcntl
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from replayproxy.clients import (
    TRUSTSTORE_NAME,
    WGETRC_NAME,
    write_java_truststore,
    write_wgetrc,
)
from replayproxy.environment import build_trust_bundle
from replayproxy.errors import ConfigError

__all__ = ["CA", "default_ca_dir", "ensure_ca"]

CA_BASENAME = "mitmproxy"


def default_ca_dir() -> Path:
    """``$REPLAYPROXY_CA_DIR``, else ``~/.replayproxy/ca``."""
    env = os.environ.get("REPLAYPROXY_CA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".replayproxy" / "ca"


@dataclass(frozen=True, slots=True)
class CA:
    """The proxy's certificate authority and the files clients are given."""

    directory: Path
    cert: Path
    """The CA certificate alone (PEM): what clients and system stores trust."""
    key: Path
    """The CA key and certificate (PEM), readable by its owner only."""
    bundle: Path
    """The CA certificate followed by the roots already trusted here."""
    wgetrc: Path | None = None
    """A wgetrc naming the bundle (wget's GnuTLS builds ignore ``SSL_CERT_FILE``)."""
    truststore: Path | None = None
    """A PKCS12 trust store for Java: the JDK's roots and this CA (``None``: no keytool)."""


def _check(key: Path) -> None:
    """Read the CA's key and certificate (``key`` holds both); ValueError if damaged.
    The RSA key's slow mathematical self-check (a third of a second) is skipped: the
    file is our own, and a key that does not fit its certificate fails every TLS
    handshake loudly."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = key.read_bytes()
    load_pem_private_key(data, None, unsafe_skip_rsa_key_validation=True)
    begin = data.index(b"-----BEGIN CERTIFICATE-----")
    ssl.PEM_cert_to_DER_cert(data[begin:].decode("ascii").strip())


def ensure_ca(directory: Path | None = None) -> CA:
    """Create the CA in ``directory`` if needed and return its files.

    Raises:
        ConfigError: the directory cannot be created or the CA files cannot be read.
    """
    d = (directory or default_ca_dir()).expanduser()
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(d, 0o700)
        # several processes starting at once (pytest-xdist workers) make one CA, not one
        # each overwriting the others' files
        fd = os.open(d, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            key = d / f"{CA_BASENAME}-ca.pem"
            if key.is_file() and (d / f"{CA_BASENAME}-ca-cert.pem").is_file():
                _check(key)  # a damaged CA stops the run here, as making one would
            else:
                # mitmproxy's store makes the CA (importing it costs about 0.3 s, which a
                # run on the fast engine with an existing CA never pays)
                from mitmproxy.certs import CertStore

                old_umask = os.umask(0o077)
                try:
                    CertStore.from_store(d, CA_BASENAME, 2048)
                finally:
                    os.umask(old_umask)
            os.chmod(key, 0o600)
            cert = d / f"{CA_BASENAME}-ca-cert.pem"
            os.chmod(cert, 0o644)
            bundle = build_trust_bundle(cert, d / "replayproxy-bundle.pem")
            wgetrc = write_wgetrc(bundle, d / WGETRC_NAME)
            truststore = write_java_truststore(cert, d / TRUSTSTORE_NAME)
        finally:
            os.close(fd)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(
            f"cannot use CA directory {d}: {getattr(e, 'strerror', None) or e}; "
            "choose another with {ca_dir} or REPLAYPROXY_CA_DIR", directory=str(d)
        ) from None
    return CA(d, cert, key, bundle, wgetrc, truststore)
