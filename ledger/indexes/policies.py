"""The policy registry and the policy-check index, derived from the log.

- `policies`: one row per policy record. A decision's `policy.digest` resolves to its
  document through it, and (tenant, policy id, version) is registered once: the sequencer's
  `PolicyGuard` answers a second registration of the same document as an idempotent retry
  (the stored entry, status "existing") and refuses another document under the same
  version with `PolicyVersionConflict`, under the log's lock, so two writers can never both
  register a version. A unique constraint backs it.
- `policy_checks`: one row per policy-check record, so a why-report lists a decision's
  checks without scanning the log. Admission checks (step 8) that the decision a check
  names is in its tenant's log under the leaf hash the check signs, as for a replay.

Rows are written in the transaction that appends their entries. Nothing here is trusted by
verification: the why-report re-reads each entry's bytes and checks them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from ledger.errors import PolicyCheckOfUnknown, PolicyDocumentUnavailable, PolicyVersionConflict
from ledger.indexes.replays import DecisionLeaves, check_link
from ledger.log.entry import rfc3339, to_micros
from ledger.log.store import bulk_insert
from ledger.records.policy import PolicyCheckRecord, PolicyRecord, check_policy
from ledger.storage.schema import log_entries, policies, policy_checks

POLICY_COLUMNS = (
    "idx",
    "tenant",
    "record_id",
    "policy_id",
    "version",
    "digest",
    "engine",
    "registered_us",
)
CHECK_COLUMNS = (
    "idx",
    "tenant",
    "record_id",
    "decision_id",
    "policy_id",
    "version",
    "mode",
    "verdict",
    "batch",
    "occurred_us",
)

# Reads held blobs by (tenant, digest): `ledger.blobs.vault.BlobVault.find_many`.
BlobReader = Callable[[Iterable[tuple[str, str]]], dict[tuple[str, str], bytes]]


@dataclass(frozen=True, slots=True)
class PolicyRow:
    """A policy record's registry row without its log index and tenant (the sequencer's).

    A document stored as a blob is checked once the batch's blobs are read: `pending` keeps
    the record until then (`check_documents`)."""

    record_id: str
    policy_id: str
    version: str
    digest: str
    engine: str
    registered_us: int
    pending: PolicyRecord | None = None

    def values(self, index: int, tenant: str) -> tuple[Any, ...]:
        return (
            index,
            tenant,
            self.record_id,
            self.policy_id,
            self.version,
            self.digest,
            self.engine,
            self.registered_us,
        )


def policy_row(record: PolicyRecord) -> PolicyRow:
    """The record's row; an inline document is checked now (`check_policy`), which raises
    the record's refusal."""
    if record.document is not None:
        check_policy(record)
    return PolicyRow(
        record.id,
        record.policy_id,
        record.version,
        record.digest,
        record.engine,
        to_micros(record.registered_at),
        pending=None if record.document is not None else record,
    )


def document_blobs(read: BlobReader, rows: Iterable[tuple[str, PolicyRow]]) -> dict[str, bytes]:
    """The bytes of the blobs the batch's policy documents are stored in, by
    ``tenant/digest``; erased or missing blobs are absent."""
    wanted = {
        (tenant, row.pending.document_blob)
        for tenant, row in rows
        if row.pending is not None and row.pending.document_blob is not None
    }
    if not wanted:
        return {}
    return {f"{tenant}/{digest}": data for (tenant, digest), data in read(wanted).items()}


def check_document(tenant: str, row: PolicyRow, documents: dict[str, bytes]) -> PolicyRow:
    """Admission's checks of a document stored as a blob, once its bytes are read; the row
    without the record it kept for them."""
    record = row.pending
    if record is None:
        return row
    content = documents.get(f"{tenant}/{record.document_blob}")
    if content is None:
        raise PolicyDocumentUnavailable(
            f"the document blob {record.document_blob} is not stored for tenant {tenant!r}; "
            "upload it before the policy record",
            pointer="/payload/document_blob",
        )
    check_policy(record, content)
    return PolicyRow(
        row.record_id, row.policy_id, row.version, row.digest, row.engine, row.registered_us
    )


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """Where a registered version sits in the log: what a retry of it is answered with."""

    index: int
    leaf_hash: bytes
    integrated_us: int
    record_id: str
    envelope_digest: bytes  # SHA-256 of the stored envelope, as a receipt names it
    digest: str  # the document's


class PolicyGuard:
    """The registry as the sequencer sees it under the log's lock, for one batch."""

    def __init__(self, known: dict[tuple[str, str, str], StoredPolicy]) -> None:
        self._known = known  # (tenant, policy id, version) -> its registration

    @classmethod
    def load(cls, connection: Connection, rows: Iterable[tuple[str, PolicyRow]]) -> PolicyGuard:
        wanted = {(tenant, row.policy_id, row.version) for tenant, row in rows}
        if not wanted:
            return cls({})
        found = connection.execute(
            select(
                policies.c.tenant,
                policies.c.policy_id,
                policies.c.version,
                policies.c.digest,
                policies.c.record_id,
                log_entries.c.idx,
                log_entries.c.leaf_hash,
                log_entries.c.integrated_us,
                log_entries.c.envelope,
            )
            .join(log_entries, log_entries.c.idx == policies.c.idx)
            .where(
                or_(
                    *(
                        and_(
                            policies.c.tenant == tenant,
                            policies.c.policy_id == policy_id,
                            policies.c.version == version,
                        )
                        for tenant, policy_id, version in sorted(wanted)
                    )
                )
            )
        )
        return cls(
            {
                (row.tenant, row.policy_id, row.version): StoredPolicy(
                    row.idx,
                    bytes(row.leaf_hash),
                    row.integrated_us,
                    row.record_id,
                    hashlib.sha256(bytes(row.envelope)).digest(),
                    row.digest,
                )
                for row in found
            }
        )

    def registered(self, tenant: str, row: PolicyRow) -> StoredPolicy | None:
        """The registration a record repeats (the same document: an idempotent retry), or
        None for a new version; `PolicyVersionConflict` for another document."""
        stored = self._known.get((tenant, row.policy_id, row.version))
        if stored is None:
            return None
        if stored.digest != row.digest:
            raise PolicyVersionConflict(
                f"policy {row.policy_id!r} version {row.version!r} is registered already, at "
                f"index {stored.index} with digest {stored.digest}; register the new "
                "document under a new version",
                pointer="/payload/version",
            )
        return stored

    def add(self, tenant: str, row: PolicyRow, stored: StoredPolicy) -> None:
        """A registration appended earlier in the batch."""
        self._known[(tenant, row.policy_id, row.version)] = stored


