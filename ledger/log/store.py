"""Reads of the stored log that several parts of the core share: the head, tree nodes,
checkpoints and single entries."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Integer,
    LargeBinary,
    Row,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
    text,
)

from ledger.errors import MissingTreeNodes, RecordRejected
from ledger.log.entry import GENESIS_PREV, entry_bytes
from ledger.log.merkle import CompactRange, NodeId
from ledger.records import dsse
from ledger.storage.schema import checkpoints, ledger_info, log_entries, metadata, tree_nodes


@dataclass(frozen=True, slots=True)
class Head:
    size: int
    last_leaf: bytes
    last_integrated_us: int


def read_head(connection: Connection) -> Head:
    row = connection.execute(
        select(log_entries.c.idx, log_entries.c.leaf_hash, log_entries.c.integrated_us)
        .order_by(log_entries.c.idx.desc())
        .limit(1)
    ).first()
    if row is None:
        return Head(0, GENESIS_PREV, 0)
    return Head(row.idx + 1, bytes(row.leaf_hash), row.integrated_us)


# PostgreSQL: every wanted node in one statement whose text never changes, so it is compiled
# and planned once; building an OR of per-level IN lists cost more than the queries did.
_POSTGRES_NODES = text(
    """
    SELECT 0 AS level, e.idx, e.leaf_hash AS hash FROM log_entries e
    WHERE e.idx = ANY(CAST(:leaves AS bigint[]))
    UNION ALL
    SELECT t.level, t.idx, t.hash FROM tree_nodes t
    JOIN unnest(CAST(:levels AS smallint[]), CAST(:indexes AS bigint[])) AS w(level, idx)
    ON t.level = w.level AND t.idx = w.idx
    """
)


def fetch_nodes(connection: Connection, wanted: set[NodeId]) -> Mapping[NodeId, bytes]:
    """Stored perfect-subtree hashes for `wanted`, in one or two indexed queries."""
    if connection.dialect.name == "postgresql":
        inner = [(level, index) for level, index in wanted if level > 0]
        rows = connection.execute(
            _POSTGRES_NODES,
            {
                "leaves": [index for level, index in wanted if level == 0],
                "levels": [level for level, _ in inner],
                "indexes": [index for _, index in inner],
            },
        )
        return {(row.level, row.idx): bytes(row.hash) for row in rows}
    found: dict[NodeId, bytes] = {}
    leaves = sorted(index for level, index in wanted if level == 0)
    if leaves:
        rows = connection.execute(
            select(log_entries.c.idx, log_entries.c.leaf_hash).where(log_entries.c.idx.in_(leaves))
        )
        found.update(((0, row.idx), bytes(row.leaf_hash)) for row in rows)
    by_level: dict[int, list[int]] = {}
    for level, index in wanted:
        if level > 0:
            by_level.setdefault(level, []).append(index)
    if by_level:
        # One `level = ? AND idx IN (…)` branch per level: both engines answer that from the
        # primary key, whereas SQLite scans the whole table for a row-value IN.
        rows = connection.execute(
            select(tree_nodes.c.level, tree_nodes.c.idx, tree_nodes.c.hash).where(
                or_(
                    *(
                        and_(tree_nodes.c.level == level, tree_nodes.c.idx.in_(sorted(indexes)))
                        for level, indexes in sorted(by_level.items())
                    )
                )
            )
        )
        found.update(((row.level, row.idx), bytes(row.hash)) for row in rows)
    return found


def fetch_required_nodes(connection: Connection, wanted: set[NodeId]) -> dict[NodeId, bytes]:
    """`fetch_nodes`, raising `MissingTreeNodes` (lowest first) unless every node is stored."""
    found = dict(fetch_nodes(connection, wanted))
    missing = sorted(wanted - found.keys(), key=lambda node: (node[1] << node[0], node[0]))
    if missing:
        raise MissingTreeNodes(missing)
    return found


def read_tree(connection: Connection, size: int) -> CompactRange:
    """The tree of the first `size` entries, rebuilt from their stored peaks alone."""
    wanted = CompactRange.peak_nodes(size)
    found = fetch_required_nodes(connection, set(wanted))
    return CompactRange(size, [found[node] for node in wanted])


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str


def latest_checkpoint(connection: Connection) -> StoredCheckpoint | None:
    row = connection.execute(
        select(checkpoints.c.tree_size, checkpoints.c.root_hash, checkpoints.c.note)
        .order_by(checkpoints.c.tree_size.desc())
        .limit(1)
    ).first()
    return None if row is None else StoredCheckpoint(row[0], bytes(row[1]), row[2])


def checkpoint_at(connection: Connection, tree_size: int) -> StoredCheckpoint | None:
    """The stored signed checkpoint of exactly `tree_size` entries, if the log signed one."""
    row = connection.execute(
        select(checkpoints.c.tree_size, checkpoints.c.root_hash, checkpoints.c.note).where(
            checkpoints.c.tree_size == tree_size
        )
    ).first()
    return None if row is None else StoredCheckpoint(row[0], bytes(row[1]), row[2])


@dataclass(frozen=True, slots=True)
class StoredEntry:
    index: int
    tenant: str
    record_id: str
    payload_type: str
    envelope: bytes
    integrated_us: int
    leaf_hash: bytes


_ENTRY_COLUMNS = (
    log_entries.c.idx,
    log_entries.c.tenant,
    log_entries.c.record_id,
    log_entries.c.payload_type,
    log_entries.c.envelope,
    log_entries.c.integrated_us,
    log_entries.c.leaf_hash,
)


def _stored_entry(row: Row[Any, Any, Any, Any, Any, Any, Any]) -> StoredEntry:
    return StoredEntry(row[0], row[1], row[2], row[3], bytes(row[4]), row[5], bytes(row[6]))


def read_entry(connection: Connection, index: int) -> StoredEntry | None:
    row = connection.execute(select(*_ENTRY_COLUMNS).where(log_entries.c.idx == index)).first()
    return None if row is None else _stored_entry(row)


@dataclass(frozen=True, slots=True)
class RebuiltEntry:
    """A stored entry with the entry bytes its leaf commits to, rebuilt from the stored
    envelope and the previous stored leaf. `leaf` is recomputed from them, so comparing it
    with `stored.leaf_hash` checks the row."""

    stored: StoredEntry
    prev_leaf: bytes
    envelope_digest: bytes
    data: bytes
    leaf: bytes


def rebuild_entries(connection: Connection, start: int, end: int) -> list[RebuiltEntry]:
    """Entries `start` to `end - 1` with their entry bytes (fewer if the log is shorter)."""
    # Only the previous leaf is needed, not its envelope.
    previous = (
        connection.execute(
            select(log_entries.c.leaf_hash).where(log_entries.c.idx == start - 1)
        ).scalar_one_or_none()
        if start > 0
        else None
    )
    prev_leaf = bytes(previous) if previous is not None else GENESIS_PREV
    rebuilt = []
    for entry in read_entries(connection, start, end):
        digest = hashlib.sha256(entry.envelope).digest()
        data = entry_bytes(entry.index, entry.integrated_us, prev_leaf, digest, entry.tenant)
        leaf = hashlib.sha256(b"\x00" + data).digest()
        rebuilt.append(RebuiltEntry(entry, prev_leaf, digest, data, leaf))
        prev_leaf = entry.leaf_hash
    return rebuilt


def read_entries(connection: Connection, start: int, end: int) -> list[StoredEntry]:
    """Entries `start` to `end - 1`, in index order (fewer if the log is shorter)."""
    rows = connection.execute(
        select(*_ENTRY_COLUMNS)
        .where(log_entries.c.idx >= start, log_entries.c.idx < end)
        .order_by(log_entries.c.idx)
        # The limit tells the planner how few rows a range holds: without fresh statistics
        # PostgreSQL guessed thousands for a one-entry range and scanned in parallel.
        .limit(max(0, end - start))
    )
    return [_stored_entry(row) for row in rows]


def read_info(connection: Connection, name: str) -> str | None:
    return connection.execute(
        select(ledger_info.c.value).where(ledger_info.c.name == name)
    ).scalar_one_or_none()


def bulk_insert(
    connection: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert many rows straight through the driver, inside the caller's transaction.

    This is the sequencer's hot path: SQLAlchemy's per-value bind processing cost more
    than SQLite's own insert work, and PostgreSQL's binary COPY beats any INSERT.
    """
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        assert driver is not None
        names = ", ".join(columns)
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(_postgres_types(table, columns))
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns))
    connection.exec_driver_sql(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", list(rows)
    )


