"""`prov export`: the log, incrementally, as hive-partitioned Parquet with a manifest.

An export carries on from the last manifest at the location: it covers the entries from
where that one ended up to the ledger's latest signed checkpoint. The steps:

1. Read the chain of manifests; the new export starts at the last one's `end`, from its
   `tree_after` peaks. An export of an older format is not carried on (docs/analytics.md,
   "Formats").
2. Open the latest checkpoint under the ledger's key; its size is the new `end`.
3. Remove files left by an interrupted attempt at this export (same sequence number).
4. Stream the entries, recompute each leaf from the stored envelope, index, time, tenant
   and previous leaf, and refuse any entry whose stored leaf differs (`prov verify` then
   names it); derive the rows and write them in bounded segments. Large ranges are split
   over worker processes.
5. Fold the recomputed leaves onto the peaks and require the checkpoint's root, so that
   nothing is written that `prov export verify` would reject.
6. Check the consistency proof from the previous export's checkpoint, and write the
   manifest last: until then the new files are invisible to queries.

Only one export may write to a location at a time.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from ledger.ledger import Ledger
from ledger.log import merkle
from ledger.log.entry import ENTRY_HEAD, GENESIS_PREV, MAGIC, from_micros, rfc3339
from ledger.log.note import open_checkpoint
from ledger.log.proofs import consistency_proof
from ledger.log.sequencer import now_micros
from ledger.log.store import latest_checkpoint, read_entry, stream_entries
from ledger.storage.db import make_engine
from ledger.storage.schema import blobs
from query.export.manifest import (
    ExportedFile,
    Manifest,
    Previous,
    StoredManifest,
    encode_manifest,
    read_history,
)
from query.export.paths import (
    Location,
    delete_file,
    list_files,
    manifest_path,
    open_location,
    parse_data_path,
    write_bytes,
)
from query.export.rows import (
    BlobState,
    ExportError,
    LogEntry,
    Payload,
    append_rows,
    blob_digests,
    decode,
    partition_of,
)
from query.export.schema import FORMAT, TABLES
from query.export.writer import FileLimits, SegmentWriter

# Below this many entries, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 200_000
_BLOB_QUERY_CHUNK = 1_000


@dataclass(frozen=True, slots=True)
class ExportResult:
    """A finished export, or `manifest` None when the location was already up to date."""

    manifest: Manifest | None
    exported_to: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        manifest = self.manifest
        if manifest is None:
            return {"status": "up-to-date", "end": self.exported_to}
        entries = manifest.end - manifest.start
        return {
            "status": "exported",
            "sequence": manifest.sequence,
            "start": manifest.start,
            "end": manifest.end,
            "entries": entries,
            "files": len(manifest.files),
            "bytes": sum(exported.bytes for exported in manifest.files),
            "rows": manifest.rows,
            "manifest": manifest_path(manifest.sequence),
            "seconds": round(self.seconds, 3),
            "entries_per_second": round(entries / self.seconds) if self.seconds else None,
        }


def export_ledger(
    ledger: Ledger,
    location: Location,
    *,
    limits: FileLimits = FileLimits(),  # noqa: B008 - frozen, so one shared default is safe
    workers: int = 1,
    parallel_from: int = PARALLEL_THRESHOLD,
) -> ExportResult:
    """Export the entries since the last export at `location` (steps 1 to 6 above); with
    more than `parallel_from` of them, over `workers` processes."""
    started = time.perf_counter()
    # 1.
    history = read_history(location)
    previous = history[-1] if history else None
    tree = previous.manifest.after() if previous else merkle.CompactRange()
    start = tree.size
    # 2.
    with ledger.engine.connect() as connection:
        stored = latest_checkpoint(connection)
    if stored is None:
        raise ExportError("the ledger has no checkpoint yet; run `prov init`")
    checkpoint = open_checkpoint(stored.note, ledger.verifier, ledger.origin)
    end = checkpoint.size
    if previous is not None:
        if previous.manifest.origin != ledger.origin:
            raise ExportError(f"{location.uri} holds an export of {previous.manifest.origin}")
        if previous.manifest.format != FORMAT:
            # Its context changes are `other_records` rows, which the freshness report
            # would not see beside the new `context_changes`: one location, one format.
            raise ExportError(
                f"{location.uri} holds a {previous.manifest.format} export; this version "
                f"writes {FORMAT}, with other tables: export to a new location"
            )
        if end < start:
            raise ExportError(
                f"the ledger's checkpoint covers {end} entries, but {start} are exported "
                "already: is this the same ledger?"
            )
    if end == start:
        return ExportResult(None, end, time.perf_counter() - started)
    sequence = len(history) + 1
    # 3.
    _remove_files_of(location, sequence)
    # 4.
    try:
        chunks = _export_ranges(
            ledger.engine, location, sequence, start, end, limits, workers, parallel_from
        )
        # 5.
        for chunk in chunks:
            for offset in range(0, len(chunk.leaves), merkle.HASH_SIZE):
                tree.append(chunk.leaves[offset : offset + merkle.HASH_SIZE])
        if tree.root() != checkpoint.root_hash:
            raise ExportError(
                f"the leaves of entries {start} to {end - 1}, on the tree of the last export, "
                "do not give the signed root; run `prov verify` and `prov export verify`"
            )
        # 6.
        proof = _consistency(ledger, previous, start, end, checkpoint.root_hash)
        manifest = Manifest(
            sequence=sequence,
            origin=ledger.origin,
            created_at=rfc3339(now_micros()),
            start=start,
            end=end,
            tree_before=previous.manifest.tree_after if previous else [],
            tree_after=[peak.hex() for peak in tree.peaks],
            checkpoint=stored.note,
            previous=Previous(previous.manifest.sequence, previous.sha256) if previous else None,
            consistency=[node.hex() for node in proof],
            rows=dict(sum((Counter(chunk.rows) for chunk in chunks), Counter())),
            files=[exported for chunk in chunks for exported in chunk.files],
        )
    except BaseException:
        _remove_files_of(location, sequence)
        raise
    write_bytes(location, manifest_path(sequence), encode_manifest(manifest))
    return ExportResult(manifest, end, time.perf_counter() - started)


def _remove_files_of(location: Location, sequence: int) -> None:
    for relative in list_files(location):
        try:
            parsed = parse_data_path(relative)
        except ValueError:
            continue  # not ours to remove; `prov export verify` reports it
        if parsed.sequence == sequence:
            delete_file(location, relative)


def _consistency(
    ledger: Ledger, previous: StoredManifest | None, start: int, end: int, new_root: bytes
) -> list[bytes]:
    """The RFC 9162 proof from the previous export's checkpoint to the new one, checked."""
    if previous is None or start == 0:
        return []
    old_root = open_checkpoint(previous.manifest.checkpoint, ledger.verifier).root_hash
    with ledger.engine.connect() as connection:
        proof = consistency_proof(connection, start, end).proof
    if not merkle.verify_consistency(start, end, old_root, new_root, proof):
        raise ExportError(f"the log at {end} is not consistent with the last export at {start}")
    return proof


