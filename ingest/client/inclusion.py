"""Is a saved receipt's record in the log? `prov verify-receipt` and `Client.verify_receipt`.

A receipt says the ledger appended a record at an index with a leaf hash; only an inclusion
proof against a checkpoint the caller trusts shows that the log still holds it. The check:

1. The receipt's DSSE signature verifies under the ledger's verifier key, its signed body
   names that key's log, and the fields shown in the clear say the same as the signed body.
2. The server's latest checkpoint (`GET /checkpoint`) is signed by that key for that origin.
   Given an auditor's trusted checkpoint (`prov audit --state`), the new one must extend it:
   the same root at the same size, or a consistency proof from it; never a smaller tree.
3. The receipt's index is inside the checkpoint's tree, and the RFC 9162 inclusion proof
   (`GET /v1/proofs/inclusion?index=&size=`) takes the receipt's signed leaf hash to the
   checkpoint's signed root. The leaf and root the server sends beside the proof are not
   trusted; only the proof's hashes are used.

Anything that fails is `ReceiptInvalid`, naming what. The flow is written once and run by
the blocking and async clients and by `verify_receipt_in_log`, which needs no signing key.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx
import msgspec

from ingest.client._flows import (
    Flow,
    Request,
    Response,
    exchange,
    response_problem,
    run_blocking,
)
from ingest.client._receipts import parse_receipt
from ingest.client.errors import ReceiptInvalid, UnexpectedResponse
from ledger.backoff import Attempts, RetryPolicy
from ledger.errors import ProvError
from ledger.log import merkle
from ledger.log.note import Checkpoint, NoteVerifier, open_checkpoint
from ledger.log.receipt import Receipt, ReceiptBody, open_receipt

__all__ = [
    "ReceiptInLog",
    "receipt_in_log_flow",
    "signed_body",
    "verify_receipt_in_log",
]


@dataclass(frozen=True, slots=True)
class ReceiptInLog:
    """A receipt shown to be in the log: its signed body and the checkpoint that holds it."""

    body: ReceiptBody
    checkpoint: Checkpoint


class _InclusionDoc(msgspec.Struct):
    index: int
    tree_size: int
    proof: list[str]


class _ConsistencyDoc(msgspec.Struct):
    proof: list[str]


def signed_body(receipt: Receipt, verifier: NoteVerifier) -> ReceiptBody:
    """Step 1: the receipt's signed body, if the ledger key signed it and the clear fields
    agree with it; otherwise `ReceiptInvalid`."""
    try:
        body = open_receipt(receipt.receipt, verifier)
    except (ProvError, msgspec.MsgspecError) as error:
        raise ReceiptInvalid(f"receipt envelope is malformed: {error}") from None
    if body is None:
        raise ReceiptInvalid(
            f"receipt for {receipt.id!r} is not signed by the ledger key {verifier.encode()}"
        )
    if body.log != verifier.name:
        raise ReceiptInvalid(f"receipt is for log {body.log!r}, not {verifier.name!r}")
    clear = {
        "index": receipt.index,
        "leaf_hash": receipt.leaf_hash,
        "integrated_at": receipt.integrated_at,
        "tenant": receipt.tenant,
        "id": receipt.id,
    }
    for name, value in clear.items():
        if getattr(body, name) != value:
            raise ReceiptInvalid(
                f"receipt for {body.id!r}: {name} {value!r} in the clear differs from the "
                f"signed {getattr(body, name)!r}"
            )
    return body


def _hashes(nodes: list[str], what: str) -> list[bytes]:
    try:
        return [bytes.fromhex(node) for node in nodes]
    except ValueError as error:
        raise UnexpectedResponse(
            f"the {what} proof holds a node that is not hex: {error}"
        ) from None


def _decode(response: Response, what: str, into: type[msgspec.Struct]) -> msgspec.Struct:
    if response.status != 200:
        raise response_problem(response)
    try:
        return msgspec.json.decode(response.body, type=into)
    except msgspec.MsgspecError as error:
        raise UnexpectedResponse(f"the {what} proof does not parse: {error}") from None


def _extends(trusted: Checkpoint, new: Checkpoint, attempts: Attempts) -> Flow[None]:
    """Step 2's second half: `new` extends the trusted tree, by a consistency proof."""
    if new.size < trusted.size:
        raise ReceiptInvalid(
            f"rollback: the server's tree has {new.size} entries, but a checkpoint of "
            f"{trusted.size} is trusted"
        )
    if new.size == trusted.size:
        if new.root_hash != trusted.root_hash:
            raise ReceiptInvalid(f"fork: two signed checkpoints of size {new.size} differ")
        return
    if trusted.size == 0:
        return  # every tree extends the empty one
    path = f"/v1/proofs/consistency?from={trusted.size}&to={new.size}"
    response = yield from exchange(Request("GET", path), attempts)
    doc = _decode(response, "consistency", _ConsistencyDoc)
    assert isinstance(doc, _ConsistencyDoc)
    proof = _hashes(doc.proof, "consistency")
    if not merkle.verify_consistency(
        trusted.size, new.size, trusted.root_hash, new.root_hash, proof
    ):
        raise ReceiptInvalid(
            f"fork: the tree of size {new.size} does not extend the trusted tree of size "
            f"{trusted.size}"
        )


