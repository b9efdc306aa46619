"""Admission: the checks a record passes before the sequencer may store it.

The steps are numbered as they run; each failure raises a `RecordRejected` subclass naming
what is wrong, and nothing of a rejected record is ever written.

1. The envelope is within the size limit.
2. It parses as a DSSE envelope.
3. Its payloadType is one the ledger knows.
4. The payload decodes strictly against that type's schema.
5. Some signature names a registered key bound to the record's tenant and service.
6. That key was valid at the record's `occurred_at` and is not revoked.
7. The signature verifies over PAE(payloadType, payload).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from ledger import dsse
from ledger._parallel import WorkerPool
from ledger.entry import to_micros
from ledger.errors import (
    KeyNotAuthorized,
    KeyNotValidAt,
    KeyRevoked,
    RecordRejected,
    RecordTooLarge,
    SignatureError,
    UnknownKey,
    UnsupportedPayloadType,
)
from ledger.keyring import ServiceKey, load_keys
from ledger.record import DECISION_PAYLOAD_TYPE, Decision, decode_decision

DEFAULT_MAX_RECORD_BYTES = 1 << 20

# payloadType -> strict decoder. Later record kinds (replays, revocations) register here.
PAYLOAD_DECODERS: dict[str, Callable[[bytes], Decision]] = {
    DECISION_PAYLOAD_TYPE: decode_decision,
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A record that parsed (steps 1 to 4) but is not yet authenticated."""

    raw: bytes
    envelope: dsse.Envelope
    payload: bytes
    decision: Decision

    @property
    def keyids(self) -> list[str]:
        return [signature.keyid for signature in self.envelope.signatures]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A record that passed every admission step; the sequencer stores exactly `raw`."""

    raw: bytes
    payload_type: str
    decision: Decision
    keyid: str

    @property
    def tenant(self) -> str:
        return self.decision.tenant

    @property
    def record_id(self) -> str:
        return self.decision.id


def parse_record(raw: bytes, *, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Candidate:
    # 1.
    if len(raw) > max_bytes:
        raise RecordTooLarge(f"envelope is {len(raw)} bytes; the limit is {max_bytes}")
    # 2.
    envelope = dsse.decode_envelope(raw)
    # 3.
    decode = PAYLOAD_DECODERS.get(envelope.payloadType)
    if decode is None:
        raise UnsupportedPayloadType(
            f"payloadType {envelope.payloadType!r} is not one of {sorted(PAYLOAD_DECODERS)}",
            pointer="/payloadType",
        )
    # 4.
    payload = dsse.payload_bytes(envelope)
    return Candidate(raw, envelope, payload, decode(payload))


def authenticate(
    candidate: Candidate, keys: dict[str, ServiceKey], *, allow_revoked: bool = False
) -> Admitted:
    """Steps 5 to 7. With several signatures, any one that passes admits the record.

    `allow_revoked` is for re-checking stored records: a key revoked after it signed does
    not make the signature false, so verification of the log reports it only as status.
    """
    decision = candidate.decision
    occurred_us = to_micros(decision.occurred_at)
    first_error: RecordRejected | None = None
    for position, signature in enumerate(candidate.envelope.signatures):
        pointer = f"/signatures/{position}"
        key = keys.get(signature.keyid)
        error: RecordRejected | None
        # 5.
        if key is None:
            error = UnknownKey(f"keyid {signature.keyid!r} is not registered", pointer=pointer)
        elif (key.tenant, key.service) != (decision.tenant, decision.service):
            error = KeyNotAuthorized(
                f"keyid {key.keyid} signs for {key.tenant}/{key.service}, "
                f"not {decision.tenant}/{decision.service}",
                pointer=pointer,
            )
        # 6.
        elif key.revoked_us is not None and not allow_revoked:
            error = KeyRevoked(f"keyid {key.keyid} is revoked", pointer=pointer)
        elif not key.valid_at(occurred_us):
            error = KeyNotValidAt(
                f"keyid {key.keyid} was not valid at occurred_at {decision.occurred_at}",
                pointer=pointer,
            )
        # 7.
        elif not dsse.verify_envelope(
            candidate.envelope, candidate.payload, key.keyid, key.public_key
        ):
            error = SignatureError(
                f"signature by {key.keyid} does not verify", pointer=f"{pointer}/sig"
            )
        else:
            return Admitted(candidate.raw, candidate.envelope.payloadType, decision, key.keyid)
        first_error = first_error or error
    assert first_error is not None  # decode_envelope refuses an envelope without signatures
    raise first_error


def admit_batch(
    engine: Engine,
    raws: Sequence[bytes],
    *,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    pool: WorkerPool | None = None,
) -> list[Admitted | RecordRejected]:
    """Admit many records: one registry query for the whole batch, and signature checks
    spread over `pool`'s threads (libsodium releases the GIL while it verifies)."""
    parsed: list[Candidate | RecordRejected] = []
    for raw in raws:
        try:
            parsed.append(parse_record(raw, max_bytes=max_bytes))
        except RecordRejected as error:
            parsed.append(error)
    keys = load_keys(
        engine,
        (keyid for item in parsed if isinstance(item, Candidate) for keyid in item.keyids),
    )

    def check(item: Candidate | RecordRejected) -> Admitted | RecordRejected:
        if isinstance(item, RecordRejected):
            return item
        try:
            return authenticate(item, keys)
        except RecordRejected as error:
            return error

    if pool is None:
        return [check(item) for item in parsed]
    return pool.map(check, parsed)
