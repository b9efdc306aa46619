"""Which witnesses vouch for a decision: the newest cosigned checkpoint that holds it.

The why-report proves every entry into the latest checkpoint, which is usually too new for
any witness to have cosigned yet. This adds the newest checkpoint that witnesses did
cosign and that holds the decision, with the decision's inclusion proof into it, so that an
auditor with a witness policy (`prov verify-report --witness …`) can check offline that
the decision is in a tree the witnesses saw, and none other.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from ledger.log.note import NoteVerifier
from ledger.witness.cosignature import cosigner_names
from ledger.witness.cosigned import best_covering
from query.audit.checks import inclusion_in


def witnessed_inclusion(
    connection: Connection, verifier: NoteVerifier, origin: str, index: int, leaf: bytes
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The witnesses' status of entry `index` and its evidence (None when no cosigned
    checkpoint holds it yet)."""
    cosigned = best_covering(connection, index)
    if cosigned is None:
        return {"status": "not-yet-witnessed", "witnesses": 0, "names": []}, None
    proved = inclusion_in(connection, cosigned, verifier, origin, index, leaf)
    names = cosigner_names(cosigned.note, verifier)
    status = {
        "status": proved["status"],
        "tree_size": cosigned.tree_size,
        "witnesses": len(names),
        "names": names,
    }
    return status, {"checkpoint": proved.get("checkpoint"), "inclusion_proof": proved.get("proof")}
