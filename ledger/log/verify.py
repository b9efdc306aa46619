"""Full verification of a stored log (fsck), streaming, in constant memory.

For each entry, in index order, it:
1. checks that the index is the next one (no row missing or out of place);
2. recomputes the leaf hash from the stored envelope bytes, index, integration time, tenant
   and the previous entry's leaf (the hash chain) and compares it with the stored leaf;
3. checks that integration time never runs backwards;
4. optionally re-checks the record's signature against the key registry;
5. folds the leaf into the tree, and compares every perfect subtree it completes with the
   stored node that proofs are served from;
6. at every checkpointed size, compares the recomputed root with the checkpoint, whose
   signature must verify under the ledger's verifier key and name the log's origin.
Finally the latest checkpoint must not claim more entries than the log holds.

A large log is cut into segments aligned to a power of two, verified by separate
processes. A segment starts from the stored leaf before it and the stored peaks of the
tree to its left; those are themselves checked by the segments that cover them, so every
stored byte is still checked exactly once, and the lowest faulty index is reported.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from ledger._parallel import WorkerPool
from ledger.errors import MissingTreeNodes, NoteError, RecordRejected
from ledger.keys.keyring import ServiceKey, list_keys
from ledger.log import merkle
from ledger.log.entry import ENTRY_HEAD, GENESIS_PREV, MAGIC
from ledger.log.note import NoteVerifier, open_checkpoint
from ledger.log.store import (
    latest_checkpoint,
    read_entry,
    read_head,
    read_tree,
    stream_entries,
)
from ledger.records.signed import parse_record, verify_signer
from ledger.storage.db import make_engine

# Below this many entries, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 200_000
_SEGMENTS_PER_WORKER = 4


@dataclass(frozen=True, slots=True)
class Fault:
    index: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"entry {self.index}: {self.kind}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    """The result of verification; true when the log verified."""

    size: int = 0
    root_hash: bytes = merkle.EMPTY_ROOT
    checkpoints_checked: int = 0
    signatures_checked: int = 0
    fault: Fault | None = None
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.fault is None


class _Stop(Exception):
    def __init__(self, fault: Fault) -> None:
        self.fault = fault


@dataclass(frozen=True, slots=True)
class _Segment:
    start: int
    end: int
    signatures: bool
    verifier_key: str
    origin: str


def verify_log(
    engine: Engine,
    verifier: NoteVerifier,
    origin: str,
    *,
    signatures: bool = False,
    pool: WorkerPool | None = None,
    processes: int = 1,
    parallel_from: int = PARALLEL_THRESHOLD,
) -> VerifyReport:
    report = VerifyReport()
    with engine.connect() as connection, connection.begin():
        # The size and the latest checkpoint come from one snapshot: an append commits its
        # entries and its checkpoint together, so a concurrent append is seen whole or not.
        size = read_head(connection).size
        latest = latest_checkpoint(connection)
    segments = [
        _Segment(start, end, signatures, verifier.encode(), origin)
        for start, end in plan_segments(size, processes, parallel_from)
    ]
    if len(segments) > 1:
        results = _verify_in_parallel(engine, segments, processes, pool)
    else:
        results = [_verify_segment(engine, segments[0], pool)] if segments else []
    for result in results:
        report.checkpoints_checked += result.checkpoints_checked
        report.signatures_checked += result.signatures_checked
        if result.fault is not None:
            report.fault = result.fault
            return report
        report.root_hash = result.root_hash
    report.size = size
    with engine.connect() as connection:
        try:
            if size == 0:
                report.checkpoints_checked += _check_checkpoints(
                    connection, merkle.CompactRange(), 0, 0, verifier, origin
                )
            if latest is not None and latest.tree_size > size:
                raise _Stop(
                    Fault(
                        size,
                        "truncated",
                        f"a checkpoint commits to {latest.tree_size} entries "
                        f"but the log ends at {size}",
                    )
                )
        except _Stop as stop:
            report.fault = stop.fault
    if latest is None:
        report.notes.append("no checkpoint covers this log yet")
    return report


def _verify_in_parallel(
    engine: Engine, segments: list[_Segment], processes: int, pool: WorkerPool | None
) -> list[_SegmentResult]:
    """Verify segments on worker processes and in this one at once.

    This process works forwards from the first segment while the workers, which need a
    moment to start, work backwards from the last; they meet in the middle.
    """
    url = engine.url.render_as_string(hide_password=False)
    results: dict[int, _SegmentResult] = {}
    front, back = 0, len(segments) - 1
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes - 1, mp_context=context) as executor:
        running: dict[Future[_SegmentResult], int] = {}
        while front <= back or running:
            for future in [future for future in running if future.done()]:
                results[running.pop(future)] = future.result()
            # Keep one segment queued per worker, so none idles between segments.
            while len(running) < 2 * (processes - 1) and front <= back:
                running[executor.submit(_verify_segment_at, url, segments[back])] = back
                back -= 1
            if front <= back:
                results[front] = _verify_segment(engine, segments[front], pool)
                front += 1
            elif running:
                wait(running, return_when=FIRST_COMPLETED)
    return [results[position] for position in range(len(segments))]


def plan_segments(
    size: int, processes: int, parallel_from: int = PARALLEL_THRESHOLD
) -> list[tuple[int, int]]:
    """Cut [0, size) into ranges whose starts are multiples of one power of two."""
    if size == 0:
        return []
    if processes < 2 or size < parallel_from:
        return [(0, size)]
    width = 1 << max(0, (size // (processes * _SEGMENTS_PER_WORKER)).bit_length())
    return [(start, min(start + width, size)) for start in range(0, size, width)]


@dataclass(slots=True)
class _SegmentResult:
    root_hash: bytes = merkle.EMPTY_ROOT
    checkpoints_checked: int = 0
    signatures_checked: int = 0
    fault: Fault | None = None


def _verify_segment_at(url: str, segment: _Segment) -> _SegmentResult:
    engine = make_engine(url)
    try:
        return _verify_segment(engine, segment, WorkerPool(1))
    finally:
        engine.dispose()


def _verify_segment(engine: Engine, segment: _Segment, pool: WorkerPool | None) -> _SegmentResult:
    result = _SegmentResult()
    with engine.connect() as connection, connection.begin():
        try:
            _verify_entries(connection, segment, pool, result)
        except _Stop as stop:
            result.fault = stop.fault
    return result


def _verify_entries(
    connection: Connection, segment: _Segment, pool: WorkerPool | None, result: _SegmentResult
) -> None:
    start, end = segment.start, segment.end
    verifier = NoteVerifier.parse(segment.verifier_key)
    keys = {key.keyid: key for key in list_keys(connection)} if segment.signatures else {}
    prev_leaf, prev_time = GENESIS_PREV, 0
    if start > 0:
        before = read_entry(connection, start - 1)
        if before is None:
            raise _Stop(Fault(start - 1, "missing", f"entry {start - 1} is absent"))
        prev_leaf, prev_time = before.leaf_hash, before.integrated_us
    tree = _tree_left_of(connection, start)
    # A checkpoint at a segment's start belongs to the segment before it (or, at 0, here).
    checkpoints = _checkpoints_between(connection, start + (start > 0), end)
    next_checkpoint = next(checkpoints, None)
    if next_checkpoint is not None and next_checkpoint[0] == 0:
        result.checkpoints_checked += _check_one(next_checkpoint, tree, verifier, segment.origin)
        next_checkpoint = next(checkpoints, None)

    sha256 = hashlib.sha256
    pack = ENTRY_HEAD.pack
    tenant_bytes: dict[str, bytes] = {}
    expected = start
    for rows in stream_entries(connection, start, end):
        # 4. Checked first for the batch, but raised only if no hash fault comes before it,
        # so the report always names the lowest bad index.
        signature_fault = _first_signature_fault(rows, keys, pool) if segment.signatures else None
        completed: list[tuple[merkle.NodeId, bytes]] = []
        for index, tenant, envelope, integrated_us, stored_leaf in rows:
            if signature_fault is not None and signature_fault.index <= index:
                raise _Stop(signature_fault)
            # 1.
            if index != expected:
                raise _Stop(
                    Fault(expected, "missing", f"entry {expected} is absent; next is {index}")
                )
            # 2. (entry_bytes and entry_leaf_hash of ledger.entry, inlined: this loop is the
            # whole cost of verification)
            encoded_tenant = tenant_bytes.get(tenant)
            if encoded_tenant is None:
                encoded_tenant = tenant_bytes[tenant] = tenant.encode()
            head = pack(
                MAGIC,
                index,
                integrated_us,
                prev_leaf,
                sha256(envelope).digest(),
                len(encoded_tenant),
            )
            leaf = sha256(b"\x00" + head + encoded_tenant).digest()
            if leaf != stored_leaf:
                raise _Stop(
                    Fault(
                        index,
                        "leaf-mismatch",
                        "stored envelope, tenant, time or chain link do not hash to the "
                        f"stored leaf {bytes(stored_leaf).hex()}",
                    )
                )
            # 3.
            if integrated_us < prev_time:
                raise _Stop(Fault(index, "time-regression", "integration time runs backwards"))
            # 5.
            completed += tree.append(leaf)
            prev_leaf, prev_time, expected = leaf, integrated_us, index + 1
            # 6.
            while next_checkpoint is not None and next_checkpoint[0] == expected:
                result.checkpoints_checked += _check_one(
                    next_checkpoint, tree, verifier, segment.origin
                )
                next_checkpoint = next(checkpoints, None)
        result.signatures_checked += len(rows) if segment.signatures else 0
        _check_nodes(connection, completed)
    if expected != end:
        raise _Stop(Fault(expected, "missing", f"entry {expected} is absent"))
    result.root_hash = tree.root()


def _tree_left_of(connection: Connection, start: int) -> merkle.CompactRange:
    """The tree of the entries before `start`, rebuilt from their stored peaks."""
    try:
        return read_tree(connection, start)
    except MissingTreeNodes as error:
        level, index = error.nodes[0]
        raise _Stop(Fault(index << level, "tree-node", str(error))) from None


def _checkpoints_between(
    connection: Connection, start: int, end: int
) -> Iterator[tuple[int, bytes, str]]:
    """Stored checkpoints whose size falls in [start, end], smallest first."""
    rows = connection.exec_driver_sql(
        "SELECT tree_size, root_hash, note FROM checkpoints "
        f"WHERE tree_size >= {int(start)} AND tree_size <= {int(end)} ORDER BY tree_size"
    )
    for row in rows.yield_per(1000):
        yield row[0], bytes(row[1]), row[2]


def _check_checkpoints(
    connection: Connection,
    tree: merkle.CompactRange,
    start: int,
    end: int,
    verifier: NoteVerifier,
    origin: str,
) -> int:
    """Check every stored checkpoint with a size in [start, end]; return how many."""
    return sum(
        _check_one(stored, tree, verifier, origin)
        for stored in _checkpoints_between(connection, start, end)
    )


def _check_one(
    stored: tuple[int, bytes, str], tree: merkle.CompactRange, verifier: NoteVerifier, origin: str
) -> int:
    size, root_column, note = stored
    last = max(size - 1, 0)
    try:
        checkpoint = open_checkpoint(note, verifier, origin)
    except NoteError as error:
        raise _Stop(Fault(last, "checkpoint-signature", f"checkpoint {size}: {error}")) from None
    root = tree.root()
    if checkpoint.size != size or checkpoint.root_hash != root or root_column != root:
        raise _Stop(
            Fault(
                last,
                "checkpoint-mismatch",
                f"the signed checkpoint for size {size} has root "
                f"{checkpoint.root_hash.hex()}, but entries 0..{last} hash to {root.hex()}",
            )
        )
    return 1


def _check_nodes(connection: Connection, completed: list[tuple[merkle.NodeId, bytes]]) -> None:
    """Compare recomputed perfect subtrees with the stored ones, one range query per level.

    Straight through the driver and compared as whole lists: there are about as many
    stored nodes as entries, so this runs nearly once per entry.
    """
    by_level: dict[int, list[tuple[int, bytes]]] = {}
    for (level, index), node_hash in completed:
        by_level.setdefault(level, []).append((index, node_hash))
    driver = connection.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        for level, nodes in by_level.items():
            cursor.execute(
                "SELECT idx, hash FROM tree_nodes "
                f"WHERE level = {int(level)} AND idx >= {int(nodes[0][0])} "
                f"AND idx <= {int(nodes[-1][0])} ORDER BY idx"
            )
            stored = [(index, bytes(node_hash)) for index, node_hash in cursor.fetchall()]
            if stored != nodes:
                _raise_node_fault(level, nodes, dict(stored))
    finally:
        cursor.close()


def _raise_node_fault(level: int, nodes: list[tuple[int, bytes]], stored: dict[int, bytes]) -> None:
    index = next(index for index, node_hash in nodes if stored.get(index) != node_hash)
    width = 1 << level
    raise _Stop(
        Fault(
            index * width,
            "tree-node",
            f"stored tree node at level {level} over entries "
            f"{index * width}..{(index + 1) * width - 1} is wrong or missing",
        )
    )


def _first_signature_fault(
    rows: list[tuple[Any, ...]], keys: dict[str, ServiceKey], pool: WorkerPool | None
) -> Fault | None:
    def check(row: tuple[Any, ...]) -> Fault | None:
        index, envelope = row[0], bytes(row[2])
        try:
            verify_signer(parse_record(envelope, max_bytes=len(envelope)), keys, allow_revoked=True)
        except RecordRejected as error:
            return Fault(index, "bad-signature", str(error))
        return None

    faults = pool.map(check, rows) if pool is not None else map(check, rows)
    return next((fault for fault in faults if fault is not None), None)
