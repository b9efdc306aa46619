"""The project's exception hierarchy: one root, `ProvError`.

Everything the project raises on purpose derives from `ProvError` and carries a stable
machine-readable `kind`, a `title`, a human `detail` and, where a field is at fault, a JSON
`pointer` (RFC 6901). The HTTP layer maps the root onto RFC 9457 problem documents in one
place (`httpapi.problems`), the CLI onto one line in one place (`service.cli.common`), so
neither has to guess what went wrong. `LedgerError` is the root's older name, kept as an
alias. The errors of the HTTP service itself (authentication, overload, request limits)
live in `httpapi.errors`, since the core knows nothing of HTTP. This module stays pure
Python: the SDK imports it without the server's dependencies.
"""

from __future__ import annotations

# Every problem document's `type` is this followed by the error's `kind`.
PROBLEM_TYPE_PREFIX = "urn:prov:problem:"


class ProvError(Exception):
    """Root of every error the project raises on purpose; `kind` is stable per class."""

    kind = "ledger-error"
    title = "Ledger error"

    def __init__(self, detail: str, *, pointer: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer

    def __str__(self) -> str:
        where = f" (at {self.pointer})" if self.pointer else ""
        return f"{self.detail}{where}"


# The root's first name; `except LedgerError` catches every purposeful error.
LedgerError = ProvError


class RecordRejected(ProvError):
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


class UnknownPolicyEngine(RecordRejected):
    """A policy record names an engine the ledger cannot evaluate (docs/policy.md)."""

    kind = "unknown-policy-engine"
    title = "Unknown policy engine"


class PolicyUnparsable(RecordRejected):
    """A policy record's document, schema or entry point does not parse for its engine."""

    kind = "policy-unparsable"
    title = "Policy document does not parse"


class PolicyDigestMismatch(RecordRejected):
    """A policy record's `digest` is not the SHA-256 of its document's bytes."""

    kind = "policy-digest-mismatch"
    title = "Policy document does not match its digest"


class PolicyDocumentUnavailable(RecordRejected):
    """A policy record names its document by a blob the tenant's store does not hold."""

    kind = "policy-document-unavailable"
    title = "Policy document blob not stored"


class PolicyVersionConflict(RecordRejected):
    """The tenant registered this policy id and version already, with another document."""

    kind = "policy-version-conflict"
    title = "Policy version already registered with another document"


class PolicyCheckOfUnknown(RecordRejected):
    """A policy check names a decision its tenant's log does not hold, or names it by
    another leaf hash than the decision's entry has."""

    kind = "policy-check-of-unknown"
    title = "Policy check of an unknown decision"


class MonitorInvalid(RecordRejected):
    """A monitor definition does not parse, names an unknown member, or asks for something
    the ledger refuses to evaluate (an unknown aggregate, a negative window, a regular
    expression that backtracks); the pointer names the member (docs/monitors.md)."""

    kind = "monitor-invalid"
    title = "Monitor definition refused"


class MonitorVersionConflict(RecordRejected):
    """The tenant applied this monitor id and version already, with another definition."""

    kind = "monitor-version-conflict"
    title = "Monitor version already applied with another definition"


class LedgerMadeRecord(RecordRejected):
    """A breach record is made by the sequencer alone, never admitted from outside."""

    kind = "ledger-made-record"
    title = "Only the ledger makes this kind of record"


class MonitorBreached(ProvError):
    """Raised by the client, when asked to, for an answer saying a `flag` monitor is over
    its limit: the caller should stop before its next decision (docs/monitors.md)."""

    kind = "monitor-breached"
    title = "A flag monitor is over its limit"

    # What the client was answered, set where it raises: the result whose reading is over
    # (the record is stored), and for a batch every result. Typed loosely: this module stays
    # free of the client's types.
    result: object = None
    results: list[object] | None = None


class KeyRegistryError(ProvError):
    kind = "key-registry"
    title = "Key registry error"


class ProofError(ProvError):
    """A proof was asked for sizes or indexes the log cannot answer."""

    kind = "bad-proof-request"
    title = "Proof cannot be produced"


class MissingTreeNodes(ProvError):
    """Stored perfect-subtree hashes that the tree needs are absent."""

    kind = "missing-tree-node"
    title = "Stored tree node missing"

    def __init__(self, nodes: list[tuple[int, int]]) -> None:
        super().__init__(f"the stored tree is missing nodes (level, index) {nodes[:4]}")
        self.nodes = nodes


class NoteError(ProvError):
    """A signed note or checkpoint does not parse or does not verify."""

    kind = "bad-note"
    title = "Signed note invalid"


class LedgerNotInitialized(ProvError):
    kind = "not-initialized"
    title = "Ledger not initialized"


class TenantMismatch(RecordRejected):
    """The record names another tenant than the credentials it was sent with."""

    kind = "tenant-mismatch"
    title = "Record belongs to another tenant"


class NotFound(ProvError):
    """Absent, or belonging to another tenant: the two are indistinguishable on purpose."""

    kind = "not-found"
    title = "Not found"


class BadRequest(ProvError):
    """A request that is not a record (a batch body, a key registration) is malformed."""

    kind = "bad-request"
    title = "Malformed request"


class DigestMismatch(ProvError):
    kind = "digest-mismatch"
    title = "Content does not match its digest"


class BlobErased(ProvError):
    kind = "blob-erased"
    title = "Blob erased"


class SubjectUnknown(NotFound):
    """An erasure names a subject with no decision and no blob in the tenant."""

    kind = "subject-unknown"
    title = "Unknown subject"


class ErasureRefused(ProvError):
    """The retention floor or a legal hold forbids the erasure now; the detail names the
    floor's end or the hold and its reason (docs/erasure.md)."""

    kind = "erasure-refused"
    title = "Erasure refused"


class ErasureRequestInvalid(ProvError):
    """The body of an erasure, retention or legal-hold request does not hold; the pointer
    names the member at fault."""

    kind = "erasure-request-invalid"
    title = "Invalid erasure, retention or hold request"


class KeyConflict(KeyRegistryError):
    """The keyid is registered already, with another key, owner or validity window."""

    kind = "key-conflict"
    title = "Key id already registered differently"


class EntryAltered(ProvError):
    """A stored entry no longer verifies from its bytes, so nothing may be said about it
    (`prov verify` names every such entry)."""

    kind = "entry-altered"
    title = "Stored entry no longer verifies"


class WitnessPolicyUnmet(ProvError):
    """A checkpoint lacks the cosignatures the caller's witness policy requires."""

    kind = "witness-policy-unmet"
    title = "Not enough witnesses cosigned the checkpoint"


# The witness's refusals of an `add-checkpoint` request, one per status of C2SP tlog-witness.


class WitnessUnknownLog(ProvError):
    """The witness follows no log of the checkpoint's origin (404)."""

    kind = "witness-unknown-log"
    title = "The witness follows no log of this origin"


class WitnessUntrusted(ProvError):
    """No signature by a key the witness trusts for the origin, or one that fails (403)."""

    kind = "witness-untrusted"
    title = "Checkpoint not signed by a key the witness trusts for its log"


class WitnessBadRequest(ProvError):
    """A malformed `add-checkpoint` request, or an old size above the checkpoint's (400)."""

    kind = "witness-bad-request"
    title = "Malformed add-checkpoint request"


class WitnessSizeConflict(ProvError):
    """The old size is not the size the witness last cosigned for the log (409); `size` is
    that size, which the answer carries so the log can send the right proof."""

    kind = "witness-size-conflict"
    title = "Old size is not the witness's latest cosigned size"

    def __init__(self, detail: str, *, size: int) -> None:
        super().__init__(detail)
        self.size = size


class WitnessInconsistent(ProvError):
    """The checkpoint is not consistent with what the witness cosigned (422): a proof that
    does not verify, another root at the same size, a size-0 tree that is not empty."""

    kind = "witness-inconsistent"
    title = "Checkpoint not consistent with the witness's latest cosigned checkpoint"


class AuditFailed(ProvError):
    """The log a server presents is not an extension of the one an auditor already trusts."""

    kind = "audit-failed"
    title = "The log is not consistent with the trusted checkpoint"


class CoseReceiptInvalid(ProvError):
    """A COSE receipt (RFC 9942) does not follow the ledger's profile, or its signature does
    not verify under the ledger's key over the root its proof rebuilds from the leaf given
    (`ledger.log.cose_receipt`, docs/log-format.md)."""

    kind = "cose-receipt-invalid"
    title = "COSE receipt does not verify"


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


class BlobUnreadable(ProvError):
    """A blob's stored bytes are missing from its object store or fail to authenticate
    under its key although it was never erased: lost or altered storage."""

    kind = "blob-unreadable"
    title = "Blob unreadable"


class BlobStoreUnavailable(ProvError):
    """The blob object store did not answer or refused the request; nothing was
    acknowledged, so a retry after a pause is safe (503 with Retry-After over HTTP)."""

    kind = "blob-store-unavailable"
    title = "Blob store unavailable"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class BadConfiguration(ProvError, ValueError):
    """A setting names something that cannot work (a blob store URL of no known kind, an
    S3 bucket name S3 refuses); the detail says which setting and why, in one line. A
    ValueError too, so that settings validation reports it like any other bad value."""

    kind = "bad-configuration"
    title = "Setting cannot work"


class DatabaseUnavailable(ProvError):
    """The database failed the whole group (unreachable, or refusing every write): nothing
    was acknowledged, so a retry after a pause is safe."""

    kind = "database-unavailable"
    title = "Database unavailable"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
