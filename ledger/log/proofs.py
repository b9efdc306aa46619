"""Inclusion and consistency proofs served from the stored tree, in O(log n) reads.

Every proof hash is the hash of a leaf range; `ledger.log.merkle` reduces each range to stored
perfect subtrees, and all of them are fetched in one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from ledger.errors import ProofError
from ledger.log import merkle
from ledger.log.store import fetch_required_nodes, read_head


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    tree_size: int
    leaf_hash: bytes
    root_hash: bytes
    proof: list[bytes]

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "root_hash": self.root_hash.hex(),
            "proof": [node.hex() for node in self.proof],
        }


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    proof: list[bytes]

    def to_json(self) -> dict[str, object]:
        return {
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": self.old_root.hex(),
            "new_root": self.new_root.hex(),
            "proof": [node.hex() for node in self.proof],
        }


def _tree_size(connection: Connection, size: int | None) -> int:
    current = read_head(connection).size
    if size is None:
        return current
    if size > current:
        raise ProofError(f"tree size {size} is beyond the log's size {current}")
    return size


def _hashes(connection: Connection, ranges: list[tuple[int, int]]) -> list[bytes]:
    return merkle.proof_hashes(ranges, lambda wanted: fetch_required_nodes(connection, wanted))


def inclusion_proof(
    connection: Connection, index: int, size: int | None = None, *, checkpointed: bool = False
) -> InclusionProof:
    """Entry `index` into the tree of `size` (default: the whole log). `checkpointed` says
    `size` is a stored checkpoint's, so within the log: the head need not be read."""
    tree_size = size if checkpointed and size is not None else _tree_size(connection, size)
    if not 0 <= index < tree_size:
        raise ProofError(f"index {index} is not in a tree of size {tree_size}")
    ranges = [(index, index + 1), (0, tree_size), *merkle.inclusion_proof_ranges(index, tree_size)]
    leaf, root, *proof = _hashes(connection, ranges)
    return InclusionProof(index, tree_size, leaf, root, proof)


def consistency_proof(connection: Connection, old_size: int, new_size: int) -> ConsistencyProof:
    tree_size = _tree_size(connection, new_size)
    if not 0 < old_size <= tree_size:
        raise ProofError(f"old size {old_size} must be in 1..{tree_size}")
    ranges = [(0, old_size), (0, tree_size), *merkle.consistency_proof_ranges(old_size, tree_size)]
    old_root, new_root, *proof = _hashes(connection, ranges)
    return ConsistencyProof(old_size, tree_size, old_root, new_root, proof)


def root_at(connection: Connection, size: int) -> bytes:
    if size == 0:
        return merkle.EMPTY_ROOT
    return _hashes(connection, [(0, _tree_size(connection, size))])[0]