# --- the entries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Range:
    uri: str
    sequence: int
    start: int
    end: int
    limits: FileLimits


@dataclass(frozen=True, slots=True)
class _Chunk:
    leaves: bytes  # 32 bytes per entry, in index order
    files: list[ExportedFile]
    rows: dict[str, int]


def _export_ranges(
    engine: Engine,
    location: Location,
    sequence: int,
    start: int,
    end: int,
    limits: FileLimits,
    workers: int,
    parallel_from: int,
) -> list[_Chunk]:
    """Export [start, end) in this process, or cut into one range per worker when large.

    Each range starts from the stored leaf before it; that leaf is checked by the range
    that covers it, so every entry is still checked exactly once.
    """
    count = workers if workers > 1 and end - start >= parallel_from else 1
    width = -(-(end - start) // count)
    ranges = [
        _Range(location.uri, sequence, lo, min(lo + width, end), limits)
        for lo in range(start, end, width)
    ]
    if len(ranges) == 1:
        return [_export_range(engine, location, ranges[0])]
    url = engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(ranges) - 1, mp_context=context) as executor:
        futures: list[Future[_Chunk]] = [
            executor.submit(_export_range_at, url, part) for part in ranges[1:]
        ]
        first = _export_range(engine, location, ranges[0])
        return [first, *(future.result() for future in futures)]


