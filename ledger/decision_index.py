"""The decision index: the searchable columns of each decision record.

Admission computes a decision's row while the payload is decoded anyway, and the sequencer
writes it in the transaction that appends the entry, so search never lags the log and
never shows a decision the log does not hold. The row is derived data: verification and
why-reports read the signed envelope, never this table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from sqlalchemy import Connection, select

from ledger import dsse
from ledger.entry import to_micros
from ledger.errors import RecordRejected
from ledger.record import DECISION_PAYLOAD_TYPE, Decision, decode_decision
from ledger.schema import decisions, log_entries
from ledger.store import bulk_insert

INDEX_COLUMNS = (
    "idx",
    "tenant",
    "record_id",
    "service",
    "decision_type",
    "occurred_us",
    "model_name",
    "model_version",
    "subject",
    "delegator",
    "output",
)
# A row without its first column: the log index is given only by the sequencer.
IndexRow = tuple[str, str, str, str, int, str, str, str | None, str | None, str]

_encoder = msgspec.json.Encoder()


def index_row(decision: Decision) -> IndexRow:
    return (
        decision.tenant,
        decision.id,
        decision.service,
        decision.decision_type,
        to_micros(decision.occurred_at),
        decision.model.name,
        decision.model.version,
        decision.subject,
        decision.delegation[0].iss if decision.delegation else None,
        _encoder.encode(decision.output.decision).decode(),
    )


def insert_index_rows(connection: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Rows of `(idx, *IndexRow)`, inside the caller's transaction."""
    bulk_insert(connection, "decisions", INDEX_COLUMNS, rows)


_BACKFILL_BATCH = 2_000


def backfill(connection: Connection) -> int:
    """Index every decision already in the log that has no row yet (for the migration that
    adds the index to an existing ledger); returns how many rows it wrote."""
    start = connection.execute(
        select(decisions.c.idx).order_by(decisions.c.idx.desc()).limit(1)
    ).scalar_one_or_none()
    written = 0
    for batch in _decision_envelopes(connection, -1 if start is None else start):
        insert_index_rows(connection, batch)
        written += len(batch)
    return written


def _decision_envelopes(connection: Connection, after: int) -> Iterator[list[tuple[Any, ...]]]:
    while True:
        rows = connection.execute(
            select(log_entries.c.idx, log_entries.c.envelope)
            .where(log_entries.c.idx > after, log_entries.c.payload_type == DECISION_PAYLOAD_TYPE)
            .order_by(log_entries.c.idx)
            .limit(_BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        batch = []
        for idx, envelope in rows:
            try:
                payload = dsse.payload_bytes(dsse.decode_envelope(bytes(envelope)))
                batch.append((idx, *index_row(decode_decision(payload))))
            except RecordRejected:
                continue  # altered bytes: `prov verify` names the entry; search skips it
        yield batch
        after = rows[-1].idx
