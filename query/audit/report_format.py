"""The why-report's parts that need no database: its format, what the payload alone says,
and the verdicts on replays and delegation.

`query.audit.why` builds reports from the database with these; `prov verify-report`
(`query.audit.report_check`) recomputes them offline from a saved report, so this module
imports nothing server-only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.delegation.report import chain_view
from ledger.records.replay import leaf_reference

REPORT_FORMAT = "prov.why/v1"


def replay_item(
    record_id: str,
    index: int,
    leaf_hash: str,
    replay: dict[str, Any] | None,
    decision_leaf: bytes,
    *,
    leaf: str,
    inclusion: str,
    signature: dict[str, Any],
) -> dict[str, Any]:
    """What the report says of one replay: its entry, the checks of its leaf, inclusion,
    signature and link to the decision's entry, and what its signed payload says."""
    model = None if replay is None else replay["model"]
    named = None if replay is None else replay["replay_of_leaf"]
    return linked_entry(
        record_id, index, leaf_hash, named, decision_leaf, leaf, inclusion, signature
    ) | {
        "occurred_at": None if replay is None else replay["occurred_at"],
        "mode": None if replay is None else replay["mode"],
        "model": None
        if model is None
        else {name: model.get(name) for name in ("provider", "name", "version")},
        "batch": None if replay is None else replay.get("batch"),
        "verdict": None if replay is None else replay["verdict"],
        "summary": None if replay is None else replay_summary(replay),
    }


def linked_entry(
    record_id: str,
    index: int,
    leaf_hash: str,
    named_leaf: str | None,
    decision_leaf: bytes,
    leaf: str,
    inclusion: str,
    signature: dict[str, Any],
) -> dict[str, Any]:
    """The part of a report's item that every record naming the decision (a replay, a
    policy check) shares: its entry, and the checks of its leaf, inclusion, signature and
    link, `link` being that it names this very entry of the decision (`named_leaf`), not
    just its id."""
    return {
        "id": record_id,
        "index": index,
        "leaf_hash": leaf_hash,
        "leaf": leaf,
        "inclusion": inclusion,
        "signature": signature,
        "link": "valid" if named_leaf == leaf_reference(decision_leaf) else "invalid",
    }


def replay_summary(replay: dict[str, Any]) -> str | None:
    """One line on how the replay differs from the record; None when it is identical."""
    match replay["verdict"]:
        case "diverged":
            divergence = replay["divergence"]
            return (
                f"{divergence['kind']} at recorded step {divergence['recorded_step']}: "
                f"{divergence['detail']}"
            )
        case "failed":
            error = replay["error"]
            return f"{error['type']}: {error['message']}"
        case "changed":
            paths = [change["path"] or "/" for change in replay["diff"].get("decision", [])]
            return f"decision fields changed: {', '.join(paths) or 'none listed'}"
        case "equivalent":
            return "the same decision; the text differs"
    return None


_CHECKED = ("leaf", "inclusion", "link")


def replays_status(items: list[dict[str, Any]]) -> dict[str, Any]:
    """`none`, `recorded` (with the count by verdict), or `invalid` when a listed replay
    fails a check. Whether the list is complete is the server's word."""
    return linked_status(items, noun="replay", key="replays")


def linked_status(items: list[dict[str, Any]], *, noun: str, key: str) -> dict[str, Any]:
    """The status of the records that name a decision's entry (its replays, its policy
    checks), listed under `key`: `none`, `recorded` or `invalid`."""
    if not items:
        return {
            "status": "none",
            "count": 0,
            "detail": f"no {noun} of this decision is recorded",
            key: [],
        }
    failing = [
        item
        for item in items
        if item["signature"]["status"] != "valid"
        or any(item[check] != "valid" for check in _CHECKED)
    ]
    if failing:
        status = "invalid"
        detail = f"the {noun} at entry " + ", ".join(str(item["index"]) for item in failing)
        detail += " does not verify"
    else:
        verdicts: dict[str, int] = {}
        for item in items:
            verdicts[item["verdict"]] = verdicts.get(item["verdict"], 0) + 1
        status = "recorded"
        detail = f"{len(items)} {noun}{'s' if len(items) > 1 else ''} recorded: " + ", ".join(
            f"{count} {verdict}" for verdict, count in verdicts.items()
        )
    return {"status": status, "count": len(items), "detail": detail, key: items}


def analyze(decision: dict[str, Any], generated_at: str) -> dict[str, Any]:
    """What the payload alone says at `generated_at`; `prov verify-report` recomputes it."""
    occurred = parse_time(decision["occurred_at"])
    now = parse_time(generated_at)
    freshness = decision.get("freshness") or {}
    return {
        "context": [
            {
                "name": snapshot["name"],
                "version": snapshot["version"],
                "freshness": freshness_state(snapshot.get("valid_until"), occurred, now),
                "content": "blob" if snapshot.get("blob") else "inline",
            }
            for snapshot in decision.get("context", [])
        ],
        "decision_freshness": freshness_state(freshness.get("valid_until"), occurred, now),
        "timeline": [
            _timeline_step(position, step, occurred)
            for position, step in enumerate(decision.get("steps", []))
        ],
    }


def freshness_state(valid_until: str | None, occurred: datetime, now: datetime) -> str:
    """`no-expiry`, `expired-at-decision` (already stale when used), `expired-since` or
    `valid`."""
    if valid_until is None:
        return "no-expiry"
    until = parse_time(valid_until)
    if until <= occurred:
        return "expired-at-decision"
    return "expired-since" if until <= now else "valid"


def _timeline_step(position: int, step: dict[str, Any], occurred: datetime) -> dict[str, Any]:
    started, ended = parse_time(step["started_at"]), parse_time(step["ended_at"])
    usage = step.get("usage") or {}
    return {
        "step": position,
        "kind": step["kind"],
        "label": step.get("name") or step.get("source") or step.get("approver") or step["kind"],
        "offset_ms": round((started - occurred).total_seconds() * 1000, 3),
        "duration_ms": round((ended - started).total_seconds() * 1000, 3),
        "tokens": (usage.get("input_tokens", 0) + usage.get("output_tokens", 0)) or None,
        "error": (step.get("error") or {}).get("type"),
    }


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as the payload writes it."""
    return datetime.fromisoformat(text)


def referenced_blobs(decision: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, digest) of every blob the payload references, in payload order."""
    found = [
        (f"/context/{position}/blob", snapshot["blob"])
        for position, snapshot in enumerate(decision.get("context", []))
        if snapshot.get("blob")
    ]
    prompt = decision.get("prompt") or {}
    if prompt.get("messages_blob"):
        found.append(("/prompt/messages_blob", prompt["messages_blob"]))
    return found


def delegation_status(
    decision: dict[str, Any] | None, at_us: int, evidence: dict[str, Any] | None
) -> dict[str, Any]:
    """Who authorized the decision, verified hop by hop at `at_us` (the entry's integration
    time) from the payload and the report's delegation evidence alone, so that
    `prov verify-report` recomputes it offline (`ledger.delegation.report`)."""
    return chain_view(decision, at_us, evidence)
