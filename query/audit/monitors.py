"""What the monitor indexes say, for reading: a tenant's monitors and where each group
stands, a monitor's history and breaches, and one breach with the decisions of its window.

The registry (`monitors`), the samples (`monitor_samples`) and the breaches
(`monitor_breaches`) are derived from the log (`ledger.indexes.monitors`); what a reader
is shown of a monitor's definition or of a breach is decoded from the signed record in its
log entry, not from the index columns, so the page and the API show what the ledger signed.

Everything is within one tenant: a monitor or breach of another tenant is `NotFound`,
exactly as one that does not exist.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import msgspec
from sqlalchemy import Connection, and_, func, select

from ledger.errors import NotFound
from ledger.log.entry import rfc3339
from ledger.log.store import StoredEntry, read_entry
from ledger.records import dsse
from ledger.records.monitor import (
    BREACH_PAYLOAD_TYPE,
    MONITOR_PAYLOAD_TYPE,
    BreachRecord,
    MonitorDefinition,
    MonitorRecord,
    decode_breach,
    decode_monitor,
)
from ledger.storage.schema import decisions, monitor_breaches, monitor_samples, monitors

# A chart has no use for more points per group than it has pixels across.
MAX_POINTS = 500
DEFAULT_BREACHES = 100
MAX_BREACHES = 1000
DEFAULT_WINDOW_PAGE = 50
MAX_WINDOW_PAGE = 500


class GroupState(msgspec.Struct, kw_only=True):
    """A group's latest sample: its value as the last batch that moved it left it."""

    group: str | None  # None when the monitor is not grouped
    version: int
    value: str
    count: int
    breached: bool
    index: int  # the log index of the batch's last entry that moved it
    as_of: str  # that batch's integration time


class MonitorVersion(msgspec.Struct, kw_only=True):
    version: int
    index: int  # the log index of the monitor record
    record_id: str
    digest: str
    enabled: bool
    action: str
    applied_at: str


class MonitorSummary(msgspec.Struct, kw_only=True):
    """A monitor's latest version, with its definition as its record signed it, and the
    latest state of each group that version has counted."""

    monitor_id: str
    tenant: str
    version: int
    index: int
    record_id: str
    digest: str
    applied_at: str
    applied_by: str
    definition: MonitorDefinition
    groups: list[GroupState]
    breached: bool  # whether any group stands over the limit


class BreachRow(msgspec.Struct, kw_only=True):
    index: int
    record_id: str
    monitor_id: str
    version: int
    group: str | None
    state: str
    action: str
    value: str
    limit: str
    first: int
    last: int
    decision_index: int | None
    occurred_at: str


class Point(msgspec.Struct, kw_only=True, array_like=True):
    """One sample on a chart: log index, integration time (µs), value, count, breached."""

    index: int
    integrated_us: int
    value: float
    count: int
    breached: bool


class Series(msgspec.Struct, kw_only=True):
    group: str | None
    points: list[Point]
    total: int  # samples held for the group, before thinning


class History(msgspec.Struct, kw_only=True):
    monitor_id: str
    version: int
    limit: str
    series: list[Series]


class WindowDecision(msgspec.Struct, kw_only=True):
    index: int
    record_id: str
    decision_type: str
    occurred_at: str


class WindowPage(msgspec.Struct, kw_only=True):
    decisions: list[WindowDecision]
    next_after: int | None  # pass as `after` for the next page


class BreachDetail(msgspec.Struct, kw_only=True):
    """A breach record as its log entry holds it, and where that entry is."""

    index: int
    record_id: str
    leaf_hash: str
    integrated_at: str
    envelope: str  # the stored DSSE envelope, base64, to check its signature offline
    record: BreachRecord


def _group(key: str) -> str | None:
    return key or None


def _payload(entry: StoredEntry) -> bytes:
    return dsse.payload_bytes(dsse.decode_envelope(entry.envelope))


def monitor_record_at(connection: Connection, index: int) -> MonitorRecord:
    """The monitor record in log entry `index` (the registry points at it)."""
    entry = read_entry(connection, index)
    if entry is None or entry.payload_type != MONITOR_PAYLOAD_TYPE:
        # The registry is derived from the log: a row without its record is a broken index.
        raise NotFound(f"log entry {index} holds no monitor record")
    return decode_monitor(_payload(entry))


def _latest_rows(connection: Connection, tenant: str, monitor_id: str | None) -> list[Any]:
    inner = select(func.max(monitors.c.idx).label("idx")).where(monitors.c.tenant == tenant)
    if monitor_id is not None:
        inner = inner.where(monitors.c.monitor_id == monitor_id)
    latest = inner.group_by(monitors.c.monitor_id).subquery()
    return list(
        connection.execute(
            select(monitors)
            .join(latest, latest.c.idx == monitors.c.idx)
            .order_by(monitors.c.monitor_id)
        )
    )


