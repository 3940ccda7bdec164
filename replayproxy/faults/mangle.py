"""The bodies of ``truncate`` and ``corrupt`` faults: which bytes the engine sends.

Pure functions of the body and the decided effect; the same effect always gives the
same bytes.
"""

from __future__ import annotations

import json
import random

from replayproxy.faults.effects import Corrupt, CorruptMode, Truncate

__all__ = ["corrupt_body", "truncate_body"]


def truncate_body(body: bytes, action: Truncate) -> bytes:
    """The part of ``body`` to send before closing: ``keep_bytes`` or ``fraction`` of it.

    At least one byte is always missing, so the cut is observable. The addon announces
    ``Content-Length: max(len(body), 1)`` (the whole body), sends this part with
    ``Connection: close`` and closes.
    """
    if action.keep_bytes is not None:
        keep = action.keep_bytes
    else:
        keep = int(len(body) * (action.fraction if action.fraction is not None else 0.5))
    return body[: min(keep, max(len(body) - 1, 0))]


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    return True


def corrupt_body(body: bytes, action: Corrupt) -> bytes:
    """The mangled body; the same action always gives the same bytes.

    ``json``: cut at a random point (a valid prefix such as ``12`` of ``123`` gets a
    stray ``}``), so it never parses; a body shorter than 2 bytes gets a ``{``. ``random``: random
    bytes of the same length (16 for an empty body). The addon should pass the decoded
    body and drop ``Content-Encoding``, so the client sees a bad body, not a bad gzip.
    """
    rng = random.Random(action.seed)
    if action.mode is CorruptMode.RANDOM:
        return rng.randbytes(len(body) or 16)
    if len(body) < 2:
        return body + b"{"
    cut = body[: rng.randrange(1, len(body))]
    return cut + b"}" if _is_json(cut) else cut
