"""The blob-reference index: which decision references which blob.

Admission reads a decision's references while the payload is decoded anyway (its context
snapshots' blobs and its prompt's messages blob), and the sequencer writes one row per
(tenant, digest, decision index) in the transaction that appends the decision. Erasure
reads it to find a subject's content (`ledger.erasure.targets`) and expiry to find a blob's
latest use; like every index it is derived, and `prov reindex` rebuilds it from the log.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select

from ledger.errors import RecordRejected
from ledger.log.store import bulk_insert, read_head, stream_entries
from ledger.records import dsse
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision, decode_decision
from ledger.storage.schema import blob_refs

COLUMNS = ("tenant", "digest", "idx")


def blob_references(decision: Decision) -> tuple[str, ...]:
    """The digest of every blob the decision references, each once, sorted."""
    found = {snapshot.blob for snapshot in decision.context if snapshot.blob is not None}
    if decision.prompt is not None and decision.prompt.messages_blob is not None:
        found.add(decision.prompt.messages_blob)
    return tuple(sorted(found))


def insert_refs(connection: Connection, rows: Sequence[tuple[str, str, int]]) -> None:
    """Write (tenant, digest, decision index) rows, inside the sequencing transaction."""
    bulk_insert(connection, "blob_refs", COLUMNS, rows)


def rebuild_refs(connection: Connection) -> tuple[int, int]:
    """Empty the index and fill it again from the log's decisions, inside the caller's write
    transaction; returns (rows that differ from the ones held before, rows now held)."""
    before = {tuple(row) for row in connection.execute(select(*(blob_refs.c[c] for c in COLUMNS)))}
    connection.execute(blob_refs.delete())
    rows: list[tuple[str, str, int]] = []
    for batch in stream_entries(connection, 0, read_head(connection).size):
        for index, tenant, envelope, _integrated_us, _leaf in batch:
            opened = dsse.decode_envelope(bytes(envelope))
            if opened.payloadType != DECISION_PAYLOAD_TYPE:
                continue
            try:
                decision = decode_decision(dsse.payload_bytes(opened))
            except RecordRejected:
                continue  # no longer decodes: `prov verify` names it
            rows.extend((tenant, digest, index) for digest in blob_references(decision))
    insert_refs(connection, rows)
    return len(before.symmetric_difference(rows)), len(rows)
