"""The span store: spans and logged events kept until their trace becomes decisions.

`save` writes what one export carried in one transaction, before the receiver answers, so
an acknowledged span survives a crash. Each item is keyed by tenant, trace, span and kind
(a logged event by the digest of its bytes), so an export sent twice (an OTLP retry) stores
nothing twice. A trace whose decisions are already in the log is ``done``: items for it
are refused and counted, never stored (they would change a record already written).

`claim` hands an assembler the traces that are ready: a head span arrived and nothing has
arrived for the settle time, or nothing has arrived for the grace period (the root
never came: closing). A claim is a row update, ``SKIP LOCKED`` on PostgreSQL, so two
workers never assemble one trace at once; a claim older than `stale` is taken again, so
a worker killed mid-assembly delays its traces and loses none. `finish` marks a trace done
and deletes its items in one transaction, after its decisions are committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
from sqlalchemy import (
    Engine,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)

from ingest.otlp.mapping import DECISION_TYPE_ATTRIBUTE
from ingest.otlp.spans import Export, Span, SpanEvent
from ledger.storage.db import conflict_insert, side_write_transaction
from ledger.storage.schema import otlp_items, otlp_traces

OPEN, BUSY, DONE, FAILED = "open", "busy", "done", "failed"
_SPAN = "span"
_encoder = msgspec.json.Encoder()
_span = msgspec.json.Decoder(Span)
_event = msgspec.json.Decoder(SpanEvent)


@dataclass(frozen=True, slots=True)
class Saved:
    """What `save` kept: items stored (new or already held) and items refused because
    their trace was already assembled."""

    stored: int
    late: int


@dataclass(frozen=True, slots=True)
class Claimed:
    tenant: str
    trace_id: str
    closing: bool  # no head ever came: close it as an incomplete decision


@dataclass(slots=True)
class Trace:
    """A claimed trace's items, read back."""

    spans: list[Span] = field(default_factory=list)
    events: dict[str, list[SpanEvent]] = field(default_factory=dict)


def _heads(span: Span) -> bool:
    return span.parent_span_id is None or DECISION_TYPE_ATTRIBUTE in span.attributes


def save(engine: Engine, tenant: str, export: Export, now_us: int) -> Saved:
    """Store `export`'s spans and events for `tenant` in one transaction."""
    rows: dict[tuple[str, str, str], tuple[str, bytes]] = {}
    ready: set[str] = set()
    for span in export.spans:
        rows[(span.trace_id, span.span_id, _SPAN)] = (span.trace_id, _encoder.encode(span))
        if _heads(span):
            ready.add(span.trace_id)
    for logged in export.events:
        body = _encoder.encode(logged.event)
        key = "event:" + hashlib.sha256(body).hexdigest()[:32]
        rows[(logged.trace_id, logged.span_id, key)] = (logged.trace_id, body)
    traces = {trace_id for trace_id, _ in rows.values()}
    if not rows:
        return Saved(0, 0)
    with side_write_transaction(engine) as connection:
        closed = set(
            connection.execute(
                select(otlp_traces.c.trace_id).where(
                    otlp_traces.c.tenant == tenant,
                    otlp_traces.c.trace_id.in_(sorted(traces)),
                    otlp_traces.c.state.in_((DONE, FAILED)),
                )
            ).scalars()
        )
        items = [
            {
                "tenant": tenant,
                "trace_id": trace_id,
                "span_id": span_id,
                "item": item,
                "body": body,
                "received_us": now_us,
            }
            for (trace_id, span_id, item), (_, body) in rows.items()
            if trace_id not in closed
        ]
        if items:
            connection.execute(
                conflict_insert(connection, otlp_items).on_conflict_do_nothing(), items
            )
            statement = conflict_insert(connection, otlp_traces)
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[otlp_traces.c.tenant, otlp_traces.c.trace_id],
                    set_={
                        "last_us": statement.excluded.last_us,
                        # The first head's arrival is when the trace became ready.
                        "ready_us": func.coalesce(
                            otlp_traces.c.ready_us, statement.excluded.ready_us
                        ),
                    },
                ),
                [
                    {
                        "tenant": tenant,
                        "trace_id": trace_id,
                        "state": OPEN,
                        "first_us": now_us,
                        "last_us": now_us,
                        "ready_us": now_us if trace_id in ready else None,
                    }
                    for trace_id in sorted(traces - closed)
                ],
            )
    return Saved(len(items), len(rows) - len(items))


