"""Cassette files: msgpack on disk, written atomically, journalled while recording.

A cassette ``NAME`` lives in ``DIR/NAME.cassette``. The file is two msgpack objects
one after the other:

1. a header map ``{"format": "replayproxy-cassette", "interactions": N, "version": 1}``;
2. an array of interactions, each an array (see ``encode_interaction``).

Arrays rather than maps keep the file small and quick to read; the version in the
header says how to read them, so later versions can read older files.

Identical interactions always give identical bytes. A cassette is replaced with a
temporary file and ``os.replace``, under an ``flock`` on the cassette directory, so a
reader never sees half a file and two recording processes never interleave.

While recording, each completed interaction is appended at once to a journal
``DIR/.NAME.<pid>.journal`` (header, then one msgpack array per interaction) and the
journal is folded into the cassette when the run ends. A run killed with ``kill -9``
leaves its journal behind; the next run that opens the cassette folds it in
(``recover_journals``), so no completed interaction is lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import re
import sys
import tempfile
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import msgpack

from replayproxy.errors import CassetteError, ConfigError
from replayproxy.model import Interaction, Request, Response

__all__ = [
    "FORMAT_VERSION",
    "CassetteFile",
    "Journal",
    "cassette_info",
    "cassette_path",
    "decode_interaction",
    "dumps",
    "encode_interaction",
    "list_cassettes",
    "load_cassette",
    "pending_journals",
    "recover_journals",
    "save_cassette",
    "unrecovered_cassettes",
    "validate_cassette_name",
]

FORMAT_VERSION = 1
CASSETTE_FORMAT = "replayproxy-cassette"
JOURNAL_FORMAT = "replayproxy-journal"
SUFFIX = ".cassette"

RawEntry = tuple[Any, ...]
"""An interaction as stored: see ``encode_interaction``."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def validate_cassette_name(name: str) -> str:
    """Return ``name`` if it is a safe cassette name, else raise ConfigError.

    A name is one path component: letters, digits, ``_``, ``-`` and ``.``, not
    starting with ``.``, so it can never point outside the cassette directory.
    """
    if not _NAME.fullmatch(name) or ".." in name or len(name) > 200:
        raise ConfigError(
            f"invalid cassette name {name!r}: use letters, digits, '_', '-' and '.' "
            "(no '/', no '..', not starting with '.'), e.g. -c stripe-payments"
        )
    return name


def cassette_path(cassette_dir: str | os.PathLike[str], name: str) -> Path:
    """Return the file of cassette ``name`` in ``cassette_dir`` (the name is validated)."""
    return Path(cassette_dir) / f"{validate_cassette_name(name)}{SUFFIX}"


# -- encoding -------------------------------------------------------------------------


def encode_interaction(it: Interaction) -> RawEntry:
    """Return the stored form of ``it``.

    ``(request, response, recorded_at, ttfb, duration)`` where request is
    ``(method, scheme, host, port, path, query, headers, body, http_version)``,
    response is ``(status, reason, headers, body, http_version)`` and headers are
    ``((name, value), ...)``.
    """
    q, r = it.request, it.response
    return (
        (q.method, q.scheme, q.host, q.port, q.path, q.query, q.headers, q.body, q.http_version),
        (r.status, r.reason, r.headers, r.body, r.http_version),
        float(it.recorded_at),
        float(it.ttfb),
        float(it.duration),
    )


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in raw)


def decode_interaction(raw: RawEntry) -> Interaction:
    """Return the Interaction stored as ``raw``; raise ValueError if it is malformed."""
    try:
        q, r, recorded_at, ttfb, duration = raw
        method, scheme, host, port, path, query, qh, qbody, qver = q
        status, reason, rh, rbody, rver = r
        return Interaction(
            Request(method, scheme, host, int(port), path, query, _headers(qh), qbody, qver),
            Response(int(status), reason, _headers(rh), rbody, rver),
            float(recorded_at),
            float(ttfb),
            float(duration),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"malformed interaction: {e}") from None


def _header(count: int) -> dict[str, Any]:
    # keys in sorted order so the bytes never depend on dict construction order
    return {"format": CASSETTE_FORMAT, "interactions": count, "version": FORMAT_VERSION}


def dumps(entries: Sequence[RawEntry]) -> bytes:
    """Return the bytes of a cassette holding ``entries`` (stable for equal input)."""
    return msgpack.packb(_header(len(entries)), use_bin_type=True) + msgpack.packb(
        list(entries), use_bin_type=True
    )


# -- reading --------------------------------------------------------------------------


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: building a million small objects would
    otherwise trigger dozens of full collections that free nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


RequestFields = tuple[str, str, str, int, str]
"""``(method, scheme, host, port, path)`` of a stored request: what indexes use."""


