"""COSE receipts (RFC 9942, RFC9162_SHA256): every entry of a 1,000-entry log has a receipt
that an independent verifier (`scitt-cose`) and ours accept for that entry's bytes, and
that both refuse once anything in it, or the leaf, is altered; the same receipts over HTTP
from a real `prov serve`, through the SDK and the CLI; and on PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
import scitt_cose
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message
from sqlalchemy import update

from ingest.client import AsyncClient, Client, ReceiptInvalid, verify_cose_receipt
from ledger.errors import CoseReceiptInvalid, EntryAltered, NotFound, ProofError
from ledger.keys.ed25519 import SigningKey
from ledger.ledger import Ledger
from ledger.log import cose_receipt as cose
from ledger.log import merkle
from ledger.log.note import Checkpoint, NoteSigner, open_checkpoint
from ledger.log.store import checkpoint_at
from ledger.storage.db import make_engine
from ledger.storage.schema import log_entries, tree_nodes
from query.audit.cose_receipts import IssuedCoseReceipt, cose_receipt
from tests.conftest import TEST_ORIGIN
from tests.http_server import Server, prepared_server
from tests.support import PROV, demo_envelopes, prov
from tests.test_tamper import disable_append_only_guards

ENTRIES = 1_000
BATCH = 100  # one signed checkpoint per batch: sizes 100, 200, ..., 1000


def build_log(ledger: Ledger, count: int, batch: int = BATCH) -> None:
    """`count` signed demo decisions, appended `batch` at a time."""
    envelopes = demo_envelopes(ledger.engine, count)
    for start in range(0, count, batch):
        results = ledger.append(envelopes[start : start + batch])
        assert not [r for r in results if isinstance(r, Exception)]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    folder = tmp_path_factory.mktemp("cose")
    ledger = Ledger.init(make_engine(str(folder / "ledger.db")), folder / "ledger.key", TEST_ORIGIN)
    build_log(ledger, ENTRIES)
    yield ledger
    ledger.close()


@pytest.fixture(scope="module")
def pem(log: Ledger) -> bytes:
    return cose.public_key_pem(log.verifier)


@pytest.fixture(scope="module")
def latest(log: Ledger) -> Checkpoint:
    return open_checkpoint(log.latest_checkpoint().note, log.verifier, TEST_ORIGIN)


def independent(receipt: bytes, entry: bytes, pem: bytes) -> scitt_cose.ReceiptResult:
    return scitt_cose.verify_receipt(receipt, leaf_entry_hex=entry.hex(), log_public_key_pem=pem)


def pycose_verifies(receipt: bytes, public_key: bytes, root: bytes) -> bool:
    """A second COSE implementation's signature check over the detached root. (pycose 1.1
    decodes only lists, which cbor2 6 no longer returns for a tag's array.)"""
    parts = list(cbor2.loads(receipt).value)
    parts[1] = dict(parts[1])
    message = Sign1Message.from_cose_obj(parts, True)
    message.key = OKPKey(crv=Ed25519, x=public_key)
    return bool(message.verify_signature(detached_payload=root))


def test_every_entry_has_a_receipt_both_verifiers_accept(
    log: Ledger, pem: bytes, latest: Checkpoint
) -> None:
    assert latest.size == ENTRIES
    for index in range(ENTRIES):
        issued = cose_receipt(log, index)
        found = independent(issued.receipt, issued.entry_bytes, pem)
        assert found.ok, (index, found.errors)
        assert (found.tree_size, found.leaf_index, found.root) == (
            ENTRIES,
            index,
            latest.root_hash.hex(),
        )
        assert (found.issuer, found.subject) == (TEST_ORIGIN, f"{TEST_ORIGIN}/entries/{index}")
        assert found.protected_header_ext == {cose.HDR_KID: log.verifier.key_id}
        claims = cose.verify_cose_receipt(
            issued.receipt, log.verifier, entry_bytes=issued.entry_bytes, checkpoint=latest
        )
        assert (claims.tree_size, claims.index, claims.root_hash) == (
            ENTRIES,
            index,
            latest.root_hash,
        )
        assert claims.kid == log.verifier.key_id
        if index % 50 == 0:
            assert pycose_verifies(issued.receipt, log.verifier.public_key, latest.root_hash)


