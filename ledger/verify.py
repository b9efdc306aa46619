"""Full verification of a stored log (fsck), in one streaming pass and constant memory.

For each entry, in index order, it:
1. checks that the index is the next one (no row missing or out of place);
2. recomputes the leaf hash from the stored envelope bytes, index, integration time, tenant
   and the previous entry's leaf (the hash chain) and compares it with the stored leaf;
3. checks that integration time never runs backwards;
4. optionally re-checks the record's signature against the key registry;
5. folds the leaf into the tree, and compares every perfect subtree it completes with the
   stored node that proofs are served from;
6. at every checkpointed size, compares the recomputed root with the checkpoint, whose
   signature must verify under the ledger's verifier key.
Finally the latest checkpoint must not claim more entries than the log holds.
It stops at the first fault and names the entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from ledger import merkle
from ledger._parallel import WorkerPool
from ledger.admission import authenticate, parse_record
from ledger.entry import GENESIS_PREV, entry_leaf_hash
from ledger.errors import NoteError, RecordRejected
from ledger.keyring import ServiceKey, list_keys
from ledger.note import NoteVerifier, open_checkpoint
from ledger.schema import checkpoints, tree_nodes

_STREAM_BATCH = 5_000
_ENTRY_QUERY = (
    "SELECT idx, tenant, envelope, integrated_us, leaf_hash FROM log_entries ORDER BY idx"
)


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


def verify_log(
    engine: Engine,
    verifier: NoteVerifier,
    origin: str,
    *,
    signatures: bool = False,
    pool: WorkerPool | None = None,
) -> VerifyReport:
    report = VerifyReport()
    # One snapshot for the whole pass, so appends running meanwhile are simply not seen.
    options: dict[str, Any] = (
        {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    )
    with engine.connect() as connection, connection.execution_options(**options).begin():
        try:
            _verify(
                connection,
                verifier=verifier,
                origin=origin,
                signatures=signatures,
                pool=pool,
                report=report,
            )
        except _Stop as stop:
            report.fault = stop.fault
    return report


def _verify(
    connection: Connection,
    *,
    verifier: NoteVerifier,
    origin: str,
    signatures: bool,
    pool: WorkerPool | None,
    report: VerifyReport,
) -> None:
    keys = {key.keyid: key for key in list_keys(connection)} if signatures else {}
    checkpoint_stream = _checkpoints(connection)
    next_checkpoint = next(checkpoint_stream, None)
    tree = merkle.CompactRange()
    if next_checkpoint is not None and next_checkpoint[0] == 0:
        _check_checkpoint(next_checkpoint, tree, verifier, origin, report)
        next_checkpoint = next(checkpoint_stream, None)
    prev_leaf = GENESIS_PREV
    prev_time = 0
    expected = 0
    for rows in _stream(connection, _ENTRY_QUERY):
        # 4. Checked first for the batch, but raised only if no hash fault comes before it,
        # so the report always names the lowest bad index.
        signature_fault = _first_signature_fault(rows, keys, pool) if signatures else None
        completed: list[tuple[merkle.NodeId, bytes]] = []
        for index, tenant, envelope, integrated_us, stored_leaf in rows:
            if signature_fault is not None and signature_fault.index <= index:
                raise _Stop(signature_fault)
            # 1.
            if index != expected:
                raise _Stop(
                    Fault(expected, "missing", f"entry {expected} is absent; next is {index}")
                )
            # 2.
            digest = hashlib.sha256(envelope).digest()
            leaf = entry_leaf_hash(index, integrated_us, prev_leaf, digest, tenant)
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
            completed.extend(tree.append(leaf))
            prev_leaf, prev_time, expected = leaf, integrated_us, index + 1
            # 6.
            while next_checkpoint is not None and next_checkpoint[0] == tree.size:
                _check_checkpoint(next_checkpoint, tree, verifier, origin, report)
                next_checkpoint = next(checkpoint_stream, None)
        report.signatures_checked += len(rows) if signatures else 0
        _check_nodes(connection, completed)
    report.size, report.root_hash = tree.size, tree.root()
    if next_checkpoint is not None:
        raise _Stop(
            Fault(
                tree.size,
                "truncated",
                f"a checkpoint commits to {next_checkpoint[0]} entries "
                f"but the log ends at {tree.size}",
            )
        )
    if report.checkpoints_checked == 0:
        report.notes.append("no checkpoint covers this log yet")


def _stream(connection: Connection, query: str) -> Iterator[list[tuple[Any, ...]]]:
    """Rows in batches straight from the driver: a server-side cursor on PostgreSQL (so the
    log is never held in memory) and SQLite's stepwise cursor."""
    driver = connection.connection.driver_connection
    assert driver is not None
    if connection.dialect.name == "postgresql":
        cursor = driver.cursor(name="prov_verify", binary=True)
        cursor.itersize = _STREAM_BATCH
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(query)
        while rows := cursor.fetchmany(_STREAM_BATCH):
            yield rows
    finally:
        cursor.close()


def _checkpoints(connection: Connection) -> Iterator[tuple[int, bytes, str]]:
    query = select(checkpoints.c.tree_size, checkpoints.c.root_hash, checkpoints.c.note)
    for row in connection.execute(query.order_by(checkpoints.c.tree_size)).yield_per(1000):
        yield row[0], bytes(row[1]), row[2]


def _check_checkpoint(
    stored: tuple[int, bytes, str],
    tree: merkle.CompactRange,
    verifier: NoteVerifier,
    origin: str,
    report: VerifyReport,
) -> None:
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
    report.checkpoints_checked += 1


def _check_nodes(connection: Connection, completed: list[tuple[merkle.NodeId, bytes]]) -> None:
    """Compare recomputed perfect subtrees with the stored ones, one range query per level."""
    by_level: dict[int, list[tuple[int, bytes]]] = {}
    for (level, index), node_hash in completed:
        by_level.setdefault(level, []).append((index, node_hash))
    for level, nodes in by_level.items():
        first, last = nodes[0][0], nodes[-1][0]
        stored = {
            row.idx: bytes(row.hash)
            for row in connection.execute(
                select(tree_nodes.c.idx, tree_nodes.c.hash).where(
                    tree_nodes.c.level == level, tree_nodes.c.idx.between(first, last)
                )
            )
        }
        for index, node_hash in nodes:
            if stored.get(index) != node_hash:
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
            authenticate(parse_record(envelope, max_bytes=len(envelope)), keys, allow_revoked=True)
        except RecordRejected as error:
            return Fault(index, "bad-signature", str(error))
        return None

    faults = pool.map(check, rows) if pool is not None else map(check, rows)
    return next((fault for fault in faults if fault is not None), None)
