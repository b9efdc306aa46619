"""The erasure, retention and legal-hold indexes: written with their records, rebuilt from
the log.

- `erasures`: one row per request. Its `recorded` row is written in the transaction that
  appends the request's erasure records, with every digest they list marked erased in
  `blobs` (`BlobVault.mark_erased`, each with the log index of the part that lists it; a
  digest the ledger never held gets a tombstone row, so that it can never be uploaded);
  completing the request (objects dropped, key destroyed) makes it `done`. A `queued` row
  has no record yet: it is the ledger's work list, not derived from the log, and a rebuild
  keeps it as it is.
- `retention_rules`: one row per retention record; the latest version of a tenant is in
  force.
- `legal_holds`: one row per hold, from its `add` record; its `release` record fills the
  released columns.

`rebuild_erasures` empties the derived rows and fills them again from the records alone
(`prov reindex`), keeping the state (`recorded`, `done`) of a request it finds again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from ledger.blobs.vault import BlobRow, BlobVault
from ledger.log.entry import to_micros
from ledger.log.store import read_entry, read_head, stream_entries
from ledger.records import dsse
from ledger.records.erasure import (
    ERASURE_PAYLOAD_TYPE,
    LEDGER_MADE_TYPES,
    RETENTION_PAYLOAD_TYPE,
    ErasureRecord,
    LegalHoldRecord,
    RetentionRecord,
    decode_erasure,
    decode_hold,
    decode_retention,
    erasure_in,
)
from ledger.storage.db import conflict_insert
from ledger.storage.schema import blobs, erasures, legal_holds, retention_rules

# The columns a rebuild gives from the log, per table (the erasure state excepted).
ERASURE_COLUMNS = (
    "tenant",
    "request_id",
    "kind",
    "subject",
    "requested_by",
    "reason",
    "requested_us",
    "first_idx",
    "parts",
    "digests",
    "erased_us",
)
RETENTION_COLUMNS = ("idx", "tenant", "version", "floor_days", "expire_after_days", "set_us")
HOLD_COLUMNS = (
    "tenant",
    "hold_id",
    "idx",
    "subject",
    "service",
    "decision_type",
    "reason",
    "placed_by",
    "placed_us",
    "released_idx",
    "released_us",
    "released_by",
)


def write_erasure(
    connection: Connection,
    parts: Sequence[tuple[int, ErasureRecord]],
    *,
    state: str,
    held: Mapping[str, BlobRow] | None = None,
) -> None:
    """The request's row for its records (index, record) as placed, and every digest they
    list marked erased (a digest never held gets a tombstone): inside their transaction.
    `held` is the tenant's rows of those digests, when the caller read them already."""
    first_index, first = parts[0]
    row = {
        "kind": first.kind,
        "subject": first.subject,
        "state": state,
        "requested_by": first.requested_by,
        "reason": first.reason,
        "requested_us": to_micros(first.requested_at),
        "not_before_us": None,
        "waiting_for": None,
        "first_idx": first_index,
        "parts": len(parts),
        "digests": sum(len(record.digests) for _, record in parts),
        "erased_us": to_micros(first.erased_at),
    }
    key = and_(erasures.c.tenant == first.tenant, erasures.c.request_id == first.request_id)
    if connection.execute(select(erasures.c.state).where(key)).first() is None:
        connection.execute(
            insert(erasures).values(tenant=first.tenant, request_id=first.request_id, **row)
        )
    else:
        connection.execute(update(erasures).where(key).values(**row))
    for index, record in parts:
        mark_listed(connection, index, record, held)


def mark_listed(
    connection: Connection,
    index: int,
    record: ErasureRecord,
    held: Mapping[str, BlobRow] | None = None,
) -> None:
    """Mark the record's digests erased by it; a digest with no blob row gets a tombstone."""
    erased_us = to_micros(record.erased_at)
    if held is None:
        held = BlobVault.rows(connection, record.tenant, record.digests)
    tombstones = [
        {
            "tenant": record.tenant,
            "digest": digest,
            "size": 0,
            "created_us": erased_us,
            "erased_us": erased_us,
            "erasure_idx": index,
        }
        for digest in record.digests
        if digest not in held
    ]
    if tombstones:
        # A blob uploaded since `held` was read has a row now: it is marked just below.
        statement = conflict_insert(connection, blobs).on_conflict_do_nothing()
        connection.execute(statement, tombstones)
    BlobVault.mark_erased(
        connection, record.tenant, record.digests, now_us=erased_us, erasure_idx=index
    )


def write_retention(connection: Connection, index: int, record: RetentionRecord) -> None:
    connection.execute(
        insert(retention_rules).values(
            idx=index,
            tenant=record.tenant,
            version=record.version,
            floor_days=record.floor_days,
            expire_after_days=record.expire_after_days,
            set_us=to_micros(record.set_at),
        )
    )


