"""COSE receipts (RFC 9942) issued from the stored log: `GET /v1/entries/{index}/receipt`
and `prov receipt cose`.

A receipt is issued against a stored signed checkpoint: the latest, or the one of a given
size. The entry is rebuilt from its stored envelope first and its leaf compared with the
stored one, and the inclusion proof must lead to the checkpoint's signed root; a stored
entry or tree that fails either is `EntryAltered`, and nothing is signed. The format and
its verification are `ledger.log.cose_receipt`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import Connection

from ledger.errors import EntryAltered, LedgerNotInitialized, NotFound, ProofError
from ledger.ledger import Ledger
from ledger.log import merkle
from ledger.log.cose_receipt import issue_cose_receipt
from ledger.log.entry import GENESIS_PREV, entry_bytes
from ledger.log.store import (
    StoredCheckpoint,
    checkpoint_at,
    fetch_required_nodes,
    latest_checkpoint,
    read_entry,
)
from query.audit.search import BIGINT_MAX


@dataclass(frozen=True, slots=True)
class IssuedCoseReceipt:
    """A receipt and what a verifier needs beside it: the entry bytes its leaf hashes."""

    receipt: bytes
    index: int
    tree_size: int
    root_hash: bytes
    entry_bytes: bytes


def _checkpoint(connection: Connection, size: int | None) -> StoredCheckpoint:
    if size is not None:
        found = checkpoint_at(connection, size)
        if found is None:
            raise NotFound(f"the log signed no checkpoint of size {size}", pointer="/size")
        return found
    latest = latest_checkpoint(connection)
    if latest is None:
        raise LedgerNotInitialized("the ledger has no checkpoint; run `prov init`")
    return latest


def cose_receipt(ledger: Ledger, index: int, size: int | None = None) -> IssuedCoseReceipt:
    """The COSE receipt of entry `index` in the signed checkpoint of `size` entries (default:
    the latest). `NotFound` when there is no such entry or checkpoint; `ProofError` when the
    entry is after the checkpoint's tree."""
    with ledger.engine.connect() as connection:
        # The entry first: the checkpoint read after it is at least as new, since entries
        # and their checkpoint commit together.
        stored = read_entry(connection, index) if index < BIGINT_MAX else None
        if stored is None:
            raise NotFound(f"there is no entry {index}")
        checkpoint = _checkpoint(connection, size)
        if index >= checkpoint.tree_size:
            raise ProofError(
                f"entry {index} is not in the checkpoint of size {checkpoint.tree_size}"
            )
        # The previous leaf (which the entry bytes hold) and the proof, in one lookup.
        previous = [(index - 1, index)] if index > 0 else []
        ranges = [*previous, *merkle.inclusion_proof_ranges(index, checkpoint.tree_size)]
        hashes = merkle.proof_hashes(
            ranges, lambda wanted: fetch_required_nodes(connection, wanted)
        )
    prev_leaf, path = (hashes[0], hashes[1:]) if index > 0 else (GENESIS_PREV, hashes)
    data = entry_bytes(
        index,
        stored.integrated_us,
        prev_leaf,
        hashlib.sha256(stored.envelope).digest(),
        stored.tenant,
    )
    leaf = merkle.hash_leaf(data)
    if leaf != stored.leaf_hash:
        raise EntryAltered(f"stored entry {index} no longer verifies; run `prov verify`")
    receipt = issue_cose_receipt(
        ledger.signer,
        ledger.origin,
        index=index,
        tree_size=checkpoint.tree_size,
        path=path,
        leaf_hash=leaf,
        root_hash=checkpoint.root_hash,
    )
    return IssuedCoseReceipt(receipt, index, checkpoint.tree_size, checkpoint.root_hash, data)