def test_the_receipt_is_the_profile_exactly_and_deterministic(log: Ledger) -> None:
    issued = cose_receipt(log, 7)
    assert cose_receipt(log, 7).receipt == issued.receipt  # Ed25519 and CBOR: deterministic
    assert cbor2.dumps(cbor2.loads(issued.receipt), canonical=True) == issued.receipt
    tag = cbor2.loads(issued.receipt)
    assert tag.tag == 18
    protected, unprotected, payload, signature = tag.value
    assert cbor2.loads(protected) == {
        1: -8,
        4: log.verifier.key_id,
        15: {1: TEST_ORIGIN, 2: f"{TEST_ORIGIN}/entries/7"},
        395: 1,
    }
    [proof] = unprotected[396][-1]
    size, index, path = cbor2.loads(proof)
    assert (size, index, payload, len(signature)) == (ENTRIES, 7, None, 64)
    leaf = merkle.hash_leaf(issued.entry_bytes)
    assert merkle.verify_inclusion(leaf, 7, size, list(path), issued.root_hash)


def test_a_stored_checkpoints_size_gives_that_trees_receipt(log: Ledger, pem: bytes) -> None:
    issued = cose_receipt(log, 150, 300)
    found = independent(issued.receipt, issued.entry_bytes, pem)
    assert found.ok
    assert (found.tree_size, found.leaf_index) == (300, 150)
    with log.engine.connect() as connection:
        stored = checkpoint_at(connection, 300)
    assert stored is not None
    assert found.root == stored.root_hash.hex()
    with pytest.raises(NotFound, match="no checkpoint of size 250"):
        cose_receipt(log, 150, 250)
    with pytest.raises(ProofError, match="not in the checkpoint of size 300"):
        cose_receipt(log, 300, 300)
    with pytest.raises(NotFound, match="no entry 1000"):
        cose_receipt(log, ENTRIES)


def test_a_stored_entry_or_tree_that_no_longer_verifies_gets_no_receipt(ledger: Ledger) -> None:
    build_log(ledger, 8, batch=8)
    cose_receipt(ledger, 5)
    disable_append_only_guards(ledger.engine)  # as an attacker with the database would
    with ledger.engine.begin() as connection:
        # The node over entries 0..3, on entry 5's path: the proof no longer leads to the
        # checkpoint's root.
        connection.execute(
            update(tree_nodes)
            .where(tree_nodes.c.level == 2, tree_nodes.c.idx == 0)
            .values(hash=bytes(32))
        )
        connection.execute(
            update(log_entries).where(log_entries.c.idx == 3).values(envelope=b"altered")
        )
    with pytest.raises(EntryAltered, match="checkpoint of size 8"):
        cose_receipt(ledger, 5)
    with pytest.raises(EntryAltered, match="stored entry 3"):
        cose_receipt(ledger, 3)


# --- alterations -----------------------------------------------------------------------


def parts(receipt: bytes) -> tuple[bytes, int, int, list[bytes], bytes]:
    protected, unprotected, _, signature = cbor2.loads(receipt).value
    size, index, path = cbor2.loads(unprotected[396][-1][0])
    return protected, size, index, list(path), signature


def rebuilt(protected: bytes, size: int, index: int, path: list[bytes], signature: bytes) -> bytes:
    proof = cbor2.dumps([size, index, path], canonical=True)
    return cbor2.dumps(
        cbor2.CBORTag(18, [protected, {396: {-1: [proof]}}, None, signature]), canonical=True
    )


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def another_size(index: int, size: int, path: list[bytes], leaf: bytes) -> int:
    """Another tree size for the proof: one whose proof shape is valid for `index` and the
    path's length but whose root differs (what only the signature catches), else one the
    path's length does not fit (entry 0's path is all left turns: every size that fits it
    gives the same root)."""
    root = merkle.root_from_inclusion(leaf, index, size, path)
    for other in range(index + 1, 2 * size):
        found = merkle.root_from_inclusion(leaf, index, other, path)
        if found is not None and found != root:
            return other
    assert merkle.root_from_inclusion(leaf, index, 2 * size, path) is None
    return 2 * size


