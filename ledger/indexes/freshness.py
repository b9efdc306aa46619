"""The freshness index: what each decision depended on, what changed, and what went stale.

Four tables, all derived from signed records and written in the transaction that appends
them (docs/freshness.md):

- `context_dependencies`: one row per (decision, key, version) the decision relied on, from
  `freshness.depends_on` and from its context snapshots (the snapshot's name is the key).
- `decision_freshness`: one row per decision that declares any freshness, with the earliest
  `valid_until` among the decision's and its snapshots'. A decision without a row declares
  nothing, and its freshness is `unknown`.
- `context_changes`: one row per context-change record.
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

from sqlalchemy import Connection, select, text

from ledger.log.entry import to_micros
from ledger.log.store import bulk_insert
from ledger.records.context_change import ContextChange
from ledger.records.decision import Decision
from ledger.storage.schema import stale_marks

DEPENDENCY_COLUMNS = ("idx", "tenant", "key", "version")
FRESHNESS_COLUMNS = ("idx", "tenant", "valid_until_us")
CHANGE_COLUMNS = ("idx", "tenant", "record_id", "key", "version", "changed_us")


@dataclass(frozen=True, slots=True)
class DecisionFreshness:
    """What a decision declares, without its log index: its dependencies and its expiry."""

    dependencies: tuple[tuple[str, str], ...]  # (key, version), each once
    valid_until_us: int | None


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
    return DecisionFreshness(tuple(dependencies), min(expiries) if expiries else None)


def change_row(change: ContextChange) -> ChangeRow:
    return ChangeRow(change.id, change.key, change.version, to_micros(change.changed_at))


@dataclass
class FreshnessBatch:
    """The freshness rows of one appended batch, gathered by the sequencer."""

    dependencies: list[tuple[int, str, str, str]]
    declared: list[tuple[int, str, int | None]]
    changes: list[tuple[int, str, str, str, str, int]]

    @classmethod
    def empty(cls) -> FreshnessBatch:
        return cls([], [], [])

    def add_decision(self, index: int, tenant: str, freshness: DecisionFreshness) -> None:
        self.dependencies.extend(
            (index, tenant, key, version) for key, version in freshness.dependencies
        )
        self.declared.append((index, tenant, freshness.valid_until_us))

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
_STALE_AT_BIRTH = text(
    """
    INSERT INTO stale_marks (idx, key, tenant, version, change_idx, stale_us)
    SELECT dep.idx, dep.key, dep.tenant, dep.version, latest.idx, :now
    FROM context_dependencies dep
    JOIN context_changes latest
      ON latest.tenant = dep.tenant AND latest.key = dep.key
     AND latest.idx = (
        SELECT max(c.idx) FROM context_changes c
        WHERE c.tenant = dep.tenant AND c.key = dep.key AND c.idx < dep.idx
     )
    WHERE dep.idx BETWEEN :first AND :last
      AND latest.version <> dep.version
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
)

# Every decision recorded before the change that relied on another version of its key and
# is not already stale on that key.
_INVALIDATE = text(
    """
    INSERT INTO stale_marks (idx, key, tenant, version, change_idx, stale_us)
    SELECT dep.idx, dep.key, dep.tenant, dep.version, :change, :now
    FROM context_dependencies dep
    WHERE dep.tenant = :tenant AND dep.key = :key AND dep.idx < :change
      AND dep.version <> :version
      AND NOT EXISTS (
        SELECT 1 FROM stale_marks mark
        WHERE mark.idx = dep.idx AND mark.key = dep.key AND mark.version = dep.version
      )
    """
)


def _mark_stale_at_birth(
    connection: Connection, first: int, last: int, now_us: int
) -> list[tuple[str, int]]:
    """Mark the batch's decisions that were stale when made; returns the (tenant, change)
    pairs that marked any."""
    result = connection.execute(_STALE_AT_BIRTH, {"first": first, "last": last, "now": now_us})
    if not result.rowcount:
        return []
    marked = connection.execute(
        select(stale_marks.c.tenant, stale_marks.c.change_idx)
        .where(stale_marks.c.idx.between(first, last), stale_marks.c.stale_us == now_us)
        .distinct()
    )
    return sorted((row.tenant, row.change_idx) for row in marked)


def _invalidate(
    connection: Connection, change: int, tenant: str, key: str, version: str, now_us: int
) -> int:
    result = connection.execute(
        _INVALIDATE,
        {"change": change, "tenant": tenant, "key": key, "version": version, "now": now_us},
    )
    return int(result.rowcount or 0)
