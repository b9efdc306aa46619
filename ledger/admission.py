"""Admission: the checks a record passes before the sequencer may store it.

The steps are numbered as they run; each failure raises a `RecordRejected` subclass naming
what is wrong, and nothing of a rejected record is ever written.

1. The envelope is within the size limit.
2. It parses as a DSSE envelope with at most `dsse.MAX_SIGNATURES` signatures.
3. Its payloadType is one the ledger knows.
4. The payload keeps the admission contract (`ledger.records.bounds`: depth, duplicate
   members, NUL, integer and timestamp ranges) and decodes strictly against its schema.
5. Some signature names a registered key bound to the record's tenant and service.
6. That key was valid at the record's `occurred_at` and is not revoked.
7. The signature verifies over PAE(payloadType, payload).
8. The record's authority holds (`ledger.delegation.admission`): a decision's delegation chain
   verifies as its tenant's mode asks, and a revocation is signed by the delegation's issuer.
   A replay names a decision of its own tenant's log by its id and the leaf hash of its
   entry (`ledger.indexes.replays`), and so does a policy check (`ledger.indexes.policies`).
   A policy record's engine is known, its digest is its document's and the document parses
   (`ledger.records.policy.check_policy`; a document stored as a blob is read first).

Steps 1 to 7 apply to every payload type: decisions, principal, revocation, replay,
context-change, policy and policy-check records all name a tenant, a service, an id and a
time (`occurred_at`, or a change's `changed_at`, or a policy's `registered_at`).

One record never fails another: in a batch, any error while checking one record (even one
no rule names) refuses that record alone, as `RecordUnprocessable`.

Breach, erasure, retention and legal-hold records are made by the ledger as it acts, and
placed by the sequencer directly; admission refuses them from outside, whatever key signed
them (`LedgerMadeRecord`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from sqlalchemy import Engine

from ledger._parallel import WorkerPool
from ledger.delegation.admission import PendingChain, authorize, load_roots, verify_pending
from ledger.delegation.mode import load_modes
from ledger.errors import LedgerMadeRecord, RecordRejected, RecordUnprocessable
from ledger.indexes.blob_refs import blob_references
from ledger.indexes.decisions import IndexRow, index_row
from ledger.indexes.delegations import AuthorityRow
from ledger.indexes.freshness import ChangeRow, DecisionFreshness, change_row, decision_freshness
from ledger.indexes.monitors import MonitorRow
from ledger.indexes.policies import (
    BlobReader,
    PolicyCheckRow,
    PolicyRow,
    check_decision_link,
    check_document,
    document_blobs,
    policy_check_row,
    policy_row,
)
from ledger.indexes.replays import (
    DecisionLeaves,
    ReplayRow,
    check_target,
    decision_leaves,
    replay_row,
)
from ledger.keys.keyring import ServiceKey, load_keys
from ledger.monitors.admission import checked_monitor_row
from ledger.records import dsse
from ledger.records.context_change import ContextChange
from ledger.records.decision import Decision
from ledger.records.erasure import ErasureRecord, LegalHoldRecord, RetentionRecord
from ledger.records.monitor import BreachRecord, MonitorRecord
from ledger.records.policy import PolicyCheckRecord, PolicyRecord
from ledger.records.replay import ReplayRecord

# Steps 1 to 7 need no database; they live in `ledger.records.signed` for offline use too.
from ledger.records.signed import (
    DEFAULT_MAX_RECORD_BYTES,
    PAYLOAD_DECODERS,
    Candidate,
    LoggedRecord,
    attestation_of,
    decode_payload,
    open_envelope,
    parse_record,
    verify_signer,
)

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_U = TypeVar("_U")

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "PAYLOAD_DECODERS",
    "Admitted",
    "Candidate",
    "LoggedRecord",
    "admit_batch",
    "authenticate",
    "decode_payload",
    "open_envelope",
    "parse_record",
]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A record that passed every admission step; the sequencer stores exactly `raw`.

    It keeps only what sequencing needs, not the decoded payload: a batch of decoded
    decisions held alive makes the cyclic garbage collector re-walk them all, which once
    cost more than the signature checks.
    """

    raw: bytes
    payload_type: str
    tenant: str
    record_id: str
    keyid: str
    # A decision's search-index row, computed while the payload is decoded anyway.
    index: IndexRow | None
    # The delegation index's row (step 8): a verified invocation, a principal, a revocation.
    authority: AuthorityRow | None = None
    # A replay's index row, with the decision it names (checked in step 8).
    replay: ReplayRow | None = None
    # What a decision relied on and until when (`ledger.indexes.freshness`).
    freshness: DecisionFreshness | None = None
    # A context change's index row.
    change: ChangeRow | None = None
    # A policy record's registry row, and a policy check's row with the decision it names.
    policy: PolicyRow | None = None
    policy_check: PolicyCheckRow | None = None
    # A monitor record's registry row (with the record, which the live windows activate).
    monitor: MonitorRow | None = None
    # A breach record the sequencer made (never one admitted: `LedgerMadeRecord`).
    breach: BreachRecord | None = None
    # The blobs a decision references (`ledger.indexes.blob_refs`), by digest.
    blobs: tuple[str, ...] = ()