def receipt_in_log_flow(
    receipt: Receipt,
    verifier: NoteVerifier,
    attempts: Attempts,
    trusted: Checkpoint | None = None,
) -> Flow[ReceiptInLog]:
    """Steps 1 to 3 over HTTP; the receipt in the log, or `ReceiptInvalid`."""
    body = signed_body(receipt, verifier)
    response = yield from exchange(Request("GET", "/checkpoint"), attempts)
    if response.status != 200:
        raise response_problem(response)
    try:
        origin = trusted.origin if trusted is not None else verifier.name
        checkpoint = open_checkpoint(response.body.decode("utf-8", "replace"), verifier, origin)
    except ProvError as error:
        raise ReceiptInvalid(f"the server's checkpoint does not verify: {error}") from None
    if body.index >= checkpoint.size:
        # With witnesses, /checkpoint serves the newest checkpoint they cosigned, which may
        # not hold an entry appended a moment ago; the ledger's latest, signed by the same
        # key, does.
        response = yield from exchange(Request("GET", "/v1/checkpoint/latest"), attempts)
        if response.status == 200:
            try:
                checkpoint = open_checkpoint(
                    response.body.decode("utf-8", "replace"), verifier, origin
                )
            except ProvError as error:
                raise ReceiptInvalid(
                    f"the server's latest checkpoint does not verify: {error}"
                ) from None
    if trusted is not None:
        yield from _extends(trusted, checkpoint, attempts)
    if body.index >= checkpoint.size:
        raise ReceiptInvalid(
            f"entry {body.index} is not in the log: the signed checkpoint covers "
            f"{checkpoint.size} entries"
        )
    path = f"/v1/proofs/inclusion?index={body.index}&size={checkpoint.size}"
    response = yield from exchange(Request("GET", path), attempts)
    doc = _decode(response, "inclusion", _InclusionDoc)
    assert isinstance(doc, _InclusionDoc)
    if (doc.index, doc.tree_size) != (body.index, checkpoint.size):
        raise UnexpectedResponse(
            f"asked for the proof of entry {body.index} in a tree of {checkpoint.size}, got "
            f"entry {doc.index} in {doc.tree_size}"
        )
    leaf = bytes.fromhex(body.leaf_hash)
    proof = _hashes(doc.proof, "inclusion")
    if not merkle.verify_inclusion(leaf, body.index, checkpoint.size, proof, checkpoint.root_hash):
        raise ReceiptInvalid(
            f"leaf {body.leaf_hash} is not entry {body.index} of the log: the inclusion proof "
            f"does not reach the root of the signed checkpoint of size {checkpoint.size}"
        )
    return ReceiptInLog(body, checkpoint)


def _attempts(policy: RetryPolicy | None = None) -> Attempts:
    # Jitter only spreads retries; it needs no secure randomness.
    return Attempts(policy or RetryPolicy(), random.Random())  # noqa: S311


def verify_receipt_in_log(
    base_url: str,
    receipt: Receipt | bytes,
    verifier: NoteVerifier,
    *,
    api_key: str | None = None,
    trusted: Checkpoint | None = None,
    timeout: float = 30.0,
    retry: RetryPolicy | None = None,
) -> ReceiptInLog:
    """Check that `receipt` (parsed, or the JSON the ledger answered) is in the log served
    at `base_url`, trusting only `verifier` (and `trusted`, an auditor's checkpoint).

    Needs no signing key: an auditor holding a saved receipt can run it. Raises
    `ReceiptInvalid` when the receipt is not in the log, `ProblemError` when the server
    refuses, `ConnectionFailed` when it cannot be reached.
    """
    parsed = parse_receipt(receipt) if isinstance(receipt, bytes) else receipt
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    flow = receipt_in_log_flow(parsed, verifier, _attempts(retry), trusted)
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as http:
        return run_blocking(http, flow)