def _export_range_at(url: str, part: _Range) -> _Chunk:
    engine = make_engine(url)
    try:
        return _export_range(engine, open_location(part.uri), part)
    finally:
        engine.dispose()


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Rows are tuples of plain values, freed by reference counting; the cyclic collector
    would only re-walk the growing buffers, which once cost more than the export itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _export_range(engine: Engine, location: Location, part: _Range) -> _Chunk:
    writer = SegmentWriter(location, part.sequence, part.limits)
    try:
        leaves = _write_entries(engine, writer, part)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return _Chunk(bytes(leaves), writer.files, {name: writer.rows[name] for name in TABLES})


def _write_entries(engine: Engine, writer: SegmentWriter, part: _Range) -> bytearray:
    """Check and derive entries [part.start, part.end) into `writer`; their leaves."""
    leaves = bytearray()
    sha256, pack = hashlib.sha256, ENTRY_HEAD.pack
    with engine.connect() as connection, connection.begin(), _without_cyclic_gc():
        prev_leaf = GENESIS_PREV
        if part.start > 0:
            before = read_entry(connection, part.start - 1)
            if before is None:
                raise ExportError(f"entry {part.start - 1}: missing; run `prov verify`")
            prev_leaf = before.leaf_hash
        expected = part.start
        for batch in stream_entries(connection, part.start, part.end):
            decoded = []
            for index, tenant, envelope, integrated_us, stored_leaf in batch:
                if index != expected:
                    raise ExportError(f"entry {expected}: missing; run `prov verify`")
                digest = sha256(envelope).digest()
                encoded_tenant = tenant.encode()
                data = (
                    pack(MAGIC, index, integrated_us, prev_leaf, digest, len(encoded_tenant))
                    + encoded_tenant
                )
                leaf = sha256(b"\x00" + data).digest()
                if leaf != bytes(stored_leaf):
                    raise ExportError(
                        f"entry {index}: its stored leaf does not match its bytes; "
                        "run `prov verify`"
                    )
                entry = LogEntry(index, integrated_us, tenant, bytes(envelope), digest, data, leaf)
                decoded.append((entry, decode(entry)))
                leaves += leaf
                prev_leaf = leaf
                expected += 1
            states = _blob_states(connection, decoded)
            for entry, record in decoded:
                rows = writer.rows_for(
                    partition_of(entry, record), entry.index, len(entry.envelope)
                )
                append_rows(entry, record, rows, states.get(entry.tenant, {}))
        if expected != part.end:
            raise ExportError(f"entry {expected}: missing; run `prov verify`")
    return leaves


def _blob_states(
    connection: Connection, records: Sequence[tuple[LogEntry, Payload]]
) -> Mapping[str, Mapping[str, BlobState]]:
    """The state of every blob the records reference, by tenant and digest; a blob that
    was never uploaded is absent (and exported as `missing`)."""
    wanted: dict[str, set[str]] = {}
    for entry, record in records:
        referenced = blob_digests(record)
        if referenced:
            wanted.setdefault(entry.tenant, set()).update(referenced)
    states: dict[str, dict[str, BlobState]] = {}
    for tenant, digests in wanted.items():
        ordered = sorted(digests)
        found = states.setdefault(tenant, {})
        for offset in range(0, len(ordered), _BLOB_QUERY_CHUNK):
            rows = connection.execute(
                select(blobs.c.digest, blobs.c.size, blobs.c.erased_us).where(
                    blobs.c.tenant == tenant,
                    blobs.c.digest.in_(ordered[offset : offset + _BLOB_QUERY_CHUNK]),
                )
            )
            for digest, size, erased_us in rows:
                found[digest] = (
                    ("present", size, None)
                    if erased_us is None
                    else ("erased", size, from_micros(erased_us))
                )
    return states
