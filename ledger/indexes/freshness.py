"""The freshness index: what each decision depended on, what changed, and what went stale.

Five tables, all derived from signed records and written in the transaction that appends
them (docs/freshness.md):

- `context_dependencies`: one row per (decision, key, version) the decision relied on, from
  `freshness.depends_on` and from its context snapshots (the snapshot's name is the key).
- `decision_freshness`: one row per decision that declares any freshness, with the earliest
  `valid_until` among the decision's and its snapshots'. A decision without a row declares
  nothing, and its freshness is `unknown`.
- `context_changes`: one row per context-change record.
- `decision_threads`: the trace and conversation of each decision with dependencies, so
  that two decisions of one thread that relied on different versions of a key are found.
- `stale_marks`: one row per dependency (decision, key, version) a change superseded,
  naming that change.

The rule. A change `c` of key `k` to version `v'` supersedes dependency `(k, v)` of decision
`d` when `v != v'` and either `d` was recorded before `c`, or `d` came after `c` but `v` was
already in the log before `c` (so `d` relied on what `c` had replaced: it was stale when it
was made). Versions are opaque: "older" means "recorded before this change for this key",
never string order. Only the latest change before `d` can make it stale at birth, so a key
changed back to `v` makes decisions on `v` fresh again from then on. A mark, once made,
stays: a judgment that went stale is not made fresh by a later change.

The sequencer calls `apply_changes` after inserting a batch's rows: decisions stale at
birth first, then each change's invalidation in log order, so every (decision, key) is
marked by the earliest change that superseded it. Each is one indexed INSERT ... SELECT,
never a scan of the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select, text

from ledger.errors import RecordRejected
from ledger.log.entry import to_micros
from ledger.log.store import bulk_insert
from ledger.records import dsse
from ledger.records.context_change import (
    CONTEXT_CHANGE_PAYLOAD_TYPE,
    ContextChange,
    decode_context_change,
)
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision, decode_decision
from ledger.storage.schema import (
    context_changes,
    context_dependencies,
    decision_threads,
    log_entries,
    stale_marks,
)
from ledger.storage.schema import decision_freshness as declared_freshness

DEPENDENCY_COLUMNS = ("idx", "tenant", "key", "version")
FRESHNESS_COLUMNS = ("idx", "tenant", "valid_until_us")
THREAD_COLUMNS = ("idx", "tenant", "thread")
CHANGE_COLUMNS = ("idx", "tenant", "record_id", "key", "version", "changed_us")


@dataclass(frozen=True, slots=True)
class DecisionFreshness:
    """What a decision declares, without its log index: its dependencies, its expiry, and
    the trace and conversation it belongs to (where two decisions may disagree)."""

    dependencies: tuple[tuple[str, str], ...]  # (key, version), each once
    valid_until_us: int | None
    threads: tuple[str, ...] = ()


# Attributes that name a conversation: the OpenTelemetry GenAI attribute and a plain name.
CONVERSATION_ATTRIBUTES = ("gen_ai.conversation.id", "conversation_id")
MAX_THREAD = 256


def threads_of(decision: Decision) -> tuple[str, ...]:
    """The threads a decision belongs to: ``trace:<links.trace_id>`` and
    ``conversation:<id>`` (from `CONVERSATION_ATTRIBUTES`). Two decisions of one thread
    that relied on different versions of a key saw inconsistent context."""
    found = []
    if decision.links is not None and decision.links.trace_id is not None:
        found.append(f"trace:{decision.links.trace_id}")
    for name in CONVERSATION_ATTRIBUTES:
        value = decision.attributes.get(name)
        if isinstance(value, str) and value and len(value) <= MAX_THREAD - 13:
            found.append(f"conversation:{value}")
            break
    return tuple(found)


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """A context change's index row, without its log index and tenant."""

    record_id: str
    key: str
    version: str
    changed_us: int


def decision_freshness(decision: Decision) -> DecisionFreshness | None:
    """The freshness a decision declares; None when it declares none (no freshness member
    and no context snapshot)."""
    if decision.freshness is None and not decision.context:
        return None
    threads = threads_of(decision)
    dependencies: dict[tuple[str, str], None] = {}
    expiries = []
    if decision.freshness is not None:
        for dependency in decision.freshness.depends_on:
            dependencies[(dependency.key, dependency.version)] = None
        if decision.freshness.valid_until is not None:
            expiries.append(to_micros(decision.freshness.valid_until))
    for snapshot in decision.context:
        dependencies[(snapshot.name, snapshot.version)] = None
        if snapshot.valid_until is not None:
            expiries.append(to_micros(snapshot.valid_until))
    return DecisionFreshness(
        tuple(dependencies), min(expiries) if expiries else None, threads if dependencies else ()
    )


