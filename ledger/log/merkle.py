"""The ledger's Merkle tree: RFC 9162 §2.1 hashing, proofs for a stored tree, and verification.

Everything here is pure arithmetic over SHA-256 hashes and leaf positions; storage is the
caller's business. A log keeps one hash per *perfect* subtree, named by `NodeId`
``(level, index)``: the subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``.
`CompactRange` produces those nodes as leaves are appended, `inclusion_proof_ranges` and
`consistency_proof_ranges` say which leaf ranges a proof is made of, and `proof_hashes`
turns ranges into hashes with one batched lookup of the O(log n) nodes they need. The
verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 step by step and refuse, rather than
raise on, anything malformed, because they run on untrusted input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "NodeId",
    "consistency_proof_ranges",
    "hash_children",
    "hash_leaf",
    "inclusion_proof_ranges",
    "proof_hashes",
    "range_hash",
    "range_nodes",
    "root_from_inclusion",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32

# MTH({}) = SHA-256() (RFC 9162 §2.1.1).
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]

_sha256 = hashlib.sha256
# Distinct prefixes for leaves and interior nodes are what stop a leaf from being passed
# off as an interior node (second-preimage resistance, RFC 9162 §2.1.1).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def hash_leaf(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d): the hash of one leaf."""
    return _sha256(_LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1), where RFC 9162 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves; EMPTY_ROOT when there are none.

    Folding a compact range is the RFC's recursive split done bottom-up: the left part
    of every split is a perfect subtree, which is exactly a peak. Raises ValueError if
    a leaf hash is not 32 bytes.
    """
    compact = CompactRange()
    for leaf_hash in leaf_hashes:
        compact.append(leaf_hash)
    return compact.root()


# --------------------------------------------------------------------------------------
# Proofs for a stored tree
# --------------------------------------------------------------------------------------


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The [lo, hi) leaf ranges whose MTH values form PATH(index, D[size]), leaf upward.

    RFC 9162 §2.1.3.1, unrolled: walk down from the root, and at each split the proof
    needs the half that does not hold the leaf.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    # PATH appends the sibling of each level after the path below it, so the walk from
    # the root produced them in reverse.
    ranges.reverse()
    return ranges


def consistency_proof_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The [lo, hi) leaf ranges whose MTH values form PROOF(old_size, D[new_size]).

    RFC 9162 §2.1.4.1, unrolled: SUBPROOF(m, D[n], b) descends into one half per step
    and appends the other half's hash after the subproof below it.
    """
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, new_size
    # b in the RFC: true while the subtree in hand is still a prefix of the proof's tree,
    # whose root the verifier already has.
    known = True
    while old_size != hi:
        mid = lo + _split(hi - lo)
        if old_size <= mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
            known = False
    if not known:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def range_nodes(lo: int, hi: int) -> list[NodeId]:
    """The perfect nodes whose hashes determine MTH(D[lo:hi]), left to right.

    Only ranges that occur in the RFC's recursion are accepted, as every range of a
    proof does: lo must be a multiple of the smallest power of two >= hi - lo. Then
    each RFC split of D[lo:hi] cuts off a perfect, aligned left part, which leaves one
    node per set bit of hi - lo, largest first: O(log n). Any other range is not a
    subtree of the log, and its MTH would need O(hi - lo) nodes, so it is refused.
    """
    if not 0 <= lo <= hi:
        raise ValueError(f"[{lo}, {hi}) is not a range of leaves")
    n = hi - lo
    if n and lo & ((1 << (n - 1).bit_length()) - 1):
        raise ValueError(f"[{lo}, {hi}) is not aligned like a subtree of the log")
    nodes: list[NodeId] = []
    # Visit only the set bits: most ranges of a proof are a single perfect subtree.
    while n:
        level = n.bit_length() - 1
        nodes.append((level, lo >> level))
        lo += 1 << level
        n ^= 1 << level
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of adjacent perfect subtrees of decreasing size, given their hashes.

    The RFC split makes the largest one the left child and recurses on the rest, so
    they combine from the right.
    """
    if not hashes:
        return EMPTY_ROOT
    node = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        node = _sha256(_NODE_PREFIX + hashes[i] + node).digest()
    return node


def range_hash(lo: int, hi: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH(D[lo:hi]) from the hashes of `range_nodes(lo, hi)`; KeyError if one is missing."""
    return _fold([nodes[node] for node in range_nodes(lo, hi)])


def proof_hashes(
    ranges: Sequence[tuple[int, int]],
    fetch: Callable[[set[NodeId]], Mapping[NodeId, bytes]],
) -> list[bytes]:
    """The MTH of each range, in order, from one call of `fetch` with every node needed.

    Batching lets a database answer a whole proof with a single query. `fetch` is not
    called when no node is needed (no ranges), since an empty lookup is wasted work and
    ``IN ()`` is not even valid SQL.
    """
    per_range = [range_nodes(lo, hi) for lo, hi in ranges]
    needed = {node for ids in per_range for node in ids}
    nodes: Mapping[NodeId, bytes] = fetch(needed) if needed else {}
    # Most ranges are one perfect subtree, whose hash is stored as is.
    return [nodes[ids[0]] if len(ids) == 1 else _fold([nodes[n] for n in ids]) for ids in per_range]


# --------------------------------------------------------------------------------------
# The growing tree
# --------------------------------------------------------------------------------------


