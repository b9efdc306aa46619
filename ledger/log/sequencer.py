"""The sequencer: appends admitted records to the log, one transaction per batch.

Under the log's write lock it reads the head, drops idempotent retries, refuses records whose
delegation chain was revoked or whose invocation is replayed (rules 9 and 10, which depend on
what the log holds), gives each new record the next index, chains its leaf to the previous
one, stores the perfect subtree hashes the batch completes and the index rows of its
records, answers a policy version registered again with the same document as a retry and
refuses one registered with another (`ledger.indexes.policies.PolicyGuard`), marks the
decisions its context changes made stale (`ledger.indexes.freshness`), and signs a
checkpoint of the new tree, all in one commit. Nothing is acknowledged
before that commit, and a batch that fails leaves nothing behind.

`append_made` appends records the ledger makes from what the log holds (erasures, retention
rules, legal holds): they are decided, placed and indexed in one transaction under the lock.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import sqlalchemy.exc
from msgspec.structs import replace as replace_struct
from sqlalchemy import Connection, Engine, String, any_, bindparam, insert, select
from sqlalchemy.dialects.postgresql import ARRAY

from ledger.admission import Admitted
from ledger.errors import (
    IdConflict,
    LedgerError,
    MonitorVersionConflict,
    RecordRejected,
    RecordUnstorable,
)
from ledger.indexes.blob_refs import insert_refs
from ledger.indexes.decisions import insert_index_rows
from ledger.indexes.delegations import AuthorityGuard, AuthorityRow, insert_authority_rows
from ledger.indexes.freshness import FreshnessBatch, write_batch
from ledger.indexes.monitors import MonitorRow, applied_version, insert_monitor_rows
from ledger.indexes.policies import (
    PolicyCheckRow,
    PolicyGuard,
    PolicyRow,
    StoredPolicy,
    insert_policy_check_rows,
    insert_policy_rows,
)
from ledger.indexes.replays import ReplayRow, insert_replay_rows
from ledger.log.entry import entry_leaf_hash
from ledger.log.merkle import CompactRange
from ledger.log.note import Checkpoint, NoteSigner
from ledger.log.store import Head, bulk_insert, read_head, read_tree
from ledger.monitors.live import LiveMonitors, Made
from ledger.notify.outbox import enqueue_breaches, enqueue_stale
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.monitor import BREACH_PAYLOAD_TYPE, BreachRecord, MonitorReading
from ledger.storage.db import write_transaction
from ledger.storage.schema import checkpoints, log_entries


@dataclass(frozen=True, slots=True)
class Appended:
    """Where a record sits in the log. `created` is False for an idempotent retry."""

    index: int
    leaf_hash: bytes
    integrated_us: int
    tenant: str
    record_id: str
    envelope_digest: bytes
    created: bool
    # For a context change appended now: how many decisions it made stale.
    invalidated: int | None = None
    # For a decision appended now: the monitors it counted toward (`ledger.monitors.live`).
    monitors: tuple[MonitorReading, ...] = ()


ENTRY_COLUMNS = (
    "idx",
    "tenant",
    "record_id",
    "payload_type",
    "envelope",
    "integrated_us",
    "leaf_hash",
)

_log = logging.getLogger(__name__)


def now_micros() -> int:
    return time.time_ns() // 1000


class Frontier:
    """The tree's peaks as this process last committed them, so that the next batch need
    not read them back. They are used only when the head read under the lock is still the
    one they end at (same size, same last leaf, which commits to every earlier entry);
    after another process has appended, the peaks are read from the database again."""

    def __init__(self) -> None:
        # One immutable tuple, replaced whole, so that threads never see half an update.
        self._known: tuple[int, bytes, tuple[bytes, ...]] | None = None

    def tree_at(self, connection: Connection, head: Head) -> CompactRange:
        known = self._known
        if known is not None and known[:2] == (head.size, head.last_leaf):
            return CompactRange(head.size, known[2])
        return read_tree(connection, head.size)

    def remember(self, tree: CompactRange, last_leaf: bytes) -> None:
        self._known = (tree.size, last_leaf, tuple(tree.peaks))


def append(
    engine: Engine,
    records: Sequence[Admitted],
    signer: NoteSigner,
    origin: str,
    frontier: Frontier | None = None,
    monitors: LiveMonitors | None = None,
) -> list[Appended | RecordRejected]:
    """Append a batch; results line up with `records`. A record refused here is an
    `IdConflict` or, for rules 9 and 10, a `DelegationInvalid`."""
    frontier = frontier or Frontier()
    monitors = monitors or LiveMonitors()
    try:
        with write_transaction(engine) as connection:
            results, tree, last_leaf = _append_locked(
                connection, records, signer, origin, frontier, monitors
            )
    except BaseException:
        monitors.forget()  # the windows counted a batch that never committed
        raise
    # Only once the batch has committed.
    frontier.remember(tree, last_leaf)
    monitors.remember(tree.size, last_leaf)
    return results


@dataclass(frozen=True, slots=True)
class MadeBatch:
    """Records the ledger makes from what the log holds (`append_made`), already signed,
    and what follows from their places, written in the same transaction."""

    records: Sequence[Admitted]
    then: Callable[[Connection, list[Appended]], None] | None = None


def append_made(
    engine: Engine,
    make: Callable[[Connection], MadeBatch],
    signer: NoteSigner,
    origin: str,
    frontier: Frontier | None = None,
    monitors: LiveMonitors | None = None,
) -> list[Appended]:
    """Append records the ledger makes, deciding them under the log's write lock: `make`
    reads what it needs on the locked connection (and may write rows of its own), then the
    records are placed and `then` writes what follows from their indexes, all in one
    commit. An error raised by `make` or `then`, or a record refused, leaves nothing
    behind (the refusal is raised). A batch of no records commits what `make` wrote."""
    frontier = frontier or Frontier()
    monitors = monitors or LiveMonitors()
    placed: tuple[CompactRange, bytes] | None = None
    counted = False
    try:
        with write_transaction(engine) as connection:
            batch = make(connection)
            appended: list[Appended] = []
            if batch.records:
                counted = True
                results, tree, last_leaf = _append_locked(
                    connection, batch.records, signer, origin, frontier, monitors
                )
                for result in results:
                    if isinstance(result, RecordRejected):
                        raise result
                    appended.append(result)
                placed = (tree, last_leaf)
            if batch.then is not None:
                batch.then(connection, appended)
    except BaseException:
        if counted:  # the windows counted a batch that never committed
            monitors.forget()
        raise
    if placed is not None:
        frontier.remember(*placed)
        monitors.remember(placed[0].size, placed[1])
    return appended


# Errors that say the database as a whole is unusable (unreachable, locked, timed out),
# not that one record is at fault: they fail the whole group, which may retry.
# A `LedgerError` here is about the log's own state, never one record: it fails the group too.
_FAILS_THE_GROUP = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    LedgerError,
)


def append_isolated(
    engine: Engine,
    records: Sequence[Admitted],
    signer: NoteSigner,
    origin: str,
    frontier: Frontier | None = None,
    monitors: LiveMonitors | None = None,
) -> list[Appended | RecordRejected]:
    """`append`, except that a record the database refuses fails alone.

    When the batch's transaction fails for a reason other than the database being down,
    nothing of it was committed; the batch is split in halves, each appended in its own
    transaction, until the record at fault stands alone and is refused as
    `RecordUnstorable`. Arrival order is kept, and a good batch still costs one commit.
    """
    frontier = frontier or Frontier()
    monitors = monitors or LiveMonitors()
    try:
        return append(engine, records, signer, origin, frontier, monitors)
    except Exception as error:
        # The root error also covers malformed input (a token, a policy: the `ValueError`
        # ones), which is one record's fault like any other refusal, not the log's state.
        if isinstance(error, _FAILS_THE_GROUP) and not isinstance(error, ValueError):
            raise
        if len(records) == 1:
            _log.warning("record could not be stored", exc_info=error)
            return [
                RecordUnstorable(
                    f"the database refused to store this record ({type(error).__name__}); "
                    "nothing of it was stored"
                )
            ]
    middle = len(records) // 2
    return append_isolated(engine, records[:middle], signer, origin, frontier, monitors) + (
        append_isolated(engine, records[middle:], signer, origin, frontier, monitors)
    )


def _append_locked(
    connection: Connection,
    records: Sequence[Admitted],
    signer: NoteSigner,
    origin: str,
    frontier: Frontier,
    monitors: LiveMonitors,
) -> tuple[list[Appended | RecordRejected], CompactRange, bytes]:
    head = read_head(connection)
    existing = _existing(connection, records)
    guard = AuthorityGuard.load(connection, (record.authority for record in records))
    registry = PolicyGuard.load(
        connection, ((r.tenant, r.policy) for r in records if r.policy is not None)
    )
    monitors.sync(connection, head)
    # Integration time never runs backwards along the log, even if clocks of two appending
    # processes disagree.
    integrated_us = max(now_micros(), head.last_integrated_us)
    log = _Placer(frontier.tree_at(connection, head), head.last_leaf, _BatchRows(integrated_us))
    results: list[Appended | RecordRejected] = []
    # Breach records the windows' expiry at this batch's time made come first.
    log.place_made(monitors.start_batch_if_new(log.tree.size, integrated_us, connection))
    applied: dict[tuple[str, str, int], str] = {}
    for record in records:
        digest = hashlib.sha256(record.raw).digest()
        key = (record.tenant, record.record_id)
        if record.policy is not None:
            # The same document under a registered version is a retry, whatever its id.
            try:
                registered = registry.registered(record.tenant, record.policy)
            except RecordRejected as conflict:
                results.append(conflict)
                continue
            if registered is not None:
                results.append(_registration(record, registered))
                continue
        stored = existing.get(key)
        if stored is not None:
            results.append(_retry_result(record, digest, stored))
            continue
        refused = guard.admit(record.tenant, record.authority) or (
            None
            if record.monitor is None
            else _monitor_conflict(connection, record.tenant, record.monitor, applied)
        )
        if refused is not None:
            results.append(refused)
            continue
        appended = log.place(record, digest)
        # A second copy of the same id later in this batch is a retry of this one.
        existing[key] = (appended, record.raw)
        if record.policy is not None:
            registry.add(
                record.tenant,
                record.policy,
                StoredPolicy(
                    appended.index,
                    appended.leaf_hash,
                    integrated_us,
                    record.record_id,
                    digest,
                    record.policy.digest,
                ),
            )
        if record.monitor is not None:
            monitors.activate(appended.index, appended.leaf_hash, record.monitor.record)
        if record.payload_type == DECISION_PAYLOAD_TYPE and monitors.watches(record.tenant):
            appended = _count_in_monitors(connection, monitors, log, record, appended)
        results.append(appended)
    rows = log.rows
    if rows.entries:
        rows.samples.extend(
            (*sample[:4], log.tree.size - 1, integrated_us, *sample[4:])
            for tenant, touched in rows.touched.items()
            for sample in monitors.samples(tenant, sorted(touched))
        )
        invalidated = rows.write(connection)
        if invalidated:
            results = [_with_invalidated(result, invalidated) for result in results]
        store_checkpoint(connection, log.tree, signer, origin, integrated_us)
    return results, log.tree, log.prev_leaf


@dataclass
class _Placer:
    """The tree and the rows as the batch grows: gives each record placed the next index."""

    tree: CompactRange
    prev_leaf: bytes
    rows: _BatchRows

    def place(self, record: Admitted, digest: bytes) -> Appended:
        index = self.tree.size
        integrated_us = self.rows.integrated_us
        leaf = entry_leaf_hash(index, integrated_us, self.prev_leaf, digest, record.tenant)
        self.rows.add(index, record, leaf)
        self.rows.nodes.extend(
            (level, node, node_hash) for (level, node), node_hash in self.tree.append(leaf)
        )
        self.prev_leaf = leaf
        return Appended(index, leaf, integrated_us, record.tenant, record.record_id, digest, True)

    def place_made(self, made: Sequence[Made]) -> list[int]:
        """Place breach records the ledger made and signed; returns their indexes."""
        indexes = []
        for item in made:
            admitted = Admitted(
                item.raw,
                BREACH_PAYLOAD_TYPE,
                item.record.tenant,
                item.record.id,
                item.keyid,
                None,
                breach=item.record,
            )
            indexes.append(self.place(admitted, hashlib.sha256(item.raw).digest()).index)
        return indexes


def _count_in_monitors(
    connection: Connection,
    monitors: LiveMonitors,
    log: _Placer,
    record: Admitted,
    appended: Appended,
) -> Appended:
    """Count a decision in its tenant's monitors, place the breach records it caused right
    after it, and answer with the monitors' readings."""
    observed = monitors.observe(
        connection,
        appended.index,
        appended.leaf_hash,
        appended.integrated_us,
        record.tenant,
        record.raw,
    )
    if observed is None:
        return appended
    placed = log.place_made(observed.made)
    readings = []
    touched = log.rows.touched.setdefault(record.tenant, set())
    for reading in observed.readings:
        # A breach is named by its position among `made` until it is placed.
        placed_reading = (
            reading
            if reading.breach is None
            else replace_struct(reading, breach=placed[-1 - reading.breach])
        )
        readings.append(placed_reading)
        touched.add((reading.monitor, reading.group or ""))
    log.rows.flags.extend(
        (appended.index, record.tenant, monitor_id, group) for monitor_id, group in observed.flagged
    )
    return replace(appended, monitors=tuple(readings))