def latest_states(
    connection: Connection, tenant: str, monitor_id: str, version: int
) -> list[GroupState]:
    """Each group's latest sample under `version`, by group."""
    s = monitor_samples.c
    mine = and_(s.tenant == tenant, s.monitor_id == monitor_id, s.version == version)
    latest = (
        select(s.group_key, func.max(s.idx).label("idx")).where(mine).group_by(s.group_key)
    ).subquery()
    rows = connection.execute(
        select(monitor_samples)
        .join(latest, and_(latest.c.group_key == s.group_key, latest.c.idx == s.idx))
        .where(mine)
        .order_by(s.group_key)
    )
    return [
        GroupState(
            group=_group(row.group_key),
            version=row.version,
            value=row.value,
            count=row._mapping["count"],
            breached=row.breached,
            index=row.idx,
            as_of=rfc3339(row.integrated_us),
        )
        for row in rows
    ]


def list_monitors(
    connection: Connection, tenant: str, monitor_id: str | None = None
) -> list[MonitorSummary]:
    """The tenant's monitors (or the one named), each at its latest version, by id."""
    found = []
    for row in _latest_rows(connection, tenant, monitor_id):
        record = monitor_record_at(connection, row.idx)
        groups = latest_states(connection, tenant, row.monitor_id, row.version)
        found.append(
            MonitorSummary(
                monitor_id=row.monitor_id,
                tenant=tenant,
                version=row.version,
                index=row.idx,
                record_id=row.record_id,
                digest=row.digest,
                applied_at=rfc3339(row.applied_us),
                applied_by=record.applied_by,
                definition=record.definition,
                groups=groups,
                breached=any(group.breached for group in groups),
            )
        )
    return found


def get_monitor(connection: Connection, tenant: str, monitor_id: str) -> MonitorSummary:
    found = list_monitors(connection, tenant, monitor_id)
    if not found:
        raise NotFound(f"tenant {tenant!r} has no monitor {monitor_id!r}")
    return found[0]


def monitor_versions(connection: Connection, tenant: str, monitor_id: str) -> list[MonitorVersion]:
    """Every version of the monitor, oldest first."""
    rows = connection.execute(
        select(monitors)
        .where(monitors.c.tenant == tenant, monitors.c.monitor_id == monitor_id)
        .order_by(monitors.c.idx)
    )
    return [
        MonitorVersion(
            version=row.version,
            index=row.idx,
            record_id=row.record_id,
            digest=row.digest,
            enabled=row.enabled,
            action=row.action,
            applied_at=rfc3339(row.applied_us),
        )
        for row in rows
    ]


def monitor_history(
    connection: Connection,
    tenant: str,
    monitor_id: str,
    version: int | None = None,
    *,
    max_points: int = MAX_POINTS,
) -> History:
    """The samples of one version (default: the latest) per group, in log order, thinned
    to at most about `max_points` per group. Thinning keeps every `stride`-th sample, the
    last one, and every sample where the group crossed or returned, so that a chart still
    shows each breach where it happened."""
    chosen = _version_row(connection, tenant, monitor_id, version)
    limit = monitor_record_at(connection, chosen.idx).definition.limit
    s = monitor_samples.c
    mine = and_(s.tenant == tenant, s.monitor_id == monitor_id, s.version == chosen.version)
    totals = {
        row.group_key: row.n
        for row in connection.execute(
            select(s.group_key, func.count().label("n")).where(mine).group_by(s.group_key)
        )
    }
    strides = {key: max(1, math.ceil(n / max(1, max_points))) for key, n in totals.items()}
    kept: dict[str, list[Point]] = defaultdict(list)
    seen: dict[str, int] = defaultdict(int)
    previous: dict[str, bool] = {}
    rows = connection.execute(
        select(s.group_key, s.idx, s.integrated_us, s.value, s.count, s.breached)
        .where(mine)
        .order_by(s.idx)
        .execution_options(yield_per=2000)
    )
    for row in rows:
        key = row.group_key
        position = seen[key]
        seen[key] += 1
        flipped = previous.get(key, False) != row.breached
        previous[key] = row.breached
        last = position == totals[key] - 1
        if position % strides[key] == 0 or flipped or last:
            kept[key].append(
                Point(
                    index=row.idx,
                    integrated_us=row.integrated_us,
                    value=float(row.value),
                    count=row._mapping["count"],
                    breached=row.breached,
                )
            )
    return History(
        monitor_id=monitor_id,
        version=chosen.version,
        limit=limit,
        series=[
            Series(group=_group(key), points=kept[key], total=totals[key]) for key in sorted(totals)
        ],
    )


