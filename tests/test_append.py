"""Appending records: receipts, idempotency, conflicts, and proofs served from the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, event

from ledger.errors import IdConflict, ProofError, RecordRejected
from ledger.ledger import Ledger
from ledger.log import merkle
from ledger.log.note import open_checkpoint
from ledger.log.proofs import consistency_proof, inclusion_proof, root_at
from ledger.log.receipt import Receipt, open_receipt
from ledger.records import dsse
from ledger.records.decision import decode_decision
from tests.support import demo_envelopes, sign, table_counts


def receipts(results: list[Receipt | RecordRejected]) -> list[Receipt]:
    assert all(isinstance(result, Receipt) for result in results), results
    return results  # type: ignore[return-value]


def test_append_issues_verifiable_receipts_and_a_checkpoint(ledger: Ledger) -> None:
    raws = demo_envelopes(ledger.engine, 12)
    issued = receipts(ledger.append(raws))
    assert [receipt.index for receipt in issued] == list(range(12))
    assert {receipt.status for receipt in issued} == {"created"}
    for receipt, raw in zip(issued, raws, strict=True):
        body = open_receipt(receipt.receipt, ledger.verifier, raw)
        assert body is not None
        assert (body.index, body.leaf_hash, body.log) == (
            receipt.index,
            receipt.leaf_hash,
            ledger.origin,
        )
        assert open_receipt(receipt.receipt, ledger.verifier, raw + b" ") is None
    checkpoint = open_checkpoint(ledger.latest_checkpoint().note, ledger.verifier, ledger.origin)
    assert checkpoint.size == 12
    assert checkpoint.root_hash == merkle.root_from_leaf_hashes(
        [bytes.fromhex(receipt.leaf_hash) for receipt in issued]
    )
    assert ledger.verify(signatures=True)


def test_retrying_the_same_bytes_returns_the_same_receipt(ledger: Ledger) -> None:
    raws = demo_envelopes(ledger.engine, 5)
    first = receipts(ledger.append(raws))
    before = table_counts(ledger.engine)
    again = receipts(ledger.append(raws[2:4]))
    assert [(r.index, r.leaf_hash, r.integrated_at) for r in again] == [
        (r.index, r.leaf_hash, r.integrated_at) for r in first[2:4]
    ]
    assert {r.status for r in again} == {"existing"}
    assert table_counts(ledger.engine) == before


def test_same_id_with_different_bytes_is_a_conflict_and_stores_nothing(ledger: Ledger) -> None:
    raws = demo_envelopes(ledger.engine, 3)
    receipts(ledger.append(raws))
    before = table_counts(ledger.engine)
    altered = decode_decision(dsse.payload_bytes(dsse.decode_envelope(raws[1])))
    altered.subject = "someone-else"
    [result] = ledger.append([sign(altered)])
    assert isinstance(result, IdConflict)
    assert "index 1" in str(result)
    assert table_counts(ledger.engine) == before


def test_duplicates_inside_one_batch(ledger: Ledger) -> None:
    raws = demo_envelopes(ledger.engine, 2)
    results = receipts(ledger.append([raws[0], raws[1], raws[0]]))
    assert [(r.index, r.status) for r in results] == [
        (0, "created"),
        (1, "created"),
        (0, "existing"),
    ]


def test_rejected_items_leave_nothing_while_valid_ones_are_stored(ledger: Ledger) -> None:
    raws = demo_envelopes(ledger.engine, 3)
    results = ledger.append([raws[0], b"{not json", raws[1], b'{"payloadType": "x"}', raws[2]])
    kinds = [r.kind if isinstance(r, RecordRejected) else r.index for r in results]
    assert kinds == [0, "malformed-envelope", 1, "malformed-envelope", 2]
    assert table_counts(ledger.engine).entries == 3
    assert ledger.verify()


def test_stored_proofs_equal_proofs_over_all_leaves(ledger: Ledger) -> None:
    raws = demo_envelopes(ledger.engine, 45)
    leaves: list[bytes] = []
    for start, end in ((0, 1), (1, 8), (8, 9), (9, 30), (30, 45)):
        leaves += [bytes.fromhex(r.leaf_hash) for r in receipts(ledger.append(raws[start:end]))]
    all_nodes = _all_perfect_nodes(leaves)
    with ledger.engine.connect() as connection:
        for size in range(1, 46):
            root = merkle.root_from_leaf_hashes(leaves[:size])
            assert root_at(connection, size) == root
            for index in range(size):
                proof = inclusion_proof(connection, index, size)
                expected = merkle.proof_hashes(
                    merkle.inclusion_proof_ranges(index, size), lambda _: all_nodes
                )
                assert proof.proof == expected
                assert (proof.leaf_hash, proof.root_hash) == (leaves[index], root)
                assert merkle.verify_inclusion(leaves[index], index, size, proof.proof, root)
            for old in range(1, size + 1):
                consistency = consistency_proof(connection, old, size)
                assert merkle.verify_consistency(
                    old, size, consistency.old_root, root, consistency.proof
                )


def _all_perfect_nodes(leaves: list[bytes]) -> dict[merkle.NodeId, bytes]:
    nodes = {(0, index): leaf for index, leaf in enumerate(leaves)}
    level, width = 1, 2
    while width <= len(leaves):
        for index in range(len(leaves) // width):
            nodes[(level, index)] = merkle.hash_children(
                nodes[(level - 1, 2 * index)], nodes[(level - 1, 2 * index + 1)]
            )
        level, width = level + 1, width * 2
    return nodes


def test_a_proof_reads_a_bounded_number_of_rows(ledger: Ledger, engine: Engine) -> None:
    raws = demo_envelopes(ledger.engine, 300)
    receipts(ledger.append(raws))
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    selects = lambda: [s for s in statements if s.lstrip().upper().startswith("SELECT")]  # noqa: E731
    with engine.connect() as connection:
        proof = inclusion_proof(connection, 137)
    # the head, then leaves and inner nodes: one query each, whatever the log's size
    assert len(selects()) <= 3
    assert len(proof.proof) == 9


def test_proofs_for_sizes_the_log_cannot_answer(ledger: Ledger) -> None:
    receipts(ledger.append(demo_envelopes(ledger.engine, 10)))
    with ledger.engine.connect() as connection:
        with pytest.raises(ProofError, match="beyond"):
            inclusion_proof(connection, 0, 11)
        with pytest.raises(ProofError, match="not in a tree"):
            inclusion_proof(connection, 10, 10)
        with pytest.raises(ProofError, match="old size"):
            consistency_proof(connection, 0, 10)
        with pytest.raises(ProofError, match="beyond"):
            consistency_proof(connection, 5, 11)


def test_two_writers_interleaving_keep_one_tree(ledger: Ledger, key_path: Path) -> None:
    """Each ledger object keeps its last committed peaks; when another writer has appended
    since, it must read the tree again rather than extend stale peaks. A stale extension
    would sign checkpoints whose roots verification recomputes differently."""
    other = Ledger.open(ledger.engine, key_path)
    records = demo_envelopes(ledger.engine, 40, seed=21)
    for start in range(0, 40, 10):
        writer = ledger if start % 20 == 0 else other
        assert all(isinstance(r, Receipt) for r in writer.append(records[start : start + 10]))
    report = ledger.verify()
    assert report, report.fault
    assert (report.size, report.checkpoints_checked) == (40, 5)
    other.pool.close()
