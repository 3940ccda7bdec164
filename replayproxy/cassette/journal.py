"""Recording journals: each interaction on disk the moment it completes, folded in at the end.

While recording, each completed interaction is appended at once to a journal
``DIR/.NAME.cassette.<pid>.journal`` (a ``replayproxy-journal`` header, then one msgpack
array per interaction, as in ``replayproxy.cassette.format``), and the journal is folded
into the cassette when the run ends. The open journal holds an ``flock``: a journal
whose lock is free belongs to a run that died. A run killed with ``kill -9`` leaves its
journal behind; the next run that opens the cassette folds it in (``recover_journals``),
so no completed interaction is lost. A fold that replaces a cassette keeps each old
entry whose content is unchanged, so re-recording identical traffic changes no byte.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import msgpack

from replayproxy.cassette.format import (
    FORMAT_VERSION,
    JOURNAL_FORMAT,
    RawEntry,
    dumps,
    encode_interaction,
    read_header,
)
from replayproxy.cassette.store import (
    SUFFIX,
    CassetteFile,
    ensure_cassette_dir,
    load_cassette,
    locked_dir,
    write_atomic,
)
from replayproxy.model import Interaction, Request

__all__ = ["Journal", "Keep", "pending_journals", "recover_journals", "unrecovered_cassettes"]

Keep = Callable[[CassetteFile, CassetteFile], Sequence[int]]
"""For a replacing journal: given the cassette as it is and what the run recorded, the
positions of the old interactions to keep, in order, ahead of the new ones (VCR.py's
``all`` keeps those the run did not re-record). None: keep none."""


_KEEP = "keep"
"""The header's ``replace`` value of a journal that replaces the cassette but keeps the
old interactions the run did not re-record (VCR.py's ``all``)."""


def _journal_header(replace: bool | str) -> bytes:
    header = {"format": JOURNAL_FORMAT, "replace": replace, "version": FORMAT_VERSION}
    return msgpack.packb(header, use_bin_type=True)


class Journal:
    """An append-only file receiving each interaction the moment it completes.

    The journal holds an exclusive ``flock`` while open, which tells
    ``recover_journals`` that its writer is still alive.
    """

    def __init__(self, cassette_file: Path, *, replace: bool, keep_old: bool = False
                 ) -> None:
        ensure_cassette_dir(cassette_file.parent)
        self.cassette_file = cassette_file
        self.path = cassette_file.parent / f".{cassette_file.name}.{os.getpid()}.journal"
        self.count = 0
        self._file: IO[bytes] | None = self.path.open("ab")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file.write(_journal_header(_KEEP if replace and keep_old else replace))
        self._file.flush()

    def append(self, it: Interaction) -> None:
        """Write ``it`` through to the OS at once (survives a kill of this process)."""
        if self._file is None:
            raise ValueError("journal is closed")
        self._file.write(msgpack.packb(encode_interaction(it), use_bin_type=True))
        self._file.flush()
        self.count += 1

    def commit(self, keep: Keep | None = None) -> int:
        """Fold this journal into its cassette and remove it; return interactions folded.
        ``keep``: for a replacing journal, which old interactions stay (see ``Keep``)."""
        if self._file is None:
            return 0
        os.fsync(self._file.fileno())
        with locked_dir(self.cassette_file.parent):
            folded = _fold(self.cassette_file, [self.path], keep)
        self._file.close()  # releases the flock only after the fold
        self._file = None
        return folded


def _read_journal(path: Path) -> tuple[bool | str, list[RawEntry]]:
    """Return (replace, entries) of a journal (replace: False, True, or ``_KEEP``); a torn
    last entry is dropped."""
    data = path.read_bytes()
    unpacker = msgpack.Unpacker(raw=False, use_list=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    if any(_journal_header(r).startswith(data) for r in (False, True, _KEEP)):
        return False, []  # the writer was killed before its header was complete
    header, reader = read_header(unpacker, path, JOURNAL_FORMAT)
    entries: list[RawEntry] = []
    while True:
        try:
            entry = unpacker.unpack()
        except msgpack.OutOfData:
            break  # the writer was killed in the middle of this entry
        except Exception:
            break  # garbage after a torn write: keep what came before
        try:
            reader.decode(entry)
        except ValueError:
            break
        entries.append(entry)
    replace = header.get("replace")
    return (_KEEP if replace == _KEEP else bool(replace)), entries


def _content(entry: RawEntry) -> tuple[Any, Any]:
    return entry[0], entry[1]


def _stabilise(old: Sequence[RawEntry], new: list[RawEntry]) -> list[RawEntry]:
    """Keep the old entry wherever the new one differs only in timing.

    So re-recording identical traffic gives a byte-identical cassette.
    """
    pool: dict[tuple[Any, Any], deque[RawEntry]] = defaultdict(deque)
    for e in old:
        pool[_content(e)].append(e)
    out = []
    for e in new:
        same = pool.get(_content(e))
        out.append(same.popleft() if same else e)
    return out


def _same_request_line(old: CassetteFile, new: CassetteFile) -> list[int]:
    """The default ``Keep``: old interactions whose method, URL and query no new one has
    (VCR.py's default ``match_on``), for a journal folded by a process that does not
    know the cassette's matching rules."""
    def line(q: Request) -> tuple[str, str, str, int, str, str]:
        return (q.method.upper(), q.scheme.lower(), q.host.lower(), q.port, q.path, q.query)

    seen = {line(new.request(i)) for i in range(len(new))}
    return [i for i in range(len(old)) if line(old.request(i)) not in seen]


def _fold(cassette_file: Path, journals: Sequence[Path], keep: Keep | None = None) -> int:
    """Merge ``journals`` into ``cassette_file`` and delete them (caller holds the lock)."""
    old: Sequence[RawEntry] = ()
    loaded: CassetteFile | None = None
    if cassette_file.exists():
        loaded = load_cassette(cassette_file)
        old = loaded.entries
    entries: list[RawEntry] = list(old)
    folded = 0
    replaced = False
    for j in journals:
        replace, new = _read_journal(j)
        if replace and new and not replaced:  # a run that recorded nothing replaces nothing
            kept: Sequence[int] = ()
            if replace == _KEEP and loaded is not None:
                kept = (keep or _same_request_line)(loaded, CassetteFile(cassette_file.name,
                                                                         new))
            entries, replaced = [old[i] for i in kept], True
        entries.extend(new)
        folded += len(new)
    if replaced:
        entries = _stabilise(old, entries)
    if folded:
        write_atomic(cassette_file, dumps(entries))
    for j in journals:
        with contextlib.suppress(FileNotFoundError):
            j.unlink()
    return folded


def pending_journals(cassette_file: Path) -> list[Path]:
    """Return journals of ``cassette_file`` whose writers are gone, oldest first."""
    if not cassette_file.parent.is_dir():
        return []
    found = []
    for j in cassette_file.parent.glob(f".{_glob_escape(cassette_file.name)}.*.journal"):
        try:
            with j.open("rb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live process is recording into it
        except FileNotFoundError:
            continue
        found.append(j)
    return sorted(found, key=lambda p: p.stat().st_mtime)


def unrecovered_cassettes(cassette_dir: str | os.PathLike[str]) -> list[str]:
    """Names of cassettes that exist only as journals of killed first recordings."""
    d = Path(cassette_dir)
    if not d.is_dir():
        return []
    names = set()
    for journal in d.glob(f".*{SUFFIX}.*.journal"):
        m = re.fullmatch(rf"\.(.+){re.escape(SUFFIX)}\.\d+\.journal", journal.name)
        if m and not (d / f"{m.group(1)}{SUFFIX}").exists():
            names.add(m.group(1))
    return sorted(n for n in names if pending_journals(d / f"{n}{SUFFIX}"))


def _glob_escape(text: str) -> str:
    """Escape glob metacharacters in ``text``."""
    return re.sub(r"([*?\[\]])", r"[\1]", text)


def recover_journals(cassette_file: Path, keep: Keep | None = None) -> int:
    """Fold journals left by killed recordings into the cassette; return how many
    interactions were recovered. ``keep``: see ``Keep``."""
    journals = pending_journals(cassette_file)
    if not journals:
        return 0
    with locked_dir(cassette_file.parent):
        # re-check under the lock: another process may have recovered them meanwhile
        journals = [j for j in journals if j.exists()]
        return _fold(cassette_file, journals, keep) if journals else 0
