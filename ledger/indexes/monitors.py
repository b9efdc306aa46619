"""The monitor registry and the breach, history and flag indexes, derived from the log.

- `monitors`: one row per monitor record. (tenant, monitor id, version) is applied once:
  the sequencer answers the same definition again as a retry and refuses another with
  `MonitorVersionConflict`, under the log's lock; a unique constraint backs it.
- `monitor_breaches`: one row per breach record (`ledger.records.monitor.BreachRecord`).
- `monitor_samples`: each group's value as each batch that moved it left it, for the page's
  chart and `prov monitor status`.
- `monitor_flags`: the decisions sequenced while a `flag` monitor they counted was over.

Rows are written in the transaction that appends their entries. The live windows
themselves are never stored: `ledger.monitors.live` rebuilds them from the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from ledger.log.entry import to_micros
from ledger.log.store import bulk_insert
from ledger.records.monitor import BreachRecord, MonitorRecord
from ledger.storage.schema import monitors

MONITOR_COLUMNS = (
    "idx",
    "tenant",
    "record_id",
    "monitor_id",
    "version",
    "digest",
    "enabled",
    "action",
    "applied_us",
)
BREACH_COLUMNS = (
    "idx",
    "tenant",
    "record_id",
    "monitor_id",
    "version",
    "group_key",
    "state",
    "action",
    "value",
    "limit_value",
    "first_idx",
    "last_idx",
    "decision_idx",
    "occurred_us",
)
SAMPLE_COLUMNS = (
    "tenant",
    "monitor_id",
    "version",
    "group_key",
    "idx",
    "integrated_us",
    "value",
    "count",
    "breached",
)
FLAG_COLUMNS = ("decision_idx", "tenant", "monitor_id", "group_key")


@dataclass(frozen=True, slots=True)
class MonitorRow:
    """A monitor record's registry row, without its log index and tenant (the sequencer's),
    and the record itself, which the live windows activate."""

    record: MonitorRecord

    def values(self, index: int, tenant: str) -> tuple[Any, ...]:
        record = self.record
        return (
            index,
            tenant,
            record.id,
            record.definition.id,
            record.version,
            record.digest,
            record.definition.enabled,
            record.definition.action,
            to_micros(record.applied_at),
        )


def monitor_row(record: MonitorRecord) -> MonitorRow:
    return MonitorRow(record)


def breach_values(index: int, breach: BreachRecord) -> tuple[Any, ...]:
    return (
        index,
        breach.tenant,
        breach.id,
        breach.monitor.monitor_id,
        breach.monitor.version,
        breach.group or "",
        breach.state,
        breach.action,
        breach.value,
        breach.limit,
        breach.window.first,
        breach.window.last,
        None if breach.decision is None else breach.decision.index,
        to_micros(breach.occurred_at),
    )


def applied_version(
    connection: Connection, tenant: str, monitor_id: str, version: int
) -> tuple[int, str] | None:
    """The log index and digest under which this version was applied, if it was."""
    row = connection.execute(
        select(monitors.c.idx, monitors.c.digest).where(
            monitors.c.tenant == tenant,
            monitors.c.monitor_id == monitor_id,
            monitors.c.version == version,
        )
    ).first()
    return None if row is None else (row.idx, row.digest)


def latest_versions(connection: Connection, below: int | None = None) -> list[tuple[int, str]]:
    """(log index, tenant) of the latest version of every monitor, among entries before
    `below` when given."""
    inner = select(func.max(monitors.c.idx).label("idx")).group_by(
        monitors.c.tenant, monitors.c.monitor_id
    )
    if below is not None:
        inner = inner.where(monitors.c.idx < below)
    latest = inner.subquery()
    rows = connection.execute(
        select(monitors.c.idx, monitors.c.tenant)
        .join(latest, latest.c.idx == monitors.c.idx)
        .order_by(monitors.c.idx)
    )
    return [(row.idx, row.tenant) for row in rows]


def insert_monitor_rows(
    connection: Connection,
    registry: Sequence[tuple[int, str, MonitorRow]],
    breaches: Sequence[tuple[int, BreachRecord]],
    samples: Sequence[tuple[Any, ...]],
    flags: Sequence[tuple[Any, ...]],
) -> None:
    if registry:
        bulk_insert(
            connection,
            "monitors",
            MONITOR_COLUMNS,
            [row.values(index, tenant) for index, tenant, row in registry],
        )
    if breaches:
        bulk_insert(
            connection,
            "monitor_breaches",
            BREACH_COLUMNS,
            [breach_values(index, breach) for index, breach in breaches],
        )
    if samples:
        bulk_insert(connection, "monitor_samples", SAMPLE_COLUMNS, samples)
    if flags:
        bulk_insert(connection, "monitor_flags", FLAG_COLUMNS, flags)
