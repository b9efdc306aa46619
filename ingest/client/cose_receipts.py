"""COSE receipts (RFC 9942) from the SDK: `Client.cose_receipt` and `verify_cose_receipt`.

`cose_receipt_flow` fetches `GET /v1/entries/{index}/receipt` and the entry's bytes
(`GET /v1/entries/{index}`), and accepts the receipt only when it verifies under the
ledger's verifier key for that entry (`ledger.log.cose_receipt`). `verify_cose_receipt` is
the same check for a receipt saved earlier, with the SDK's error, `ReceiptInvalid`.
"""

from __future__ import annotations

import msgspec

from ingest.client._flows import Flow, Request, exchange, response_problem
from ingest.client.errors import ReceiptInvalid, UnexpectedResponse
from ledger.backoff import Attempts
from ledger.errors import CoseReceiptInvalid
from ledger.log import cose_receipt as _cose
from ledger.log.cose_receipt import COSE_MEDIA_TYPE, CoseReceiptClaims
from ledger.log.note import Checkpoint, NoteVerifier

__all__ = ["CoseReceiptClaims", "cose_receipt_flow", "verify_cose_receipt"]


class _EntryDoc(msgspec.Struct):
    index: int
    entry_bytes: str


def verify_cose_receipt(
    receipt: bytes,
    verifier: NoteVerifier,
    *,
    entry_bytes: bytes | None = None,
    leaf_hash: bytes | None = None,
    checkpoint: Checkpoint | None = None,
) -> CoseReceiptClaims:
    """Check a COSE receipt for one entry, given its entry bytes or its leaf hash (a
    receipt's `leaf_hash`), under the ledger's verifier key; with `checkpoint` (opened with
    `open_checkpoint`), also that the receipt's tree is that checkpoint's. Raises
    `ReceiptInvalid` naming what failed."""
    try:
        return _cose.verify_cose_receipt(
            receipt,
            verifier,
            entry_bytes=entry_bytes,
            leaf_hash=leaf_hash,
            checkpoint=checkpoint,
        )
    except CoseReceiptInvalid as error:
        raise ReceiptInvalid(f"COSE receipt: {error}") from None


def cose_receipt_flow(
    index: int, verifier: NoteVerifier, attempts: Attempts, size: int | None = None
) -> Flow[bytes]:
    """The COSE receipt of entry `index` (in the checkpoint of `size` entries, if given),
    checked against the ledger's key and the entry's bytes."""
    path = f"/v1/entries/{index}/receipt" + ("" if size is None else f"?size={size}")
    response = yield from exchange(Request("GET", path), attempts)
    if response.status != 200:
        raise response_problem(response)
    if response.headers.get("content-type", "").split(";")[0].strip() != COSE_MEDIA_TYPE:
        raise UnexpectedResponse(f"GET {path} did not answer {COSE_MEDIA_TYPE}")
    answer = yield from exchange(Request("GET", f"/v1/entries/{index}"), attempts)
    if answer.status != 200:
        raise response_problem(answer)
    try:
        entry = msgspec.json.decode(answer.body, type=_EntryDoc)
        entry_bytes = bytes.fromhex(entry.entry_bytes)
    except (msgspec.MsgspecError, ValueError) as error:
        raise UnexpectedResponse(f"entry {index} does not parse: {error}") from None
    claims = verify_cose_receipt(response.body, verifier, entry_bytes=entry_bytes)
    if claims.index != index or (size is not None and claims.tree_size != size):
        raise ReceiptInvalid(
            f"asked for entry {index}{'' if size is None else f' in size {size}'}, the COSE "
            f"receipt is for entry {claims.index} in size {claims.tree_size}"
        )
    return response.body
