"""The tlog-tiles read API and proofs over HTTP.

A client that knows only the tiles must be able to rebuild every leaf from the entry
bundles, every higher tile from the tiles below it, and the checkpoint's root; the proofs
served over HTTP must be the ones `prov proof` prints.
"""

from __future__ import annotations

import hashlib
import struct

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import BadRequest, NotFound
from ledger.ledger import Ledger
from ledger.log.merkle import CompactRange
from ledger.log.receipt import Receipt
from ledger.storage.db import make_engine
from query.routes.tiles import TILE_WIDTH, Tile, encode_index, parse_tile_path, read_tile, tile_path
from tests.http_server import Server
from tests.support import demo_envelopes, prov

SIZE = 600  # two full level-0 tiles and a partial one of 88


@given(
    st.integers(min_value=0, max_value=2**63 - 1),
    st.sampled_from([None, 0, 1, 2, 7]),
    st.integers(min_value=1, max_value=TILE_WIDTH),
)
def test_tile_paths_round_trip(index: int, level: int | None, width: int) -> None:
    tile = Tile(level, index, width)
    assert parse_tile_path(tile_path(tile).removeprefix("tile/")) == tile


def test_index_encoding_matches_the_spec_example() -> None:
    assert encode_index(1234067) == "x001/x234/067"
    assert encode_index(0) == "000"
    assert parse_tile_path("0/x001/x234/067.p/8") == Tile(0, 1234067, 8)


@pytest.mark.parametrize(
    "path",
    [
        "0/x000/001",  # padding group
        "0/1",  # not three digits
        "0/000.p/0",
        "0/000.p/256",
        "0/000.p/08",
        "00/000",
        "64/000",  # above the highest level tlog-tiles spells
        "entries",
        "0/x001",
        "data/000",
    ],
)
def test_non_canonical_tile_paths_are_refused(path: str) -> None:
    with pytest.raises(BadRequest):
        parse_tile_path(path)


def _grow(ledger: Ledger) -> None:
    records = demo_envelopes(ledger.engine, SIZE, seed=41)
    for start in range(0, SIZE, 250):
        assert all(isinstance(r, Receipt) for r in ledger.append(records[start : start + 250]))


def _bundle_entries(bundle: bytes) -> list[bytes]:
    entries, offset = [], 0
    while offset < len(bundle):
        (length,) = struct.unpack_from(">H", bundle, offset)
        entries.append(bundle[offset + 2 : offset + 2 + length])
        offset += 2 + length
    return entries


def test_tiles_rebuild_the_tree(ledger: Ledger) -> None:
    _grow(ledger)
    checkpoint = ledger.latest_checkpoint()
    with ledger.engine.connect() as connection:

        def tile(level: int | None, index: int, width: int = TILE_WIDTH) -> bytes:
            return read_tile(connection, Tile(level, index, width), checkpoint.tree_size)

        leaves = b"".join([tile(0, 0), tile(0, 1), tile(0, 2, 88)])
        entries = [
            e for n, w in ((0, 256), (1, 256), (2, 88)) for e in _bundle_entries(tile(None, n, w))
        ]
        level1 = tile(1, 0, 2)
        for missing in (Tile(0, 2, TILE_WIDTH), Tile(0, 2, 89), Tile(None, 3, 1), Tile(1, 0, 3)):
            with pytest.raises(NotFound):
                read_tile(connection, missing, checkpoint.tree_size)

    assert len(entries) == SIZE
    rebuilt = [hashlib.sha256(b"\x00" + entry).digest() for entry in entries]
    assert b"".join(rebuilt) == leaves
    # Each hash of the level-1 tile is the root of one full level-0 tile.
    for n in range(2):
        subtree = CompactRange()
        for leaf in rebuilt[n * TILE_WIDTH : (n + 1) * TILE_WIDTH]:
            subtree.append(leaf)
        assert level1[32 * n : 32 * (n + 1)] == subtree.root()
    tree = CompactRange()
    for leaf in rebuilt:
        tree.append(leaf)
    assert tree.root() == checkpoint.root_hash


def test_proofs_and_tiles_over_http(server: Server) -> None:
    ledger = Ledger.open(make_engine(server.db_url), server.key_file)
    _grow(ledger)
    ledger.close()
    audit = server.auth(server.api_key("audit"))
    with httpx.Client(base_url=server.url, headers=audit, timeout=30) as client:
        inclusion = client.get("/v1/proofs/inclusion", params={"index": 7, "size": 500})
        cli = prov(
            ["proof", "inclusion", "7", "--size", "500"], db=server.db_url, key=server.key_file
        )
        assert inclusion.json() == cli.json_lines()[0]
        consistency = client.get("/v1/proofs/consistency", params={"from": 3, "to": SIZE})
        cli = prov(["proof", "consistency", "3", str(SIZE)], db=server.db_url, key=server.key_file)
        assert consistency.json() == cli.json_lines()[0]
        assert (
            client.get("/v1/proofs/consistency", params={"from": 3, "to": SIZE + 1}).status_code
            == 400
        )

        entry = client.get("/v1/entries/599").json()
        assert (
            hashlib.sha256(b"\x00" + bytes.fromhex(entry["entry_bytes"])).hexdigest()
            == entry["leaf_hash"]
        )
        assert set(entry) == {
            "index",
            "leaf_hash",
            "integrated_at",
            "prev_leaf_hash",
            "envelope_sha256",
            "entry_bytes",
        }
        assert client.get("/v1/entries/600").status_code == 404

        full = client.get("/tile/0/001")
        assert (full.status_code, len(full.content)) == (200, 32 * TILE_WIDTH)
        assert "immutable" in full.headers["cache-control"]
        partial = client.get("/tile/0/002.p/88")
        assert (partial.status_code, partial.headers["cache-control"]) == (200, "no-cache")
        assert client.get("/tile/0/002").status_code == 404
        assert client.get("/tile/0/x000/002").json()["type"] == "urn:prov:problem:bad-request"
        assert client.get("/checkpoint").text == client.get("/v1/checkpoint").text
        assert client.get("/checkpoint").text.splitlines()[1] == str(SIZE)
