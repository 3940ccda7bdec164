"""Cassette files on disk: names and paths, loading, listing and atomic saving.

A cassette ``NAME`` lives in ``DIR/NAME.cassette``; the bytes are described in
``replayproxy.cassette.format``. A loaded ``CassetteFile`` keeps the file's bytes and
indexes only each request's method, scheme, host, port and path; an interaction is
unpacked when it is compared or served.

A cassette is replaced with a temporary file and ``os.replace``, under an ``flock`` on
the cassette directory, so a reader never sees half a file and two recording processes
never interleave. Recording goes through a journal first (``replayproxy.cassette.journal``).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack

from replayproxy.cassette.format import (
    FORMAT_VERSION,
    READERS,
    Layout,
    RawEntry,
    Reader,
    body_span,
    corrupt_error,
    dumps,
    encode_interaction,
    features,
    read_cassette,
    read_header,
    release_pages,
    unpack_entry,
    unpack_without_body,
    without_gc,
)
from replayproxy.errors import CassetteError, ConfigError
from replayproxy.model import Interaction, Request

__all__ = [
    "LEAN_ABOVE",
    "MAP_ABOVE",
    "SUFFIX",
    "CassetteFile",
    "cassette_info",
    "cassette_path",
    "check_cassette_dir",
    "ensure_cassette_dir",
    "file_bytes",
    "list_cassettes",
    "load_cassette",
    "locked_dir",
    "release_pages",
    "save_cassette",
    "validate_cassette_name",
    "write_atomic",
]

SUFFIX = ".cassette"

MAP_ABOVE = 16 << 20
"""A cassette file longer than this (bytes) is mapped into memory rather than read."""

LEAN_ABOVE = 1 << 20
"""A response body longer than this (bytes) is served from the cassette's bytes in
place (``CassetteFile.lean``)."""

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


# -- reading --------------------------------------------------------------------------


class CassetteFile:
    """A loaded cassette: request fields read at load, interactions only on demand.

    Indexing needs only ``fields[i]`` (method, scheme, host, port, path); the rest of
    an interaction is unpacked from the file's bytes when it is compared or served, so
    a 100,000-interaction cassette is ready quickly and small in memory. ``version`` is
    the file's format version; its reader decodes the interactions.
    """

    __slots__ = ("_data", "_entries", "_features", "_offsets", "_reader", "fields", "name",
                 "path")

    def __init__(self, name: str, entries: Sequence[RawEntry], path: Path | None = None,
                 version: int = FORMAT_VERSION) -> None:
        self.name = name
        self.path = path
        self._reader: Reader = READERS[version]
        self._entries: Sequence[RawEntry] | None = entries
        self._data: bytes | mmap.mmap = b""
        self._features: tuple[str, ...] | None = None
        self._offsets: Sequence[int] = ()
        self.fields: list[Any] = []
        for i, e in enumerate(entries):
            try:
                self.fields.append(tuple(e[0][:5]))
            except (TypeError, IndexError):
                raise CassetteError(f"cassette {self._where()} has a malformed interaction "
                                    f"#{i + 1}: expected (request, response, ...)") from None

    @classmethod
    def _lazy(cls, name: str, path: Path, data: bytes | mmap.mmap, layout: Layout
              ) -> CassetteFile:
        cassette = cls(name, (), path)
        cassette._reader, cassette._entries = layout.reader, None
        cassette._data, cassette._offsets, cassette.fields = data, layout.offsets, layout.fields
        cassette._features = layout.features
        release_pages(memoryview(data))  # what indexing read
        return cassette

    @property
    def reader(self) -> Reader:
        """The reader of the file's format version."""
        return self._reader

    @property
    def version(self) -> int:
        """The format version of the file (of the entries in ``entries``)."""
        return self._reader.version

    @property
    def features(self) -> tuple[str, ...]:
        """What the interactions use beyond one request and one whole response
        (``chunks``, ``cut``, ``h2``, ``trailers``, ``websocket``), sorted; empty for a
        plain cassette. Read from the header of a loaded file."""
        if self._features is None:
            self._features = tuple(features(self.entries))
        return self._features

    @classmethod
    def from_interactions(cls, name: str, interactions: Iterable[Interaction]) -> CassetteFile:
        """Build an in-memory cassette (for tests and tools)."""
        return cls(name, [encode_interaction(it) for it in interactions])

    def __len__(self) -> int:
        return len(self.fields)

    def entry(self, index: int) -> RawEntry:
        """The stored form of interaction ``index`` (see ``format.encode_interaction``)."""
        if self._entries is not None:
            return self._entries[index]
        if not 0 <= index < len(self.fields):
            raise IndexError(index)
        return unpack_entry(memoryview(self._data)[self._offsets[index]:
                                                   self._offsets[index + 1]])

    def packed(self, index: int) -> memoryview:
        """The bytes of interaction ``index`` as they are in the file (packed afresh for
        a cassette built in memory)."""
        if self._entries is not None:
            return memoryview(msgpack.packb(self._entries[index], use_bin_type=True))
        if not 0 <= index < len(self.fields):
            raise IndexError(index)
        return memoryview(self._data)[self._offsets[index]:self._offsets[index + 1]]

    @property
    def entries(self) -> Sequence[RawEntry]:
        """Every stored interaction (unpacks them all: for rewriting a cassette)."""
        if self._entries is None:
            with without_gc():
                self._entries = [self.entry(i) for i in range(len(self.fields))]
        return self._entries

    def request(self, index: int) -> Request:
        """Return the request of interaction ``index``; raise CassetteError if malformed."""
        return self.lean(index)[0].request

    def lean(self, index: int) -> tuple[Interaction, memoryview | None]:
        """Interaction ``index``, its response body left in the file's bytes when it is
        longer than ``LEAN_ABOVE``: the interaction's body is then empty and the view
        holds the body, not copied (a 200 MB streamed body is served from the bytes the
        cassette has loaded anyway). Otherwise as ``interaction``, with None."""
        if self._entries is not None:
            return self.interaction(index), None
        if not 0 <= index < len(self.fields):
            raise IndexError(index)
        entry = memoryview(self._data)[self._offsets[index]:self._offsets[index + 1]]
        try:
            head, start, end = body_span(entry)
        except (ValueError, IndexError):
            return self.interaction(index), None  # malformed: reported as it always is
        if end - start <= LEAN_ABOVE:
            return self.interaction(index), None
        try:
            it = unpack_without_body(self._reader, entry, head, end)[1]
        except ValueError as e:
            raise CassetteError(
                f"cassette {self._where()} has a malformed interaction #{index + 1} ({e}): "
                "restore the file from version control or re-record it"
            ) from None
        return it, entry[start:end]

    def interaction(self, index: int) -> Interaction:
        """Return interaction number ``index`` (0-based); raise CassetteError if malformed."""
        try:
            return self._reader.decode(self.entry(index))
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


