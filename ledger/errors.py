"""The ledger's exception hierarchy.

Every error the core raises on bad input derives from `LedgerError` and carries a stable
machine-readable `kind`, a human `detail` and, where a field is at fault, a JSON `pointer`
(RFC 6901). The HTTP layer maps these one-to-one onto RFC 9457 problem documents and the
CLI prints them as one line, so neither has to guess what went wrong.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class for every error the ledger reports to a caller."""

    kind = "ledger-error"
    title = "Ledger error"

    def __init__(self, detail: str, *, pointer: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer

    def __str__(self) -> str:
        where = f" (at {self.pointer})" if self.pointer else ""
        return f"{self.detail}{where}"


class RecordRejected(LedgerError):
    """A record was refused at admission; nothing of it is stored."""

    kind = "record-rejected"
    title = "Record rejected"


class MalformedEnvelope(RecordRejected):
    kind = "malformed-envelope"
    title = "Malformed DSSE envelope"


class UnsupportedPayloadType(RecordRejected):
    kind = "unsupported-payload-type"
    title = "Unsupported payloadType"


class InvalidPayload(RecordRejected):
    """The payload does not decode against the record schema."""

    kind = "invalid-payload"
    title = "Invalid record payload"


class RecordTooLarge(RecordRejected):
    kind = "record-too-large"
    title = "Record too large"


class SignatureError(RecordRejected):
    """No signature verified under a key that may sign this record."""

    kind = "bad-signature"
    title = "Signature does not verify"


class UnknownKey(SignatureError):
    kind = "unknown-key"
    title = "Unknown signing key"


class KeyRevoked(SignatureError):
    kind = "key-revoked"
    title = "Signing key revoked"


class KeyNotValidAt(SignatureError):
    kind = "key-not-valid"
    title = "Signing key not valid at occurred_at"


class KeyNotAuthorized(SignatureError):
    """The key is registered for another tenant or service than the record names."""

    kind = "key-not-authorized"
    title = "Signing key not authorized for this record"


class DelegationInvalid(RecordRejected):
    """The record's UCAN delegation chain breaks a verification rule (docs/delegation.md).

    `rule` is the rule's number and `rule_name` its stable name; the detail starts with both,
    so a one-line error or a problem document names the rule that failed.
    """

    kind = "delegation-invalid"
    title = "Delegation chain does not verify"

    def __init__(self, rule: int, rule_name: str, detail: str, *, pointer: str | None = None):
        super().__init__(f"rule {rule} ({rule_name}): {detail}", pointer=pointer)
        self.rule = rule
        self.rule_name = rule_name


class IdConflict(RecordRejected):
    """The (tenant, id) is already in the log with different bytes."""

    kind = "id-conflict"
    title = "Record id already used with different content"


class ReplayOfUnknown(RecordRejected):
    """A replay names a decision its tenant's log does not hold, or names it by another
    leaf hash than the decision's entry has."""

    kind = "replay-of-unknown"
    title = "Replay of an unknown decision"


class KeyRegistryError(LedgerError):
    kind = "key-registry"
    title = "Key registry error"


class ProofError(LedgerError):
    """A proof was asked for sizes or indexes the log cannot answer."""

    kind = "bad-proof-request"
    title = "Proof cannot be produced"


class MissingTreeNodes(LedgerError):
    """Stored perfect-subtree hashes that the tree needs are absent."""

    kind = "missing-tree-node"
    title = "Stored tree node missing"

    def __init__(self, nodes: list[tuple[int, int]]) -> None:
        super().__init__(f"the stored tree is missing nodes (level, index) {nodes[:4]}")
        self.nodes = nodes


class NoteError(LedgerError):
    """A signed note or checkpoint does not parse or does not verify."""

    kind = "bad-note"
    title = "Signed note invalid"


class LedgerNotInitialized(LedgerError):
    kind = "not-initialized"
    title = "Ledger not initialized"


class TenantMismatch(RecordRejected):
    """The record names another tenant than the credentials it was sent with."""

    kind = "tenant-mismatch"
    title = "Record belongs to another tenant"


class AccessError(LedgerError):
    """The caller may not do what it asked; raised by the service edges, never the core."""


class Unauthenticated(AccessError):
    kind = "unauthenticated"
    title = "Missing or unknown API key"


class Forbidden(AccessError):
    kind = "forbidden"
    title = "The API key's role does not allow this"


class NotFound(LedgerError):
    """Absent, or belonging to another tenant: the two are indistinguishable on purpose."""

    kind = "not-found"
    title = "Not found"


class BadRequest(LedgerError):
    """A request that is not a record (a batch body, a key registration) is malformed."""

    kind = "bad-request"
    title = "Malformed request"


class DigestMismatch(LedgerError):
    kind = "digest-mismatch"
    title = "Content does not match its digest"


class BlobErased(LedgerError):
    kind = "blob-erased"
    title = "Blob erased"


class Overloaded(LedgerError):
    """More records wait for a commit than the queue may hold; retry after a pause."""

    kind = "overloaded"
    title = "Too many records waiting"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ShuttingDown(LedgerError):
    kind = "shutting-down"
    title = "The service is shutting down"


class UnsupportedMediaType(BadRequest):
    kind = "unsupported-media-type"
    title = "Unsupported Content-Type"


class BatchTooLarge(BadRequest):
    kind = "batch-too-large"
    title = "Too many records in one batch"


class KeyConflict(KeyRegistryError):
    """The keyid is registered already, with another key, owner or validity window."""

    kind = "key-conflict"
    title = "Key id already registered differently"


class AuditFailed(LedgerError):
    """The log a server presents is not an extension of the one an auditor already trusts."""

    kind = "audit-failed"
    title = "The log is not consistent with the trusted checkpoint"


class RecordUnprocessable(RecordRejected):
    """Checking this one record failed in a way no rule names; it alone is refused, and
    the rest of its group is admitted as usual."""

    kind = "record-unprocessable"
    title = "Record could not be checked"


class RecordUnstorable(RecordRejected):
    """The database refused to store this one record; it alone is refused, and the rest
    of its group commits."""

    kind = "record-unstorable"
    title = "Record could not be stored"


class DatabaseUnavailable(LedgerError):
    """The database failed the whole group (unreachable, or refusing every write): nothing
    was acknowledged, so a retry after a pause is safe."""

    kind = "database-unavailable"
    title = "Database unavailable"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RequestTimeout(LedgerError):
    """The client did not send its request's headers or body within the server's timeout;
    the connection is closed after this answer."""

    kind = "request-timeout"
    title = "Request not received in time"


class HeadersTooLarge(BadRequest):
    kind = "headers-too-large"
    title = "Request headers too large"


class BodyMemoryBusy(Overloaded):
    """The request bodies a worker already holds in memory use its whole budget; nothing of
    this request was read or stored, so a retry after a pause is safe."""

    kind = "body-memory-busy"
    title = "Too many large requests at once"


class TooManyConnections(Overloaded):
    """The worker holds as many connections as it may; this one is answered and closed."""

    kind = "too-many-connections"
    title = "Too many open connections"
