"""The freshness answer's format and what follows from a decision's payload alone.

`GET /v1/decisions/{id}/freshness` builds an answer (`query.audit.freshness`) and
`prov verify-freshness` checks one offline (`query.audit.freshness_check`); both compute the
expiry reasons and the state with the functions here, which need no database.

The answer names the decision (tenant, id, log index, leaf hash), the time it was checked,
the checkpoint it is relative to, the state and each reason for it:

- ``expired``: the decision's own `freshness.valid_until` has passed;
- ``snapshot_expired``: a context snapshot's `valid_until` has passed;
- ``superseded``: a context change replaced a version the decision relied on; the change is
  named by log index, id and new version. With `at_decision` the change came first and the
  decision relied on what it had replaced: `replaced` names the earlier entry that held the
  old version, so the claim is checkable.

The verdict (every member but `evidence` and `signed`) is signed by the ledger's key as a
DSSE envelope (`signed`, `ledger.log.freshness_verdict`), so an answer altered in transit
fails; `evidence` holds the signed checkpoint and, for the decision and each entry a reason
names, its envelope, entry fields, inclusion proof and signing key, so each claim is also
checked from the records themselves.
"""

from __future__ import annotations

from typing import Any

from ledger.log.freshness_verdict import FRESHNESS_FORMAT, STATES, VERDICT_MEMBERS
from query.audit.report_format import parse_time as _time

__all__ = [
    "FRESHNESS_FORMAT",
    "STATES",
    "VERDICT_MEMBERS",
    "declares_freshness",
    "dependencies",
    "describe_reason",
    "earliest_expiry",
    "expiry_reasons",
    "state_of",
]


def declares_freshness(decision: dict[str, Any]) -> bool:
    """A decision declares freshness with a `freshness` member or any context snapshot."""
    return bool(decision.get("freshness")) or bool(decision.get("context"))


def dependencies(decision: dict[str, Any]) -> list[tuple[str, str]]:
    """The (key, version) pairs a decision relied on, each once, in the order it names
    them: `freshness.depends_on`, then its context snapshots (name as key)."""
    found: dict[tuple[str, str], None] = {}
    for dependency in (decision.get("freshness") or {}).get("depends_on") or []:
        found[(dependency["key"], dependency["version"])] = None
    for snapshot in decision.get("context") or []:
        found[(snapshot["name"], snapshot["version"])] = None
    return list(found)


def expiry_reasons(decision: dict[str, Any], checked_at: str) -> list[dict[str, Any]]:
    """The expiries that have passed at `checked_at`, the decision's own first."""
    occurred = _time(decision["occurred_at"])
    now = _time(checked_at)
    reasons = []
    own = (decision.get("freshness") or {}).get("valid_until")
    if own is not None and _time(own) <= now:
        reasons.append(
            {"reason": "expired", "valid_until": own, "at_decision": _time(own) <= occurred}
        )
    for snapshot in decision.get("context") or []:
        until = snapshot.get("valid_until")
        if until is not None and _time(until) <= now:
            reasons.append(
                {
                    "reason": "snapshot_expired",
                    "name": snapshot["name"],
                    "version": snapshot["version"],
                    "valid_until": until,
                    "at_decision": _time(until) <= occurred,
                }
            )
    return reasons


def earliest_expiry(decision: dict[str, Any]) -> str | None:
    """The earliest `valid_until` among the decision's and its snapshots', as written."""
    candidates = [(decision.get("freshness") or {}).get("valid_until")]
    candidates += [snapshot.get("valid_until") for snapshot in decision.get("context") or []]
    present = [text for text in candidates if text is not None]
    return min(present, key=_time) if present else None


def state_of(decision: dict[str, Any], reasons: list[dict[str, Any]]) -> str:
    if reasons:
        return "stale"
    return "fresh" if declares_freshness(decision) else "unknown"


def describe_reason(reason: dict[str, Any]) -> str:
    """One line for a reason of a freshness answer (the CLI and the pages say the same)."""
    when = " (already when the decision was made)" if reason.get("at_decision") else ""
    match reason["reason"]:
        case "expired":
            return f"expired at {reason['valid_until']}{when}"
        case "snapshot_expired":
            return (
                f"context {reason['name']} at {reason['version']} expired at "
                f"{reason['valid_until']}{when}"
            )
        case _:
            change = reason["change"]
            return (
                f"{reason['key']} at {reason['version']} superseded by change "
                f"{change['id']} (entry {change['index']}, now {change['version']}, "
                f"changed {change['changed_at']}){when}"
            )
