"""The context-change record: a service's signed statement that a context key changed.

A decision names the context it relied on, in `freshness.depends_on` (`{key, version}`) and
in its context snapshots (`{name, version}`, the name being the key). When the state behind
a key changes, the service that owns it appends a context change, a JSON payload in a DSSE
envelope whose payloadType is `CONTEXT_CHANGE_PAYLOAD_TYPE`, through the normal admission
path; so "when did this decision go stale, and why" is provable like the decision itself.

Versions are opaque strings. A change names the key's new version; every decision of the
tenant recorded before the change that depended on another version of the key is stale from
then on, with the change as its reason (docs/freshness.md gives the whole rule).

`changed_at` is when the state changed, by the producer's clock; it is also the time the
signing key must have been valid at, as `occurred_at` is for a decision. Unknown members are
ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from ledger.records._pointer import decode_payload
from ledger.records.decision import Id, Label, Slug, Timestamp

CONTEXT_CHANGE_PAYLOAD_TYPE = "application/vnd.prov.context-change.v1+json"
SCHEMA_VERSION = 1


class ContextChange(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One change of a context key, as the service that owns the key recorded it."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id
    tenant: Slug
    service: Slug
    key: Label
    version: Label
    changed_at: Timestamp
    reason: Annotated[str, Meta(max_length=1024)] | None = None

    @property
    def occurred_at(self) -> datetime:
        """The time the signing key must have been valid at (admission's step 6)."""
        return self.changed_at


_decoder = msgspec.json.Decoder(ContextChange)
_encoder = msgspec.json.Encoder()


def decode_context_change(data: bytes) -> ContextChange:
    """Decode and check a context-change payload; `InvalidPayload` names the member at fault."""
    return decode_payload(_decoder, data)


def encode_context_change(change: ContextChange) -> bytes:
    return _encoder.encode(change)
