"""What both engines tell clients about where they listen: the proxy URL, the reverse
base URLs and the environment a child process needs."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from replayproxy.environment import proxy_environment
from replayproxy.upstream import netloc

__all__ = ["Listening"]


class _Trust(Protocol):
    @property
    def bundle(self) -> Path: ...

    @property
    def cert(self) -> Path: ...


class Listening:
    """Mixed into an engine that sets ``proxy_address`` (None until it listens),
    ``reverse_addresses`` (each ``reverse`` upstream's local address, in order) and
    ``ca``."""

    proxy_address: tuple[str, int] | None
    reverse_addresses: dict[str, tuple[str, int]]
    ca: _Trust

    @property
    def proxy_url(self) -> str:
        """``http://127.0.0.1:PORT``, the value for HTTP_PROXY and HTTPS_PROXY."""
        if self.proxy_address is None:
            raise RuntimeError("the proxy is not running")
        return f"http://{netloc(self.proxy_address)}"

    @property
    def reverse_address(self) -> tuple[str, int] | None:
        """The local address serving the first ``reverse`` upstream, if any."""
        return next(iter(self.reverse_addresses.values()), None)

    @property
    def reverse_url(self) -> str | None:
        """The local base URL that serves the first ``reverse`` upstream, if any."""
        return f"http://{netloc(self.reverse_address)}" if self.reverse_address else None

    @property
    def reverse_urls(self) -> dict[str, str]:
        """Each ``reverse`` upstream's base URL mapped to its local base URL."""
        return {target: f"http://{netloc(addr)}"
                for target, addr in self.reverse_addresses.items()}

    def environment(self) -> dict[str, str]:
        """The variables a child process needs to use this proxy."""
        return proxy_environment(self.proxy_url, self.ca.bundle, self.ca.cert,
                                 reverse_urls=self.reverse_urls)