def _monitor_conflict(
    connection: Connection,
    tenant: str,
    row: MonitorRow,
    applied: dict[tuple[str, str, int], str],
) -> MonitorVersionConflict | None:
    """A monitor version applied before (in the log or this batch) with another definition."""
    record = row.record
    key = (tenant, record.definition.id, record.version)
    digest = applied.get(key)
    if digest is None:
        stored = applied_version(connection, *key)
        digest = None if stored is None else stored[1]
    applied.setdefault(key, record.digest)
    if digest is None or digest == record.digest:
        return None
    return MonitorVersionConflict(
        f"monitor {record.definition.id!r} version {record.version} of tenant {tenant!r} was "
        "applied with another definition",
        pointer="/payload/version",
    )


@dataclass
class _BatchRows:
    """The rows a batch adds to the log and to each index, written together."""

    integrated_us: int
    entries: list[tuple[object, ...]] = field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    decisions: list[tuple[object, ...]] = field(default_factory=list)
    refs: list[tuple[str, str, int]] = field(default_factory=list)
    authority: list[tuple[int, str, AuthorityRow]] = field(default_factory=list)
    replays: list[tuple[int, str, ReplayRow]] = field(default_factory=list)
    freshness: FreshnessBatch = field(default_factory=FreshnessBatch.empty)
    policies: list[tuple[int, str, PolicyRow]] = field(default_factory=list)
    policy_checks: list[tuple[int, str, PolicyCheckRow]] = field(default_factory=list)
    monitors: list[tuple[int, str, MonitorRow]] = field(default_factory=list)
    breaches: list[tuple[int, BreachRecord]] = field(default_factory=list)
    samples: list[tuple[object, ...]] = field(default_factory=list)
    flags: list[tuple[object, ...]] = field(default_factory=list)
    # The (monitor, group) pairs each tenant's decisions moved in this batch.
    touched: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def add(self, index: int, record: Admitted, leaf: bytes) -> None:
        self.entries.append(
            (
                index,
                record.tenant,
                record.record_id,
                record.payload_type,
                record.raw,
                self.integrated_us,
                leaf,
            )
        )
        if record.index is not None:
            self.decisions.append((index, *record.index))
        if record.blobs:
            self.refs.extend((record.tenant, digest, index) for digest in record.blobs)
        if record.authority is not None:
            self.authority.append((index, record.tenant, record.authority))
        if record.replay is not None:
            self.replays.append((index, record.tenant, record.replay))
        if record.freshness is not None:
            self.freshness.add_decision(index, record.tenant, record.freshness)
        if record.change is not None:
            self.freshness.add_change(index, record.tenant, record.change)
        if record.policy is not None:
            self.policies.append((index, record.tenant, record.policy))
        if record.policy_check is not None:
            self.policy_checks.append((index, record.tenant, record.policy_check))
        if record.monitor is not None:
            self.monitors.append((index, record.tenant, record.monitor))
        if record.breach is not None:
            self.breaches.append((index, record.breach))

    def write(self, connection: Connection) -> dict[int, int]:
        """Insert every row; returns how many decisions each context change invalidated,
        by its log index, having queued the notifications that follow
        (`ledger.notify.outbox`)."""
        bulk_insert(connection, "log_entries", ENTRY_COLUMNS, self.entries)
        bulk_insert(connection, "tree_nodes", ("level", "idx", "hash"), self.nodes)
        insert_index_rows(connection, self.decisions)
        insert_refs(connection, self.refs)
        insert_authority_rows(connection, self.authority)
        insert_replay_rows(connection, self.replays)
        insert_policy_rows(connection, self.policies)
        insert_policy_check_rows(connection, self.policy_checks)
        insert_monitor_rows(connection, self.monitors, self.breaches, self.samples, self.flags)
        enqueue_breaches(connection, self.breaches, self.integrated_us)
        outcome = write_batch(connection, self.freshness, self.integrated_us)
        enqueue_stale(connection, outcome.events, self.integrated_us)
        return outcome.invalidated


