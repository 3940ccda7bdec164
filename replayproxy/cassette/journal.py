"""Recording journals: each interaction on disk the moment it completes, folded in at the end.

While recording, each completed interaction is appended at once to a journal
``DIR/.NAME.cassette.<pid>.journal`` (a ``replayproxy-journal`` header, then one msgpack
array per interaction, as in ``replayproxy.cassette.format``), and the journal is folded
into the cassette when the run ends. The open journal holds an ``flock``: a journal
whose lock is free belongs to a run that died. A run killed with ``kill -9`` leaves its
journal behind; the next run that opens the cassette folds it in (``recover_journals``),
so no completed interaction is lost. A fold that replaces a cassette keeps each old
entry whose content is unchanged, or differs only in values that change on every call
(``replayproxy.cassette.quiet``), so re-recording an unchanged API changes no byte.

Recovery trusts nothing in a journal: each entry is checked as strictly as the loader
checks a cassette (``decode_interaction``) before it is folded in, and the folded bytes
are read back before they replace the cassette. A damaged entry, garbage after an entry,
or a damaged header is set aside with one warning line: the good entries are recovered,
and once the cassette is written the journal is kept as ``….journal.damaged`` (no longer
recovered) for the user to look at and delete. Only a torn last entry, what a kill
leaves, is dropped silently.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import re
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgpack

from replayproxy.cassette.format import (
    FORMAT_VERSION,
    JOURNAL_FORMAT,
    LEAN_MARK,
    MAX_BODY,
    READERS,
    WINDOW,
    RawEntry,
    Reader,
    Window,
    comparable,
    encode_interaction,
    entry_bytes,
    header_bytes,
    pack_around,
    read_cassette,
    read_header,
    shorten,
)
from replayproxy.cassette.quiet import Quiet, stabilise
from replayproxy.cassette.store import (
    LEAN_ABOVE,
    SUFFIX,
    CassetteFile,
    ensure_cassette_dir,
    file_bytes,
    load_cassette,
    locked_dir,
    release_pages,
    write_atomic,
)
from replayproxy.errors import CassetteError
from replayproxy.model import Interaction, Request
from replayproxy.streams import BodyFile

__all__ = ["DAMAGED", "Journal", "Keep", "pending_journals", "recover_journals",
           "unrecovered_cassettes"]

log = logging.getLogger("replayproxy")

Keep = Callable[[CassetteFile, CassetteFile], Sequence[int]]
"""For a replacing journal: given the cassette as it is and what the run recorded, the
positions of the old interactions to keep, in order, ahead of the new ones (VCR.py's
``all`` keeps those the run did not re-record). None: keep none."""

DAMAGED = ".damaged"
"""Added to the name of a journal whose damaged parts were set aside at recovery."""


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
        try:
            # never through a symlink planted at this predictable name: it could point
            # anywhere (O_NOFOLLOW: the open fails instead)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW,
                         0o644)
        except OSError as e:
            raise CassetteError(
                f"cannot write the recording journal {self.path}: "
                f"{'it is a symbolic link' if self.path.is_symlink() else e.strerror}; "
                "remove it and record again", path=str(self.path)) from None
        self._file: IO[bytes] | None = os.fdopen(fd, "ab")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file.write(_journal_header(_KEEP if replace and keep_old else replace))
        self._file.flush()

    def append(self, it: Interaction, body: BodyFile | None = None) -> int:
        """Write ``it`` through to the OS at once (survives a kill of this process); its
        response body is ``body`` when given (a big one, in a file: copied from there).
        Returns where the response body starts in the journal."""
        if self._file is None:
            raise ValueError("journal is closed")
        size = body.size if body is not None else len(it.response.body)
        if size > MAX_BODY:
            raise CassetteError(
                f"the response body of {it.request.method} {it.request.scheme}://"
                f"{it.request.host}{it.request.path} is {size:,} bytes, more than a cassette "
                f"holds ({MAX_BODY:,}): not recorded; let the client stop reading sooner")
        if body is not None or size > LEAN_ABOVE:  # no packed copy of a big body
            before, after = pack_around(it, size)
            self._file.write(before)
            start = self._file.tell()
            for window in body.windows(1 << 20) if body is not None else (it.response.body,):
                self._file.write(window)
            self._file.write(after)
        else:
            self._file.write(msgpack.packb(encode_interaction(it), use_bin_type=True))
            start = -1
        self._file.flush()
        self.count += 1
        return start

    def body(self, start: int, size: int) -> memoryview:
        """``size`` bytes from ``start`` of this journal, as written (a map of the file:
        a big body recorded in this run, served again without being read into memory)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)  # the map keeps its own
        return memoryview(mapped)[start:start + size]

    def commit(self, keep: Keep | None = None, quiet: Quiet | None = None) -> int:
        """Fold this journal into its cassette and remove it; return interactions folded.
        ``keep``: for a replacing journal, which old interactions stay (see ``Keep``);
        ``quiet``: which re-recorded interactions keep their recorded bytes."""
        if self._file is None:
            return 0
        os.fsync(self._file.fileno())
        with locked_dir(self.cassette_file.parent):
            folded = _fold(self.cassette_file, [self.path], keep, quiet)
        self._file.close()  # releases the flock only after the fold
        self._file = None
        return folded


