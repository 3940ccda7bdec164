"""mitmproxy scripts shipped in the wheel, for ``mitmdump -s`` after ``pip install``.

Each script is a few lines that build the real addon; find their paths with::

    python -c "import replayproxy.engines.mitm.scripts as s; print(s.path('record'))"
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["path"]


def path(name: str) -> Path:
    """The file of the shipped script ``name`` (``record`` or ``replay``)."""
    found = Path(__file__).with_name(f"{name}.py")
    if name.startswith("_") or not found.is_file():
        raise ValueError(f"no shipped mitmproxy script {name!r}: use 'record' or 'replay'")
    return found
