"""Objects as files in a directory: `<root>/<tenant>/<first two characters>/<object>`.

The fan-out directory keeps any one directory to a few thousand entries. A put writes a
temporary file beside its target (its name starts with a dot, so it is never an object's),
flushes it to disk, renames it over the target and flushes the directory: a reader sees
the whole object or none, and an acknowledged put survives a power cut. A writer killed
midway leaves at most a temporary file, which no read ever returns.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ledger.blobs.stores.names import split_name
from ledger.errors import BlobStoreUnavailable


class FilesystemStore:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.location = self.root.as_uri()
        with self._outage("create the directory"):
            self.root.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, chunks: Iterable[bytes], size: int) -> None:
        target = self._path(name)
        with self._outage(f"write {name}"):
            _make_dirs(target.parent, self.root)
            descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".put-")
        file = os.fdopen(descriptor, "wb")
        done = False
        try:
            written = 0
            # The source's own errors (a client gone, a spool file) pass as they are.
            for chunk in chunks:
                with self._outage(f"write {name}"):
                    file.write(chunk)
                written += len(chunk)
            if written != size:
                raise ValueError(f"{name}: {written} bytes given for a {size}-byte object")
            with self._outage(f"write {name}"):
                file.flush()
                os.fsync(file.fileno())
                file.close()
                os.replace(temporary, target)
                sync_directory(target.parent)
            done = True
        finally:
            if not done:
                with contextlib.suppress(OSError):
                    file.close()  # what is still buffered may not fit either
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    def put_many(self, objects: Sequence[tuple[str, bytes]]) -> None:
        for name, content in objects:
            self.put(name, [content], len(content))

    def get(self, name: str) -> bytes | None:
        path = self._path(name)
        with self._outage(f"read {name}"):
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None

    def delete(self, name: str) -> None:
        path = self._path(name)
        with self._outage(f"delete {name}"):
            try:
                path.unlink()
            except FileNotFoundError:
                return
            sync_directory(path.parent)

    def _path(self, name: str) -> Path:
        tenant, object_part = split_name(name)
        return self.root / tenant / object_part[:2] / object_part

    @contextlib.contextmanager
    def _outage(self, action: str) -> Iterator[None]:
        """An OSError (disk full, permission, I/O error) as the store's outage."""
        try:
            yield
        except OSError as error:
            raise BlobStoreUnavailable(
                f"blob directory {self.root}: cannot {action}: {error.strerror or error}"
            ) from None


def _make_dirs(directory: Path, root: Path) -> None:
    """Create `directory` and its missing parents below `root`, each made durable in its
    parent (a rename into a directory whose own entry was lost would be lost with it)."""
    if directory.is_dir():
        return
    missing = [directory, *directory.parents]
    for level in reversed(missing[: missing.index(root)]):
        try:
            level.mkdir()
        except FileExistsError:
            continue
        sync_directory(level.parent)


def sync_directory(directory: Path) -> None:
    """Make a directory's entries (a file created, renamed or linked in it) durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
