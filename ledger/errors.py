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


class IdConflict(RecordRejected):
    """The (tenant, id) is already in the log with different bytes."""

    kind = "id-conflict"
    title = "Record id already used with different content"


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
