"""One signed record on its own: admission's steps 1 to 7, without a database.

`ledger.admission` runs these for a batch against the key registry; offline checks (a saved
why-report, a stored record re-checked, the client) run them against keys they were shown.
Nothing here imports SQLAlchemy, so the client and the offline verifiers can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ledger.delegation.records import (
    PRINCIPAL_PAYLOAD_TYPE,
    REVOCATION_PAYLOAD_TYPE,
    PrincipalRecord,
    RevocationRecord,
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
    SignatureError,
    UnknownKey,
    UnsupportedPayloadType,
)
from ledger.keys.service_key import ServiceKey
from ledger.log.entry import to_micros
from ledger.records import bounds as payload_bounds
from ledger.records import dsse
from ledger.records.context_change import (
    CONTEXT_CHANGE_PAYLOAD_TYPE,
    ContextChange,
    decode_context_change,
)
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision, decode_decision
from ledger.records.erasure import (
    ERASURE_PAYLOAD_TYPE,
    LEGAL_HOLD_PAYLOAD_TYPE,
    RETENTION_PAYLOAD_TYPE,
    ErasureRecord,
    LegalHoldRecord,
    RetentionRecord,
    decode_erasure,
    decode_hold,
    decode_retention,
)
from ledger.records.monitor import (
    BREACH_PAYLOAD_TYPE,
    MONITOR_PAYLOAD_TYPE,
    BreachRecord,
    MonitorRecord,
    decode_breach,
    decode_monitor,
)
from ledger.records.policy import (
    POLICY_CHECK_PAYLOAD_TYPE,
    POLICY_PAYLOAD_TYPE,
    PolicyCheckRecord,
    PolicyRecord,
    decode_policy,
    decode_policy_check,
)
from ledger.records.replay import (
    REPLAY_PAYLOAD_TYPE,
    REPLAY_SERVICE,
    ReplayRecord,
    decode_replay,
)

DEFAULT_MAX_RECORD_BYTES = 1 << 20

# Every record kind the log admits.
LoggedRecord = (
    Decision
    | PrincipalRecord
    | RevocationRecord
    | ReplayRecord
    | ContextChange
    | PolicyRecord
    | PolicyCheckRecord
    | MonitorRecord
    | BreachRecord
    | ErasureRecord
    | RetentionRecord
    | LegalHoldRecord
)

# payloadType -> strict decoder.
PAYLOAD_DECODERS: dict[str, Callable[[bytes], LoggedRecord]] = {
    DECISION_PAYLOAD_TYPE: decode_decision,
    PRINCIPAL_PAYLOAD_TYPE: decode_principal,
    REVOCATION_PAYLOAD_TYPE: decode_revocation,
    REPLAY_PAYLOAD_TYPE: decode_replay,
    CONTEXT_CHANGE_PAYLOAD_TYPE: decode_context_change,
    POLICY_PAYLOAD_TYPE: decode_policy,
    POLICY_CHECK_PAYLOAD_TYPE: decode_policy_check,
    MONITOR_PAYLOAD_TYPE: decode_monitor,
    BREACH_PAYLOAD_TYPE: decode_breach,
    ERASURE_PAYLOAD_TYPE: decode_erasure,
    RETENTION_PAYLOAD_TYPE: decode_retention,
    LEGAL_HOLD_PAYLOAD_TYPE: decode_hold,
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A record that parsed (steps 1 to 4) but is not yet authenticated."""

    raw: bytes
    envelope: dsse.Envelope
    payload: bytes
    decision: LoggedRecord  # a decision, or another kind of record the log admits


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


# Who vouches for a decision's content (docs/otlp.md, "Attestation"): the service that made
# it, by signing it with its own registered key, or the ledger, which built it from
# unsigned input (OTLP spans) and signed it with its record key on arrival.
PRODUCER_SIGNED = "producer-signed"
LEDGER_ATTESTED = "ledger-attested"


def attestation_of(service: str) -> str:
    """The level a signature verified under a key registered for `service` gives a
    decision: only the ledger's record key is registered for `REPLAY_SERVICE`."""
    return LEDGER_ATTESTED if service == REPLAY_SERVICE else PRODUCER_SIGNED


def attests(key: ServiceKey, record: LoggedRecord) -> bool:
    """Whether `key` is the ledger's record key signing a decision it built from unsigned
    input (OTLP spans): such a decision names the service the spans came from, and is
    ledger-attested rather than producer-signed. Only the ledger holds that key."""
    return key.service == REPLAY_SERVICE and isinstance(record, Decision)


def verify_signer(
    candidate: Candidate, keys: Mapping[str, ServiceKey], *, allow_revoked: bool = False
) -> ServiceKey:
    """Steps 5 to 7: the key whose signature admits the record. With several signatures,
    any one that passes admits it; otherwise the first signature's failure is raised.

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
        elif key.tenant != decision.tenant or (
            key.service != decision.service and not attests(key, decision)
        ):
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
            return key
        first_error = first_error or error
    assert first_error is not None  # decode_envelope refuses an envelope without signatures
    raise first_error
