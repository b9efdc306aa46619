"""Rows buffered per partition and streamed into bounded Parquet files.

A *segment* is the rows of consecutive entries of one partition: one file per table that
has rows, all named after the segment's first log index. Rows are buffered per partition
and written as a row group of every table once `row_group_rows` entries or about
`row_group_bytes` of data are waiting, so memory stays bounded however large a file gets.
A segment is closed, and the next one started, once it holds `max_file_rows` entries or
one of its files passes `max_file_bytes` on disk.

Bytes are hashed as they are written, so the SHA-256 in the manifest is of exactly the
bytes the filesystem received.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from query.export.manifest import ExportedFile
from query.export.paths import DataPath, Location
from query.export.rows import Partition, Rows, new_rows
from query.export.schema import TABLES, to_table

# Besides its envelope, a decision's rows in all tables take about this much.
ROW_OVERHEAD_BYTES = 600


@dataclass(frozen=True, slots=True)
class FileLimits:
    max_file_bytes: int = 128 << 20
    max_file_rows: int = 1_000_000
    row_group_rows: int = 32 * 1024
    row_group_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        if min(self.max_file_bytes, self.max_file_rows, self.row_group_rows) < 1:
            raise ValueError("file limits must be positive")


class _HashingSink:
    """A write-only file for pyarrow that hashes and counts what passes through it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        self._sha256.update(data)
        self._stream.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
            self.closed = True

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


@dataclass(slots=True)
class _File:
    path: str
    sink: _HashingSink
    writer: Any
    rows: int = 0


@dataclass(slots=True)
class _Segment:
    first_index: int
    pending: Rows = field(default_factory=new_rows)
    pending_entries: int = 0
    pending_bytes: int = 0
    entries: int = 0
    files: dict[str, _File] = field(default_factory=dict)

    def written_bytes(self) -> int:
        return max((file.sink.size for file in self.files.values()), default=0)


class SegmentWriter:
    """Collects rows by partition and writes the segments of export `sequence`."""

    def __init__(self, location: Location, sequence: int, limits: FileLimits) -> None:
        self.location = location
        self.sequence = sequence
        self.limits = limits
        self.files: list[ExportedFile] = []
        self.rows: Counter[str] = Counter(dict.fromkeys(TABLES, 0))
        self._segments: dict[Partition, _Segment] = {}

    def rows_for(self, partition: Partition, index: int, size: int) -> Rows:
        """The buffer that entry `index` of `partition`, with an envelope of about `size`
        bytes, appends its rows to. Row groups and full segments are written first."""
        segment = self._segments.get(partition)
        if segment is not None:
            if (
                segment.pending_entries >= self.limits.row_group_rows
                or segment.pending_bytes >= self.limits.row_group_bytes
            ):
                self._write_pending(partition, segment)
            if (
                segment.entries >= self.limits.max_file_rows
                or segment.written_bytes() >= self.limits.max_file_bytes
            ):
                self._close(partition)
                segment = None
        if segment is None:
            segment = self._segments[partition] = _Segment(index)
        segment.entries += 1
        segment.pending_entries += 1
        segment.pending_bytes += size + ROW_OVERHEAD_BYTES
        return segment.pending

    def close(self) -> None:
        """Write and close every open segment."""
        for partition in list(self._segments):
            self._close(partition)

    def abort(self) -> None:
        """Close every open file without recording it (the caller removes them)."""
        for segment in self._segments.values():
            for file in segment.files.values():
                file.sink.close()
        self._segments.clear()

    def _write_pending(self, partition: Partition, segment: _Segment) -> None:
        tenant, day = partition
        for name, rows in segment.pending.items():
            if not rows:
                continue
            file = segment.files.get(name)
            if file is None:
                path = str(DataPath(name, tenant, day, self.sequence, segment.first_index))
                sink = _HashingSink(self._open(path))
                writer = pq.ParquetWriter(
                    pa.PythonFile(sink, mode="w"), TABLES[name], compression="zstd"
                )
                file = segment.files[name] = _File(path, sink, writer)
            file.writer.write_table(to_table(name, rows), row_group_size=len(rows))
            file.rows += len(rows)
        segment.pending = new_rows()
        segment.pending_entries = segment.pending_bytes = 0

    def _close(self, partition: Partition) -> None:
        segment = self._segments.pop(partition)
        self._write_pending(partition, segment)
        for name, file in segment.files.items():
            file.writer.close()
            file.sink.close()
            self.files.append(
                ExportedFile(
                    path=file.path,
                    table=name,
                    rows=file.rows,
                    bytes=file.sink.size,
                    sha256=file.sink.hexdigest(),
                )
            )
            self.rows[name] += file.rows

    def _open(self, path: str) -> Any:
        full = self.location.path(path)
        self.location.fs.create_dir(full.rsplit("/", 1)[0], recursive=True)
        return self.location.fs.open_output_stream(full)
