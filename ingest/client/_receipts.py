"""Reading the server's answers: receipts (verified), batch results and the log's key.

A receipt is accepted only when the ledger's signature verifies under the verifier key the
client trusts, its signed body covers exactly the envelope bytes this client sent (by
SHA-256), names the log that key belongs to and the record's tenant and id, and the
unsigned fields shown beside it say the same as the signed body. Anything else is
`ReceiptInvalid`: an unsigned field cannot be trusted, so none is returned unchecked.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from ingest.client._records import SignedRecord
from ingest.client._results import AppendResult
from ingest.client.errors import (
    ClientError,
    ProblemError,
    ReceiptInvalid,
    UnexpectedResponse,
    _ProblemDoc,
    problem_from_document,
)
from ledger.errors import LedgerError
from ledger.log.note import NoteVerifier
from ledger.log.receipt import Receipt, ReceiptBody, open_receipt

_STATUSES = ("created", "existing")
# The answer's receipt, with the monitors the record counted toward (`AppendResult`).
_receipt_decoder = msgspec.json.Decoder(AppendResult)
R = TypeVar("R", bound=Receipt)


def parse_receipt(data: bytes) -> AppendResult:
    try:
        return _receipt_decoder.decode(data)
    except msgspec.MsgspecError as error:
        raise ReceiptInvalid(f"receipt does not parse: {error}") from None


def _open(receipt: Receipt, verifier: NoteVerifier, record: SignedRecord) -> ReceiptBody:
    try:
        body = open_receipt(receipt.receipt, verifier, record_envelope=record.envelope)
        if body is not None:
            return body
        # Open again without the bytes, only to say which of the two checks failed.
        signed = open_receipt(receipt.receipt, verifier)
    except (LedgerError, msgspec.MsgspecError) as error:
        raise ReceiptInvalid(f"receipt envelope is malformed: {error}") from None
    if signed is None:
        raise ReceiptInvalid(
            f"receipt for {record.id!r} is not signed by the ledger key {verifier.encode()}"
        )
    raise ReceiptInvalid(
        f"receipt for {record.id!r} covers envelope sha256 {signed.envelope_sha256}, "
        f"not the {record.sha256} that was sent"
    )


def verify_receipt(receipt: R, verifier: NoteVerifier, record: SignedRecord) -> R:
    """`receipt` if it proves that the ledger appended exactly `record`; else `ReceiptInvalid`."""
    body = _open(receipt, verifier, record)
    expected = {
        "log": verifier.name,  # the ledger's note key is named after its origin
        "tenant": record.tenant,
        "id": record.id,
        "index": receipt.index,
        "leaf_hash": receipt.leaf_hash,
        "integrated_at": receipt.integrated_at,
    }
    for name, value in expected.items():
        if getattr(body, name) != value:
            raise ReceiptInvalid(
                f"receipt for {record.id!r}: signed {name} {getattr(body, name)!r} "
                f"differs from {value!r}"
            )
    if receipt.tenant != body.tenant or receipt.id != body.id:
        raise ReceiptInvalid(f"receipt for {record.id!r}: clear tenant or id differ from signed")
    if receipt.status not in _STATUSES:
        raise ReceiptInvalid(f"receipt for {record.id!r} has unknown status {receipt.status!r}")
    return receipt


def check_receipt(data: bytes, verifier: NoteVerifier, record: SignedRecord) -> AppendResult:
    """Parse and verify the body of a `201`/`200` answer to `POST /v1/records`."""
    return verify_receipt(parse_receipt(data), verifier, record)


_NULL = msgspec.Raw(b"null")


class _BatchItem(msgspec.Struct):
    position: int
    status: int
    # Raw: one malformed receipt fails its own item, not the whole batch.
    receipt: msgspec.Raw = _NULL
    problem: _ProblemDoc | None = None


class _BatchReply(msgspec.Struct):
    results: list[_BatchItem]


_batch_decoder = msgspec.json.Decoder(_BatchReply)

BatchItemResult = Receipt | ClientError
"""One record's outcome in a batch: its verified receipt, or why it was not appended."""


class BatchItem(msgspec.Struct, frozen=True):
    """One record's answer in a batch, before its receipt is verified."""

    status: int
    receipt: bytes | None
    problem: ProblemError | None


def parse_batch(data: bytes, count: int) -> list[BatchItem]:
    """The per-item answers to a batch of `count` records, in the order they were sent."""
    try:
        reply = _batch_decoder.decode(data)
    except msgspec.MsgspecError as error:
        raise UnexpectedResponse(f"batch response does not parse: {error}") from None
    positions = sorted(item.position for item in reply.results)
    if positions != list(range(count)):
        raise UnexpectedResponse(
            f"batch of {count} records answered with positions {positions[:10]}"
        )
    items: list[BatchItem] = []
    for item in sorted(reply.results, key=lambda i: i.position):
        receipt = None if bytes(item.receipt) == b"null" else bytes(item.receipt)
        problem = None
        if receipt is None:
            doc = item.problem or _ProblemDoc(title="Record not appended")
            problem = problem_from_document(doc, item.status, "Record not appended")
        items.append(
            BatchItem(
                status=item.status,
                receipt=receipt,
                problem=problem,
            )
        )
    return items


def settle_item(item: BatchItem, verifier: NoteVerifier, record: SignedRecord) -> BatchItemResult:
    """The outcome of one batch item: a verified receipt, or the item's error."""
    if item.problem is not None:
        return item.problem
    if item.receipt is None or item.status not in (200, 201):
        return UnexpectedResponse(f"batch item for {record.id!r} has status {item.status}")
    try:
        return check_receipt(item.receipt, verifier, record)
    except ReceiptInvalid as error:
        return error


class _LogInfo(msgspec.Struct):
    origin: str
    verifier_key: str


_log_decoder = msgspec.json.Decoder(_LogInfo)


def parse_log_verifier(data: bytes) -> NoteVerifier:
    """The verifier key announced by `GET /v1/log`, checked to belong to its origin."""
    try:
        info = _log_decoder.decode(data)
        verifier = NoteVerifier.parse(info.verifier_key)
    except (msgspec.MsgspecError, LedgerError) as error:
        raise UnexpectedResponse(f"GET /v1/log: {error}") from None
    if verifier.name != info.origin:
        raise UnexpectedResponse(
            f"GET /v1/log: verifier key is named {verifier.name!r}, origin is {info.origin!r}"
        )
    return verifier
