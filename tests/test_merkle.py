"""Tests for ledger.merkle against a brute-force reference written from RFC 9162 §2.1.

The reference below recomputes everything from leaf data with hashlib, exactly as the
RFC's recursive definitions read (MTH, PATH, PROOF/SUBPROOF); it shares no code with the
module. Known answers come from the Certificate Transparency reference tree published in
transparency-dev/merkle (proof/verify_test.go and rfc6962/rfc6962_test.go).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger.log.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    NodeId,
    consistency_proof_ranges,
    hash_children,
    hash_leaf,
    inclusion_proof_ranges,
    proof_hashes,
    range_hash,
    range_nodes,
    root_from_inclusion,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

T = TypeVar("T")
R = TypeVar("R")

# --------------------------------------------------------------------------------------
# Reference, straight from RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1
# --------------------------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def largest_power_of_two_smaller_than(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf *data*."""
    n = len(d)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + d[0])
    k = largest_power_of_two_smaller_than(n)
    return sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[T], mth: Callable[[Sequence[T]], R]) -> list[R]:
    """PATH(m, D[n]); `mth` is MTH for hashes, or a range's bounds to see its shape."""
    n = len(d)
    if n == 1:
        return []
    k = largest_power_of_two_smaller_than(n)
    if m < k:
        return [*ref_path(m, d[:k], mth), mth(d[k:])]
    return [*ref_path(m - k, d[k:], mth), mth(d[:k])]


def ref_subproof(m: int, d: Sequence[T], b: bool, mth: Callable[[Sequence[T]], R]) -> list[R]:
    """SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = largest_power_of_two_smaller_than(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b, mth), mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False, mth), mth(d[:k])]


def ref_proof(m: int, d: Sequence[T], mth: Callable[[Sequence[T]], R]) -> list[R]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return ref_subproof(m, d, True, mth)


def bounds(d: Sequence[int]) -> tuple[int, int]:
    """Used as `mth` over D = range(n): which [lo, hi) a proof element commits to."""
    return (d[0], d[-1] + 1)


def inclusion_shape(m: int, n: int) -> tuple[bool, ...]:
    """For each PATH element, whether it is a left sibling: all a verifier's hashing uses."""
    return tuple(hi <= m for _, hi in ref_path(m, range(n), bounds))


def consistency_shape(m: int, n: int) -> tuple[str, ...]:
    """For each PROOF element, whether it lies left of m, is D[?:m] itself, or lies right."""
    return tuple(
        "left" if hi < m else "old" if hi == m else "new"
        for _, hi in ref_proof(m, range(n), bounds)
    )


MAX_LEAVES = 512
LEAF_DATA = [b"decision %d" % i for i in range(MAX_LEAVES)]
LEAF_HASHES = [sha256(b"\x00" + d) for d in LEAF_DATA]