def _with_invalidated(
    result: Appended | RecordRejected, invalidated: dict[int, int]
) -> Appended | RecordRejected:
    if isinstance(result, RecordRejected) or not result.created:
        return result
    count = invalidated.get(result.index)
    return result if count is None else replace(result, invalidated=count)


def store_checkpoint(
    connection: Connection, tree: CompactRange, signer: NoteSigner, origin: str, now_us: int
) -> str:
    """Sign a checkpoint of `tree` and store it; returns the signed note."""
    root = tree.root()
    note = signer.sign(Checkpoint(origin, tree.size, root).body())
    connection.execute(
        insert(checkpoints).values(
            tree_size=tree.size, root_hash=root, note=note, created_us=now_us
        )
    )
    return note


def _existing(
    connection: Connection, records: Sequence[Admitted]
) -> dict[tuple[str, str], tuple[Appended, bytes]]:
    """Entries already stored under the batch's (tenant, id) pairs, one query per tenant."""
    by_tenant: dict[str, set[str]] = {}
    for record in records:
        by_tenant.setdefault(record.tenant, set()).add(record.record_id)
    found: dict[tuple[str, str], tuple[Appended, bytes]] = {}
    for tenant, ids in by_tenant.items():
        wanted = sorted(ids)
        # PostgreSQL gets one array parameter: a thousand-member IN list is re-parsed by
        # the driver on every batch, and that cost more than the lookup itself.
        matches = (
            log_entries.c.record_id == any_(bindparam("ids", wanted, type_=ARRAY(String)))
            if connection.dialect.name == "postgresql"
            else log_entries.c.record_id.in_(wanted)
        )
        rows = connection.execute(
            select(
                log_entries.c.idx,
                log_entries.c.leaf_hash,
                log_entries.c.integrated_us,
                log_entries.c.record_id,
                log_entries.c.envelope,
            ).where(log_entries.c.tenant == tenant, matches)
        )
        for row in rows:
            envelope = bytes(row.envelope)
            appended = Appended(
                row.idx,
                bytes(row.leaf_hash),
                row.integrated_us,
                tenant,
                row.record_id,
                hashlib.sha256(envelope).digest(),
                False,
            )
            found[(tenant, row.record_id)] = (appended, envelope)
    return found


def _registration(record: Admitted, stored: StoredPolicy) -> Appended:
    """The answer to a policy version registered again with the same document: the stored
    registration, as for a retry."""
    return Appended(
        stored.index,
        stored.leaf_hash,
        stored.integrated_us,
        record.tenant,
        stored.record_id,
        stored.envelope_digest,
        False,
    )


def _retry_result(
    record: Admitted, digest: bytes, stored: tuple[Appended, bytes]
) -> Appended | IdConflict:
    appended, envelope = stored
    if envelope != record.raw:
        return IdConflict(
            f"id {record.record_id!r} of tenant {record.tenant!r} is already at index "
            f"{appended.index} with different bytes",
            pointer="/payload",
        )
    return Appended(
        appended.index,
        appended.leaf_hash,
        appended.integrated_us,
        appended.tenant,
        appended.record_id,
        digest,
        False,
    )
