"""The delegation evidence a why-report carries, gathered from the database.

`chain_evidence` reads what the ledger knows that bears on one entry's chain (the root's
enrollment, revocations before the entry, the invocation's uniqueness); `chain_view` in
`ledger.delegation.report` turns it into the report's verdict, online and offline alike.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from sqlalchemy import Connection, select

from ledger.delegation import ucan
from ledger.delegation.principals import principal_before
from ledger.indexes.delegations import replay_state, revocations_before
from ledger.keys.keyring import get_key
from ledger.records.decision import DelegationLink
from ledger.records.signed import parse_record
from ledger.storage.schema import log_entries


def chain_evidence(
    connection: Connection, tenant: str, index: int, decision: dict[str, Any] | None
) -> dict[str, Any] | None:
    """What the ledger knows that bears on entry `index`'s chain, for `chain_view`."""
    if decision is None or decision.get("invocation") is None:
        return None
    links = msgspec.convert(decision.get("delegation", []), list[DelegationLink])
    try:
        root = ucan.decode_delegation(links[0].token).iss if links else None
        invoked = ucan.decode_invocation(base64.b64decode(decision["invocation"]))
    except ucan.TokenInvalid:
        root = invoked = None
    enrolled = None if root is None else principal_before(connection, tenant, root, index)
    revoked = revocations_before(
        connection, tenant, (ucan.cid_of(link.token) for link in links), index
    )
    return {
        "principal": None if enrolled is None else _principal_evidence(connection, enrolled[0]),
        "revoked": [
            {"cid": ucan.cid_text(cid), "index": at} for cid, at in sorted(revoked.items())
        ],
        "uniqueness": "unchecked"
        if invoked is None
        else replay_state(connection, index, invoked.cid, invoked.iss, invoked.nonce),
    }


def _principal_evidence(connection: Connection, index: int) -> dict[str, Any]:
    envelope = connection.execute(
        select(log_entries.c.envelope).where(log_entries.c.idx == index)
    ).scalar_one()
    candidate = parse_record(bytes(envelope), max_bytes=len(envelope))
    keyids = [signature.keyid for signature in candidate.envelope.signatures]
    key = next(key for keyid in keyids if (key := get_key(connection, keyid)) is not None)
    public_key = base64.b64encode(key.public_key).decode()
    return {
        "envelope": base64.b64encode(bytes(envelope)).decode(),
        "signing_key": key.to_json() | {"public_key": public_key},
    }