class CassetteFile:
    """A loaded cassette: request fields read at load, interactions only on demand.

    Indexing needs only ``fields[i]`` (method, scheme, host, port, path); the rest of
    an interaction is unpacked from the file's bytes when it is compared or served, so
    a 100,000-interaction cassette is ready quickly and small in memory.
    """

    __slots__ = ("_data", "_entries", "_offsets", "fields", "name", "path", "version")

    def __init__(self, name: str, entries: Sequence[RawEntry], path: Path | None = None,
                 version: int = FORMAT_VERSION) -> None:
        self.name = name
        self.path = path
        self.version = version
        self._entries: Sequence[RawEntry] | None = entries
        self._data = b""
        self._offsets: Sequence[int] = ()
        self.fields: list[Any] = []
        for i, e in enumerate(entries):
            try:
                self.fields.append(tuple(e[0][:5]))
            except (TypeError, IndexError):
                raise CassetteError(f"cassette {self._where()} has a malformed interaction "
                                    f"#{i + 1}: expected (request, response, ...)") from None

    @classmethod
    def _lazy(cls, name: str, path: Path, version: int, data: bytes, offsets: list[int],
              fields: list[Any]) -> CassetteFile:
        cassette = cls(name, (), path, version)
        cassette._entries = None
        cassette._data, cassette._offsets, cassette.fields = data, offsets, fields
        return cassette

    @classmethod
    def from_interactions(cls, name: str, interactions: Iterable[Interaction]) -> CassetteFile:
        """Build an in-memory cassette (for tests and tools)."""
        return cls(name, [encode_interaction(it) for it in interactions])

    def __len__(self) -> int:
        return len(self.fields)

    def entry(self, index: int) -> RawEntry:
        """The stored form of interaction ``index`` (see ``encode_interaction``)."""
        if self._entries is not None:
            return self._entries[index]
        if not 0 <= index < len(self.fields):
            raise IndexError(index)
        view = memoryview(self._data)[self._offsets[index]: self._offsets[index + 1]]
        entry: RawEntry = msgpack.unpackb(view, raw=False, use_list=False)
        return entry

    @property
    def entries(self) -> Sequence[RawEntry]:
        """Every stored interaction (unpacks them all: for rewriting a cassette)."""
        if self._entries is None:
            with without_gc():
                self._entries = [self.entry(i) for i in range(len(self.fields))]
        return self._entries

    def request(self, index: int) -> Request:
        """Return the request of interaction ``index``; raise CassetteError if malformed."""
        return self.interaction(index).request

    def interaction(self, index: int) -> Interaction:
        """Return interaction number ``index`` (0-based); raise CassetteError if malformed."""
        try:
            return decode_interaction(self.entry(index))
        except ValueError as e:
            raise CassetteError(
                f"cassette {self._where()} has a malformed interaction #{index + 1} ({e}): "
                "restore the file from version control or re-record it"
            ) from None

    def interactions(self) -> Iterator[Interaction]:
        """Yield every interaction in recorded order."""
        for i in range(len(self)):
            yield self.interaction(i)

    def _where(self) -> str:
        return str(self.path) if self.path else repr(self.name)


def _corrupt(path: Path, why: str) -> CassetteError:
    return CassetteError(
        f"cassette file {path} is corrupt or truncated ({why}): restore it from version "
        f"control (git checkout -- {path}) or delete it and record again"
    )


def _read_header(unpacker: msgpack.Unpacker, path: Path, expected: str) -> dict[str, Any]:
    try:
        header = unpacker.unpack()
    except msgpack.OutOfData:
        raise _corrupt(path, "the file is empty or ends inside its header") from None
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise _corrupt(path, f"unreadable header: {type(e).__name__}") from None
    if not isinstance(header, dict) or header.get("format") != expected:
        raise CassetteError(
            f"{path} is not a replayproxy {expected.split('-')[1]} file (no "
            f"{expected!r} header): pass the right --cassette-dir or cassette name"
        )
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise _corrupt(path, f"invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise CassetteError(
            f"{path} uses format version {version}, newer than this replayproxy reads "
            f"(up to {FORMAT_VERSION}): upgrade replayproxy (pip install -U replayproxy)"
        )
    return header