def claim(
    engine: Engine,
    now_us: int,
    *,
    settle_us: int,
    grace_us: int,
    stale_us: int,
    limit: int,
) -> list[Claimed]:
    """Claim up to `limit` traces that are ready to assemble (see the module docstring)."""
    t = otlp_traces.c
    ready = and_(
        t.state == OPEN,
        or_(
            and_(t.ready_us.is_not(None), t.last_us <= now_us - settle_us),
            # Quiet for the grace period, not merely old: a long agent run keeps sending.
            t.last_us <= now_us - grace_us,
        ),
    )
    stale = and_(t.state == BUSY, t.claimed_us <= now_us - stale_us)
    claimable = or_(ready, stale)
    # Look before taking the writer's lock: an idle server polls often, and on SQLite an
    # empty claim would still hold the single writer's lock that every other process needs.
    with engine.connect() as connection:
        if connection.execute(select(t.trace_id).where(claimable).limit(1)).first() is None:
            return []
    chosen = (
        select(t.tenant, t.trace_id)
        .where(claimable)
        .order_by(t.last_us)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with side_write_transaction(engine) as connection:
        rows = connection.execute(
            update(otlp_traces)
            .where(tuple_(t.tenant, t.trace_id).in_(chosen.scalar_subquery()))
            .values(state=BUSY, claimed_us=now_us)
            .returning(t.tenant, t.trace_id, t.ready_us)
        ).all()
    return [Claimed(row.tenant, row.trace_id, row.ready_us is None) for row in rows]


def load(engine: Engine, claimed: Sequence[Claimed]) -> dict[tuple[str, str], Trace]:
    """The items of each claimed trace."""
    found: dict[tuple[str, str], Trace] = {
        (item.tenant, item.trace_id): Trace() for item in claimed
    }
    if not found:
        return found
    c = otlp_items.c
    with engine.connect() as connection:
        rows = connection.execute(
            select(c.tenant, c.trace_id, c.span_id, c.item, c.body).where(
                tuple_(c.tenant, c.trace_id).in_(sorted(found))
            )
        )
        for row in rows:
            trace = found[(row.tenant, row.trace_id)]
            if row.item == _SPAN:
                trace.spans.append(_span.decode(bytes(row.body)))
            else:
                trace.events.setdefault(row.span_id, []).append(_event.decode(bytes(row.body)))
    return found


def finish(
    engine: Engine, outcomes: Iterable[tuple[Claimed, int, str | None]], now_us: int
) -> None:
    """Mark traces done (or failed, with the reason in `note`) after their decisions were
    committed, and delete their items; `outcomes` is (trace, decisions, note)."""
    rows = [
        {
            "key_tenant": trace.tenant,
            "key_trace": trace.trace_id,
            "state": DONE if note is None else FAILED,
            "decisions": count,
            "note": note,
            "last_us": now_us,
        }
        for trace, count, note in outcomes
    ]
    if not rows:
        return
    keys = sorted({(row["key_tenant"], row["key_trace"]) for row in rows})
    with side_write_transaction(engine) as connection:
        # One executemany and one DELETE for the whole batch, not two statements a trace.
        connection.execute(
            update(otlp_traces)
            .where(
                otlp_traces.c.tenant == bindparam("key_tenant"),
                otlp_traces.c.trace_id == bindparam("key_trace"),
            )
            .values(
                state=bindparam("state"),
                decisions=bindparam("decisions"),
                note=bindparam("note"),
                last_us=bindparam("last_us"),
            ),
            rows,
        )
        connection.execute(
            delete(otlp_items).where(tuple_(otlp_items.c.tenant, otlp_items.c.trace_id).in_(keys))
        )


def prune(engine: Engine, before_us: int) -> int:
    """Forget done and failed traces finished before `before_us`; returns how many."""
    with side_write_transaction(engine) as connection:
        result = connection.execute(
            delete(otlp_traces).where(
                otlp_traces.c.state.in_((DONE, FAILED)), otlp_traces.c.last_us < before_us
            )
        )
    return result.rowcount or 0


def pending(engine: Engine) -> dict[str, int]:
    """How many traces are in each state (for metrics)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(otlp_traces.c.state, func.count()).group_by(otlp_traces.c.state)
        )
        return {row[0]: row[1] for row in rows}
