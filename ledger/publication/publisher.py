"""Publishing checkpoints append-only, and reading them back in order.

`CheckpointPublisher.publish` writes a checkpoint note as the next published checkpoint,
`checkpoints/<sequence>`, if its tree is larger than the last one published: sizes only
grow, and sequence numbers have no hole. Any number of server processes may publish to one
target: each write is a create that fails when the name exists, and the loser of a race
reads what the winner wrote and carries on after it, publishing only if its own tree is
still larger. The publisher remembers the newest (sequence, size) it wrote or saw, so a
publication costs one write; it lists the target only on its first use.

`read_published` is the auditor's side: every published checkpoint, in sequence order,
with the digest of its exact bytes (see `query.audit.published`).
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ledger.blobs.stores.s3_options import S3Options
from ledger.errors import BadConfiguration, NoteError
from ledger.log.note import Checkpoint, parse_note
from ledger.publication.base import FOLDER, PublicationFailed, Target, name_of, sequence_of
from ledger.publication.directory import DirectoryTarget

# Reads of a large S3 target overlap, a few at a time.
_READS_IN_FLIGHT = 8


@dataclass(frozen=True, slots=True)
class PublishedCheckpoint:
    seq: int
    name: str  # the zero-padded sequence number, `00000000000000000042`
    note: str  # as published (bytes that are not UTF-8 read as U+FFFD: they verify as nothing)
    digest: str  # hex SHA-256 of the exact bytes published

    @property
    def path(self) -> str:
        return f"{FOLDER}/{self.name}"


def open_target(target: str, s3: S3Options | None = None) -> Target:
    """The directory or `s3://bucket/prefix` that `target` names; `s3` is how to reach S3
    (unset: AWS, with credentials from the usual `AWS_*` variables)."""
    if not target.strip():
        raise BadConfiguration("a publication target is a directory or s3://bucket/prefix")
    if target.startswith("s3://"):
        # The client library loads only where S3 is used.
        from ledger.publication.s3 import S3Target  # noqa: PLC0415

        return S3Target(target, s3 or S3Options())
    if target.startswith("file://"):
        parts = urlsplit(target)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise BadConfiguration(f"{target!r}: a file:// URL of this host's directory")
        return DirectoryTarget(Path(unquote(parts.path)))
    if "://" in target:
        raise BadConfiguration(
            f"{target!r}: a publication target is a directory or s3://bucket/prefix"
        )
    return DirectoryTarget(Path(target))


def open_publisher(target: str, s3: S3Options | None = None) -> CheckpointPublisher:
    """A publisher to the directory or `s3://bucket/prefix` that `target` names."""
    return CheckpointPublisher(open_target(target, s3))


class CheckpointPublisher:
    """Appends checkpoints to one target; safe to share between threads."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._lock = threading.Lock()
        # (sequence, tree size) of the newest published checkpoint; None until first read.
        self._newest: tuple[int, int] | None = None

    @property
    def location(self) -> str:
        return self.target.location

    def publish(self, tree_size: int, note: str) -> bool:
        """Publish `note`, the checkpoint of `tree_size`, as the next checkpoint; False
        (and nothing written) if a checkpoint at least as large is published already."""
        data = note.encode()
        size = _size_in(data, "the checkpoint to publish")
        if size != tree_size:
            raise NoteError(f"the checkpoint to publish is of size {size}, not {tree_size}")
        with self._lock:
            if self._newest is None:
                self._newest = self._read_newest()
            while True:
                sequence, newest_size = self._newest
                if tree_size <= newest_size:
                    return False
                name = name_of(sequence + 1)
                if self.target.create(name, data):
                    self._newest = (sequence + 1, tree_size)
                    return True
                # Another publisher took this number first: go on after what it wrote.
                self._newest = (sequence + 1, self._size_of(name))

    def _read_newest(self) -> tuple[int, int]:
        sequences = [seq for name in self.target.names() if (seq := sequence_of(name)) is not None]
        if not sequences:
            return (-1, -1)
        newest = max(sequences)
        return (newest, self._size_of(name_of(newest)))

    def _size_of(self, name: str) -> int:
        data = self.target.read(name)
        if data is None:
            raise PublicationFailed(
                f"published checkpoint {name} at {self.location} exists but cannot be read "
                "(deleted meanwhile?)"
            )
        return _size_in(data, f"published checkpoint {name} at {self.location}", PublicationFailed)


def _size_in(data: bytes, what: str, error: type[Exception] = NoteError) -> int:
    try:
        return Checkpoint.parse_body(parse_note(data.decode()).body).size
    except (UnicodeDecodeError, NoteError) as problem:
        raise error(f"{what} is not a checkpoint note: {problem}") from None


def read_published(target: str, s3: S3Options | None = None) -> list[PublishedCheckpoint]:
    """Every checkpoint published at `target`, in sequence order (gaps left as they are)."""
    return read_target(open_target(target, s3))


def read_target(target: Target) -> list[PublishedCheckpoint]:
    names = sorted(target.names(), key=lambda name: sequence_of(name) or 0)
    if not names:
        return []
    with ThreadPoolExecutor(min(len(names), _READS_IN_FLIGHT)) as pool:
        contents = list(pool.map(target.read, names))
    return [
        PublishedCheckpoint(
            seq=sequence_of(name) or 0,
            name=name,
            note=data.decode(errors="replace"),
            digest=hashlib.sha256(data).hexdigest(),
        )
        for name, data in zip(names, contents, strict=True)
        if data is not None  # deleted between the listing and the read: a gap, like any other
    ]
