"""Attaching a UCAN delegation chain to a decision, before the client signs and sends it.

A service holds the delegations that reach it (root first, from the human who authorized
it; `prov delegate` writes them as a chain file) and its invoker key, the one whose did:key
the last delegation names as audience. `authorize` mints the invocation of the decision's
command on the root's behalf and puts it and the chain in the decision, which the ledger
then verifies (docs/delegation.md)::

    chain = read_chain(Path("loan-underwriter.chain"))
    decision = authorize(decision, invoker_key, chain, {"amount": 12_000})
    client.append(decision)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.delegation import ucan
from ledger.delegation.chain import command_for, links_for
from ledger.delegation.ucan_files import parse_chain
from ledger.records.decision import Decision

__all__ = ["DEFAULT_LIFETIME", "authorize", "read_chain"]

# How long after `occurred_at` an invocation stays valid: long enough for a buffered record
# to reach the ledger (which checks it at ingest), short enough to be useless if stolen.
DEFAULT_LIFETIME = timedelta(hours=1)


def read_chain(path: Path) -> list[bytes]:
    """The delegation tokens of a chain file, root first."""
    return parse_chain(path.read_text())


def authorize(
    decision: Decision,
    invoker: Ed25519PrivateKey,
    chain: Sequence[bytes],
    args: Mapping[str, Any],
    *,
    command: str | None = None,
    lifetime: timedelta = DEFAULT_LIFETIME,
) -> Decision:
    """`decision` carrying the invocation of `command` (by default its decision type as a
    path: ``loan.approve`` is ``/loan/approve``) with `args`, proved by `chain`.

    The arguments are what the chain's policies constrain; the subject is the root's.
    """
    if not chain:
        raise ValueError("a chain has at least its root delegation")
    issued = decision.occurred_at
    invocation = ucan.invoke(
        invoker,
        ucan.decode_delegation(chain[0]).iss,
        command or command_for(decision.decision_type),
        args,
        chain,
        expiration=int((issued + lifetime).timestamp()),
        issued_at=int(issued.timestamp()),
    )
    return msgspec.structs.replace(decision, delegation=links_for(chain), invocation=invocation)