def write_hold(connection: Connection, index: int, record: LegalHoldRecord) -> None:
    """A hold placed (a new row) or released (its row's released columns)."""
    at_us = to_micros(record.at)
    if record.action == "release":
        connection.execute(
            update(legal_holds)
            .where(legal_holds.c.tenant == record.tenant, legal_holds.c.hold_id == record.hold_id)
            .values(released_idx=index, released_us=at_us, released_by=record.by)
        )
        return
    selected = record.filter
    connection.execute(
        insert(legal_holds).values(
            tenant=record.tenant,
            hold_id=record.hold_id,
            idx=index,
            subject=record.subject,
            service=None if selected is None else selected.service,
            decision_type=None if selected is None else selected.decision_type,
            reason=record.reason,
            placed_by=record.by,
            placed_us=at_us,
        )
    )


# --- rebuilt from the log -------------------------------------------------------------------


@dataclass
class ErasuresRebuilt:
    """What rebuilding found: rows the index held that the log does not give (`unexpected`)
    and the reverse (`missing`), per table; and digests an erasure record lists whose blob
    row was not marked erased by it or before it (`unmarked`, marked now)."""

    erasures: int = 0
    retention: int = 0
    holds: int = 0
    missing: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    unexpected: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    unmarked: list[tuple[str, str]] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return (
            not any(self.missing.values())
            and not any(self.unexpected.values())
            and not self.unmarked
        )


def rebuild_erasures(connection: Connection) -> ErasuresRebuilt:
    """Empty the erasure, retention and hold indexes (queued requests aside) and fill them
    again from their records, inside the caller's write transaction (roll it back to only
    check)."""
    recorded = erasures.c.first_idx.is_not(None)
    before = {
        "erasures": _rows(connection, erasures, ERASURE_COLUMNS, recorded),
        "retention_rules": _rows(connection, retention_rules, RETENTION_COLUMNS),
        "legal_holds": _rows(connection, legal_holds, HOLD_COLUMNS),
    }
    states = {
        (row.tenant, row.request_id): row.state
        for row in connection.execute(
            select(erasures.c.tenant, erasures.c.request_id, erasures.c.state).where(recorded)
        )
    }
    connection.execute(erasures.delete().where(recorded))
    connection.execute(retention_rules.delete())
    connection.execute(legal_holds.delete())
    rebuilt = ErasuresRebuilt()
    requests: dict[tuple[str, str], list[tuple[int, ErasureRecord]]] = {}
    made: list[tuple[int, RetentionRecord | LegalHoldRecord]] = []
    for batch in stream_entries(connection, 0, read_head(connection).size):
        for index, _tenant, envelope, _integrated_us, _leaf in batch:
            opened = dsse.decode_envelope(bytes(envelope))
            if opened.payloadType not in LEDGER_MADE_TYPES:
                continue
            payload = dsse.payload_bytes(opened)
            if opened.payloadType == ERASURE_PAYLOAD_TYPE:
                record = decode_erasure(payload)
                requests.setdefault((record.tenant, record.request_id), []).append((index, record))
            elif opened.payloadType == RETENTION_PAYLOAD_TYPE:
                made.append((index, decode_retention(payload)))
            else:
                made.append((index, decode_hold(payload)))
    for (tenant, request_id), parts in requests.items():
        for index, record in parts:
            rebuilt.unmarked += _unmarked(connection, index, record)
        write_erasure(connection, parts, state=states.get((tenant, request_id), "recorded"))
    for index, rule in made:
        if isinstance(rule, RetentionRecord):
            write_retention(connection, index, rule)
        else:
            write_hold(connection, index, rule)
    rebuilt.erasures = len(requests)
    rebuilt.retention = sum(isinstance(rule, RetentionRecord) for _, rule in made)
    rebuilt.holds = len(made) - rebuilt.retention
    after = {
        "erasures": _rows(connection, erasures, ERASURE_COLUMNS, recorded),
        "retention_rules": _rows(connection, retention_rules, RETENTION_COLUMNS),
        "legal_holds": _rows(connection, legal_holds, HOLD_COLUMNS),
    }
    for name, held in before.items():
        rebuilt.missing[name] = sorted(after[name] - held, key=repr)
        rebuilt.unexpected[name] = sorted(held - after[name], key=repr)
    return rebuilt


def _unmarked(connection: Connection, index: int, record: ErasureRecord) -> list[tuple[str, str]]:
    """The record's digests whose row is not erased by this record or an earlier one."""
    held = BlobVault.rows(connection, record.tenant, record.digests)
    unmarked = []
    for digest in record.digests:
        row = held.get(digest)
        if row is None or row.erased_us is None or (row.erasure_idx or -1) > index:
            unmarked.append((record.tenant, digest))
    return unmarked


def _rows(
    connection: Connection, table: Any, columns: tuple[str, ...], *where: Any
) -> set[tuple[Any, ...]]:
    query = select(*(table.c[c] for c in columns))
    if where:
        query = query.where(*where)
    return {tuple(row) for row in connection.execute(query)}


def erasure_requests(connection: Connection, indexes: set[int]) -> dict[int, str]:
    """The request id of the erasure record at each of `indexes` (log indexes), read from
    the records themselves; an index that holds no erasure record is left out."""
    found: dict[int, str] = {}
    for index in sorted(indexes):
        entry = read_entry(connection, index)
        if entry is not None and entry.payload_type == ERASURE_PAYLOAD_TYPE:
            found[index] = erasure_in(entry.envelope).request_id
    return found