@dataclass(frozen=True, slots=True)
class _Stored:
    """One interaction as a file holds it: its packed bytes, where they are (a cassette's
    or journal's data, copied from there when the cassette is written, never unpacked
    whole), and ``stub``, the entry unpacked for comparing it (a big body stands in as its
    digest, see ``format.comparable``)."""

    stub: RawEntry
    data: bytes | mmap.mmap | memoryview
    start: int
    end: int

    @classmethod
    def packed(cls, raw: RawEntry) -> _Stored:
        """An entry made in memory (a re-recorded one with its noise undone)."""
        data = msgpack.packb(raw, use_bin_type=True)
        return cls(raw, data, 0, len(data))

    def pieces(self) -> Iterator[memoryview]:
        view = memoryview(self.data)
        for at in range(self.start, self.end, _COPY):
            yield view[at:min(at + _COPY, self.end)]
            if (at - self.start) % (16 * _COPY) == 15 * _COPY:
                release_pages(view)
        release_pages(view)

    @property
    def lean(self) -> bool:
        """Whether a big body stands in as its digest in ``stub``."""
        body = self.stub[1][3] if len(self.stub) > 1 and len(self.stub[1]) > 3 else b""
        return isinstance(body, bytes) and body.startswith(LEAN_MARK)


_COPY = 1 << 20
"""Bytes copied at a time from a journal or the old cassette into the new one."""


