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
from collections.abc import Sequence
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
    ensure_cassette_dir,
    load_cassette,
    locked_dir,
    write_atomic,
)
from replayproxy.model import Interaction

__all__ = ["Journal", "pending_journals", "recover_journals", "unrecovered_cassettes"]


def _journal_header(replace: bool) -> bytes:
    header = {"format": JOURNAL_FORMAT, "replace": replace, "version": FORMAT_VERSION}
    return msgpack.packb(header, use_bin_type=True)


class Journal:
    """An append-only file receiving each interaction the moment it completes.

    The journal holds an exclusive ``flock`` while open, which tells
    ``recover_journals`` that its writer is still alive.
    """

    def __init__(self, cassette_file: Path, *, replace: bool) -> None:
        ensure_cassette_dir(cassette_file.parent)
        self.cassette_file = cassette_file
        self.path = cassette_file.parent / f".{cassette_file.name}.{os.getpid()}.journal"
        self.count = 0
        self._file: IO[bytes] | None = self.path.open("ab")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file.write(_journal_header(replace))
        self._file.flush()

    def append(self, it: Interaction) -> None:
        """Write ``it`` through to the OS at once (survives a kill of this process)."""
        if self._file is None:
            raise ValueError("journal is closed")
        self._file.write(msgpack.packb(encode_interaction(it), use_bin_type=True))
        self._file.flush()
        self.count += 1

    def commit(self) -> int:
        """Fold this journal into its cassette and remove it; return interactions folded."""
        if self._file is None:
            return 0
        os.fsync(self._file.fileno())
        with locked_dir(self.cassette_file.parent):
            folded = _fold(self.cassette_file, [self.path])
        self._file.close()  # releases the flock only after the fold
        self._file = None
        return folded


def _read_journal(path: Path) -> tuple[bool, list[RawEntry]]:
    """Return (replace, entries) of a journal; a torn last entry is dropped."""
    data = path.read_bytes()
    unpacker = msgpack.Unpacker(raw=False, use_list=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    if any(_journal_header(r).startswith(data) for r in (False, True)):
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
    return bool(header.get("replace")), entries


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


def _fold(cassette_file: Path, journals: Sequence[Path]) -> int:
    """Merge ``journals`` into ``cassette_file`` and delete them (caller holds the lock)."""
    old: Sequence[RawEntry] = ()
    if cassette_file.exists():
        old = load_cassette(cassette_file).entries
    entries: list[RawEntry] = list(old)
    folded = 0
    replaced = False
    for j in journals:
        replace, new = _read_journal(j)
        if replace and new and not replaced:  # a run that recorded nothing replaces nothing
            entries, replaced = [], True
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


def recover_journals(cassette_file: Path) -> int:
    """Fold journals left by killed recordings into the cassette; return how many
    interactions were recovered."""
    journals = pending_journals(cassette_file)
    if not journals:
        return 0
    with locked_dir(cassette_file.parent):
        # re-check under the lock: another process may have recovered them meanwhile
        journals = [j for j in journals if j.exists()]
        return _fold(cassette_file, journals) if journals else 0