def _postgres_types(table: str, columns: Sequence[str]) -> list[str]:
    kinds = {
        BigInteger: "int8",
        SmallInteger: "int2",
        Integer: "int4",
        Boolean: "bool",
        LargeBinary: "bytea",
        String: "text",
        Text: "text",
    }
    column_types = metadata.tables[table].c
    return [
        next(name for kind, name in kinds.items() if isinstance(column_types[c].type, kind))
        for c in columns
    ]


_IndexRow = TypeVar("_IndexRow")
_BACKFILL_BATCH = 2_000


def backfill_index(
    connection: Connection,
    index: Table,
    payload_type: str,
    index_row: Callable[[int, str, bytes], _IndexRow],
    insert_rows: Callable[[Connection, list[_IndexRow]], None],
) -> int:
    """Index every entry of `payload_type` after the last one `index` holds (for a migration
    that adds an index to an existing ledger); returns how many rows it wrote.

    `index_row` builds a row from an entry's log index, tenant and payload, and raises
    `RecordRejected` for a payload that no longer decodes: `prov verify` names that entry,
    and the index skips it.
    """
    start = connection.execute(
        select(index.c.idx).order_by(index.c.idx.desc()).limit(1)
    ).scalar_one_or_none()
    after = -1 if start is None else start
    written = 0
    while True:
        rows = connection.execute(
            select(log_entries.c.idx, log_entries.c.tenant, log_entries.c.envelope)
            .where(log_entries.c.idx > after, log_entries.c.payload_type == payload_type)
            .order_by(log_entries.c.idx)
            .limit(_BACKFILL_BATCH)
        ).all()
        if not rows:
            return written
        batch = []
        for idx, tenant, envelope in rows:
            try:
                payload = dsse.payload_bytes(dsse.decode_envelope(bytes(envelope)))
                batch.append(index_row(idx, tenant, payload))
            except RecordRejected:
                continue
        insert_rows(connection, batch)
        written += len(batch)
        after = rows[-1].idx


_STREAM_BATCH = 5_000


def first_index_at(connection: Connection, at_us: int, size: int) -> int:
    """The first log index whose integration time is at or after `at_us` (`size`, the log's
    size, if none is), by binary search over the primary key: times never run backwards
    along the log."""
    low, high = 0, size
    while low < high:
        middle = (low + high) // 2
        us = connection.execute(
            select(log_entries.c.integrated_us).where(log_entries.c.idx == middle)
        ).scalar_one()
        if us < at_us:
            low = middle + 1
        else:
            high = middle
    return low


def stream_entries(connection: Connection, start: int, end: int) -> Iterator[list[tuple[Any, ...]]]:
    """`(idx, tenant, envelope, integrated_us, leaf_hash)` of entries [start, end), in index
    order and in batches, straight from the driver: a server-side cursor on PostgreSQL (so
    the log is never held in memory) and SQLite's stepwise cursor."""
    query = (
        "SELECT idx, tenant, envelope, integrated_us, leaf_hash FROM log_entries "
        f"WHERE idx >= {int(start)} AND idx < {int(end)} ORDER BY idx"
    )
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