Alteration = Callable[[IssuedCoseReceipt, Any], tuple[bytes, bytes]]


def altered_proof_hash(issued: IssuedCoseReceipt, _: Any) -> tuple[bytes, bytes]:
    protected, size, index, path, signature = parts(issued.receipt)
    path[len(path) // 2] = flip(path[len(path) // 2])
    return rebuilt(protected, size, index, path, signature), issued.entry_bytes


def altered_signature(issued: IssuedCoseReceipt, _: Any) -> tuple[bytes, bytes]:
    protected, size, index, path, signature = parts(issued.receipt)
    return rebuilt(protected, size, index, path, flip(signature, 10)), issued.entry_bytes


def signed_over_another_root(issued: IssuedCoseReceipt, log: Ledger) -> tuple[bytes, bytes]:
    """The ledger key's signature, with the same header, over a root that is not the one
    the proof leads to (the signature of another tree)."""
    protected, size, index, path, _ = parts(issued.receipt)
    other = log.signer.key.sign(cose.sig_structure(protected, flip(issued.root_hash)))
    return rebuilt(protected, size, index, path, other), issued.entry_bytes


def signed_by_another_key(issued: IssuedCoseReceipt, log: Ledger) -> tuple[bytes, bytes]:
    protected, size, index, path, _ = parts(issued.receipt)
    stranger = NoteSigner(log.origin, SigningKey.generate())
    other = stranger.key.sign(cose.sig_structure(protected, issued.root_hash))
    return rebuilt(protected, size, index, path, other), issued.entry_bytes


def altered_index(issued: IssuedCoseReceipt, _: Any) -> tuple[bytes, bytes]:
    protected, size, index, path, signature = parts(issued.receipt)
    return rebuilt(protected, size, index ^ 1, path, signature), issued.entry_bytes


def altered_tree_size(issued: IssuedCoseReceipt, _: Any) -> tuple[bytes, bytes]:
    protected, size, index, path, signature = parts(issued.receipt)
    leaf = merkle.hash_leaf(issued.entry_bytes)
    other = another_size(index, size, path, leaf)
    return rebuilt(protected, other, index, path, signature), issued.entry_bytes


def wrong_leaf(issued: IssuedCoseReceipt, log: Ledger) -> tuple[bytes, bytes]:
    """The receipt of one entry, offered for its neighbour's bytes."""
    neighbour = issued.index ^ 1
    return issued.receipt, cose_receipt(log, neighbour).entry_bytes


def altered_entry_byte(issued: IssuedCoseReceipt, _: Any) -> tuple[bytes, bytes]:
    return issued.receipt, flip(issued.entry_bytes, len(issued.entry_bytes) - 1)


ALTERATIONS = [
    altered_proof_hash,
    altered_signature,
    signed_over_another_root,
    signed_by_another_key,
    altered_index,
    altered_tree_size,
    wrong_leaf,
    altered_entry_byte,
]


@pytest.mark.parametrize("index", [0, 7, 500, 998, 999])
@pytest.mark.parametrize("alteration", ALTERATIONS, ids=lambda a: a.__name__)
def test_every_alteration_fails_in_both_verifiers(
    log: Ledger, pem: bytes, index: int, alteration: Alteration
) -> None:
    issued = cose_receipt(log, index)
    assert independent(issued.receipt, issued.entry_bytes, pem).ok
    receipt, entry = alteration(issued, log)
    found = independent(receipt, entry, pem)
    assert not found.ok, found
    assert found.issuer is None
    assert found.subject is None
    with pytest.raises(CoseReceiptInvalid):
        cose.verify_cose_receipt(receipt, log.verifier, entry_bytes=entry)


def test_a_size_that_keeps_the_root_is_caught_against_the_checkpoint(
    log: Ledger, latest: Checkpoint
) -> None:
    """RFC 9942 signs the root, not the tree size in the proof: entry 7's proof leads to the
    same root in a tree of 999 entries. Only the signed checkpoint of that size tells."""
    issued = cose_receipt(log, 7)
    protected, size, index, path, signature = parts(issued.receipt)
    leaf = merkle.hash_leaf(issued.entry_bytes)
    assert merkle.root_from_inclusion(leaf, index, size - 1, path) == latest.root_hash
    receipt = rebuilt(protected, size - 1, index, path, signature)
    claims = cose.verify_cose_receipt(receipt, log.verifier, entry_bytes=issued.entry_bytes)
    assert claims.tree_size == size - 1  # what the proof says, and all it can say
    with pytest.raises(CoseReceiptInvalid, match="not the checkpoint's"):
        cose.verify_cose_receipt(
            receipt, log.verifier, entry_bytes=issued.entry_bytes, checkpoint=latest
        )


def test_our_verifier_holds_to_the_profile(log: Ledger) -> None:
    issued = cose_receipt(log, 3)
    protected, size, index, path, signature = parts(issued.receipt)
    header = cbor2.loads(protected)

    def resigned(changed: dict[int, Any]) -> bytes:
        new = cbor2.dumps(changed, canonical=True)
        again = log.signer.key.sign(cose.sig_structure(new, issued.root_hash))
        return rebuilt(new, size, index, path, again)

    subject = {1: TEST_ORIGIN, 2: f"{TEST_ORIGIN}/entries/4"}
    proof = cbor2.dumps([size, index, path], canonical=True)
    attached = [protected, {396: {-1: [proof]}}, issued.root_hash, signature]
    refusals = {
        "the subject names another entry": resigned(header | {15: subject}),
        "another issuer": resigned(header | {15: {1: "other.example/log", 2: header[15][2]}}),
        "another kid": resigned(header | {4: b"\x00\x01\x02\x03"}),
        "a critical header": resigned(header | {2: [395]}),
        "another algorithm": resigned(header | {1: -7}),
        "attached payload": cbor2.dumps(cbor2.CBORTag(18, attached), canonical=True),
        # The signature's length in two bytes where one is enough.
        "non-canonical": issued.receipt[:-66] + b"\x59\x00\x40" + issued.receipt[-64:],
        "trailing bytes": issued.receipt + b"\x00",
        "not CBOR": b"\xff" + issued.receipt,
    }
    accepted = []
    for name, receipt in refusals.items():
        try:
            cose.verify_cose_receipt(receipt, log.verifier, entry_bytes=issued.entry_bytes)
        except CoseReceiptInvalid:
            continue
        accepted.append(name)
    assert accepted == []
    # A leaf hash instead of the entry bytes, as a DSSE receipt carries it.
    assert (
        cose.verify_cose_receipt(
            issued.receipt, log.verifier, leaf_hash=merkle.hash_leaf(issued.entry_bytes)
        ).index
        == 3
    )


# --- over HTTP, the SDK and the CLI ------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("cose-http")
    server = prepared_server(str(folder / "ledger.db"), folder)
    ledger = Ledger.open(make_engine(server.db_url), server.key_file)
    build_log(ledger, 120, batch=40)  # checkpoints of sizes 40, 80 and 120
    ledger.close()
    server.start()
    yield server
    server.stop()


def served_ledger(server: Server) -> Ledger:
    return Ledger.open(make_engine(server.db_url), server.key_file)


def test_http_answers_application_cose_that_scitt_cose_verifies(served: Server) -> None:
    ledger = served_ledger(served)
    pem = cose.public_key_pem(ledger.verifier)
    headers = served.auth(served.api_key("audit"))
    with httpx.Client(base_url=served.url, headers=headers, timeout=10) as client:
        for index in (0, 41, 119):
            answer = client.get(f"/v1/entries/{index}/receipt")
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "application/cose"
            assert answer.headers["cache-control"] == "no-cache"
            entry = bytes.fromhex(client.get(f"/v1/entries/{index}").json()["entry_bytes"])
            found = independent(answer.content, entry, pem)
            assert found.ok
            assert (found.tree_size, found.leaf_index) == (120, index)
        pinned = client.get("/v1/entries/41/receipt", params={"size": 80})
        assert pinned.status_code == 200
        assert "immutable" in pinned.headers["cache-control"]
        assert pinned.content == cose_receipt(ledger, 41, 80).receipt
        for path, status, kind in (
            ("/v1/entries/120/receipt", 404, "not-found"),
            ("/v1/entries/41/receipt?size=70", 404, "not-found"),
            ("/v1/entries/90/receipt?size=80", 400, "bad-proof-request"),
            ("/v1/entries/-1/receipt", 400, None),
        ):
            answer = client.get(path)
            assert answer.status_code == status, (path, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
            if kind:
                assert answer.json()["type"] == f"urn:prov:problem:{kind}"
        assert httpx.get(f"{served.url}/v1/entries/0/receipt").status_code == 401
    ledger.close()


def test_the_sdk_fetches_and_checks_receipts(served: Server) -> None:
    ledger = served_ledger(served)
    verifier = ledger.verifier
    key = served.api_key("audit")
    options: dict[str, Any] = {"tenant": "acme", "service": "reader", "verifier_key": verifier}
    with Client(served.url, key, SigningKey.generate(), **options) as client:
        receipt = client.cose_receipt(5)
        pinned = client.cose_receipt(5, size=40)
    assert receipt == cose_receipt(ledger, 5).receipt
    assert pinned == cose_receipt(ledger, 5, 40).receipt

    async def fetch() -> bytes:
        async with AsyncClient(served.url, key, SigningKey.generate(), **options) as client:
            return await client.cose_receipt(6)

    assert asyncio.run(fetch()) == cose_receipt(ledger, 6).receipt
    entry = cose_receipt(ledger, 5).entry_bytes
    assert verify_cose_receipt(receipt, verifier, entry_bytes=entry).index == 5
    with pytest.raises(ReceiptInvalid, match="COSE receipt"):
        verify_cose_receipt(flip(receipt, len(receipt) - 1), verifier, entry_bytes=entry)
    # A server whose key is not the pinned one: refused.
    stranger = NoteSigner(ledger.origin, SigningKey.generate()).verifier
    other = options | {"verifier_key": stranger}
    with (
        Client(served.url, key, SigningKey.generate(), **other) as client,
        pytest.raises(ReceiptInvalid, match="kid"),
    ):
        client.cose_receipt(5)
    ledger.close()


def test_the_cli_writes_a_receipt_scitt_cose_verifies(served: Server, tmp_path: Path) -> None:
    out, pem_file = tmp_path / "r.cose", tmp_path / "log.pem"
    args = ["receipt", "cose", "41", "--size", "80", "--out", str(out), "--log-key", str(pem_file)]
    done = prov(args, db=served.db_url, key=served.key_file)
    assert done.code == 0, done.err
    [line] = done.json_lines()
    assert (line["index"], line["tree_size"]) == (41, 80)
    entry = str(line["entry_bytes"])
    found = independent(out.read_bytes(), bytes.fromhex(entry), pem_file.read_bytes())
    assert found.ok
    assert found.leaf_index == 41
    ledger = served_ledger(served)
    verifier_key = ledger.verifier.encode()  # what `prov checkpoint --verifier-key` prints
    ledger.close()

    def verify_cose(entry_hex: str) -> subprocess.CompletedProcess[str]:
        # Offline: no ledger options.
        args = ["receipt", "verify-cose", str(out), "--entry-bytes", entry_hex]
        return subprocess.run(
            [PROV, *args, "--verifier-key", verifier_key],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ok = verify_cose(entry)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: entry 41 of "), ok.stdout
    bad = verify_cose(entry[:-2] + "00")
    assert bad.returncode == 1
    assert bad.stderr.startswith("prov: COSE receipt REFUSED: "), bad.stderr
    missing = prov(["receipt", "cose", "500"], db=served.db_url, key=served.key_file)
    assert (missing.code, missing.err) == (1, "prov: not-found: there is no entry 500\n")


@pytest.mark.postgres
def test_receipts_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    ledger = Ledger.init(make_engine(postgres_url), tmp_path / "ledger.key", TEST_ORIGIN)
    try:
        build_log(ledger, 60, batch=20)
        pem = cose.public_key_pem(ledger.verifier)
        for index in range(60):
            issued = cose_receipt(ledger, index)
            assert independent(issued.receipt, issued.entry_bytes, pem).ok
        issued = cose_receipt(ledger, 30, 40)
        found = independent(issued.receipt, issued.entry_bytes, pem)
        assert found.ok
        assert found.tree_size == 40
        with pytest.raises(NotFound):
            cose_receipt(ledger, 30, 50)
    finally:
        ledger.close()
