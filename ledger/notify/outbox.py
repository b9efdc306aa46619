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
in `/metrics`, and retried only when an operator asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, and_, func, or_, select, text, update

from ledger.indexes.freshness import StaleEvent
from ledger.storage.schema import log_entries, outbox, stale_marks

STALE_EVENT = "decision.stale"
EVENT_TYPES = (STALE_EVENT,)
CHUNK = 500
STATES = ("pending", "delivered", "dead")

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


@dataclass(frozen=True, slots=True)
class StaleDecision:
    index: int
    id: str
    key: str
    version: str


def claim_due(engine: Engine, now_us: int, lease_us: int, limit: int) -> list[OutboxRow]:
    """Pending rows whose attempt is due and whose lease (if any) ran out, now leased to
    the caller for `lease_us`. A row another worker claimed first is skipped."""
    due = and_(
        outbox.c.state == "pending",
        outbox.c.next_attempt_us <= now_us,
        or_(outbox.c.lease_until_us.is_(None), outbox.c.lease_until_us < now_us),
    )
    with engine.begin() as connection:
        candidates = connection.execute(
            select(
                outbox.c.id,
                outbox.c.subscription_id,
                outbox.c.tenant,
                outbox.c.event_type,
                outbox.c.subject_idx,
                outbox.c.first_idx,
                outbox.c.last_idx,
                outbox.c.cursor_idx,
                outbox.c.attempts,
            )
            .where(due)
            .order_by(outbox.c.next_attempt_us, outbox.c.id)
            .limit(limit)
        ).all()
        claimed = []
        for row in candidates:
            # Compare-and-set: the row is ours only if its lease is still free now.
            taken = connection.execute(
                update(outbox)
                .where(outbox.c.id == row.id, due)
                .values(lease_until_us=now_us + lease_us)
            )
            if taken.rowcount == 1:
                claimed.append(OutboxRow(*row))
    return claimed


def stale_chunk(engine: Engine, row: OutboxRow, limit: int = CHUNK) -> list[StaleDecision]:
    """The next decisions the row's change marked, after its cursor, oldest first."""
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
            .limit(limit)
        ).all()
    # A decision's marks by one change are never split across chunks: the cursor is an index.
    if len(found) == limit:
        last = found[-1].idx
        if any(item.idx != last for item in found):
            found = [item for item in found if item.idx != last]
    return [StaleDecision(item.idx, item.record_id, item.key, item.version) for item in found]


def acknowledge(engine: Engine, row: OutboxRow, cursor_idx: int, done: bool, now_us: int) -> None:
    """A chunk up to `cursor_idx` was delivered; `done` when nothing is left after it."""
    values: dict[str, object] = {
        "cursor_idx": cursor_idx,
        "attempts": 0,
        "lease_until_us": None,
        "last_status": 200,
        "last_error": None,
    }
    if done:
        values |= {"state": "delivered", "delivered_us": now_us}
    with engine.begin() as connection:
        connection.execute(update(outbox).where(outbox.c.id == row.id).values(**values))


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
    with engine.begin() as connection:
        connection.execute(update(outbox).where(outbox.c.id == row.id).values(**values))


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
    found = dict.fromkeys(STATES, 0)
    found.update({state: int(count) for state, count in rows})
    return found