def load_cassette(path: str | os.PathLike[str], name: str | None = None) -> CassetteFile:
    """Read the cassette file at ``path``.

    Raises:
        CassetteError: the file is missing, not a cassette, corrupt or truncated, or
            written in a newer format version. The message names the file.
    """
    p = Path(path)
    try:
        data = file_bytes(p)
    except FileNotFoundError:
        raise CassetteError(
            f"cassette {p} does not exist: record it first with "
            f"`replayproxy record -c {name or p.stem} -- CMD`, or check {{cassette_dir}}"
        ) from None
    except OSError as e:
        raise CassetteError(f"cannot read cassette {p}: {e.strerror}") from None
    return CassetteFile._lazy(name or p.name.removesuffix(SUFFIX), p, data,
                              read_cassette(data, p))


def file_bytes(path: Path) -> bytes | mmap.mmap:
    """The bytes of the file at ``path``; a map of it (read-only) when it is longer than
    ``MAP_ABOVE``, so its big bodies are read from the page cache when they are served,
    never copied into the process."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= MAP_ABOVE:
            return f.read()
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def cassette_info(path: Path) -> int:
    """Return the number of interactions in the cassette at ``path`` (header only)."""
    with path.open("rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False, use_list=False)
        header, _ = read_header(unpacker, path)
    count = header.get("interactions")
    if type(count) is not int:
        raise corrupt_error(path, "the header has no interaction count")
    return count


def list_cassettes(cassette_dir: str | os.PathLike[str]) -> list[Path]:
    """Return the cassette files in ``cassette_dir``, sorted by cassette name (so
    ``npm-install`` comes before ``npm-install-axios``, which the file names would not
    give: ``-`` sorts before ``.``)."""
    d = Path(cassette_dir)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if p.suffix == SUFFIX and not p.name.startswith(".")),
                  key=lambda p: p.name.removesuffix(SUFFIX))


# -- writing --------------------------------------------------------------------------


@contextlib.contextmanager
def locked_dir(directory: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``directory`` (serialises writers across processes)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | Iterable[bytes | memoryview],
                 check: Callable[[Path], None] | None = None) -> None:
    """Replace ``path`` with ``data`` (bytes, or the pieces to write one after the other):
    temp file, fsync, ``check`` on the temp file (it raises to keep ``path`` as it was),
    rename, fsync of the directory."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in (data,) if isinstance(data, bytes) else data:
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
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


def ensure_cassette_dir(directory: Path) -> None:
    """Create the cassette directory if needed; raise CassetteError if it cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CassetteError(
            f"cannot create cassette directory {directory}: {e.strerror}; "
            "choose another with {cassette_dir}"
        ) from None


def check_cassette_dir(directory: Path, *, write: bool) -> None:
    """Raise CassetteError, in one line naming ``directory`` and the fix, if it cannot
    hold cassettes: a file, a device, a dangling symlink, or (``write``) a directory this
    process may not write (nor, when missing, create)."""
    fix = "choose another with {cassette_dir}"
    if directory.is_symlink() and not directory.exists():
        target = os.readlink(directory)
        raise CassetteError(
            f"cassette directory {directory} is a symlink to {target}, which does not "
            f"exist: create {target} or {fix}", directory=str(directory))
    if directory.exists() and not directory.is_dir():
        what = "a file" if directory.is_file() else "not a directory"
        raise CassetteError(f"cassette directory {directory} is {what}: {fix}",
                            directory=str(directory))
    if not write:
        return
    existing = directory
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise CassetteError(f"cassette directory {directory}: {existing} is a dangling "
                                f"symlink: {fix}", directory=str(directory))
        existing = existing.parent
    if not existing.is_dir():
        raise CassetteError(f"cannot create cassette directory {directory}: {existing} is "
                            f"not a directory: {fix}", directory=str(directory))
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == directory:
            raise CassetteError(f"cassette directory {directory} is not writable: fix its "
                                f"permissions or {fix}", directory=str(directory))
        raise CassetteError(f"cannot create cassette directory {directory}: {existing} is "
                            f"not writable: {fix}", directory=str(directory))


def save_cassette(path: str | os.PathLike[str], entries: Sequence[RawEntry | Interaction]) -> None:
    """Write a cassette atomically (temp file, fsync, rename) under the directory lock."""
    p = Path(path)
    ensure_cassette_dir(p.parent)
    raw = [e if isinstance(e, tuple) else encode_interaction(e) for e in entries]
    with locked_dir(p.parent):
        write_atomic(p, dumps(raw))
