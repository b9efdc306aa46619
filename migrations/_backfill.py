"""Frozen helpers for migrations that index records already in the log.

A migration must keep working after the code it once called changes, so what the index
migrations need lives here, written against the stored bytes alone (the envelope's JSON
and its base64 payload) and the tables as those migrations left them, with nothing of the
application imported. Never edit a function here once a released migration calls it;
write a new one instead.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa

_BATCH = 5_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_entries = sa.table(
    "log_entries",
    sa.column("idx", sa.BigInteger),
    sa.column("tenant", sa.String),
    sa.column("payload_type", sa.String),
    sa.column("envelope", sa.LargeBinary),
)


def micros(timestamp: str) -> int:
    """An RFC 3339 timestamp with an offset as microseconds since the epoch, exactly."""
    delta = datetime.fromisoformat(timestamp.upper()) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def backfill(
    connection: sa.Connection,
    index_table: str,
    payload_type: str,
    columns: Sequence[str],
    row_of: Callable[[int, str, dict[str, Any]], tuple[Any, ...]],
) -> int:
    """Index every entry of `payload_type` after the last one `index_table` holds; returns
    how many rows it wrote. An entry whose stored bytes no longer decode is skipped (`prov
    verify` names it)."""
    index = sa.table(index_table, *(sa.column(name) for name in columns))
    after = connection.execute(sa.select(sa.func.max(index.c.idx))).scalar()
    after = -1 if after is None else after
    written = 0
    while True:
        entries = connection.execute(
            sa.select(_entries.c.idx, _entries.c.tenant, _entries.c.envelope)
            .where(_entries.c.idx > after, _entries.c.payload_type == payload_type)
            .order_by(_entries.c.idx)
            .limit(_BATCH)
        ).all()
        if not entries:
            return written
        rows = []
        for idx, tenant, envelope in entries:
            try:
                payload = msgspec.json.decode(_payload(bytes(envelope)))
                rows.append(dict(zip(columns, row_of(idx, tenant, payload), strict=True)))
            except (ValueError, KeyError, TypeError, AttributeError, msgspec.DecodeError):
                continue
        if rows:
            connection.execute(sa.insert(index), rows)
        written += len(rows)
        after = entries[-1].idx


def _payload(envelope: bytes) -> bytes:
    text: str = json.loads(envelope)["payload"]
    if "-" in text or "_" in text:
        text = text.translate(str.maketrans("-_", "+/"))
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return base64.b64decode(text)


def backfill_rows(
    connection: sa.Connection,
    payload_type: str,
    tables: dict[str, Sequence[str]],
    rows_of: Callable[[int, str, dict[str, Any]], dict[str, list[tuple[Any, ...]]]],
) -> int:
    """Index every entry of `payload_type` into several tables at once, any number of rows
    per entry (`rows_of` gives them by table); for tables that start empty. Returns how many
    entries it read. An entry whose stored bytes no longer decode is skipped."""
    indexes = {
        name: sa.table(name, *(sa.column(column) for column in columns))
        for name, columns in tables.items()
    }
    after = -1
    read = 0
    while True:
        entries = connection.execute(
            sa.select(_entries.c.idx, _entries.c.tenant, _entries.c.envelope)
            .where(_entries.c.idx > after, _entries.c.payload_type == payload_type)
            .order_by(_entries.c.idx)
            .limit(_BATCH)
        ).all()
        if not entries:
            return read
        pending: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
        for idx, tenant, envelope in entries:
            try:
                payload = msgspec.json.decode(_payload(bytes(envelope)))
                produced = rows_of(idx, tenant, payload)
            except (ValueError, KeyError, TypeError, AttributeError, msgspec.DecodeError):
                continue
            for name, produced_rows in produced.items():
                pending[name] += [
                    dict(zip(tables[name], row, strict=True)) for row in produced_rows
                ]
        for name, mapped in pending.items():
            if mapped:
                connection.execute(sa.insert(indexes[name]), mapped)
        read += len(entries)
        after = entries[-1].idx