def change_row(change: ContextChange) -> ChangeRow:
    return ChangeRow(change.id, change.key, change.version, to_micros(change.changed_at))


@dataclass
class FreshnessBatch:
    """The freshness rows of one appended batch, gathered by the sequencer."""

    dependencies: list[tuple[int, str, str, str]]
    declared: list[tuple[int, str, int | None]]
    changes: list[tuple[int, str, str, str, str, int]]
    threads: list[tuple[int, str, str]]

    @classmethod
    def empty(cls) -> FreshnessBatch:
        return cls([], [], [], [])

    def add_decision(self, index: int, tenant: str, freshness: DecisionFreshness) -> None:
        self.dependencies.extend(
            (index, tenant, key, version) for key, version in freshness.dependencies
        )
        self.declared.append((index, tenant, freshness.valid_until_us))
        self.threads.extend((index, tenant, thread) for thread in freshness.threads)

    def add_change(self, index: int, tenant: str, change: ChangeRow) -> None:
        self.changes.append(
            (index, tenant, change.record_id, change.key, change.version, change.changed_us)
        )


@dataclass(frozen=True, slots=True)
class StaleEvent:
    """Change `change_idx` of `tenant` marked decisions among log indexes `first` to `last`."""

    tenant: str
    change_idx: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class FreshnessOutcome:
    # How many decisions each change of the batch invalidated, by the change's log index.
    invalidated: dict[int, int]
    # What to tell subscribers: each change that marked something now.
    events: list[StaleEvent]


def write_batch(
    connection: Connection, batch: FreshnessBatch, integrated_us: int
) -> FreshnessOutcome:
    """Insert the batch's rows and mark what went stale."""
    bulk_insert(connection, "context_dependencies", DEPENDENCY_COLUMNS, batch.dependencies)
    bulk_insert(connection, "decision_freshness", FRESHNESS_COLUMNS, batch.declared)
    bulk_insert(connection, "context_changes", CHANGE_COLUMNS, batch.changes)
    bulk_insert(connection, "decision_threads", THREAD_COLUMNS, batch.threads)
    events: list[StaleEvent] = []
    if batch.dependencies:
        first, last = batch.dependencies[0][0], batch.dependencies[-1][0]
        for tenant, change in _mark_stale_at_birth(connection, first, last, integrated_us):
            events.append(StaleEvent(tenant, change, first, last))
    invalidated = {}
    for index, tenant, _id, key, version, _changed in batch.changes:
        count = _invalidate(connection, index, tenant, key, version, integrated_us)
        invalidated[index] = count
        if count:
            events.append(StaleEvent(tenant, index, 0, index - 1))
    return FreshnessOutcome(invalidated, events)


# A decision of the batch is stale at birth by the latest change of each key it relied on
# that came before it, named another version, and replaced a version the log already held.
# Whether the version a decision relied on was already in the log before a change.
_HELD_BEFORE = """
      AND (
        EXISTS (
            SELECT 1 FROM context_dependencies seen
            WHERE seen.tenant = dep.tenant AND seen.key = dep.key
              AND seen.version = dep.version AND seen.idx < latest.idx
        )
        OR EXISTS (
            SELECT 1 FROM context_changes named
            WHERE named.tenant = dep.tenant AND named.key = dep.key
              AND named.version = dep.version AND named.idx < latest.idx
        )
      )
"""
# What a marking statement returns: the marks it made (a mark already held is not made again).
_MARKED = "\n    RETURNING idx, tenant, change_idx"
# A decision of the batch is stale at birth by the latest change of each key it relied on
# that came before it, named another version, and replaced a version the log already held.
# PostgreSQL finds that latest change once per dependency with a LATERAL join; SQLite, which
# has none, by its primary key from a correlated subquery.
_STALE_AT_BIRTH = {
    "postgresql": text(
        """
    INSERT INTO stale_marks (idx, key, tenant, version, change_idx, stale_us)
    SELECT dep.idx, dep.key, dep.tenant, dep.version, latest.idx, :now
    FROM context_dependencies dep
    CROSS JOIN LATERAL (
        SELECT c.idx, c.version FROM context_changes c
        WHERE c.tenant = dep.tenant AND c.key = dep.key AND c.idx < dep.idx
        ORDER BY c.idx DESC LIMIT 1
    ) latest
    WHERE dep.idx BETWEEN :first AND :last
      AND latest.version <> dep.version"""
        + _HELD_BEFORE
        + _MARKED
    ),
    "sqlite": text(
        """
    INSERT INTO stale_marks (idx, key, tenant, version, change_idx, stale_us)
    SELECT dep.idx, dep.key, dep.tenant, dep.version, latest.idx, :now
    FROM context_dependencies dep
    JOIN context_changes latest ON latest.idx = (
        SELECT c.idx FROM context_changes c
        WHERE c.tenant = dep.tenant AND c.key = dep.key AND c.idx < dep.idx
        ORDER BY c.idx DESC LIMIT 1
    )
    WHERE dep.idx BETWEEN :first AND :last
      AND latest.version <> dep.version"""
        + _HELD_BEFORE
        + _MARKED
    ),
}

