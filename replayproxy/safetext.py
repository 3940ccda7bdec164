"""Text from the network made safe to print on a terminal.

A recorded request or response can hold escape sequences (``ESC ]0;title BEL``, colour
changes, a cursor move that hides lines): printed raw, they would act on the terminal
of whoever looks at the cassette, the log or a ``git diff``. ``escape_controls`` shows
every C0 and C1 control character but line feed and tab as ``\\xNN``.
"""

from __future__ import annotations

import re

__all__ = ["escape_controls"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str, *, lines: bool = False) -> str:
    """``text`` with control characters but tab shown as ``\\xNN``; with ``lines``, line
    feeds are kept as line breaks, otherwise they are escaped too."""
    if lines:
        return _CONTROL.sub(_hex, text)
    return _CONTROL_OR_NEWLINE.sub(lambda m: m.group() if m.group() == "\t" else _hex(m), text)


def _hex(m: re.Match[str]) -> str:
    return f"\\x{ord(m.group()):02x}"
