"""`prov export verify`: check an export against the ledger's signed checkpoints, offline.

Nothing is trusted but the verifier key given by the caller. For the whole location:

1. The manifests form one chain (`query.export.manifest.read_history`): sequences 1..n,
   each naming the SHA-256 of the one before, starting where it ended, for one origin.
2. Every file under the location is a manifest or is listed by one: a file left over, or
   copied in from another export, is reported.
3. For each manifest: its checkpoint verifies under the key and names its origin, and its
   size is the manifest's `end`; the RFC 9162 consistency proof from the previous
   manifest's checkpoint verifies.
4. Every listed file has the listed size, SHA-256 and row count.
5. Per segment (the files of one partition that share a name): every entry row's leaf is
   recomputed from its `entry_bytes`, whose index, tenant and envelope digest must match
   the row, the segment's partition and the SHA-256 of the exported envelope; then every
   row of every table is derived again from the envelopes, and must equal the files,
   column by column (the blob states, which the signature does not cover, excepted).
   Rows are derived as the manifest's format says: a `prov.export/v1` export has no
   `dependencies` or `context_changes` and fewer `decisions` columns
   (`query.export.schema.tables_of`).
6. The entries cover `[start, end)` exactly once each, each one's previous leaf is the
   leaf before it, and the leaves folded onto `tree_before` give the checkpoint's root
   and `tree_after`.

The first failure stops verification and is reported, naming the file, the entry and,
where it applies, the column.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from ledger.errors import NoteError, ProvError
from ledger.log import merkle
from ledger.log.entry import ENTRY_HEAD, MAGIC
from ledger.log.note import NoteVerifier, open_checkpoint
from query.export.manifest import ExportedFile, Manifest, ManifestError, read_history
from query.export.paths import (
    MANIFEST_DIR,
    Location,
    list_files,
    parse_data_path,
    parse_manifest_name,
    read_bytes,
)
from query.export.rows import ExportError, LogEntry, append_rows, decode, new_rows, partition_of
from query.export.schema import BLOB_DERIVED, tables_of, to_table

# Tables whose rows are log entries, with the integrity columns.
ENTRY_TABLES = ("decisions", "context_changes", "other_records", "replays")


def _required(schema: Any) -> list[str]:
    """A file could declare its columns non-nullable and still hold nulls; they are refused."""
    return [field.name for field in schema if not field.nullable]


class ExportFault(ProvError):
    """Why an export does not verify."""

    kind = "export-invalid"
    title = "Export does not verify"


@dataclass(slots=True)
class ExportReport:
    """The outcome of `verify_export`; true when the export verified."""

    exports: int = 0
    end: int = 0
    files: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    checkpoint: str | None = None
    fault: str | None = None

    def __bool__(self) -> bool:
        return self.fault is None

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": self.fault is None,
            "exports": self.exports,
            "entries": self.end,
            "files": self.files,
            "rows": dict(sorted(self.rows.items())),
            "checkpoint": self.checkpoint,
            "fault": self.fault,
            "unverified": "blob status, size and erased_at: the ledger's word at export time",
        }


def verify_export(location: Location, verifier: NoteVerifier) -> ExportReport:
    report = ExportReport()
    try:
        _verify(location, verifier, report)
    except (ExportFault, ManifestError) as fault:
        report.fault = str(fault)
    return report


def _verify(location: Location, verifier: NoteVerifier, report: ExportReport) -> None:
    # 1.
    history = read_history(location)
    if not history:
        raise ExportFault(f"{location.uri} holds no export manifest")
    # 2.
    listed = {exported.path for stored in history for exported in stored.manifest.files}
    for relative in list_files(location):
        is_manifest = (
            relative.startswith(f"{MANIFEST_DIR}/")
            and parse_manifest_name(relative.removeprefix(f"{MANIFEST_DIR}/")) is not None
        )
        if not is_manifest and relative not in listed:
            raise ExportFault(f"{relative}: no manifest lists this file")
    previous_root, last_leaf = merkle.EMPTY_ROOT, None
    for stored in history:
        manifest = stored.manifest
        # 3.
        root = _checkpoint_root(manifest, verifier, stored.path)
        if manifest.start > 0 and not merkle.verify_consistency(
            manifest.start,
            manifest.end,
            previous_root,
            root,
            [bytes.fromhex(node) for node in manifest.consistency],
        ):
            raise ExportFault(f"{stored.path}: the consistency proof does not verify")
        last_leaf = _verify_entries(location, manifest, root, last_leaf, stored.path)
        previous_root = root
        report.exports += 1
        report.end = manifest.end
        report.files += len(manifest.files)
        report.rows.update(manifest.rows)
        report.checkpoint = manifest.checkpoint


def _checkpoint_root(manifest: Manifest, verifier: NoteVerifier, path: str) -> bytes:
    try:
        checkpoint = open_checkpoint(manifest.checkpoint, verifier, manifest.origin)
    except NoteError as error:
        raise ExportFault(f"{path}: checkpoint: {error}") from None
    if checkpoint.size != manifest.end:
        raise ExportFault(
            f"{path}: the checkpoint is for {checkpoint.size} entries, not {manifest.end}"
        )
    return checkpoint.root_hash


class _Leaves:
    """The leaf and previous leaf of every entry of one export, by position."""

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.leaves = bytearray((end - start) * 32)
        self.prevs = bytearray((end - start) * 32)
        self.seen = bytearray(end - start)

    def add(self, index: int, leaf: bytes, prev: bytes) -> None:
        position = index - self.start
        if self.seen[position]:
            raise ExportFault(f"entry {index}: exported twice")
        self.seen[position] = 1
        self.leaves[position * 32 : position * 32 + 32] = leaf
        self.prevs[position * 32 : position * 32 + 32] = prev

    def leaf(self, position: int) -> bytes:
        return bytes(self.leaves[position * 32 : position * 32 + 32])

    def prev(self, position: int) -> bytes:
        return bytes(self.prevs[position * 32 : position * 32 + 32])


def _verify_entries(
    location: Location, manifest: Manifest, root: bytes, last_leaf: bytes | None, path: str
) -> bytes:
    """Steps 4 to 6 for one manifest; the leaf of its last entry."""
    segments: dict[tuple[str, date, int], dict[str, ExportedFile]] = {}
    for exported in manifest.files:
        parsed = parse_data_path(exported.path)
        segments.setdefault((parsed.tenant, parsed.day, parsed.first_index), {})[parsed.table] = (
            exported
        )
    leaves = _Leaves(manifest.start, manifest.end)
    schemas = tables_of(manifest.format)
    for (tenant, day, first_index), files in sorted(segments.items()):
        tables = {name: _read(location, exported, schemas) for name, exported in files.items()}
        _verify_segment(tables, files, (tenant, day), first_index, manifest, leaves)
    # 6.
    tree = manifest.before()
    for position in range(manifest.end - manifest.start):
        index = manifest.start + position
        if not leaves.seen[position]:
            raise ExportFault(f"entry {index}: missing from the export of {path}")
        expected_prev = last_leaf if position == 0 else leaves.leaf(position - 1)
        if expected_prev is not None and leaves.prev(position) != expected_prev:
            raise ExportFault(f"entry {index}: its previous leaf is not the leaf before it")
        last_leaf = leaves.leaf(position)
        tree.append(last_leaf)
    if tree.root() != root:
        raise ExportFault(f"{path}: the exported leaves do not give the checkpoint's root")
    if [peak.hex() for peak in tree.peaks] != manifest.tree_after:
        raise ExportFault(f"{path}: tree_after is not the tree the exported leaves give")
    assert last_leaf is not None  # a manifest covers at least one entry
    return last_leaf


def _read(location: Location, exported: ExportedFile, schemas: dict[str, Any]) -> Any:
    """Step 4 for one file: its bytes as listed, then its rows, in the columns `schemas`
    (those of the manifest's format) give its table."""
    try:
        data = read_bytes(location, exported.path)
    except FileNotFoundError:
        raise ExportFault(f"{exported.path}: missing") from None
    if len(data) != exported.bytes or hashlib.sha256(data).hexdigest() != exported.sha256:
        raise ExportFault(f"{exported.path}: its SHA-256 is not the one in the manifest")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as error:
        raise ExportFault(f"{exported.path}: not a readable Parquet file: {error}") from None
    if table.num_rows != exported.rows:
        raise ExportFault(f"{exported.path}: {table.num_rows} rows, not {exported.rows}")
    schema = schemas.get(exported.table)
    if (
        schema is None
        or table.schema.remove_metadata() != schema
        or any(table.column(name).null_count for name in _required(schema))
    ):
        raise ExportFault(f"{exported.path}: the columns are not those of an export")
    return table


def _verify_segment(
    tables: dict[str, Any],
    files: dict[str, ExportedFile],
    partition: tuple[str, date],
    first_index: int,
    manifest: Manifest,
    leaves: _Leaves,
) -> None:
    """Step 5 for one segment."""
    envelope_table = tables.get("envelopes")
    if envelope_table is None:
        raise ExportFault(f"{next(iter(files.values())).path}: the segment has no envelopes")
    envelopes = dict(
        zip(
            envelope_table.column("idx").to_pylist(),
            envelope_table.column("envelope").to_pylist(),
            strict=True,
        )
    )
    # Entries of every kind, in log order: the exporter wrote the envelopes in that order.
    entry_rows = sorted(
        (
            (index, leaf, digest, data, files[name].path)
            for name in ENTRY_TABLES
            if (table := tables.get(name)) is not None
            for index, leaf, digest, data in zip(
                *(
                    table.column(c).to_pylist()
                    for c in ("idx", "leaf_hash", "envelope_sha256", "entry_bytes")
                ),
                strict=True,
            )
        ),
        key=lambda row: row[0],
    )
    expected = new_rows()
    for index, leaf, digest, data, where in entry_rows:
        entry, prev_leaf = _entry(where, index, leaf, digest, data, envelopes, partition, manifest)
        if index < first_index:
            raise ExportFault(f"{where}: entry {index} comes before the segment's first")
        try:
            record = decode(entry, manifest.format)
        except ExportError as error:
            raise ExportFault(f"{where}: {error}") from None
        if partition_of(entry, record) != partition:
            raise ExportFault(f"{where}: entry {index} belongs to another partition")
        append_rows(entry, record, expected, {})
        leaves.add(index, leaf, prev_leaf)
    schemas = tables_of(manifest.format)
    for name, rows in expected.items():
        schema = schemas.get(name)
        if schema is None:  # a table of a later format: this export's envelopes hold it
            continue
        actual = tables.get(name)
        if actual is None:
            if rows:
                raise ExportFault(f"the {name} file of segment {first_index} is missing")
            continue
        wanted = to_table(name, rows).select(schema.names)
        if name == "blobs":
            actual, wanted = actual.select(BLOB_DERIVED), wanted.select(BLOB_DERIVED)
        _compare(files[name].path, wanted, actual)


def _entry(
    where: str,
    index: int,
    leaf: bytes,
    digest: bytes,
    data: bytes,
    envelopes: dict[int, bytes],
    partition: tuple[str, date],
    manifest: Manifest,
) -> tuple[LogEntry, bytes]:
    """One entry row, checked against its entry bytes and envelope; and its previous leaf."""
    if hashlib.sha256(b"\x00" + data).digest() != leaf:
        raise ExportFault(f"{where}: entry {index}: leaf_hash is not the hash of entry_bytes")
    head = ENTRY_HEAD.size
    if len(data) < head:
        raise ExportFault(f"{where}: entry {index}: entry_bytes are too short")
    magic, entry_index, integrated_us, prev_leaf, entry_digest, tenant_length = ENTRY_HEAD.unpack(
        data[:head]
    )
    tenant = data[head:].decode(errors="replace")
    if magic != MAGIC or len(data) != head + tenant_length:
        raise ExportFault(f"{where}: entry {index}: entry_bytes are malformed")
    if entry_index != index or entry_digest != digest:
        raise ExportFault(
            f"{where}: entry {index}: idx or envelope_sha256 differs from entry_bytes"
        )
    if tenant != partition[0]:
        raise ExportFault(f"{where}: entry {index} is of tenant {tenant!r}")
    if not manifest.start <= index < manifest.end:
        raise ExportFault(f"{where}: entry {index} is outside the manifest's range")
    envelope = envelopes.get(index)
    if envelope is None or hashlib.sha256(envelope).digest() != digest:
        raise ExportFault(f"{where}: entry {index}: the envelope is missing or altered")
    return LogEntry(index, integrated_us, tenant, envelope, digest, data, leaf), prev_leaf


def _compare(where: str, wanted: Any, actual: Any) -> None:
    if actual.num_rows != wanted.num_rows:
        raise ExportFault(
            f"{where}: {actual.num_rows} rows, but the envelopes give {wanted.num_rows}"
        )
    for name in wanted.column_names:
        column, truth = actual.column(name), wanted.column(name)
        if column.equals(truth):
            continue
        indexes = actual.column("idx").to_pylist()
        for row, (value, true_value) in enumerate(
            zip(column.to_pylist(), truth.to_pylist(), strict=True)
        ):
            if value != true_value:
                raise ExportFault(
                    f"{where}: row {row} (entry {indexes[row]}): {name} is not what the "
                    "signed envelope says"
                )
        raise ExportFault(f"{where}: {name} is not what the signed envelopes say")