# Every decision recorded before the change that relied on another version of its key and
# is not already stale on that key (the conflict: a mark is never made twice). An
# anti-join on `stale_marks` instead was planned as a scan per row by PostgreSQL while the
# table was young, which made a large invalidation quadratic.
_INVALIDATE = text(
    """
    INSERT INTO stale_marks (idx, key, tenant, version, change_idx, stale_us)
    SELECT dep.idx, dep.key, dep.tenant, dep.version, :change, :now
    FROM context_dependencies dep
    WHERE dep.tenant = :tenant AND dep.key = :key AND dep.idx < :change
      AND dep.version <> :version
    ON CONFLICT (idx, key, version) DO NOTHING"""
    + _MARKED
)


def _mark_stale_at_birth(
    connection: Connection, first: int, last: int, now_us: int
) -> list[tuple[str, int]]:
    """Mark the batch's decisions that were stale when made; returns the (tenant, change)
    pairs that marked any."""
    statement = _STALE_AT_BIRTH[connection.dialect.name]
    marked = connection.execute(statement, {"first": first, "last": last, "now": now_us})
    return sorted({(row.tenant, row.change_idx) for row in marked})


def _invalidate(
    connection: Connection, change: int, tenant: str, key: str, version: str, now_us: int
) -> int:
    """Mark what change `change` supersedes; returns how many decisions (a decision that
    relied on two versions of the key has two marks)."""
    marked = connection.execute(
        _INVALIDATE,
        {"change": change, "tenant": tenant, "key": key, "version": version, "now": now_us},
    )
    return len({row.idx for row in marked})


@dataclass(frozen=True, slots=True)
class Supersession:
    """Dependency (`key`, `version`) of a decision, superseded by change `change_idx`."""

    key: str
    version: str
    change_idx: int
    change_id: str
    change_version: str
    changed_us: int
    stale_us: int


def supersessions(connection: Connection, index: int) -> list[Supersession]:
    """The dependencies of decision `index` that changes superseded, by key."""
    rows = connection.execute(
        select(
            stale_marks.c.key,
            stale_marks.c.version,
            stale_marks.c.change_idx,
            context_changes.c.record_id,
            context_changes.c.version.label("change_version"),
            context_changes.c.changed_us,
            stale_marks.c.stale_us,
        )
        .join(context_changes, context_changes.c.idx == stale_marks.c.change_idx)
        .where(stale_marks.c.idx == index)
        .order_by(stale_marks.c.key, stale_marks.c.version)
    )
    return [Supersession(*row) for row in rows]


def earliest_holder(
    connection: Connection, tenant: str, key: str, version: str, before: int
) -> int | None:
    """The first log entry before `before` that named `key` at `version` (a decision that
    relied on it or a change to it): the evidence that a change replaced that version."""
    found = [
        connection.execute(
            select(func.min(table.c.idx)).where(
                table.c.tenant == tenant,
                table.c.key == key,
                table.c.version == version,
                table.c.idx < before,
            )
        ).scalar_one_or_none()
        for table in (context_dependencies, context_changes)
    ]
    held = [index for index in found if index is not None]
    return min(held) if held else None


@dataclass(frozen=True, slots=True)
class Inconsistency:
    """Another decision of the same trace or conversation relied on another version of a
    key this decision relied on."""

    thread: str
    key: str
    version: str  # this decision's
    other_idx: int
    other_id: str
    other_version: str


