"""Files that clients with their own configuration need, written beside the proxy's CA.

- wget (GnuTLS builds ignore ``SSL_CERT_FILE``) reads a wgetrc named by ``WGETRC``:
  ``write_wgetrc`` writes one naming the trust bundle, after the user's own settings.
- Java trusts only a key store: ``write_java_truststore`` writes a PKCS12 trust store
  holding the JDK's roots and the proxy's CA, with ``keytool``, once per CA.
- Node before 24 ignores the proxy variables: ``NODE_PRELOAD`` is a script loaded with
  ``NODE_OPTIONS=--require`` that sends the http/https modules and fetch through them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

__all__ = ["NODE_PRELOAD", "TRUSTSTORE_NAME", "TRUSTSTORE_PASSWORD", "WGETRC_NAME",
           "write_java_truststore", "write_wgetrc"]

NODE_PRELOAD = Path(__file__).with_name("node_preload.js")
WGETRC_NAME = "replayproxy-wgetrc"
TRUSTSTORE_NAME = "replayproxy-truststore.p12"
TRUSTSTORE_PASSWORD = "replayproxy"
"""Not a secret: a trust store holds public certificates only; Java wants a password."""

# wgetrc settings replayproxy decides (wget ignores case, '_' and '-' in setting names)
_WGET_OWN = {"cacertificate", "useproxy", "httpproxy", "httpsproxy", "noproxy"}


def _write_if_changed(out: Path, data: bytes) -> None:
    if out.exists() and out.read_bytes() == data:
        return
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)


def write_wgetrc(bundle: Path, out: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Write ``out``: the user's wgetrc (``$WGETRC``, else ``~/.wgetrc``) without its proxy
    and CA settings, then ``ca_certificate`` = the bundle and ``use_proxy = on``.

    ``WGETRC`` replaces the user's file rather than adding to it, hence the copy.
    """
    environ = os.environ if environ is None else environ
    own = environ.get("WGETRC")
    user = Path(own) if own else Path(environ.get("HOME") or Path.home()) / ".wgetrc"
    kept: list[str] = []
    try:
        if user.resolve() != out.resolve():
            for line in user.read_text(encoding="utf-8", errors="replace").splitlines():
                name = re.sub(r"[-_]", "", line.partition("=")[0].strip().lower())
                if name not in _WGET_OWN:
                    kept.append(line)
    except OSError:
        pass
    header = f"# written by replayproxy; your settings from {user} come first\n"
    text = header + "".join(f"{line}\n" for line in kept) + (
        f"ca_certificate = {bundle}\nuse_proxy = on\n")
    _write_if_changed(out, text.encode())
    return out


def _keytool(environ: Mapping[str, str]) -> Path | None:
    home = environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "keytool").is_file():
        return Path(home) / "bin" / "keytool"
    found = shutil.which("keytool", path=environ.get("PATH"))
    return Path(found) if found else None


def _jdk_roots(keytool: Path) -> Path | None:
    """The JDK's own trust store (``lib/security/cacerts``) beside ``keytool``."""
    home = keytool.resolve().parent.parent
    for candidate in (home / "lib" / "security" / "cacerts",
                      home / "jre" / "lib" / "security" / "cacerts"):
        if candidate.is_file():
            return candidate
    return None


def write_java_truststore(ca_cert: Path, out: Path,
                          environ: Mapping[str, str] | None = None) -> Path | None:
    """Write ``out``, a PKCS12 trust store: the JDK's roots and the proxy's CA.

    A Java client behind the proxy needs only the CA, but ``javax.net.ssl.trustStore``
    applies to every TLS connection of the JVM (direct ones too: hosts in NO_PROXY, a
    database), so the JDK's roots stay in. Made with ``keytool`` (``$JAVA_HOME/bin`` or
    PATH) once and again only when the CA or the JDK's roots change. Returns ``None``
    when there is no keytool or it fails (then Java gets no settings).
    """
    environ = os.environ if environ is None else environ
    keytool = _keytool(environ)
    if keytool is None:
        return None
    roots = _jdk_roots(keytool)
    digest = hashlib.sha256(ca_cert.read_bytes())
    if roots is not None:
        digest.update(roots.read_bytes())
    stamp = out.with_name(out.name + ".sha256")
    try:
        if out.is_file() and stamp.read_text().strip() == digest.hexdigest():
            return out
    except OSError:
        pass
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    store = ["-keystore", str(tmp), "-storetype", "PKCS12", "-storepass", TRUSTSTORE_PASSWORD]
    steps = [[str(keytool), "-importcert", "-noprompt", "-alias", "replayproxy-ca",
              "-file", str(ca_cert), *store]]
    if roots is not None:
        steps.insert(0, [str(keytool), "-importkeystore", "-noprompt",
                         "-srckeystore", str(roots), "-srcstorepass", "changeit",
                         "-destkeystore", str(tmp), "-deststoretype", "PKCS12",
                         "-deststorepass", TRUSTSTORE_PASSWORD])
    env = {k: v for k, v in environ.items() if k not in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS")}
    try:
        for step in steps:
            subprocess.run(step, env=env, capture_output=True, timeout=120, check=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        stamp.write_text(digest.hexdigest() + "\n")
    except (OSError, subprocess.SubprocessError):
        tmp.unlink(missing_ok=True)
        return None
    return out
