"""Erasure, retention and legal-hold records: who erased what, and which rules held then.

Three record kinds, all made and signed by the ledger's record key (the key of replays,
policy checks and monitors, registered under `REPLAY_SERVICE`) and never admitted from
outside (`LedgerMadeRecord`), since only the ledger can carry out what they state:

- `ERASURE_PAYLOAD_TYPE`, an erasure the ledger carried out: the request (its id, chosen
  by the caller or generated, unique per tenant), its kind (``subject``: every blob of a
  subject; ``blobs``: named blobs; ``expiry``: content past the tenant's expiry), the
  subject, the sorted digests erased, who asked and why, when it was asked and when it was
  done, and the retention floor in force. A request erasing many blobs is cut into
  `parts` records of at most `PART_DIGESTS` digests, appended together, so that each
  record stays small enough to carry as evidence; every part names the request.
- `RETENTION_PAYLOAD_TYPE`, a tenant's retention rule, versioned: the floor (content of a
  subject with a decision logged fewer than `floor_days` days ago may not be erased) and
  the optional expiry (content is erased once `expire_after_days` have passed).
- `LEGAL_HOLD_PAYLOAD_TYPE`, a legal hold placed (``add``) or lifted (``release``): by
  subject, or by a filter over decisions (service and decision type, each exact or a glob
  with ``*``). A live hold blocks every erasure and expiry of what it covers.

The shapes only: the rules that act on them are in `ledger.erasure`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from ledger.records import dsse
from ledger.records._pointer import decode_payload
from ledger.records.decision import Digest, Id, Label, Slug, Timestamp

ERASURE_PAYLOAD_TYPE = "application/vnd.prov.erasure.v1+json"
RETENTION_PAYLOAD_TYPE = "application/vnd.prov.retention.v1+json"
LEGAL_HOLD_PAYLOAD_TYPE = "application/vnd.prov.legal-hold.v1+json"
LEDGER_MADE_TYPES: Final = (ERASURE_PAYLOAD_TYPE, RETENTION_PAYLOAD_TYPE, LEGAL_HOLD_PAYLOAD_TYPE)
SCHEMA_VERSION = 1

#: The most digests one erasure record lists (about 75 KiB of payload).
PART_DIGESTS: Final = 1000
#: The floor when a tenant has recorded no retention rule: six months, as the EU AI Act asks
#: of the logs of high-risk systems (Art. 19, 26(6)).
DEFAULT_FLOOR_DAYS: Final = 183
MAX_DAYS: Final = 36_500

ErasureKind = Literal["subject", "blobs", "expiry"]
HoldAction = Literal["add", "release"]
# A request or hold id: as a record id, shorter, so that the record's own id has room.
RequestId = Annotated[str, Meta(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")]
Reason = Annotated[str, Meta(min_length=1, max_length=1024)]
Days = Annotated[int, Meta(ge=0, le=MAX_DAYS)]
# A service or decision type, exact or a glob whose only wildcard is `*`.
HoldPattern = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:*-]+$")]


class RetentionRef(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The retention rule an erasure was checked against: its record's log index, or None
    for the default floor of a tenant that recorded none."""

    index: int | None = None
    floor_days: Days


class ErasureRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One part of an erasure the ledger carried out."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id  # `erasure:<request id>:<part>`
    tenant: Slug
    service: Literal["prov-replay"]  # REPLAY_SERVICE: only the ledger's record key signs
    request_id: RequestId
    kind: ErasureKind
    subject: Label | None = None  # None for a `blobs` or `expiry` erasure
    digests: Annotated[list[Digest], Meta(max_length=PART_DIGESTS)]  # sorted
    part: Annotated[int, Meta(ge=1)] = 1
    parts: Annotated[int, Meta(ge=1)] = 1
    requested_by: Label  # an API key's name, `cli` or `expiry-job`
    reason: Reason
    requested_at: Timestamp
    erased_at: Timestamp  # when the ledger recorded it; the blobs' `erased_at`
    retention: RetentionRef

    @property
    def occurred_at(self) -> datetime:
        """The time the signing key must have been valid at (admission's step 6)."""
        return self.erased_at


class RetentionRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One version of a tenant's retention rule."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id  # `retention:v<version>`
    tenant: Slug
    service: Literal["prov-replay"]
    version: Annotated[int, Meta(ge=1)]
    floor_days: Days
    expire_after_days: Days | None = None  # at least `floor_days`; None: no expiry
    set_by: Label
    set_at: Timestamp
    reason: Reason | None = None

    @property
    def occurred_at(self) -> datetime:
        return self.set_at


class HoldFilter(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Decisions a hold covers: every member given must match."""

    service: HoldPattern | None = None
    decision_type: HoldPattern | None = None


class LegalHoldRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A legal hold placed or lifted."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id  # `hold:<hold id>:add` or `hold:<hold id>:release`
    tenant: Slug
    service: Literal["prov-replay"]
    hold_id: RequestId
    action: HoldAction
    subject: Label | None = None  # `add`: the subject held, or
    filter: HoldFilter | None = None  # the decisions held
    reason: Reason
    by: Label
    at: Timestamp

    @property
    def occurred_at(self) -> datetime:
        return self.at


def erasure_record_id(request_id: str, part: int) -> str:
    return f"erasure:{request_id}:{part}"


def retention_record_id(version: int) -> str:
    return f"retention:v{version}"


def hold_record_id(hold_id: str, action: str) -> str:
    return f"hold:{hold_id}:{action}"


_erasure_decoder = msgspec.json.Decoder(ErasureRecord)
_retention_decoder = msgspec.json.Decoder(RetentionRecord)
_hold_decoder = msgspec.json.Decoder(LegalHoldRecord)
_encoder = msgspec.json.Encoder()


def decode_erasure(data: bytes) -> ErasureRecord:
    return decode_payload(_erasure_decoder, data)


def decode_retention(data: bytes) -> RetentionRecord:
    return decode_payload(_retention_decoder, data)


def decode_hold(data: bytes) -> LegalHoldRecord:
    return decode_payload(_hold_decoder, data)


def erasure_in(envelope: bytes) -> ErasureRecord:
    """The erasure record a stored DSSE envelope carries (its signature is not checked)."""
    return decode_erasure(dsse.payload_bytes(dsse.decode_envelope(envelope)))


def encode_made(record: ErasureRecord | RetentionRecord | LegalHoldRecord) -> bytes:
    return _encoder.encode(record)


def payload_type_of(record: ErasureRecord | RetentionRecord | LegalHoldRecord) -> str:
    if isinstance(record, ErasureRecord):
        return ERASURE_PAYLOAD_TYPE
    if isinstance(record, RetentionRecord):
        return RETENTION_PAYLOAD_TYPE
    return LEGAL_HOLD_PAYLOAD_TYPE
