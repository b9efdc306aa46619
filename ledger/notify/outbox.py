"""The transactional outbox: notifications written with their cause, delivered afterwards.

When a context change marks decisions stale, the sequencer calls `enqueue_stale` in the same
transaction, which writes one outbox row per live subscription of the tenant that asked for
`decision.stale`. The row commits with the marks or not at all, so a crash between commit
and delivery loses nothing: the delivery worker (`service.webhooks`) finds the row pending
after a restart. Delivery is at least once; receivers deduplicate by the event id.

A row is claimed with a lease (`lease_until_us`), so several server processes may run the
worker at once and a worker killed mid-delivery leaves a row that another picks up when the
lease runs out. A row covers every decision its change marked in a range of log indexes; it
is delivered in chunks of at most `CHUNK` decisions, each a separate event whose id names
the row and the chunk's first index, and `cursor_idx` moves past each chunk acknowledged.
After `max_attempts` failed attempts a row is `dead` (dead-lettered): visible in the API and
in `/metrics`, and retried only when an operator asks. Removing a subscription deletes its
rows (`ledger.notify.subscriptions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import Connection, Engine, and_, func, or_, select, text, update

from ledger.indexes.freshness import StaleEvent
from ledger.log.entry import rfc3339
from ledger.notify.webhook import BREACH_EVENT, STALE_EVENT
from ledger.records.monitor import BreachRecord
from ledger.storage.db import side_write_transaction
from ledger.storage.schema import context_changes, log_entries, outbox, stale_marks, subscriptions

EVENT_TYPES = (STALE_EVENT, BREACH_EVENT)
CHUNK = 500
DeliveryState = Literal["pending", "delivered", "dead"]
STATES: tuple[DeliveryState, ...] = get_args(DeliveryState)

# One statement per event: a row for each live subscription of the tenant to the event type.
_ENQUEUE = text(
    """
    INSERT INTO outbox (subscription_id, tenant, event_type, subject_idx, first_idx, last_idx,
                        cursor_idx, state, attempts, next_attempt_us, created_us)
    SELECT id, tenant, :event, :subject, :first, :last, :cursor, 'pending', 0, :now, :now
    FROM subscriptions
    WHERE tenant = :tenant AND deleted_us IS NULL
      AND (' ' || events || ' ') LIKE :pattern
    """
)


def enqueue_stale(connection: Connection, events: Sequence[StaleEvent], now_us: int) -> None:
    """Queue a `decision.stale` notification for each event, inside the caller's
    transaction (the one that made the marks)."""
    for event in events:
        connection.execute(
            _ENQUEUE,
            {
                "event": STALE_EVENT,
                "subject": event.change_idx,
                "first": event.first,
                "last": event.last,
                "cursor": event.first - 1,
                "now": now_us,
                "tenant": event.tenant,
                "pattern": f"% {STALE_EVENT} %",
            },
        )


def enqueue_breaches(
    connection: Connection, breaches: Sequence[tuple[int, BreachRecord]], now_us: int
) -> None:
    """Queue a `monitor.breach` notification for each breach record (by its log index),
    inside the transaction that appended it; the body is the breach itself."""
    for index, breach in breaches:
        connection.execute(
            _ENQUEUE,
            {
                "event": BREACH_EVENT,
                "subject": index,
                "first": index,
                "last": index,
                "cursor": index - 1,
                "now": now_us,
                "tenant": breach.tenant,
                "pattern": f"% {BREACH_EVENT} %",
            },
        )


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    subscription_id: str
    tenant: str
    event_type: str
    subject_idx: int
    first_idx: int
    last_idx: int
    cursor_idx: int
    attempts: int
    url: str  # the subscription's, read when the row was claimed


@dataclass(frozen=True, slots=True)
class StaleDecision:
    index: int
    id: str
    key: str
    version: str


@dataclass(frozen=True, slots=True)
class StaleChunk:
    decisions: list[StaleDecision]
    more: bool  # marks of the row's change remain after this chunk


@dataclass(frozen=True, slots=True)
class Change:
    """The context change an outbox row tells of, as its index row holds it."""

    index: int
    id: str
    key: str
    version: str
    changed_at: str


_ROW_COLUMNS = (
    outbox.c.id,
    outbox.c.subscription_id,
    outbox.c.tenant,
    outbox.c.event_type,
    outbox.c.subject_idx,
    outbox.c.first_idx,
    outbox.c.last_idx,
    outbox.c.cursor_idx,
    outbox.c.attempts,
    subscriptions.c.url,
)


def claim_due(engine: Engine, now_us: int, lease_us: int, limit: int) -> list[OutboxRow]:
    """Pending rows whose attempt is due and whose lease (if any) ran out, now leased to
    the caller for `lease_us`. A row another worker claimed first is skipped.

    The candidates are found by a plain read, so an idle poll never takes SQLite's write
    lock; each is then taken by a compare-and-set and read again under it, so the caller
    sees the cursor and attempts as the last worker left them."""
    due = and_(
        outbox.c.state == "pending",
        outbox.c.next_attempt_us <= now_us,
        or_(outbox.c.lease_until_us.is_(None), outbox.c.lease_until_us < now_us),
    )
    with engine.connect() as connection:
        candidates = (
            connection.execute(
                select(outbox.c.id)
                .where(due)
                .order_by(outbox.c.next_attempt_us, outbox.c.id)
                .limit(limit)
            )
            .scalars()
            .all()
        )
    if not candidates:
        return []
    claimed = []
    with side_write_transaction(engine) as connection:
        for row_id in candidates:
            taken = connection.execute(
                update(outbox)
                .where(outbox.c.id == row_id, due)
                .values(lease_until_us=now_us + lease_us)
            )
            if taken.rowcount != 1:
                continue
            row = connection.execute(
                select(*_ROW_COLUMNS)
                .join(subscriptions, subscriptions.c.id == outbox.c.subscription_id)
                .where(outbox.c.id == row_id)
            ).first()
            if row is not None:
                claimed.append(OutboxRow(*tuple(row)))
    return claimed


def load_change(engine: Engine, index: int) -> Change | None:
    """The context change at log `index`, from its index row."""
    with engine.connect() as connection:
        row = connection.execute(
            select(
                context_changes.c.idx,
                context_changes.c.record_id,
                context_changes.c.key,
                context_changes.c.version,
                context_changes.c.changed_us,
            ).where(context_changes.c.idx == index)
        ).first()
    if row is None:
        return None
    return Change(row.idx, row.record_id, row.key, row.version, rfc3339(row.changed_us))


def stale_chunk(engine: Engine, row: OutboxRow, limit: int = CHUNK) -> StaleChunk:
    """The next decisions the row's change marked, after its cursor, oldest first: at most
    `limit` marks, never splitting one decision's marks across chunks (the cursor is a log
    index), and whether any remain after them."""
    with engine.connect() as connection:
        found = connection.execute(
            select(
                stale_marks.c.idx, log_entries.c.record_id, stale_marks.c.key, stale_marks.c.version
            )
            .join(log_entries, log_entries.c.idx == stale_marks.c.idx)
            .where(
                stale_marks.c.change_idx == row.subject_idx,
                stale_marks.c.idx > row.cursor_idx,
                stale_marks.c.idx <= row.last_idx,
            )
            .order_by(stale_marks.c.idx, stale_marks.c.key, stale_marks.c.version)
            .limit(limit + 1)
        ).all()
    more = len(found) > limit
    if more:
        following = found[limit].idx
        kept = [item for item in found[:limit] if item.idx != following]
        # One decision with more marks than a chunk holds goes whole, alone.
        found = kept or [item for item in found if item.idx == following]
    return StaleChunk(
        [StaleDecision(item.idx, item.record_id, item.key, item.version) for item in found],
        more,
    )


def acknowledge(
    engine: Engine,
    row: OutboxRow,
    cursor_idx: int,
    *,
    status: int | None,
    done: bool,
    now_us: int,
    lease_us: int,
) -> None:
    """A chunk up to `cursor_idx` was delivered; `done` when nothing is left after it.
    Otherwise the caller keeps the row for another `lease_us` to send the next chunk. The
    cursor only moves forward, whoever else delivered the same chunk meanwhile."""
    values: dict[str, object] = {
        "cursor_idx": cursor_idx,
        "attempts": 0,
        "lease_until_us": None if done else now_us + lease_us,
        "last_status": status,
        "last_error": None,
    }
    if done:
        values |= {"state": "delivered", "delivered_us": now_us}
    with side_write_transaction(engine) as connection:
        connection.execute(
            update(outbox)
            .where(
                outbox.c.id == row.id,
                outbox.c.state == "pending",
                outbox.c.cursor_idx <= cursor_idx,
            )
            .values(**values)
        )


def release(engine: Engine, row: OutboxRow) -> None:
    """Give a claimed row back before its lease runs out (a worker stopping)."""
    with side_write_transaction(engine) as connection:
        connection.execute(
            update(outbox)
            .where(outbox.c.id == row.id, outbox.c.state == "pending")
            .values(lease_until_us=None)
        )


def record_failure(
    engine: Engine,
    row: OutboxRow,
    *,
    status: int | None,
    error: str,
    next_attempt_us: int | None,
) -> None:
    """An attempt failed; the row waits until `next_attempt_us`, or is dead when None."""
    values: dict[str, object] = {
        "attempts": row.attempts + 1,
        "lease_until_us": None,
        "last_status": status,
        "last_error": error[:2000],
    }
    values |= {"state": "dead"} if next_attempt_us is None else {"next_attempt_us": next_attempt_us}
    with side_write_transaction(engine) as connection:
        connection.execute(
            update(outbox)
            .where(outbox.c.id == row.id, outbox.c.state == "pending")
            .values(**values)
        )


def requeue(connection: Connection, tenant: str, row_id: int, now_us: int) -> bool:
    """Send a dead row again from where it stopped; False if the tenant has no such row."""
    result = connection.execute(
        update(outbox)
        .where(outbox.c.id == row_id, outbox.c.tenant == tenant, outbox.c.state == "dead")
        .values(state="pending", attempts=0, next_attempt_us=now_us, lease_until_us=None)
    )
    return result.rowcount == 1


def counts_by_state(connection: Connection) -> dict[str, int]:
    """How many outbox rows are in each state, across tenants (for `/metrics`)."""
    rows = connection.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state))
    found: dict[str, int] = dict.fromkeys(STATES, 0)
    found.update({state: int(count) for state, count in rows})
    return found