def insert_policy_rows(connection: Connection, rows: Sequence[tuple[int, str, PolicyRow]]) -> None:
    _insert(connection, "policies", POLICY_COLUMNS, rows)


@dataclass(frozen=True, slots=True)
class PolicyCheckRow:
    """A policy check's index row without its log index and tenant, and the leaf hash it
    names its decision by (checked at admission, not stored)."""

    record_id: str
    decision_id: str
    decision_leaf: str
    policy_id: str
    version: str
    mode: str
    verdict: str
    batch: str | None
    occurred_us: int

    def values(self, index: int, tenant: str) -> tuple[Any, ...]:
        return (
            index,
            tenant,
            self.record_id,
            self.decision_id,
            self.policy_id,
            self.version,
            self.mode,
            self.verdict,
            self.batch,
            self.occurred_us,
        )


def policy_check_row(record: PolicyCheckRecord) -> PolicyCheckRow:
    return PolicyCheckRow(
        record.id,
        record.decision_id,
        record.decision_leaf,
        record.policy.policy_id,
        record.policy.version,
        record.mode,
        record.verdict,
        record.batch,
        to_micros(record.occurred_at),
    )


def check_decision_link(tenant: str, row: PolicyCheckRow, found: DecisionLeaves) -> None:
    """Step 8 for a policy check: its decision is in the tenant's log under the leaf it
    names (`found`: `ledger.indexes.replays.decision_leaves`), as for a replay."""
    check_link(
        tenant,
        row.decision_id,
        row.decision_leaf,
        found,
        PolicyCheckOfUnknown,
        ("decision_id", "decision_leaf"),
    )


def insert_policy_check_rows(
    connection: Connection, rows: Sequence[tuple[int, str, PolicyCheckRow]]
) -> None:
    _insert(connection, "policy_checks", CHECK_COLUMNS, rows)


def _insert(
    connection: Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[int, str, PolicyRow | PolicyCheckRow]],
) -> None:
    """Rows of `(idx, tenant, row)`, inside the caller's transaction."""
    bulk_insert(
        connection, table, columns, [row.values(index, tenant) for index, tenant, row in rows]
    )


# --- reads ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """A registered policy version, as the registry lists it."""

    index: int
    tenant: str
    record_id: str
    policy_id: str
    version: str
    digest: str
    engine: str
    registered_us: int

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "record_id": self.record_id,
            "policy_id": self.policy_id,
            "version": self.version,
            "digest": self.digest,
            "engine": self.engine,
            "registered_at": rfc3339(self.registered_us),
        }


_ENTRY = (
    policies.c.idx,
    policies.c.tenant,
    policies.c.record_id,
    policies.c.policy_id,
    policies.c.version,
    policies.c.digest,
    policies.c.engine,
    policies.c.registered_us,
)


def resolve_digest(
    connection: Connection, tenant: str, digest: str, policy_id: str, version: str
) -> PolicyEntry | None:
    """The registration a decision's `policy` names by its digest: the one registered under
    the same policy id and version when there is one, else the first with that document."""
    rows = connection.execute(
        select(*_ENTRY)
        .where(policies.c.tenant == tenant, policies.c.digest == digest)
        .order_by(policies.c.idx)
    ).all()
    entries = [PolicyEntry(*row) for row in rows]
    exact = [entry for entry in entries if (entry.policy_id, entry.version) == (policy_id, version)]
    found = exact or entries
    return found[0] if found else None


def policy_version(
    connection: Connection, tenant: str, policy_id: str, version: str
) -> PolicyEntry | None:
    row = connection.execute(
        select(*_ENTRY).where(
            policies.c.tenant == tenant,
            policies.c.policy_id == policy_id,
            policies.c.version == version,
        )
    ).first()
    return None if row is None else PolicyEntry(*row)


def list_policies(
    connection: Connection, tenant: str, policy_id: str | None = None
) -> list[PolicyEntry]:
    """The tenant's registered versions, by policy id and then in log order."""
    query = select(*_ENTRY).where(policies.c.tenant == tenant)
    if policy_id is not None:
        query = query.where(policies.c.policy_id == policy_id)
    rows = connection.execute(query.order_by(policies.c.policy_id, policies.c.idx))
    return [PolicyEntry(*row) for row in rows]


def policy_checks_of(
    connection: Connection, tenant: str, decision_id: str, before: int | None
) -> list[int]:
    """The log indexes of the policy checks of decision `decision_id`, oldest first; only
    those before index `before` when it is given."""
    query = select(policy_checks.c.idx).where(
        policy_checks.c.tenant == tenant, policy_checks.c.decision_id == decision_id
    )
    if before is not None:
        query = query.where(policy_checks.c.idx < before)
    return list(connection.execute(query.order_by(policy_checks.c.idx)).scalars())
