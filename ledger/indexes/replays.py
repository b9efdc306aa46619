"""The replay index: one row per replay record, and the link each replay makes to its decision.

Admission takes a replay's row while the payload is decoded, and checks (step 8) that the
decision it names is in the log of the same tenant under exactly the leaf hash the replay
signs (`decision_leaves`, `check_target`). A decision entry never changes once stored, so
that check needs no lock. The sequencer writes the row in the transaction that appends the
entry, as it does for decisions (`ledger.indexes.decisions`). Rows are derived data:
why-reports list replays from here and then verify each one from its envelope.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from ledger.errors import RecordRejected, ReplayOfUnknown
from ledger.log.entry import to_micros
from ledger.log.store import backfill_index, bulk_insert
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.replay import (
    REPLAY_PAYLOAD_TYPE,
    ReplayRecord,
    decode_replay,
    leaf_reference,
)
from ledger.storage.schema import log_entries, replays

# leaf_reference moved to the record module (the client needs it); importers keep this path.
__all__ = [
    "REPLAY_COLUMNS",
    "DecisionLeaves",
    "ReplayRow",
    "backfill",
    "check_link",
    "check_target",
    "decision_leaves",
    "insert_replay_rows",
    "leaf_reference",
    "replay_row",
    "replays_of",
]

REPLAY_COLUMNS = (
    "idx",
    "tenant",
    "record_id",
    "replay_of",
    "mode",
    "verdict",
    "batch",
    "model_provider",
    "model_name",
    "model_version",
    "occurred_us",
)
# A decision's log index and leaf hash, by (tenant, record id).
DecisionLeaves = dict[tuple[str, str], tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """A replay's index row without its log index and tenant (the sequencer's), and the
    leaf hash it names its decision by (checked at admission, not stored)."""

    record_id: str
    replay_of: str
    replay_of_leaf: str
    mode: str
    verdict: str
    batch: str | None
    model_provider: str
    model_name: str
    model_version: str | None
    occurred_us: int

    def values(self, index: int, tenant: str) -> tuple[Any, ...]:
        """The row in the order of `REPLAY_COLUMNS`."""
        return (
            index,
            tenant,
            self.record_id,
            self.replay_of,
            self.mode,
            self.verdict,
            self.batch,
            self.model_provider,
            self.model_name,
            self.model_version,
            self.occurred_us,
        )


def replay_row(record: ReplayRecord) -> ReplayRow:
    return ReplayRow(
        record.id,
        record.replay_of,
        record.replay_of_leaf,
        record.mode,
        record.verdict,
        record.batch,
        record.model.provider,
        record.model.name,
        record.model.version,
        to_micros(record.occurred_at),
    )


def decision_leaves(connection: Connection, targets: Iterable[tuple[str, str]]) -> DecisionLeaves:
    """The stored decisions among `(tenant, record id)` pairs, in one query."""
    by_tenant: dict[str, set[str]] = {}
    for tenant, record_id in targets:
        by_tenant.setdefault(tenant, set()).add(record_id)
    if not by_tenant:
        return {}
    # One `tenant = ? AND record_id IN (…)` branch per tenant: both engines answer that from
    # the unique index, whereas SQLite scans the whole table for a row-value IN.
    rows = connection.execute(
        select(
            log_entries.c.tenant,
            log_entries.c.record_id,
            log_entries.c.idx,
            log_entries.c.leaf_hash,
        ).where(
            or_(
                *(
                    and_(log_entries.c.tenant == tenant, log_entries.c.record_id.in_(sorted(ids)))
                    for tenant, ids in sorted(by_tenant.items())
                )
            ),
            log_entries.c.payload_type == DECISION_PAYLOAD_TYPE,
        )
    )
    return {(row.tenant, row.record_id): (row.idx, bytes(row.leaf_hash)) for row in rows}


def check_target(tenant: str, row: ReplayRow, found: DecisionLeaves) -> None:
    """Step 8 for a replay: its decision is in the tenant's log under the leaf it names.
    Another tenant's decision is reported exactly as a missing one."""
    members = ("replay_of", "replay_of_leaf")
    check_link(tenant, row.replay_of, row.replay_of_leaf, found, ReplayOfUnknown, members)


def check_link(
    tenant: str,
    decision_id: str,
    decision_leaf: str,
    found: DecisionLeaves,
    refusal: type[RecordRejected],
    members: tuple[str, str],
) -> None:
    """A record that names a decision (a replay, a policy check) by id and leaf hash names
    one of its tenant's log, under exactly that leaf; else `refusal`, at the payload member
    (`members`: the id's and the leaf's) at fault."""
    stored = found.get((tenant, decision_id))
    if stored is None:
        raise refusal(
            f"{members[0]} names {decision_id!r}, which is no decision of tenant {tenant!r}",
            pointer=f"/payload/{members[0]}",
        )
    index, leaf = stored
    if decision_leaf != leaf_reference(leaf):
        raise refusal(
            f"decision {decision_id!r} is entry {index} with leaf {leaf_reference(leaf)}, "
            f"not {decision_leaf}",
            pointer=f"/payload/{members[1]}",
        )


def insert_replay_rows(connection: Connection, rows: Sequence[tuple[int, str, ReplayRow]]) -> None:
    """Rows of `(idx, tenant, row)`, inside the caller's transaction."""
    bulk_insert(
        connection,
        "replays",
        REPLAY_COLUMNS,
        [row.values(index, tenant) for index, tenant, row in rows],
    )


def replays_of(
    connection: Connection, tenant: str, record_id: str, before: int | None
) -> list[int]:
    """The log indexes of the replays of decision `record_id`, oldest first; only those
    before index `before` when it is given."""
    query = select(replays.c.idx).where(
        replays.c.tenant == tenant, replays.c.replay_of == record_id
    )
    if before is not None:
        query = query.where(replays.c.idx < before)
    return list(connection.execute(query.order_by(replays.c.idx)).scalars())


def backfill(connection: Connection) -> int:
    """Index every replay already in the log that has no row yet (for the migration that
    adds the index to an existing ledger); returns how many rows it wrote."""
    return backfill_index(
        connection, replays, REPLAY_PAYLOAD_TYPE, _backfill_row, insert_replay_rows
    )


def _backfill_row(index: int, tenant: str, payload: bytes) -> tuple[int, str, ReplayRow]:
    return index, tenant, replay_row(decode_replay(payload))
