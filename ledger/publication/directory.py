"""Published checkpoints as files: `<directory>/checkpoints/<sequence>`.

A file is written once and never replaced. It is first written in full to a temporary
file beside it (created with O_CREAT|O_EXCL, mode 0444, flushed to disk), then given its
name with link(2), which fails when the name exists: so the name appears only with its
whole content, a clash leaves the existing file untouched, and a writer killed midway
leaves at most a temporary file (its name starts with a dot; readers skip it). The
directory is flushed after the link, so an acknowledged publication survives a power cut.
The files are read-only (0444): an operator's tools refuse to overwrite them by accident.
Nothing on a plain file system stops the owner from deleting or replacing one on purpose;
that is what the auditor's record of every digest it has seen detects.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ledger.blobs.stores.filesystem import sync_directory
from ledger.publication.base import FOLDER, PublicationFailed, sequence_of


class DirectoryTarget:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.folder = self.root / FOLDER

    @property
    def location(self) -> str:
        return str(self.root)

    def create(self, name: str, data: bytes) -> bool:
        final = self.folder / name
        with self._failure(f"write {FOLDER}/{name}"):
            self._make_folder()
            temporary = self.folder / f".{name}.{secrets.token_hex(8)}.tmp"
            descriptor = os.open(
                temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444
            )
            try:
                with os.fdopen(descriptor, "wb") as out:
                    os.fchmod(out.fileno(), 0o444)  # whatever the umask
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                try:
                    os.link(temporary, final)
                except FileExistsError:
                    return False
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
            sync_directory(self.folder)
            return True

    def read(self, name: str) -> bytes | None:
        with self._failure(f"read {FOLDER}/{name}"):
            try:
                return (self.folder / name).read_bytes()
            except FileNotFoundError:
                return None

    def names(self) -> list[str]:
        with self._failure(f"list {FOLDER}"):
            try:
                listed = os.listdir(self.folder)
            except FileNotFoundError:
                return []
        return [name for name in listed if sequence_of(name) is not None]

    def _make_folder(self) -> None:
        if self.folder.is_dir():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        sync_directory(self.root)

    @contextlib.contextmanager
    def _failure(self, action: str) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            raise PublicationFailed(
                f"publication directory {self.location}: cannot {action}: {error.strerror or error}"
            ) from None