def _version_row(connection: Connection, tenant: str, monitor_id: str, version: int | None) -> Any:
    query = select(monitors).where(monitors.c.tenant == tenant, monitors.c.monitor_id == monitor_id)
    if version is not None:
        query = query.where(monitors.c.version == version)
    row = connection.execute(query.order_by(monitors.c.idx.desc()).limit(1)).first()
    if row is None:
        which = "" if version is None else f" version {version}"
        raise NotFound(f"tenant {tenant!r} has no monitor {monitor_id!r}{which}")
    return row


def _breach_row(row: Any) -> BreachRow:
    return BreachRow(
        index=row.idx,
        record_id=row.record_id,
        monitor_id=row.monitor_id,
        version=row.version,
        group=_group(row.group_key),
        state=row.state,
        action=row.action,
        value=row.value,
        limit=row.limit_value,
        first=row.first_idx,
        last=row.last_idx,
        decision_index=row.decision_idx,
        occurred_at=rfc3339(row.occurred_us),
    )


def breaches_of(
    connection: Connection,
    tenant: str,
    monitor_id: str | None = None,
    *,
    limit: int = DEFAULT_BREACHES,
    before: int | None = None,
) -> list[BreachRow]:
    """The tenant's breach records (of one monitor when named), newest first; `before` a
    log index continues a listing."""
    b = monitor_breaches.c
    query = select(monitor_breaches).where(b.tenant == tenant)
    if monitor_id is not None:
        query = query.where(b.monitor_id == monitor_id)
    if before is not None:
        query = query.where(b.idx < before)
    rows = connection.execute(query.order_by(b.idx.desc()).limit(min(limit, MAX_BREACHES)))
    return [_breach_row(row) for row in rows]


def breach_detail(connection: Connection, tenant: str, record_id: str) -> BreachDetail:
    """The breach record `record_id` of the tenant, decoded from its log entry."""
    b = monitor_breaches.c
    index = connection.execute(
        select(b.idx).where(b.tenant == tenant, b.record_id == record_id)
    ).scalar()
    entry = None if index is None else read_entry(connection, index)
    if entry is None or entry.payload_type != BREACH_PAYLOAD_TYPE or entry.tenant != tenant:
        raise NotFound(f"tenant {tenant!r} has no breach {record_id!r}")
    return BreachDetail(
        index=entry.index,
        record_id=entry.record_id,
        leaf_hash=entry.leaf_hash.hex(),
        integrated_at=rfc3339(entry.integrated_us),
        envelope=dsse.b64encode(entry.envelope),
        record=decode_breach(_payload(entry)),
    )


def window_decisions(
    connection: Connection,
    tenant: str,
    first: int,
    last: int,
    *,
    after: int | None = None,
    limit: int = DEFAULT_WINDOW_PAGE,
) -> WindowPage:
    """The tenant's decisions with log index in [`first`, `last`], in log order, a page at
    a time: those a breach's window covers (the monitor counted those its selector took)."""
    d = decisions.c
    start = first if after is None else max(first, after + 1)
    size = max(1, min(limit, MAX_WINDOW_PAGE))
    rows = list(
        connection.execute(
            select(d.idx, d.record_id, d.decision_type, d.occurred_us)
            .where(d.tenant == tenant, d.idx >= start, d.idx <= last)
            .order_by(d.idx)
            .limit(size + 1)
        )
    )
    more = len(rows) > size
    rows = rows[:size]
    return WindowPage(
        decisions=[
            WindowDecision(
                index=row.idx,
                record_id=row.record_id,
                decision_type=row.decision_type,
                occurred_at=rfc3339(row.occurred_us),
            )
            for row in rows
        ],
        next_after=rows[-1].idx if more and rows else None,
    )


def status_rows(summaries: Iterable[MonitorSummary]) -> list[dict[str, Any]]:
    """One row per (monitor, group) for `prov monitor status`; a monitor whose latest
    version has counted nothing yet is one row with no group and no value."""
    rows: list[dict[str, Any]] = []
    for summary in summaries:
        base = {
            "monitor": summary.monitor_id,
            "version": summary.version,
            "limit": summary.definition.limit,
            "aggregate": summary.definition.aggregate,
            "action": summary.definition.action,
            "enabled": summary.definition.enabled,
        }
        if not summary.groups:
            rows.append(
                base
                | {
                    "group": None,
                    "value": None,
                    "count": 0,
                    "breached": False,
                    "index": None,
                    "as_of": None,
                }
            )
        for group in summary.groups:
            rows.append(
                base
                | {
                    "group": group.group,
                    "value": group.value,
                    "count": group.count,
                    "breached": group.breached,
                    "index": group.index,
                    "as_of": group.as_of,
                }
            )
    return rows
