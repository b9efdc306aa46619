"""Every decision about a subject as one bundle that verifies offline (GDPR Art. 15): what
`GET /v1/subjects/{ref}/decisions` answers and `prov subject export` writes.

The bundle holds one signed checkpoint and, per decision, its signed payload, the evidence
a why-report carries for it (the exact envelope, the entry fields, the inclusion proof into
that checkpoint, the signing key), each referenced blob (its bytes in base64 as stored, salt
included, so that they hash to the signed digest; or when and by which erasure record it was
erased) and the plain-language explanation (`query.subjects.explain`). The format and what
`prov verify-subject` proves from it are in `query.subjects.check`.

Decisions are listed newest first, as a search for the subject lists them, a page at a time:
at most `limit` decisions, and a page stops early (after at least one decision) once the
blob bytes it carries would pass `blob_budget`; `next_cursor` continues. Each page is a
complete bundle of its own. The checkpoint is read after the decisions, so it covers every
one of them (the log only grows).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Final

import msgspec
from sqlalchemy import Connection

from ledger.blobs.vault import BlobVault
from ledger.errors import BlobErased, BlobUnreadable, EntryAltered, NotFound, RecordRejected
from ledger.ledger import Ledger
from ledger.log.entry import rfc3339, to_micros
from ledger.log.store import latest_checkpoint, read_entry
from query.audit.checks import parse_stored
from query.audit.evidence import find_decision_index, record_evidence
from query.audit.report_format import referenced_blobs
from query.audit.search import (
    MAX_LIMIT,
    DecisionFilter,
    DecisionSummary,
    encode_cursor,
    search,
)
from query.subjects.check import BUNDLE_FORMAT
from query.subjects.explain import Explanation, explain, explanation_text

DEFAULT_PAGE: Final = 20
MAX_PAGE: Final = 100
# The blob bytes one page carries before it stops (base64 adds a third in the JSON).
PAGE_BLOB_BYTES: Final = 16 << 20


def blob_states(connection: Connection, tenant: str, decision: dict[str, Any]) -> list[Any]:
    """Each blob the payload references, as the index knows it: `present` (with its size),
    `erased` (when, and the log index of the erasure record that erased it, if one did) or
    `missing` (never uploaded)."""
    wanted = referenced_blobs(decision)
    rows = BlobVault.rows(connection, tenant, [digest for _, digest in wanted])
    states: list[dict[str, Any]] = []
    for pointer, digest in wanted:
        row = rows.get(digest)
        state: dict[str, Any] = {"pointer": pointer, "digest": digest}
        if row is None:
            state["status"] = "missing"
        elif row.erased_us is not None:
            state |= {
                "status": "erased",
                "erased_at": rfc3339(row.erased_us),
                "erasure_index": row.erasure_idx,
            }
        else:
            state |= {"status": "present", "size": row.size}
        states.append(state)
    return states


def stored_decision(connection: Connection, tenant: str, record_id: str) -> dict[str, Any]:
    """The signed payload of decision `record_id` of `tenant`; NotFound for another tenant's,
    EntryAltered when its stored bytes no longer decode."""
    index = find_decision_index(connection, tenant, record_id)
    entry = read_entry(connection, index)
    assert entry is not None  # `find_decision_index` found it
    return _payload(parse_stored(entry.envelope), record_id, index)


def decision_explanation(
    connection: Connection, tenant: str, record_id: str, contest: str
) -> Explanation:
    """The explanation of decision `record_id` for the person it is about (the page and
    `prov subject explain`)."""
    decision = stored_decision(connection, tenant, record_id)
    return explain(record_id, decision, blob_states(connection, tenant, decision), contest)


def subject_bundle(
    ledger: Ledger,
    tenant: str,
    subject: str,
    *,
    contest: str,
    now_us: int,
    cursor: str | None = None,
    limit: int | None = None,
    blob_budget: int | None = None,
) -> dict[str, Any]:
    """The bundle of the decisions of `tenant` about `subject`: one page of at most `limit`
    decisions after `cursor` (every decision when `limit` is None), within `blob_budget`
    bytes of blobs (no bound when None). NotFound when there is none about the subject."""
    chosen: list[tuple[DecisionSummary, dict[str, Any], list[Any]]] = []
    with ledger.engine.connect() as connection:
        found, next_cursor = _decisions(connection, tenant, subject, cursor, limit)
        if not found and cursor is None:
            raise NotFound(f"there is no decision about subject {subject!r}")
        spent = 0
        for summary in found:
            entry = read_entry(connection, summary.index)
            assert entry is not None  # the index names only stored entries
            decision = _payload(parse_stored(entry.envelope), summary.id, summary.index)
            states = blob_states(connection, tenant, decision)
            size = sum(state.get("size", 0) for state in states)
            if blob_budget is not None and chosen and spent + size > blob_budget:
                last = chosen[-1][0]
                next_cursor = encode_cursor(
                    to_micros(datetime.fromisoformat(last.occurred_at)), last.index
                )
                break
            spent += size
            chosen.append((summary, decision, states))
        # Read after the decisions and their blobs' erasures: it covers every one of them.
        checkpoint = latest_checkpoint(connection)
        assert checkpoint is not None  # `Ledger.init` stores the empty tree's
        evidence = {
            index: record_evidence(
                connection, ledger.verifier, ledger.origin, checkpoint, index
            ).evidence
            for index in sorted(
                {summary.index for summary, _, _ in chosen} | _erasure_indexes(chosen)
            )
        }
    return {
        "format": BUNDLE_FORMAT,
        "generated_at": rfc3339(now_us),
        "origin": ledger.origin,
        "tenant": tenant,
        "subject": subject,
        "contest": contest,
        "checkpoint": checkpoint.note,
        "decisions": [
            _item(ledger, tenant, summary.id, decision, states, evidence[summary.index], contest)
            for summary, decision, states in chosen
        ],
        "erasures": [evidence[index] for index in sorted(_erasure_indexes(chosen))],
        "next_cursor": next_cursor,
    }


def _erasure_indexes(chosen: list[tuple[DecisionSummary, dict[str, Any], list[Any]]]) -> set[int]:
    """The log indexes of the erasure records that erased the chosen decisions' blobs."""
    return {
        state["erasure_index"]
        for _, _, states in chosen
        for state in states
        if state.get("erasure_index") is not None
    }


