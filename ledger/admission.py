"""Admission: the checks a record passes before the sequencer may store it.

The steps are numbered as they run; each failure raises a `RecordRejected` subclass naming
what is wrong, and nothing of a rejected record is ever written.

1. The envelope is within the size limit.
2. It parses as a DSSE envelope with at most `dsse.MAX_SIGNATURES` signatures.
3. Its payloadType is one the ledger knows.
4. The payload keeps the admission contract (`ledger.records.bounds`: depth, duplicate
   members, NUL, integer and timestamp ranges) and decodes strictly against its schema.
5. Some signature names a registered key bound to the record's tenant and service.
6. That key was valid at the record's `occurred_at` and is not revoked.
7. The signature verifies over PAE(payloadType, payload).
8. The record's authority holds (`ledger.delegation.admission`): a decision's delegation chain
   verifies as its tenant's mode asks, and a revocation is signed by the delegation's issuer.
   A replay names a decision of its own tenant's log by its id and the leaf hash of its
   entry (`ledger.indexes.replays`).

Steps 1 to 7 apply to every payload type: decisions, principal, revocation and replay
records all name a tenant, a service, an id and an `occurred_at`.

One record never fails another: in a batch, any error while checking one record (even one
no rule names) refuses that record alone, as `RecordUnprocessable`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from sqlalchemy import Engine

from ledger._parallel import WorkerPool
from ledger.delegation.admission import PendingChain, Record, authorize, load_roots, verify_pending
from ledger.delegation.mode import load_modes
from ledger.delegation.records import (
    PRINCIPAL_PAYLOAD_TYPE,
    REVOCATION_PAYLOAD_TYPE,
    decode_principal,
    decode_revocation,
)
from ledger.errors import (
    KeyNotAuthorized,
    KeyNotValidAt,
    KeyRevoked,
    MalformedEnvelope,
    RecordRejected,
    RecordTooLarge,
    RecordUnprocessable,
    SignatureError,
    UnknownKey,
    UnsupportedPayloadType,
)
from ledger.indexes.decisions import IndexRow, index_row
from ledger.indexes.delegations import AuthorityRow
from ledger.indexes.replays import (
    DecisionLeaves,
    ReplayRow,
    check_target,
    decision_leaves,
    replay_row,
)
from ledger.keys.keyring import ServiceKey, load_keys
from ledger.log.entry import to_micros
from ledger.records import bounds as payload_bounds
from ledger.records import dsse
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision, decode_decision
from ledger.records.replay import REPLAY_PAYLOAD_TYPE, ReplayRecord, decode_replay

DEFAULT_MAX_RECORD_BYTES = 1 << 20
_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_U = TypeVar("_U")

# Every record kind the log admits.
LoggedRecord = Record | ReplayRecord

# payloadType -> strict decoder.
PAYLOAD_DECODERS: dict[str, Callable[[bytes], LoggedRecord]] = {
    DECISION_PAYLOAD_TYPE: decode_decision,
    PRINCIPAL_PAYLOAD_TYPE: decode_principal,
    REVOCATION_PAYLOAD_TYPE: decode_revocation,
    REPLAY_PAYLOAD_TYPE: decode_replay,
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A record that parsed (steps 1 to 4) but is not yet authenticated."""

    raw: bytes
    envelope: dsse.Envelope
    payload: bytes
    decision: LoggedRecord  # a decision, or a principal, revocation or replay record


@dataclass(frozen=True, slots=True)
class Admitted:
    """A record that passed every admission step; the sequencer stores exactly `raw`.

    It keeps only what sequencing needs, not the decoded payload: a batch of decoded
    decisions held alive makes the cyclic garbage collector re-walk them all, which once
    cost more than the signature checks.
    """

    raw: bytes
    payload_type: str
    tenant: str
    record_id: str
    keyid: str
    # A decision's search-index row, computed while the payload is decoded anyway.
    index: IndexRow | None
    # The delegation index's row (step 8): a verified invocation, a principal, a revocation.
    authority: AuthorityRow | None = None
    # A replay's index row, with the decision it names (checked in step 8).
    replay: ReplayRow | None = None


def open_envelope(
    raw: bytes, *, max_bytes: int = DEFAULT_MAX_RECORD_BYTES, admitting: bool = False
) -> dsse.Envelope:
    """Steps 1 to 3: cheap enough to run for a whole batch before any key is looked up.

    `admitting` applies the bounds of the admission contract; readers re-checking stored
    records leave it off, so that records stored before a bound existed still read.
    """
    # 1.
    if len(raw) > max_bytes:
        raise RecordTooLarge(f"envelope is {len(raw)} bytes; the limit is {max_bytes}")
    # 2.
    envelope = dsse.decode_envelope(raw)
    if admitting and len(envelope.signatures) > dsse.MAX_SIGNATURES:
        raise MalformedEnvelope(
            f"envelope carries {len(envelope.signatures)} signatures; the limit is "
            f"{dsse.MAX_SIGNATURES}",
            pointer="/signatures",
        )
    # 3.
    if envelope.payloadType not in PAYLOAD_DECODERS:
        raise UnsupportedPayloadType(
            f"payloadType {envelope.payloadType!r} is not one of {sorted(PAYLOAD_DECODERS)}",
            pointer="/payloadType",
        )
    return envelope


