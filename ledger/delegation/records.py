"""The two record kinds that delegation chains rest on: principals and revocations.

Both are JSON payloads in DSSE envelopes, admitted and logged like decisions, so that who
was enrolled and what was revoked, and when, is as tamper-evident as the decisions are.

- A principal record (`PRINCIPAL_PAYLOAD_TYPE`) binds a did:key to a named human or service
  in a tenant: the roots a chain may start from (rule 3). Only a key registered for the
  tenant's `PRINCIPAL_SERVICE` may sign one, so that a decision service's own key cannot
  enroll the principal that authorizes it.
- A revocation record (`REVOCATION_PAYLOAD_TYPE`) carries a UCAN revocation
  (ucan-wg/revocation: an invocation of ``/ucan/revoke`` naming a delegation by CID), signed
  by that delegation's issuer, and the revoked token itself, so that the ledger can check
  both. Any registered key of the tenant may submit it: the authority is in the UCAN
  signature, not in the envelope's.

Unknown members are ignored, as in decisions; new members get defaults.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from ledger.delegation import ucan
from ledger.keys.ed25519 import derive_keyid
from ledger.keys.signing import SigningKey
from ledger.records import dsse
from ledger.records._pointer import decode_payload
from ledger.records.decision import Id, Label, Slug, Timestamp

PRINCIPAL_PAYLOAD_TYPE = "application/vnd.prov.principal.v1+json"
REVOCATION_PAYLOAD_TYPE = "application/vnd.prov.revocation.v1+json"
# The service whose registered keys may enroll principals in a tenant.
PRINCIPAL_SERVICE: Final = "prov-admin"
SCHEMA_VERSION = 1

DidKey = Annotated[str, Meta(max_length=128, pattern=r"^did:key:z[1-9A-HJ-NP-Za-km-z]+$")]


class PrincipalRecord(msgspec.Struct, kw_only=True, frozen=True):
    """The enrollment of `did` as the human or service called `name` in `tenant`."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id
    tenant: Slug
    service: Literal["prov-admin"]  # PRINCIPAL_SERVICE
    occurred_at: Timestamp
    did: DidKey
    name: Label  # a handle unique to the person or service, such as an email address
    display_name: Label | None = None
    kind: Literal["human", "service"] = "human"

    def __post_init__(self) -> None:
        ucan.public_key_from_did(self.did)  # a ValueError names the member at fault


class RevocationRecord(msgspec.Struct, kw_only=True, frozen=True):
    """The revocation of one delegation, as its issuer signed it."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id
    tenant: Slug
    service: Slug
    occurred_at: Timestamp
    revocation: bytes  # the /ucan/revoke invocation token, base64 in JSON
    delegation: bytes  # the revoked delegation token, base64 in JSON
    reason: str | None = None


_principal_decoder = msgspec.json.Decoder(PrincipalRecord)
_revocation_decoder = msgspec.json.Decoder(RevocationRecord)
_encoder = msgspec.json.Encoder()


def decode_principal(data: bytes) -> PrincipalRecord:
    """Decode and check a principal payload; `InvalidPayload` names the member at fault."""
    return decode_payload(_principal_decoder, data)


def decode_revocation(data: bytes) -> RevocationRecord:
    """Decode and check a revocation payload; `InvalidPayload` names the member at fault."""
    return decode_payload(_revocation_decoder, data)


def sign_record(
    record: PrincipalRecord | RevocationRecord, key: SigningKey, keyid: str | None = None
) -> bytes:
    """The record as a DSSE envelope signed by `key`, under `keyid` or the derived one."""
    payload_type = (
        PRINCIPAL_PAYLOAD_TYPE if isinstance(record, PrincipalRecord) else REVOCATION_PAYLOAD_TYPE
    )
    envelope = dsse.sign_envelope(
        payload_type, _encoder.encode(record), key, keyid or derive_keyid(key.public_key)
    )
    return dsse.encode_envelope(envelope)