class CompactRange:
    """The right frontier of a growing tree: one perfect-subtree hash per set bit of size.

    The peaks, left to right (largest first), are the hashes of `peak_nodes(size)`.
    They are all a log needs to append leaves and compute its root, so a writer can
    resume from a stored size and its peaks without reading the tree.
    """

    __slots__ = ("_peaks", "_size")

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError(f"tree size {size} is negative")
        if len(peaks) != size.bit_count():
            raise ValueError(
                f"a tree of size {size} has {size.bit_count()} peaks, not {len(peaks)}"
            )
        if any(len(peak) != HASH_SIZE for peak in peaks):
            raise ValueError(f"every peak must be a {HASH_SIZE}-byte hash")
        self._size = size
        self._peaks = [bytes(peak) for peak in peaks]

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    @property
    def peaks(self) -> list[bytes]:
        """A copy of the peak hashes, left to right."""
        return list(self._peaks)

    @staticmethod
    def peak_nodes(size: int) -> list[NodeId]:
        """The NodeIds of the frontier of a tree of `size` leaves, left to right."""
        if size < 0:
            raise ValueError(f"tree size {size} is negative")
        return range_nodes(0, size)

    def append(self, leaf_hash: bytes) -> list[tuple[NodeId, bytes]]:
        """Add one leaf; return the perfect nodes it completes at level >= 1, lowest first.

        Each trailing one bit of the old size is a peak of the same height as the
        subtree being carried up, so the two merge, exactly like binary addition of 1.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"a leaf hash must be {HASH_SIZE} bytes, not {len(leaf_hash)}")
        completed: list[tuple[NodeId, bytes]] = []
        peaks = self._peaks
        index = self._size
        carry = self._size
        node = leaf_hash
        level = 0
        while carry & 1:
            node = _sha256(_NODE_PREFIX + peaks.pop() + node).digest()
            carry >>= 1
            level += 1
            completed.append(((level, index >> level), node))
        peaks.append(node)
        self._size = index + 1
        return completed

    def root(self) -> bytes:
        """MTH of all leaves so far (EMPTY_ROOT when empty).

        The RFC's split puts the largest peak on the left of the root and recurses on
        the rest, so the peaks fold from the right.
        """
        return _fold(self._peaks)


# --------------------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2)
# --------------------------------------------------------------------------------------


def _is_hash(value: bytes) -> bool:
    return len(value) == HASH_SIZE


def root_from_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes | None:
    """The root that an inclusion proof implies, or None if the proof is malformed.

    Steps 1 to 4 of RFC 9162 §2.1.3.2, and the check of sn from step 5; comparing the
    result to a root is left to the caller (see `verify_inclusion`).
    """
    if index < 0 or not _is_hash(leaf_hash) or not all(_is_hash(p) for p in proof):
        return None
    # 1. If leaf_index is greater than or equal to tree_size, fail.
    if index >= size:
        return None
    # 2. Set fn to leaf_index and sn to tree_size - 1.
    fn = index
    sn = size - 1
    # 3. Set r to hash.
    r = leaf_hash
    # 4. For each value p in the inclusion_path array:
    for p in proof:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return None
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = hash_children(p, r)
            # ii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            #     either LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        # Otherwise:
        else:
            # i. Set r to HASH(0x01 || r || p).
            r = hash_children(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. (first half) Compare sn to 0: a shorter proof leaves part of the path unclimbed.
    if sn != 0:
        return None
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether `proof` shows `leaf_hash` at `index` in the tree of `size` with `root`.

    RFC 9162 §2.1.3.2. Never raises on malformed input; it is simply refused.
    """
    r = root_from_inclusion(leaf_hash, index, size, proof)
    # 5. If sn is equal to 0 and r and the root_hash are equal, the log has proven the
    #    inclusion of hash. Otherwise, fail the proof verification.
    return r is not None and _is_hash(root) and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether `proof` shows the tree (old_size, old_root) is a prefix of (new_size, new_root).

    RFC 9162 §2.1.4.2 covers 0 < first < second. The other cases are decided here:
    equal sizes are consistent iff the proof is empty and the roots are equal. An empty
    tree is a prefix of every tree, so from size 0 an empty proof is accepted, but only
    with old_root == EMPTY_ROOT, the one root a tree of size 0 can have. A shrinking
    tree, a negative size or a hash that is not 32 bytes is refused. Never raises.
    """
    if (
        old_size < 0
        or new_size < old_size
        or not _is_hash(old_root)
        or not _is_hash(new_root)
        or not all(_is_hash(c) for c in proof)
    ):
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and old_root == new_root

    # The RFC's names, so that the steps below read as written.
    first, second, first_hash, second_hash = old_size, new_size, old_root, new_root
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if not proof:
        return False
    # 2. If first is an exact power of 2, then prepend first_hash to the
    #    consistency_path array.
    consistency_path = list(proof)
    if first & (first - 1) == 0:
        consistency_path.insert(0, first_hash)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn = first - 1
    sn = second - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is
    #    not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = consistency_path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in consistency_path[1:]:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set fr to HASH(0x01 || c || fr).
            fr = hash_children(c, fr)
            # ii. Set sr to HASH(0x01 || c || sr).
            sr = hash_children(c, sr)
            # iii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            #      either LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        # Otherwise:
        else:
            # i. Set sr to HASH(0x01 || sr || c).
            sr = hash_children(sr, c)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. Verify that fr equals first_hash, sr equals second_hash, and sn is 0.
    return fr == first_hash and sr == second_hash and sn == 0
