"""The decision index: the searchable columns of each decision record.

Admission computes a decision's row while the payload is decoded anyway, and the sequencer
writes it in the transaction that appends the entry, so search never lags the log and
never shows a decision the log does not hold. The row is derived data: verification and
why-reports read the signed envelope, never this table.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection

from ledger.log.entry import to_micros
from ledger.log.store import backfill_index, bulk_insert
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision, decode_decision
from ledger.records.signed import PRODUCER_SIGNED
from ledger.storage.schema import decisions

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
    "attestation",
)
# A row without its first column: the log index is given only by the sequencer.
IndexRow = tuple[str, str, str, str, int, str, str, str | None, str | None, str, str]

_encoder = msgspec.json.Encoder()


def index_row(decision: Decision, attestation: str = PRODUCER_SIGNED) -> IndexRow:
    # `occurred_us` always fits its BIGINT: any datetime (years 1 to 9999, an offset of
    # under a day) is within about 2.6e17 microseconds of the epoch. Reads format it with
    # `ledger.log.entry.rfc3339`, which is total, so a time past year 9999 in UTC still shows.
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
        attestation,
    )


def insert_index_rows(connection: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Rows of `(idx, *IndexRow)`, inside the caller's transaction."""
    bulk_insert(connection, "decisions", INDEX_COLUMNS, rows)


def backfill(connection: Connection) -> int:
    """Index every decision already in the log that has no row yet (for the migration that
    adds the index to an existing ledger); returns how many rows it wrote."""
    return backfill_index(
        connection, decisions, DECISION_PAYLOAD_TYPE, _backfill_row, insert_index_rows
    )


def _backfill_row(index: int, _tenant: str, payload: bytes) -> tuple[Any, ...]:
    # The tenant is the decision's own, which `index_row` reads from the payload. Only
    # decisions logged before attestation was indexed come here, all producer-signed.
    return (index, *index_row(decode_decision(payload)))