def _all_perfect_nodes() -> dict[NodeId, bytes]:
    """Every perfect subtree hash of the 512-leaf tree, built level by level."""
    nodes: dict[NodeId, bytes] = {}
    level, row = 0, LEAF_HASHES
    while row:
        nodes.update(((level, i), h) for i, h in enumerate(row))
        row = [sha256(b"\x01" + row[i] + row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
    return nodes


PERFECT = _all_perfect_nodes()


@cache
def ref_root(n: int) -> bytes:
    return ref_mth(LEAF_DATA[:n])


class RecordingFetch:
    """A node store for a tree of `size` leaves that counts lookups."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls: list[set[NodeId]] = []

    def __call__(self, ids: set[NodeId]) -> Mapping[NodeId, bytes]:
        self.calls.append(set(ids))
        # A node past the tree's size would not exist in a real store.
        assert all((index + 1) << level <= self.size for level, index in ids)
        return {node: PERFECT[node] for node in ids}


def module_inclusion_proof(m: int, n: int) -> list[bytes]:
    return proof_hashes(inclusion_proof_ranges(m, n), RecordingFetch(n))


def module_consistency_proof(m: int, n: int) -> list[bytes]:
    return proof_hashes(consistency_proof_ranges(m, n), RecordingFetch(n))


def flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def bit_flips(value: bytes) -> Iterator[bytes]:
    for bit in range(len(value) * 8):
        yield flip(value, bit)


def int_flips(value: int) -> Iterator[int]:
    # Every bit a nearby size could differ in, and a couple of far ones.
    for bit in [*range(value.bit_length() + 2), 40, 62]:
        yield value ^ (1 << bit)


def proof_mangles(proof: list[bytes], extra: Sequence[bytes]) -> Iterator[list[bytes]]:
    """Truncations and extensions of a proof, and elements of the wrong size."""
    for i in range(len(proof)):
        yield proof[:i] + proof[i + 1 :]
        yield [*proof[:i], proof[i][:-1], *proof[i + 1 :]]
        yield [*proof[:i], proof[i] + b"\x00", *proof[i + 1 :]]
        yield [*proof[:i], proof[i], *proof[i:]]
        if i + 1 < len(proof) and proof[i] != proof[i + 1]:
            yield [*proof[:i], proof[i + 1], proof[i], *proof[i + 2 :]]
    for garbage in [b"", bytes(HASH_SIZE), b"\xab" * HASH_SIZE, *extra]:
        yield [*proof, garbage]
        yield [garbage, *proof]
        for i in range(1, len(proof)):
            yield [*proof[:i], garbage, *proof[i:]]


# No example database: a failure is reported with its inputs, and the tests leave no files.
PROPERTY = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------

# The reference tree of Certificate Transparency, transparency-dev/merkle
# proof/verify_test.go: leaves and the roots for sizes 1 to 8.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
CT_ROOTS = [
    bytes.fromhex(h)
    for h in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
CT_LEAF_HASHES = [hash_leaf(d) for d in CT_LEAVES]
CT_PERFECT = {
    (level, index): ref_mth(CT_LEAVES[index << level : (index + 1) << level])
    for level in range(4)
    for index in range(8 >> level)
}

# (leaf index, tree size, proof); the source numbers leaves from 1.
CT_INCLUSION_PROOFS = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# (size1, size2, proof)
CT_CONSISTENCY_PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_hashes_match_rfc6962_known_answers() -> None:
    # transparency-dev/merkle rfc6962/rfc6962_test.go
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert hash_leaf(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert hash_leaf(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert hash_children(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )
    assert HASH_SIZE == len(EMPTY_ROOT) == 32


@pytest.mark.parametrize("size", range(1, 9))
def test_ct_reference_tree_roots(size: int) -> None:
    assert root_from_leaf_hashes(CT_LEAF_HASHES[:size]) == CT_ROOTS[size - 1]
    assert ref_mth(CT_LEAVES[:size]) == CT_ROOTS[size - 1]
    compact = CompactRange()
    for leaf_hash in CT_LEAF_HASHES[:size]:
        compact.append(leaf_hash)
    assert compact.root() == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof_hex"), CT_INCLUSION_PROOFS)
def test_ct_inclusion_proofs(index: int, size: int, proof_hex: list[str]) -> None:
    want = [bytes.fromhex(h) for h in proof_hex]
    ranges = inclusion_proof_ranges(index, size)
    got = proof_hashes(ranges, lambda ids: {node: CT_PERFECT[node] for node in ids})
    assert got == want
    leaf, root = CT_LEAF_HASHES[index], CT_ROOTS[size - 1]
    assert verify_inclusion(leaf, index, size, want, root)
    assert root_from_inclusion(leaf, index, size, want) == root
    # The probes transparency-dev/merkle runs against these vectors.
    some_hash = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    probes: list[tuple[bytes, int, int, list[bytes], bytes]] = [
        (leaf, index - 1, size, want, root),
        (leaf, index + 1, size, want, root),
        (leaf, index ^ 2, size, want, root),
        (leaf, index, size * 2, want, root),
        (leaf, index, size // 2, want, root),
        (b"WrongLeaf", index, size, want, root),
        (leaf, index, size, want, EMPTY_ROOT),
        (leaf, index, size, want, some_hash),
        (leaf, index, size, [*want, b""], root),
        (leaf, index, size, [*want, root], root),
        (leaf, index, size, [b"", *want], root),
        (leaf, index, size, [root, *want], root),
        (leaf, index, size, want[:-1], root),
        (leaf, index, size, [want[0], some_hash, *want[1:]], root),
    ]
    for probe in probes:
        assert not verify_inclusion(*probe), probe


@pytest.mark.parametrize(("size1", "size2", "proof_hex"), CT_CONSISTENCY_PROOFS)
def test_ct_consistency_proofs(size1: int, size2: int, proof_hex: list[str]) -> None:
    want = [bytes.fromhex(h) for h in proof_hex]
    ranges = consistency_proof_ranges(size1, size2)
    got = proof_hashes(ranges, lambda ids: {node: CT_PERFECT[node] for node in ids})
    assert got == want
    root1, root2 = CT_ROOTS[size1 - 1], CT_ROOTS[size2 - 1]
    assert verify_consistency(size1, size2, root1, root2, want)
    if not want:
        return
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (size1 - 1, size2, root1, root2, want),
        (size1 + 1, size2, root1, root2, want),
        (size1 ^ 2, size2, root1, root2, want),
        (size1, size2 * 2, root1, root2, want),
        (size1, size2 // 2, root1, root2, want),
        (size1, size2, b"WrongRoot", root2, want),
        (size1, size2, root1, b"WrongRoot", want),
        (size1, size2, root2, root1, want),
        (size1, size2, root1, root2, []),
        (size1, size2, root1, root2, [*want, b""]),
        (size1, size2, root1, root2, [*want, root1]),
        (size1, size2, root1, root2, [*want, root2]),
        (size1, size2, root1, root2, [b"", *want]),
        (size1, size2, root1, root2, [root1, *want]),
        (size1, size2, root1, root2, [root2, *want]),
        (size1, size2, root1, root2, [want[0], *want]),
        (size1, size2, root1, root2, want[:-1]),
    ]
    for probe in probes:
        assert not verify_consistency(*probe), probe


# --------------------------------------------------------------------------------------
# Roots and the compact range
# --------------------------------------------------------------------------------------


def test_roots_match_reference_for_every_size() -> None:
    for n in range(301):
        assert root_from_leaf_hashes(LEAF_HASHES[:n]) == ref_root(n), n
    assert root_from_leaf_hashes([]) == EMPTY_ROOT == sha256(b"")


def test_hash_leaf_and_children_match_reference() -> None:
    for d in LEAF_DATA[:50]:
        assert hash_leaf(d) == ref_mth([d])
    assert hash_children(LEAF_HASHES[0], LEAF_HASHES[1]) == ref_mth(LEAF_DATA[:2])
    assert hash_children(LEAF_HASHES[1], LEAF_HASHES[0]) != ref_mth(LEAF_DATA[:2])


def expected_completed(size: int) -> list[tuple[NodeId, bytes]]:
    """The perfect nodes of level >= 1 whose last leaf is leaf size - 1, lowest first."""
    return [
        ((level, (size >> level) - 1), PERFECT[(level, (size >> level) - 1)])
        for level in range(1, size.bit_length())
        if size % (1 << level) == 0
    ]


def test_compact_range_grows_like_the_reference() -> None:
    compact = CompactRange()
    assert compact.size == 0
    assert compact.root() == EMPTY_ROOT
    for n in range(1, 301):
        completed = compact.append(LEAF_HASHES[n - 1])
        assert compact.size == n
        assert compact.root() == ref_root(n), n
        assert completed == expected_completed(n), n
        assert compact.peaks == [PERFECT[node] for node in CompactRange.peak_nodes(n)]


@pytest.mark.parametrize(
    ("size", "nodes"),
    [
        (0, []),
        (1, [(0, 0)]),
        (2, [(1, 0)]),
        (3, [(1, 0), (0, 2)]),
        (8, [(3, 0)]),
        (13, [(3, 0), (2, 2), (0, 12)]),
        (2**40 + 5, [(40, 0), (2, 2**38), (0, 2**40 + 4)]),
    ],
)
def test_peak_nodes_examples(size: int, nodes: list[NodeId]) -> None:
    assert CompactRange.peak_nodes(size) == nodes


@PROPERTY
@given(st.integers(min_value=0, max_value=2**64))
def test_peak_nodes_tile_the_tree_largest_first(size: int) -> None:
    start, widths = 0, []
    for level, index in CompactRange.peak_nodes(size):
        assert index << level == start
        start += 1 << level
        widths.append(level)
    assert start == size
    assert widths == sorted(set(widths), reverse=True)


@PROPERTY
@given(st.integers(min_value=0, max_value=300), st.integers(min_value=1, max_value=70))
@example(0, 5)
@example(255, 3)
def test_compact_range_resumes_from_stored_peaks(size: int, more: int) -> None:
    fresh = CompactRange()
    for leaf_hash in LEAF_HASHES[:size]:
        fresh.append(leaf_hash)
    resumed = CompactRange(size, [PERFECT[node] for node in CompactRange.peak_nodes(size)])
    assert resumed.size == fresh.size
    assert resumed.root() == fresh.root() == ref_root(size)
    for leaf_hash in LEAF_HASHES[size : size + more]:
        assert resumed.append(leaf_hash) == fresh.append(leaf_hash)
        assert resumed.root() == fresh.root()
    assert resumed.peaks == fresh.peaks
    assert resumed.root() == ref_root(size + more)


def test_compact_range_refuses_bad_state() -> None:
    with pytest.raises(ValueError, match="peaks"):
        CompactRange(3, [LEAF_HASHES[0]])
    with pytest.raises(ValueError, match="peaks"):
        CompactRange(0, [LEAF_HASHES[0]])
    with pytest.raises(ValueError, match="32-byte"):
        CompactRange(1, [b"short"])
    with pytest.raises(ValueError, match="negative"):
        CompactRange(-1)
    with pytest.raises(ValueError, match="negative"):
        CompactRange.peak_nodes(-1)
    compact = CompactRange()
    with pytest.raises(ValueError, match="32"):
        compact.append(b"not a hash")
    assert compact.size == 0


def test_compact_range_peaks_are_a_copy() -> None:
    compact = CompactRange(1, [LEAF_HASHES[0]])
    compact.peaks.append(LEAF_HASHES[1])
    compact.peaks.clear()
    assert compact.peaks == [LEAF_HASHES[0]]
    compact.append(LEAF_HASHES[1])
    assert compact.root() == ref_root(2)


# --------------------------------------------------------------------------------------
# Proof construction
# --------------------------------------------------------------------------------------


def check_inclusion(m: int, n: int) -> None:
    ranges = inclusion_proof_ranges(m, n)
    assert ranges == ref_path(m, range(n), bounds)
    fetch = RecordingFetch(n)
    proof = proof_hashes(ranges, fetch)
    assert proof == ref_path(m, LEAF_DATA[:n], ref_mth)
    assert len(fetch.calls) == (1 if ranges else 0)
    assert verify_inclusion(LEAF_HASHES[m], m, n, proof, ref_root(n))
    assert root_from_inclusion(LEAF_HASHES[m], m, n, proof) == ref_root(n)


def check_consistency(m: int, n: int) -> None:
    ranges = consistency_proof_ranges(m, n)
    assert ranges == ref_proof(m, range(n), bounds)
    fetch = RecordingFetch(n)
    proof = proof_hashes(ranges, fetch)
    assert proof == ref_proof(m, LEAF_DATA[:n], ref_mth)
    assert len(fetch.calls) == (1 if ranges else 0)
    assert verify_consistency(m, n, ref_root(m), ref_root(n), proof)


def test_inclusion_proofs_exhaustive_small_trees() -> None:
    for n in range(1, 65):
        for m in range(n):
            check_inclusion(m, n)


def test_consistency_proofs_exhaustive_small_trees() -> None:
    for n in range(1, 41):
        for m in range(1, n + 1):
            check_consistency(m, n)


@PROPERTY
@given(st.data())
def test_inclusion_proofs_match_reference(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=300), label="size")
    m = data.draw(st.integers(min_value=0, max_value=n - 1), label="index")
    check_inclusion(m, n)


@PROPERTY
@given(st.data())
def test_consistency_proofs_match_reference(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=300), label="new size")
    m = data.draw(st.integers(min_value=1, max_value=n), label="old size")
    check_consistency(m, n)


def test_proof_ranges_refuse_impossible_positions() -> None:
    for index, size in [(0, 0), (1, 1), (5, 3), (-1, 4)]:
        with pytest.raises(ValueError, match="not in a tree"):
            inclusion_proof_ranges(index, size)
    for old, new in [(0, 0), (0, 5), (6, 5), (-1, 3)]:
        with pytest.raises(ValueError, match="no consistency proof"):
            consistency_proof_ranges(old, new)
    assert consistency_proof_ranges(7, 7) == []
    assert inclusion_proof_ranges(0, 1) == []


@PROPERTY
@given(st.data())
def test_proof_nodes_are_logarithmic(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=2**40), label="size")
    m = data.draw(st.integers(min_value=0, max_value=n - 1), label="index")
    old = data.draw(st.integers(min_value=1, max_value=n), label="old size")
    bound = 2 * math.log2(n) + 2
    for ranges in (inclusion_proof_ranges(m, n), consistency_proof_ranges(old, n)):
        assert sum(len(range_nodes(lo, hi)) for lo, hi in ranges) <= bound


@pytest.mark.parametrize("n", [2**40 - 1, 2**40, 2**40 + 1, 3 * 2**38 + 7])
def test_proof_nodes_are_logarithmic_at_the_edges(n: int) -> None:
    bound = 2 * math.log2(n) + 2
    for m in (0, 1, n // 2, n - 2, n - 1):
        assert sum(len(range_nodes(lo, hi)) for lo, hi in inclusion_proof_ranges(m, n)) <= bound
        ranges = consistency_proof_ranges(max(m, 1), n)
        assert sum(len(range_nodes(lo, hi)) for lo, hi in ranges) <= bound


def smallest_power_of_two_at_least(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


@st.composite
def subtree_ranges(draw: st.DrawFn, max_hi: int) -> tuple[int, int]:
    """[lo, hi) as the RFC recursion can produce it: lo aligned to the next power of two."""
    n = draw(st.integers(min_value=0, max_value=max_hi), label="width")
    align = smallest_power_of_two_at_least(n)
    lo = align * draw(st.integers(min_value=0, max_value=(max_hi - n) // align), label="slot")
    return lo, lo + n


@PROPERTY
@given(subtree_ranges(2**48))
def test_range_nodes_tile_the_range_with_perfect_nodes(bounds_: tuple[int, int]) -> None:
    lo, hi = bounds_
    start, levels = lo, []
    for level, index in range_nodes(lo, hi):
        assert index << level == start
        start += 1 << level
        levels.append(level)
    assert start == hi
    assert levels == sorted(set(levels), reverse=True)


@PROPERTY
@given(subtree_ranges(300))
@example((0, 300))
@example((256, 300))
@example((288, 300))
def test_range_hash_is_the_mth_of_the_range(bounds_: tuple[int, int]) -> None:
    lo, hi = bounds_
    needed = {node: PERFECT[node] for node in range_nodes(lo, hi)}
    assert range_hash(lo, hi, needed) == ref_mth(LEAF_DATA[lo:hi])


@PROPERTY
@given(st.integers(min_value=1, max_value=2**40), st.integers(min_value=0, max_value=2**40))
def test_ranges_that_are_not_subtrees_are_refused(n: int, slot: int) -> None:
    align = smallest_power_of_two_at_least(n)
    lo = slot * align + (slot % (align - 1) + 1 if align > 1 else 0)
    if lo % align == 0:
        assert len(range_nodes(lo, lo + n)) == n.bit_count()
    else:
        with pytest.raises(ValueError, match="aligned"):
            range_nodes(lo, lo + n)
        with pytest.raises(ValueError, match="aligned"):
            range_hash(lo, lo + n, PERFECT)


def test_range_hash_needs_every_node() -> None:
    needed = {node: PERFECT[node] for node in range_nodes(0, 13)}
    for node in needed:
        partial = {k: v for k, v in needed.items() if k != node}
        with pytest.raises(KeyError):
            range_hash(0, 13, partial)
    with pytest.raises(ValueError, match="not a range"):
        range_nodes(5, 3)
    with pytest.raises(ValueError, match="not a range"):
        range_nodes(-1, 3)
    with pytest.raises(ValueError, match="not a range"):
        range_hash(5, 3, needed)
    assert range_nodes(4, 4) == []
    assert range_hash(4, 4, {}) == EMPTY_ROOT


def test_proof_hashes_fetches_once_with_exactly_the_needed_nodes() -> None:
    ranges = inclusion_proof_ranges(200, 300) + consistency_proof_ranges(77, 300)
    fetch = RecordingFetch(300)
    hashes = proof_hashes(ranges, fetch)
    assert fetch.calls == [{node for lo, hi in ranges for node in range_nodes(lo, hi)}]
    assert hashes == [ref_mth(LEAF_DATA[lo:hi]) for lo, hi in ranges]

    def never(ids: set[NodeId]) -> Mapping[NodeId, bytes]:
        raise AssertionError(ids)

    assert proof_hashes([], never) == []


# --------------------------------------------------------------------------------------
# Verification refuses every corruption
# --------------------------------------------------------------------------------------


@settings(PROPERTY, max_examples=150)
@given(st.data())
def test_inclusion_refuses_every_corruption(data: st.DataObject) -> None:
    n = data.draw(st.sampled_from([1, 2, 3, 4, 5, 8, 9]) | st.integers(1, 300), label="size")
    m = data.draw(st.integers(min_value=0, max_value=n - 1), label="index")
    leaf, root = LEAF_HASHES[m], ref_root(n)
    proof = module_inclusion_proof(m, n)
    assert verify_inclusion(leaf, m, n, proof, root)

    for i, element in enumerate(proof):
        for bad in bit_flips(element):
            assert not verify_inclusion(leaf, m, n, [*proof[:i], bad, *proof[i + 1 :]], root)
    for bad in bit_flips(leaf):
        assert not verify_inclusion(bad, m, n, proof, root)
    for bad in bit_flips(root):
        assert not verify_inclusion(leaf, m, n, proof, bad)
    for bad_proof in proof_mangles(proof, [leaf, root]):
        assert not verify_inclusion(leaf, m, n, bad_proof, root)
        implied = root_from_inclusion(leaf, m, n, bad_proof)
        if len(bad_proof) != len(proof) or any(len(p) != HASH_SIZE for p in bad_proof):
            # Wrong length, or an element of the wrong size: malformed, so no root at all.
            assert implied is None
        else:
            assert implied != root
    for bad_index in int_flips(m):
        assert not verify_inclusion(leaf, bad_index, n, proof, root)
    for bad_size in int_flips(n):
        # RFC 9162 §2.1.3.2 hashes only along the path, so a size whose path has the
        # same shape yields the same root: what binds a size to a root is the signed
        # tree head. Against that size's own root the proof is always refused.
        accepted = verify_inclusion(leaf, m, bad_size, proof, root)
        assert accepted == (m < bad_size and inclusion_shape(m, bad_size) == inclusion_shape(m, n))
        if accepted and bad_size <= MAX_LEAVES:
            assert not verify_inclusion(leaf, m, bad_size, proof, ref_root(bad_size))


@settings(PROPERTY, max_examples=150)
@given(st.data())
def test_consistency_refuses_every_corruption(data: st.DataObject) -> None:
    n = data.draw(st.sampled_from([2, 3, 4, 5, 7, 8, 9]) | st.integers(2, 300), label="new size")
    m = data.draw(st.integers(min_value=1, max_value=n - 1), label="old size")
    old_root, new_root = ref_root(m), ref_root(n)
    proof = module_consistency_proof(m, n)
    assert verify_consistency(m, n, old_root, new_root, proof)

    for i, element in enumerate(proof):
        for bad in bit_flips(element):
            bad_proof = [*proof[:i], bad, *proof[i + 1 :]]
            assert not verify_consistency(m, n, old_root, new_root, bad_proof)
    for bad in bit_flips(old_root):
        assert not verify_consistency(m, n, bad, new_root, proof)
    for bad in bit_flips(new_root):
        assert not verify_consistency(m, n, old_root, bad, proof)
    assert not verify_consistency(m, n, new_root, old_root, proof)
    for bad_proof in proof_mangles(proof, [old_root, new_root]):
        assert not verify_consistency(m, n, old_root, new_root, bad_proof)
    # The old size is pinned by the old root, which fr must rebuild from the proof.
    for bad_old in int_flips(m):
        assert not verify_consistency(bad_old, n, old_root, new_root, proof)
    for bad_new in int_flips(n):
        # As for inclusion: only a new size whose proof has the same shape can give the
        # same roots, and never against that size's own root.
        accepted = verify_consistency(m, bad_new, old_root, new_root, proof)
        same_shape = m < bad_new and consistency_shape(m, bad_new) == consistency_shape(m, n)
        assert accepted == same_shape
        if accepted and bad_new <= MAX_LEAVES:
            assert not verify_consistency(m, bad_new, old_root, ref_root(bad_new), proof)


def test_inclusion_in_a_single_leaf_tree() -> None:
    leaf = LEAF_HASHES[0]
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert root_from_inclusion(leaf, 0, 1, []) == leaf
    assert not verify_inclusion(leaf, 0, 1, [], LEAF_HASHES[1])
    assert not verify_inclusion(b"", 0, 1, [], b"")
    assert not verify_inclusion(leaf, 0, 1, [], leaf[:31])
    assert not verify_inclusion(leaf[:31], 0, 1, [], leaf[:31])
    assert not verify_inclusion(leaf + b"\x00", 0, 1, [], leaf + b"\x00")
    assert root_from_inclusion(leaf + b"\x00", 0, 1, []) is None
    for index, size in [(0, 0), (1, 0), (2, 1), (1, 1), (-1, 1), (-1, 0), (0, -1)]:
        assert not verify_inclusion(leaf, index, size, [], leaf)
        assert root_from_inclusion(leaf, index, size, []) is None


def test_consistency_edge_cases() -> None:
    r1, r2, r4 = ref_root(1), ref_root(2), ref_root(4)
    proof_1_2 = module_consistency_proof(1, 2)
    cases: list[tuple[int, int, bytes, bytes, list[bytes], bool]] = [
        # Equal sizes: consistent iff the roots are equal and nothing is offered as proof.
        (1, 1, r1, r1, [], True),
        (4, 4, r4, r4, [], True),
        (1, 1, r1, r2, [], False),
        (1, 1, r1, r1, [r1], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 0, r1, r1, [], False),
        (0, 0, EMPTY_ROOT, r1, [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        # From the empty tree: nothing to prove, but its root can only be EMPTY_ROOT.
        (0, 1, EMPTY_ROOT, r1, [], True),
        (0, 4, EMPTY_ROOT, r4, [], True),
        (0, 4, r1, r4, [], False),
        (0, 4, EMPTY_ROOT, r4, [r4], False),
        (0, 4, EMPTY_ROOT, r4[:31], [], False),
        # Time travel and nonsense sizes.
        (2, 1, r2, r1, proof_1_2, False),
        (1, 0, r1, EMPTY_ROOT, [], False),
        (-1, 2, r1, r2, proof_1_2, False),
        (1, -2, r1, r2, proof_1_2, False),
        # A growing tree needs a proof.
        (1, 2, r1, r2, [], False),
        (1, 2, r1, r2, proof_1_2, True),
        # Hashes of the wrong size.
        (1, 2, r1[:31], r2, proof_1_2, False),
        (1, 2, r1, r2 + b"\x00", proof_1_2, False),
        (1, 2, r1, r2, [proof_1_2[0][:31]], False),
        (1, 1, r1 + b"\x00", r1 + b"\x00", [], False),
        (0, 0, EMPTY_ROOT + b"\x00", EMPTY_ROOT + b"\x00", [], False),
    ]
    for old, new, old_root, new_root, proof, want in cases:
        assert verify_consistency(old, new, old_root, new_root, proof) is want, (old, new)


@settings(PROPERTY, max_examples=300)
@given(
    st.binary(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.lists(st.binary(min_size=31, max_size=33) | st.binary(max_size=64), max_size=12),
    st.binary(max_size=40),
)
def test_verifiers_never_raise(
    blob: bytes, a: int, b: int, proof: list[bytes], other: bytes
) -> None:
    assert type(verify_inclusion(blob, a, b, proof, other)) is bool
    implied = root_from_inclusion(blob, a, b, proof)
    assert implied is None or (len(blob) == len(implied) == HASH_SIZE and 0 <= a < b)
    assert type(verify_consistency(a, b, blob, other, proof)) is bool
