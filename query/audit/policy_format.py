"""The why-report's policy parts that need no database: what a report says of each policy
check of a decision, and of them all.

`query.audit.policy_evidence` builds them from the database with these; `prov verify-report`
(`query.audit.report_check`) recomputes them offline from a report's evidence, so this
module imports nothing server-only.
"""

from __future__ import annotations

from typing import Any

from query.audit.report_format import linked_entry, linked_status


def policy_check_item(
    record_id: str,
    index: int,
    leaf_hash: str,
    check: dict[str, Any] | None,
    decision_leaf: bytes,
    *,
    leaf: str,
    inclusion: str,
    signature: dict[str, Any],
) -> dict[str, Any]:
    """What the report says of one policy check: its entry, the checks of its leaf,
    inclusion, signature and link to the decision's entry, and what its payload says."""
    named = None if check is None else check["decision_leaf"]
    return linked_entry(
        record_id, index, leaf_hash, named, decision_leaf, leaf, inclusion, signature
    ) | {
        "occurred_at": None if check is None else check["occurred_at"],
        "mode": None if check is None else check["mode"],
        "policy": None if check is None else check["policy"],
        "batch": None if check is None else check.get("batch"),
        "verdict": None if check is None else check["verdict"],
        "recorded": None if check is None else check["recorded"],
        "outcome": None if check is None else check.get("outcome"),
        "error": None if check is None else check.get("error"),
    }


def policy_checks_status(items: list[dict[str, Any]]) -> dict[str, Any]:
    """`none`, `recorded` (with the count by verdict), or `invalid` when a listed check
    fails a check of its own. Whether the list is complete is the server's word."""
    return linked_status(items, noun="policy check", key="checks")


def policy_view(
    decision: dict[str, Any] | None,
    registration: dict[str, Any] | None,
    index: int | None,
) -> dict[str, Any]:
    """What the report says of the decision's policy: what the decision names, and the
    registration (the payload of the policy record at log `index`) its digest resolves to.

    ``registered`` (under the same id and version), ``registered-as-other`` (the same
    document under another id or version), ``unregistered`` (no registered document has
    the digest: nobody can show or re-run the policy that judged the decision) or ``none``
    (the decision records no policy). Only ``unregistered`` is the server's word alone: a
    registration comes with its entry as evidence, checked as the decision's own."""
    policy = None if decision is None else decision.get("policy")
    if not policy:
        return {"status": "none", "detail": "the decision records no policy"}
    named = {key: policy[key] for key in ("engine", "policy_id", "version", "digest")}
    if registration is None or index is None:
        return named | {
            "status": "unregistered",
            "detail": f"no registered policy has the digest {policy['digest']}: the document "
            "that judged this decision cannot be shown or re-run",
            "document": None,
        }
    exact = (registration["policy_id"], registration["version"]) == (
        policy["policy_id"],
        policy["version"],
    )
    document = {key: registration.get(key) for key in ("policy_id", "version", "engine")}
    return named | {
        "status": "registered" if exact else "registered-as-other",
        "detail": (
            f"registered as {registration['policy_id']} {registration['version']} at log "
            f"index {index}" + ("" if exact else f", not as the decision's {policy['policy_id']}")
        ),
        "document": document
        | {
            "index": index,
            "record_id": registration["id"],
            "digest": registration["digest"],
            "registered_at": registration["registered_at"],
            "inline": registration.get("document") is not None,
        },
    }