def decode_payload(raw: bytes, envelope: dsse.Envelope, *, admitting: bool = False) -> Candidate:
    # 4. Within the admission contract (`ledger.records.bounds`), then the type's schema.
    payload = dsse.payload_bytes(envelope)
    if admitting:
        payload_bounds.check_json(payload)
    record = PAYLOAD_DECODERS[envelope.payloadType](payload)
    if admitting:
        payload_bounds.check_record(record)
    return Candidate(raw, envelope, payload, record)


def parse_record(raw: bytes, *, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Candidate:
    """Steps 1 to 4."""
    return decode_payload(raw, open_envelope(raw, max_bytes=max_bytes))


def authenticate(
    candidate: Candidate, keys: dict[str, ServiceKey], *, allow_revoked: bool = False
) -> Admitted:
    """Steps 5 to 7. With several signatures, any one that passes admits the record.

    `allow_revoked` is for re-checking stored records: a key revoked after it signed does
    not make the signature false, so verification of the log reports it only as status.
    """
    decision = candidate.decision
    occurred_us = to_micros(decision.occurred_at)
    # Computed once: each signature is checked on its own, at most once, and only when its
    # keyid is registered, so the cost grows with the number of known signatures, not its
    # square.
    message = dsse.pae(candidate.envelope.payloadType, candidate.payload)
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
        elif not dsse.verify_signature(candidate.envelope, position, message, key.public_key):
            error = SignatureError(
                f"signature by {key.keyid} does not verify", pointer=f"{pointer}/sig"
            )
        else:
            return Admitted(
                candidate.raw,
                candidate.envelope.payloadType,
                decision.tenant,
                decision.id,
                key.keyid,
                index_row(decision) if isinstance(decision, Decision) else None,
                replay=replay_row(decision) if isinstance(decision, ReplayRecord) else None,
            )
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
    """Admit many records with one query each for keys, modes and principals per batch.

    Payload decoding (which holds the GIL) and signature checks (which do not) run
    together on `pool`'s threads, so one thread decodes while another verifies. Delegation
    chains are checked in a second pass, once the principals their roots name are read.
    """
    opened: list[tuple[bytes, dsse.Envelope] | RecordRejected] = []
    for raw in raws:
        try:
            opened.append((raw, open_envelope(raw, max_bytes=max_bytes, admitting=True)))
        except RecordRejected as error:
            opened.append(error)
        except Exception as error:  # one record's fault stays its own
            opened.append(_unprocessable(error))
    keys = load_keys(
        engine,
        (
            signature.keyid
            for item in opened
            if not isinstance(item, RecordRejected)
            for signature in item[1].signatures
        ),
    )
    with engine.connect() as connection:
        modes = load_modes(connection)

    def admit(
        item: tuple[bytes, dsse.Envelope] | RecordRejected,
    ) -> Admitted | RecordRejected | tuple[Admitted, PendingChain]:
        if isinstance(item, RecordRejected):
            return item
        try:
            candidate = decode_payload(*item, admitting=True)
            admitted = authenticate(candidate, keys)
            # 8., as far as it goes without the batch's principals and replayed decisions.
            record = candidate.decision
            authority = None if isinstance(record, ReplayRecord) else authorize(record, modes)
        except RecordRejected as error:
            return error
        except Exception as error:  # one record's fault stays its own
            return _unprocessable(error)
        if isinstance(authority, PendingChain):
            return admitted, authority
        return admitted if authority is None else replace(admitted, authority=authority)

    first = _map(pool, admit, opened)
    pending = [item[1] for item in first if isinstance(item, tuple)]
    principals = load_roots(engine, pending) if pending else {}
    replayed = _replayed_decisions(engine, first)
    at_us = time.time_ns() // 1000

    def finish(
        item: Admitted | RecordRejected | tuple[Admitted, PendingChain],
    ) -> Admitted | RecordRejected:
        if isinstance(item, RecordRejected):
            return item
        admitted, chain = item if isinstance(item, tuple) else (item, None)
        try:
            if admitted.replay is not None:
                check_target(admitted.tenant, admitted.replay, replayed)
            if chain is not None:
                return replace(admitted, authority=verify_pending(chain, principals, at_us))
        except RecordRejected as error:
            return error
        except Exception as error:  # one record's fault stays its own
            return _unprocessable(error)
        return admitted

    return _map(pool, finish, first) if pending else [finish(item) for item in first]


def _unprocessable(error: Exception) -> RecordUnprocessable:
    """A record whose check failed unexpectedly: logged for the operator, refused alone."""
    _log.warning("record could not be checked", exc_info=error)
    return RecordUnprocessable(
        f"the record could not be checked ({type(error).__name__}); it was not stored"
    )


def _replayed_decisions(
    engine: Engine, first: Sequence[Admitted | RecordRejected | tuple[Admitted, PendingChain]]
) -> DecisionLeaves:
    """The decisions the batch's replays name, as stored, in one query."""
    targets = {
        (item.tenant, item.replay.replay_of)
        for item in first
        if isinstance(item, Admitted) and item.replay is not None
    }
    if not targets:
        return {}
    with engine.connect() as connection:
        return decision_leaves(connection, targets)


def _map(pool: WorkerPool | None, function: Callable[[_T], _U], items: Sequence[_T]) -> list[_U]:
    return pool.map(function, items) if pool is not None else [function(item) for item in items]
