"""Signed records: a decision's DSSE envelope bytes, made once and never re-encoded.

Every send of a record, first or retry, single or in a batch, puts these exact bytes on the
wire. That is what makes retries safe (the server sees the same id with the same bytes and
answers with the same receipt) and what a receipt's `envelope_sha256` is checked against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ingest.client.errors import InvalidDecision
from ledger.errors import RecordRejected
from ledger.keys.signing import SigningKey, sign_context_change, sign_decision
from ledger.records import dsse
from ledger.records.context_change import (
    CONTEXT_CHANGE_PAYLOAD_TYPE,
    ContextChange,
    decode_context_change,
)
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision, decode_decision


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """A record's signed envelope bytes (a decision, or a context change), with the id and
    tenant they carry."""

    id: str
    tenant: str
    envelope: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the envelope bytes: what a receipt's `envelope_sha256` must be."""
        return hashlib.sha256(self.envelope).hexdigest()

    @classmethod
    def from_envelope(cls, envelope: bytes) -> SignedRecord:
        """Wrap envelope bytes signed elsewhere (say, kept in an outbox), checking that they
        hold a decision or a context change that satisfies its schema. The bytes are kept as
        they are."""
        return cls(*_check(envelope), envelope)


# What a service signs and sends: its decisions, and the context changes of state it owns.
_DECODERS: dict[str, Callable[[bytes], Decision | ContextChange]] = {
    DECISION_PAYLOAD_TYPE: decode_decision,
    CONTEXT_CHANGE_PAYLOAD_TYPE: decode_context_change,
}


def _check(envelope: bytes) -> tuple[str, str]:
    """The id and tenant of a decision or context-change envelope; `InvalidDecision` if it
    would be refused for its shape. Decoding what will be sent, not the Struct, checks the
    real bytes, and Struct constructors do not enforce the schema's constraints."""
    try:
        parsed = dsse.decode_envelope(envelope)
        decode = _DECODERS.get(parsed.payloadType)
        if decode is None:
            raise InvalidDecision(
                f"payloadType is not one of {sorted(_DECODERS)}", pointer="/payloadType"
            )
        record = decode(dsse.payload_bytes(parsed))
    except RecordRejected as error:
        raise InvalidDecision(error.detail, pointer=error.pointer) from error
    return record.id, record.tenant


def sign_record(
    record: Decision | ContextChange, key: SigningKey, keyid: str | None = None
) -> SignedRecord:
    """Sign `record` once with the service key; `InvalidDecision` if it breaks its schema."""
    if isinstance(record, ContextChange):
        envelope = sign_context_change(record, key, keyid)
    else:
        envelope = sign_decision(record, key, keyid)
    record_id, tenant = _check(envelope)
    return SignedRecord(record_id, tenant, envelope)


def batch_body(records: Sequence[SignedRecord]) -> bytes:
    """A JSON array of the envelopes, each element byte for byte as signed."""
    return b"[" + b",".join(record.envelope for record in records) + b"]"


def chunks(
    records: Sequence[SignedRecord], max_records: int, max_bytes: int
) -> Iterator[Sequence[SignedRecord]]:
    """Consecutive runs of at most `max_records` records whose batch body stays within
    `max_bytes`; a record larger than that on its own still goes, alone."""
    start = 0
    while start < len(records):
        end = start + 1
        size = 2 + len(records[start].envelope)
        while end < len(records) and end - start < max_records:
            size += 1 + len(records[end].envelope)
            if size > max_bytes:
                break
            end += 1
        yield records[start:end]
        start = end