@dataclass
class _Read:
    """What a journal gave: its entries, each checked as the loader checks a cassette's,
    and what had to be set aside."""

    replace: bool | str = False
    """False, True, or ``_KEEP`` (replace, keeping what the run did not re-record)."""
    entries: list[_Stored] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Why entries (or the whole journal) were set aside; empty when all was good."""


def _read_journal(path: Path) -> _Read:
    """Read a journal left by a run; a torn last entry (the writer was killed while
    writing it) is dropped silently, a damaged entry or header is set aside in
    ``problems``. Every entry kept passes ``decode_interaction``, which checks at least
    what the loader checks, so the folded cassette always loads. The journal is walked a
    window at a time, a big body stepped over (see ``format.comparable``)."""
    data = file_bytes(path)
    if len(data) <= 128 and any(_journal_header(r).startswith(bytes(data))
                                for r in (False, True, _KEEP)):
        return _Read()  # the writer was killed before its header was complete
    window = Window(data)
    try:
        header, reader = read_header(window.unpacker, path, JOURNAL_FORMAT)
    except CassetteError as e:
        return _Read(problems=[f"its header is damaged ({_why(e)})"])
    replace = header.get("replace")
    if type(replace) is not bool and replace != _KEEP:
        return _Read(problems=[f"its header is damaged (replace is {shorten(repr(replace))})"])
    read = _Read(replace)
    view = window.view
    number = 0
    while window.tell() < len(view):
        number += 1
        start = window.tell()
        try:
            window.unpacker.skip()
            end = window.tell()
        except msgpack.OutOfData:
            try:
                end = entry_bytes(view, start)
            except IndexError:
                break  # the writer was killed in the middle of this entry: nothing to set aside
            except ValueError as e:
                read.problems.append(f"interaction #{number} and what follows are "
                                     f"unreadable ({shorten(str(e))})")
                break
            window.move(end if end - start > WINDOW else start, WINDOW)
            if end - start <= WINDOW:
                number -= 1
                continue  # walked again, whole in the new window
        except Exception as e:  # msgpack raises several unrelated types on garbage
            read.problems.append(f"interaction #{number} and what follows are unreadable "
                                 f"({type(e).__name__})")
            break
        try:
            stub = comparable(reader, view[start:end], LEAN_ABOVE)
        except ValueError as e:
            read.problems.append(f"interaction #{number} is malformed ({shorten(str(e))})")
            continue
        read.entries.append(stored := _Stored(stub, data, start, end))
        if stored.lean:
            release_pages(view)  # what hashing its body read
    return read


def _why(error: CassetteError) -> str:
    """The parenthesised reason of a ``corrupt_error`` (else the whole message, short)."""
    text = str(error)
    start, end = text.find(" ("), text.find("):")
    return shorten(text[start + 2:end] if 0 <= start < end else text)


def _set_aside(journal: Path, read: _Read, recovered: int) -> None:
    """Keep a journal that had damaged parts next to the cassette, out of the way of
    recovery, and say so in one line."""
    kept = journal.with_name(journal.name + DAMAGED)
    try:
        os.replace(journal, kept)
    except FileNotFoundError:
        return
    log.warning("journal %s: %s; %s recovered, the journal is kept as %s (check it, then "
                "delete it)", journal, "; ".join(read.problems[:3]) + (
                    f"; {len(read.problems) - 3} more" if len(read.problems) > 3 else ""),
                f"{recovered} other interaction{'' if recovered == 1 else 's'}", kept)


def _content(entry: RawEntry) -> tuple[Any, Any]:
    return entry[0], entry[1]


def _stored(loaded: CassetteFile) -> list[_Stored]:
    """The interactions of a loaded cassette, as ``_Stored`` (their bytes where they are)."""
    out = []
    for i in range(len(loaded)):
        packed = loaded.packed(i)
        try:
            stub = comparable(loaded.reader, packed, LEAN_ABOVE)
        except ValueError:
            stub = loaded.entry(i)  # damaged: kept as it is, compared as it is
        out.append(stored := _Stored(stub, packed, 0, len(packed)))
        if stored.lean:
            release_pages(packed)  # what hashing its body read
    return out


def _stabilise(old: Sequence[_Stored] | None, new: list[_Stored], quiet: Quiet,
               reader: Reader | None = None) -> list[_Stored]:
    """Keep the old entry wherever the new one differs only in timing, or only in
    values that change on every call (``quiet``), so re-recording an unchanged API
    gives a byte-identical cassette; a new one with a real change is written with its
    noise undone. ``quiet.keep`` False: ``new`` as it is. Entries with a big body are
    kept only when identical (their bodies are compared by digest, never unpacked)."""
    if not old or not quiet.keep:
        return new
    pool: dict[tuple[Any, Any], deque[int]] = defaultdict(deque)
    for i, e in enumerate(old):
        with contextlib.suppress(TypeError):  # a map inside a damaged old entry
            pool[_content(e.stub)].append(i)
    out: list[_Stored] = []
    used: set[int] = set()
    rest: list[int] = []
    for j, e in enumerate(new):
        try:
            same = pool.get(_content(e.stub))
        except TypeError:
            same = None
        if same:
            used.add(same[0])
            out.append(old[same.popleft()])
        else:
            out.append(e)
            if not e.lean:
                rest.append(j)
    unused = [i for i in range(len(old)) if i not in used and not old[i].lean]
    if not rest or not unused:
        return out
    decode = (reader or READERS[FORMAT_VERSION]).decode
    try:
        olds = [decode(old[i].stub) for i in unused]
        news = [decode(new[j].stub) for j in rest]
    except ValueError:
        return out  # a damaged old entry: nothing to keep but what is identical
    for j, it, kept in zip(rest, news, stabilise(quiet, olds, news), strict=True):
        if isinstance(kept, int):
            out[j] = old[unused[kept]]
        elif kept is not it:  # merged: the change kept, its noise undone
            out[j] = _Stored.packed(encode_interaction(kept))
    return out


def _same_request_line(old: CassetteFile, new: CassetteFile) -> list[int]:
    """The default ``Keep``: old interactions whose method, URL and query no new one has
    (VCR.py's default ``match_on``), for a journal folded by a process that does not
    know the cassette's matching rules."""
    def line(q: Request) -> tuple[str, str, str, int, str, str]:
        return (q.method.upper(), q.scheme.lower(), q.host.lower(), q.port, q.path, q.query)

    seen = {line(new.request(i)) for i in range(len(new))}
    return [i for i in range(len(old)) if line(old.request(i)) not in seen]


def _fold(cassette_file: Path, journals: Sequence[Path], keep: Keep | None = None,
          quiet: Quiet | None = None) -> int:
    """Merge ``journals`` into ``cassette_file`` (caller holds the lock); once the cassette
    is written, delete each journal, or keep one that had damaged parts (``DAMAGED``).
    Entries are copied from where they are, a megabyte at a time: a fold never holds a
    big body whole."""
    old: list[_Stored] = []
    loaded: CassetteFile | None = None
    if cassette_file.exists():
        loaded = load_cassette(cassette_file)
        old = _stored(loaded)
    entries: list[_Stored] = list(old)
    folded = 0
    replaced = False
    reads = []
    for j in journals:
        read = _read_journal(j)
        reads.append(read)
        if read.replace and read.entries and not replaced:  # a run that recorded nothing
            kept: Sequence[int] = ()                       # replaces nothing
            if read.replace == _KEEP and loaded is not None:
                kept = (keep or _same_request_line)(
                    loaded, CassetteFile(cassette_file.name, [e.stub for e in read.entries]))
            entries, replaced = [old[i] for i in kept], True
        entries.extend(read.entries)
        folded += len(read.entries)
    if replaced:
        entries = _stabilise(old, entries, quiet or Quiet(),
                             loaded.reader if loaded is not None else None)
    if folded:
        def pieces() -> Iterator[bytes | memoryview]:
            yield header_bytes([e.stub for e in entries])
            for e in entries:
                yield from e.pieces()

        write_atomic(cassette_file, pieces(), check=_loads)  # never write what would not load
    for j, read in zip(journals, reads, strict=True):
        if read.problems:
            _set_aside(j, read, len(read.entries))
        else:
            with contextlib.suppress(FileNotFoundError):
                j.unlink()
    return folded


def _loads(path: Path) -> None:
    """Raise CassetteError if the cassette file at ``path`` does not load."""
    data = file_bytes(path)
    try:
        read_cassette(data, path)
    finally:
        release_pages(memoryview(data))


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


def recover_journals(cassette_file: Path, keep: Keep | None = None,
                     quiet: Quiet | None = None) -> int:
    """Fold journals left by killed recordings into the cassette; return how many
    interactions were recovered. ``keep``: see ``Keep``; ``quiet``: see ``Journal.commit``."""
    journals = pending_journals(cassette_file)
    if not journals:
        return 0
    with locked_dir(cassette_file.parent):
        # re-check under the lock: another process may have recovered them meanwhile
        journals = [j for j in journals if j.exists()]
        return _fold(cassette_file, journals, keep, quiet) if journals else 0
