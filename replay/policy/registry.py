"""Registered policies read back from the log, checked, and made ready to evaluate.

The registry index (`ledger.indexes.policies`) says where a version is; the document itself
is read from the entry's stored bytes and trusted only once they check out again: the
envelope parses as a policy record, its signature verifies under the registered key, and
its document (inline, or the blob it names) hashes to the digest the index and the record
both give. A stored document altered after admission is then an evaluation failure naming
the entry, never an answer; `prov verify` names the same entry from the log's hashes.

A loaded policy is kept per process by the SHA-256 of its envelope, so a batch parses each
version once, and altered bytes are never served from the cache.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, select

from ledger.blobs.vault import BlobVault
from ledger.errors import (
    BlobErased,
    BlobStoreUnavailable,
    BlobUnreadable,
    NotFound,
    ProvError,
    RecordRejected,
)
from ledger.indexes.policies import PolicyEntry
from ledger.keys.keyring import get_key
from ledger.records.policy import PolicyOutcome, PolicyRecord, PolicyRef, document_digest
from ledger.records.signed import parse_record, verify_signer
from ledger.storage.schema import log_entries
from replay.policy.errors import PolicyEvaluationFailed

_CACHED = 256


class Evaluator(Protocol):
    """What every engine offers: one evaluation of the inputs of one decision."""

    engine: str

    def evaluate(self, inputs: dict[str, Any], principal: str, resource: str) -> PolicyOutcome: ...

    def evaluate_each(
        self, items: Sequence[tuple[dict[str, Any], str, str]]
    ) -> list[PolicyOutcome | ProvError]:
        """`evaluate` for many (inputs, principal, resource): each outcome, or its error."""
        ...


@dataclass(frozen=True, slots=True)
class RegisteredPolicy:
    """A registered version, its record as signed, and its engine, ready to evaluate."""

    entry: PolicyEntry
    record: PolicyRecord
    evaluator: Evaluator

    @property
    def ref(self) -> PolicyRef:
        record = self.record
        return PolicyRef(
            engine=record.engine,
            policy_id=record.policy_id,
            version=record.version,
            digest=record.digest,
        )


def compile_policy(record: PolicyRecord, document: str) -> Evaluator:
    """The engine of `record`, loaded with its document (which admission checked)."""
    if record.engine == "cedar":
        from replay.policy.cedar import CedarPolicy  # noqa: PLC0415 - cedarpy loads on use

        return CedarPolicy(document, record.schema or {}, record.entry_point)
    if record.engine == "python":
        from replay.policy.python import PythonPolicy  # noqa: PLC0415 - like the Cedar engine

        return PythonPolicy(record.digest, record.schema, record.entry_point or "")
    raise PolicyEvaluationFailed(f"no engine evaluates {record.engine!r} policies")


class PolicyLoader:
    """Loads registered versions from a ledger's database, keeping the last few."""

    def __init__(self, capacity: int = _CACHED) -> None:
        self._capacity = capacity
        self._loaded: OrderedDict[bytes, RegisteredPolicy] = OrderedDict()
        self._lock = threading.Lock()

    def load(
        self, connection: Connection, entry: PolicyEntry, blobs: BlobVault
    ) -> RegisteredPolicy:
        envelope = connection.execute(
            select(log_entries.c.envelope).where(log_entries.c.idx == entry.index)
        ).scalar_one_or_none()
        if envelope is None:
            raise NotFound(f"the log holds no entry {entry.index} for policy {entry.policy_id}")
        stored = bytes(envelope)
        key = hashlib.sha256(stored).digest()
        with self._lock:
            if (cached := self._loaded.get(key)) is not None:
                self._loaded.move_to_end(key)
                return cached
        loaded = RegisteredPolicy(entry, *_read(connection, entry, stored, blobs))
        with self._lock:
            self._loaded[key] = loaded
            while len(self._loaded) > self._capacity:
                self._loaded.popitem(last=False)
        return loaded


def _read(
    connection: Connection, entry: PolicyEntry, stored: bytes, blobs: BlobVault
) -> tuple[PolicyRecord, Evaluator]:
    where = f"policy {entry.policy_id!r} version {entry.version!r} (entry {entry.index})"
    try:
        candidate = parse_record(stored, max_bytes=len(stored))
        keys = {
            signature.keyid: key
            for signature in candidate.envelope.signatures
            if (key := get_key(connection, signature.keyid)) is not None
        }
        verify_signer(candidate, keys, allow_revoked=True)
    except RecordRejected as error:
        raise PolicyEvaluationFailed(
            f"{where}: the stored record does not verify ({error}); run `prov verify`"
        ) from None
    record = candidate.decision
    if not isinstance(record, PolicyRecord):
        raise PolicyEvaluationFailed(f"{where}: the stored entry is not a policy record")
    if record.document is not None:
        document = record.document.encode()
    else:
        assert record.document_blob is not None  # the record has one or the other
        try:
            document = blobs.get(entry.tenant, record.document_blob)
        except (NotFound, BlobErased, BlobUnreadable, BlobStoreUnavailable) as error:
            raise PolicyEvaluationFailed(f"{where}: its document is unavailable: {error}") from None
    if not document_digest(document) == record.digest == entry.digest:
        raise PolicyEvaluationFailed(
            f"{where}: the stored document hashes to {document_digest(document)}, not "
            f"{entry.digest}; run `prov verify`"
        )
    return record, compile_policy(record, document.decode())