def _decisions(
    connection: Connection, tenant: str, subject: str, cursor: str | None, limit: int | None
) -> tuple[list[DecisionSummary], str | None]:
    """One page of the subject's decisions, newest first, or all of them."""
    where = DecisionFilter(tenant, subject=subject)
    if limit is not None:
        page = search(connection, where, cursor=cursor, limit=limit)
        return page.decisions, page.next_cursor
    found: list[DecisionSummary] = []
    while True:
        page = search(connection, where, cursor=cursor, limit=MAX_LIMIT)
        found += page.decisions
        if page.next_cursor is None:
            return found, None
        cursor = page.next_cursor


def _payload(candidate: Any, record_id: str, index: int) -> dict[str, Any]:
    if isinstance(candidate, RecordRejected):
        raise EntryAltered(
            f"decision {record_id!r} (entry {index}) no longer verifies: {candidate}"
        )
    payload: dict[str, Any] = msgspec.json.decode(candidate.payload)
    return payload


def _item(
    ledger: Ledger,
    tenant: str,
    record_id: str,
    decision: dict[str, Any],
    states: list[Any],
    evidence: dict[str, Any],
    contest: str,
) -> dict[str, Any]:
    blobs = [_with_bytes(ledger, tenant, state) for state in states]
    return {
        "id": record_id,
        "decision": decision,
        "evidence": evidence,
        "blobs": blobs,
        "explanation": explanation_text(explain(record_id, decision, blobs, contest)),
    }


def _with_bytes(ledger: Ledger, tenant: str, state: dict[str, Any]) -> dict[str, Any]:
    """A present blob with its stored bytes; one whose key or object is gone since the
    index was read is marked as what reading it found."""
    if state["status"] != "present":
        return state
    base = {"pointer": state["pointer"], "digest": state["digest"]}
    try:
        data = ledger.blobs.get(tenant, state["digest"])
    except BlobErased:
        return base | {"status": "erased", "erased_at": None, "erasure_index": None}
    except NotFound:
        return base | {"status": "missing"}
    except BlobUnreadable as error:
        return base | {"status": "unreadable", "detail": str(error)}
    return state | {"bytes": base64.b64encode(data).decode()}