def authenticate(
    candidate: Candidate, keys: dict[str, ServiceKey], *, allow_revoked: bool = False
) -> Admitted:
    """Steps 5 to 7 (`ledger.records.signed.verify_signer`), and the record's index rows."""
    key = verify_signer(candidate, keys, allow_revoked=allow_revoked)
    decision = candidate.decision
    return Admitted(
        candidate.raw,
        candidate.envelope.payloadType,
        decision.tenant,
        decision.id,
        key.keyid,
        index_row(decision, attestation_of(key.service))
        if isinstance(decision, Decision)
        else None,
        replay=replay_row(decision) if isinstance(decision, ReplayRecord) else None,
        freshness=decision_freshness(decision) if isinstance(decision, Decision) else None,
        change=change_row(decision) if isinstance(decision, ContextChange) else None,
        policy=policy_row(decision) if isinstance(decision, PolicyRecord) else None,
        policy_check=policy_check_row(decision)
        if isinstance(decision, PolicyCheckRecord)
        else None,
        monitor=checked_monitor_row(decision) if isinstance(decision, MonitorRecord) else None,
        blobs=blob_references(decision) if isinstance(decision, Decision) else (),
    )


def admit_batch(
    engine: Engine,
    raws: Sequence[bytes],
    *,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    pool: WorkerPool | None = None,
    blobs: BlobReader | None = None,
) -> list[Admitted | RecordRejected]:
    """Admit many records with one query each for keys, modes and principals per batch.
    `blobs` reads the policy documents stored as blobs (none are found without it).

    Payload decoding (which holds the GIL) and signature checks (which do not) run
    together on `pool`'s threads, so one thread decodes while another verifies. Delegation
    chains are checked in a second pass, once the principals their roots name are read.
    """
    opened: list[tuple[bytes, dsse.Envelope] | RecordRejected] = []
    for raw in raws:
        try:
            opened.append((raw, open_envelope(raw, max_bytes=max_bytes, admitting=True)))
        except Exception as error:  # one record's fault stays its own
            opened.append(_refusal(error))
    keys = load_keys(
        engine,
        (
            signature.keyid
            for item in opened
            if not isinstance(item, RecordRejected)
            for signature in item[1].signatures
        ),
    )
    with engine.connect() as connection:
        modes = load_modes(connection)

    def admit(
        item: tuple[bytes, dsse.Envelope] | RecordRejected,
    ) -> Admitted | RecordRejected | tuple[Admitted, PendingChain]:
        if isinstance(item, RecordRejected):
            return item
        try:
            candidate = decode_payload(*item, admitting=True)
            admitted = authenticate(candidate, keys)
            # 8., as far as it goes without the batch's principals and replayed decisions.
            record = candidate.decision
            if isinstance(record, BreachRecord):
                raise LedgerMadeRecord(
                    "breach records are made by the ledger's sequencer, never admitted",
                    pointer="/payloadType",
                )
            if isinstance(record, ErasureRecord | RetentionRecord | LegalHoldRecord):
                raise LedgerMadeRecord(
                    "erasure, retention and legal-hold records are made by the ledger as it "
                    "acts on them, never admitted",
                    pointer="/payloadType",
                )
            authority = (
                None
                if isinstance(
                    record,
                    ReplayRecord | ContextChange | PolicyRecord | PolicyCheckRecord | MonitorRecord,
                )
                else authorize(record, modes)
            )
        except Exception as error:  # one record's fault stays its own
            return _refusal(error)
        if isinstance(authority, PendingChain):
            return admitted, authority
        return admitted if authority is None else replace(admitted, authority=authority)

    first = _map(pool, admit, opened)
    pending = [item[1] for item in first if isinstance(item, tuple)]
    principals = load_roots(engine, pending) if pending else {}
    replayed = _replayed_decisions(engine, first)
    documents = document_blobs(
        blobs or (lambda wanted: {}),
        (
            (item.tenant, item.policy)
            for item in first
            if isinstance(item, Admitted) and item.policy is not None
        ),
    )
    at_us = time.time_ns() // 1000

    def finish(
        item: Admitted | RecordRejected | tuple[Admitted, PendingChain],
    ) -> Admitted | RecordRejected:
        if isinstance(item, RecordRejected):
            return item
        admitted, chain = item if isinstance(item, tuple) else (item, None)
        try:
            if admitted.replay is not None:
                check_target(admitted.tenant, admitted.replay, replayed)
            if admitted.policy_check is not None:
                check_decision_link(admitted.tenant, admitted.policy_check, replayed)
            if admitted.policy is not None and admitted.policy.pending is not None:
                admitted = replace(
                    admitted, policy=check_document(admitted.tenant, admitted.policy, documents)
                )
            if chain is not None:
                return replace(admitted, authority=verify_pending(chain, principals, at_us))
        except Exception as error:  # one record's fault stays its own
            return _refusal(error)
        return admitted

    return _map(pool, finish, first) if pending else [finish(item) for item in first]


def _refusal(error: Exception) -> RecordRejected:
    """The refusal of a record whose check raised `error`: a rule's own refusal as it is,
    anything else logged for the operator and refused alone."""
    if isinstance(error, RecordRejected):
        return error
    _log.warning("record could not be checked", exc_info=error)
    return RecordUnprocessable(
        f"the record could not be checked ({type(error).__name__}); it was not stored"
    )


def _replayed_decisions(
    engine: Engine, first: Sequence[Admitted | RecordRejected | tuple[Admitted, PendingChain]]
) -> DecisionLeaves:
    """The decisions the batch's replays and policy checks name, as stored, in one query."""
    targets = {
        (item.tenant, item.replay.replay_of)
        for item in first
        if isinstance(item, Admitted) and item.replay is not None
    } | {
        (item.tenant, item.policy_check.decision_id)
        for item in first
        if isinstance(item, Admitted) and item.policy_check is not None
    }
    if not targets:
        return {}
    with engine.connect() as connection:
        return decision_leaves(connection, targets)


def _map(pool: WorkerPool | None, function: Callable[[_T], _U], items: Sequence[_T]) -> list[_U]:
    return pool.map(function, items) if pool is not None else [function(item) for item in items]