def load_cassette(path: str | os.PathLike[str], name: str | None = None) -> CassetteFile:
    """Read the cassette file at ``path``.

    Raises:
        CassetteError: the file is missing, not a cassette, corrupt or truncated, or
            written in a newer format version. The message names the file.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise CassetteError(
            f"cassette {p} does not exist: record it first with "
            f"`replayproxy record -c {name or p.stem} -- CMD`, or check --cassette-dir"
        ) from None
    except OSError as e:
        raise CassetteError(f"cannot read cassette {p}: {e.strerror}") from None
    unpacker = msgpack.Unpacker(raw=False, use_list=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    header = _read_header(unpacker, p, CASSETTE_FORMAT)
    offsets: list[int] = []
    fields: list[Any] = []
    intern = sys.intern
    with without_gc():
        try:
            try:
                count = unpacker.read_array_header()
            except msgpack.OutOfData:
                raise
            except Exception:
                raise _corrupt(p, "the interaction list is missing") from None
            for i in range(count):
                offsets.append(unpacker.tell())
                if unpacker.read_array_header() != 5:
                    raise _corrupt(p, f"interaction #{i + 1} is not a 5-element array")
                if unpacker.read_array_header() != 9:
                    raise _corrupt(p, f"interaction #{i + 1} has a malformed request")
                method, scheme, host, port, path = (unpacker.unpack() for _ in range(5))
                if not (isinstance(method, str) and isinstance(scheme, str)
                        and isinstance(host, str) and isinstance(port, int)
                        and isinstance(path, str)):
                    raise _corrupt(p, f"interaction #{i + 1} has a malformed request")
                fields.append((intern(method), intern(scheme), intern(host), port, path))
                for _ in range(8):  # query, headers, body, version; response, 3 timings
                    unpacker.skip()
            offsets.append(unpacker.tell())
        except msgpack.OutOfData:
            raise _corrupt(p, "the file ends before its last interaction") from None
        except CassetteError:
            raise
        except Exception as e:  # msgpack raises several unrelated types on garbage
            raise _corrupt(p, f"undecodable interactions: {type(e).__name__}") from None
    if header.get("interactions") != count:
        raise _corrupt(p, f"header says {header.get('interactions')} interactions, file has "
                          f"{count}")
    if unpacker.tell() != len(data):
        raise _corrupt(p, "unexpected data after the interactions")
    return CassetteFile._lazy(name or p.name.removesuffix(SUFFIX), p, header["version"], data,
                              offsets, fields)


def cassette_info(path: Path) -> int:
    """Return the number of interactions in the cassette at ``path`` (header only)."""
    with path.open("rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False, use_list=False)
        header = _read_header(unpacker, path, CASSETTE_FORMAT)
    count = header.get("interactions")
    if not isinstance(count, int):
        raise _corrupt(path, "the header has no interaction count")
    return count


def list_cassettes(cassette_dir: str | os.PathLike[str]) -> list[Path]:
    """Return the cassette files in ``cassette_dir``, sorted by name."""
    d = Path(cassette_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix == SUFFIX and not p.name.startswith("."))


# -- writing --------------------------------------------------------------------------


@contextlib.contextmanager
def _locked_dir(directory: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``directory`` (serialises writers across processes)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _ensure_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CassetteError(
            f"cannot create cassette directory {directory}: {e.strerror}; "
            "choose another with --cassette-dir"
        ) from None


def save_cassette(path: str | os.PathLike[str], entries: Sequence[RawEntry | Interaction]) -> None:
    """Write a cassette atomically (temp file, fsync, rename) under the directory lock."""
    p = Path(path)
    _ensure_dir(p.parent)
    raw = [e if isinstance(e, tuple) else encode_interaction(e) for e in entries]
    with _locked_dir(p.parent):
        _write_atomic(p, dumps(raw))


# -- journals -------------------------------------------------------------------------


def _journal_header(replace: bool) -> bytes:
    header = {"format": JOURNAL_FORMAT, "replace": replace, "version": FORMAT_VERSION}
    return msgpack.packb(header, use_bin_type=True)


class Journal:
    """An append-only file receiving each interaction the moment it completes.

    The journal holds an exclusive ``flock`` while open, which tells
    ``recover_journals`` that its writer is still alive.
    """

    def __init__(self, cassette_file: Path, *, replace: bool) -> None:
        _ensure_dir(cassette_file.parent)
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
        with _locked_dir(self.cassette_file.parent):
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
    header = _read_header(unpacker, path, JOURNAL_FORMAT)
    entries: list[RawEntry] = []
    while True:
        try:
            entry = unpacker.unpack()
        except msgpack.OutOfData:
            break  # the writer was killed in the middle of this entry
        except Exception:
            break  # garbage after a torn write: keep what came before
        try:
            decode_interaction(entry)
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
        _write_atomic(cassette_file, dumps(entries))
    for j in journals:
        with contextlib.suppress(FileNotFoundError):
            j.unlink()
    return folded


def pending_journals(cassette_file: Path) -> list[Path]:
    """Return journals of ``cassette_file`` whose writers are gone, oldest first."""
    if not cassette_file.parent.is_dir():
        return []
    found = []
    for j in cassette_file.parent.glob(f".{glob_escape(cassette_file.name)}.*.journal"):
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


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in ``text``."""
    return re.sub(r"([*?\[\]])", r"[\1]", text)


def recover_journals(cassette_file: Path) -> int:
    """Fold journals left by killed recordings into the cassette; return how many
    interactions were recovered."""
    journals = pending_journals(cassette_file)
    if not journals:
        return 0
    with _locked_dir(cassette_file.parent):
        # re-check under the lock: another process may have recovered them meanwhile
        journals = [j for j in journals if j.exists()]
        return _fold(cassette_file, journals) if journals else 0