MAX_INCONSISTENCIES = 100


def inconsistencies(connection: Connection, index: int) -> list[Inconsistency]:
    """The decisions that share a thread with decision `index` and relied on another version
    of one of its keys (at most `MAX_INCONSISTENCIES`, oldest first)."""
    mine, theirs = decision_threads.alias("mine"), decision_threads.alias("theirs")
    used, other = context_dependencies.alias("used"), context_dependencies.alias("other")
    rows = connection.execute(
        select(
            mine.c.thread,
            used.c.key,
            used.c.version,
            theirs.c.idx,
            log_entries.c.record_id,
            other.c.version.label("other_version"),
        )
        .select_from(mine)
        .join(theirs, (theirs.c.tenant == mine.c.tenant) & (theirs.c.thread == mine.c.thread))
        .join(used, used.c.idx == mine.c.idx)
        .join(other, (other.c.idx == theirs.c.idx) & (other.c.key == used.c.key))
        .join(log_entries, log_entries.c.idx == theirs.c.idx)
        .where(mine.c.idx == index, theirs.c.idx != index, other.c.version != used.c.version)
        .order_by(theirs.c.idx, used.c.key, mine.c.thread)
        .limit(MAX_INCONSISTENCIES)
    )
    return [Inconsistency(*row) for row in rows]


# The freshness tables, dependents first (the order to empty them in).
_TABLES = (stale_marks, context_changes, decision_threads, declared_freshness, context_dependencies)
_REBUILD_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What rebuilding the freshness index from the log found."""

    entries: int  # decisions and changes read
    skipped: list[int]  # entries whose stored bytes no longer decode (`prov verify` names them)
    marks: int
    # Stale marks the index held that the log does not give, and the reverse (`check`).
    missing: list[tuple[int, str, str, int]]
    unexpected: list[tuple[int, str, str, int]]

    @property
    def consistent(self) -> bool:
        return not self.missing and not self.unexpected


def rebuild(connection: Connection) -> Rebuilt:
    """Empty the freshness tables and fill them again from the log alone, inside the
    caller's write transaction (roll it back to only check). Entries are replayed a
    sequencing batch at a time (a batch shares its integration time), through the same
    `write_batch` the sequencer runs, so the marks come out as they were made; nothing is
    queued for subscribers. Returns the stale marks that differ from those held before."""
    before = _marks(connection)
    for table in _TABLES:
        connection.execute(table.delete())
    entries, skipped = 0, []
    batch, batch_time = FreshnessBatch.empty(), None
    after = -1
    while True:
        rows = connection.execute(
            select(
                log_entries.c.idx,
                log_entries.c.tenant,
                log_entries.c.payload_type,
                log_entries.c.envelope,
                log_entries.c.integrated_us,
            )
            .where(
                log_entries.c.idx > after,
                log_entries.c.payload_type.in_(
                    (DECISION_PAYLOAD_TYPE, CONTEXT_CHANGE_PAYLOAD_TYPE)
                ),
            )
            .order_by(log_entries.c.idx)
            .limit(_REBUILD_CHUNK)
        ).all()
        if not rows:
            break
        for index, tenant, payload_type, envelope, integrated_us in rows:
            if batch_time is not None and integrated_us != batch_time:
                write_batch(connection, batch, batch_time)
                batch = FreshnessBatch.empty()
            batch_time = integrated_us
            entries += 1
            try:
                payload = dsse.payload_bytes(dsse.decode_envelope(bytes(envelope)))
                if payload_type == CONTEXT_CHANGE_PAYLOAD_TYPE:
                    batch.add_change(index, tenant, change_row(decode_context_change(payload)))
                elif (declared := decision_freshness(decode_decision(payload))) is not None:
                    batch.add_decision(index, tenant, declared)
            except RecordRejected:
                skipped.append(index)
        after = rows[-1].idx
    if batch_time is not None:
        write_batch(connection, batch, batch_time)
    now = _marks(connection)
    return Rebuilt(
        entries,
        skipped,
        len(now),
        sorted(before - now),
        sorted(now - before),
    )


def _marks(connection: Connection) -> set[tuple[int, str, str, int]]:
    return {
        (row.idx, row.key, row.version, row.change_idx)
        for row in connection.execute(
            select(
                stale_marks.c.idx,
                stale_marks.c.key,
                stale_marks.c.version,
                stale_marks.c.change_idx,
            )
        )
    }
