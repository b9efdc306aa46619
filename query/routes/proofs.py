"""Proofs over HTTP: entries, their COSE receipts (RFC 9942), inclusion and consistency
proofs, and the tlog-tiles read API.

These expose hashes and entry bytes, never payloads, so they carry the log-read access rule
of `routes_log`: any API key, or none when the service is configured for public reads. The
proof documents are exactly what `prov proof` prints.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Response, get, route
from litestar.params import Parameter
from sqlalchemy import Engine

from ledger.errors import LedgerNotInitialized, NotFound
from ledger.ledger import Ledger
from ledger.log.cose_receipt import COSE_MEDIA_TYPE
from ledger.log.entry import rfc3339
from ledger.log.proofs import consistency_proof, inclusion_proof
from ledger.log.store import latest_checkpoint, rebuild_entries
from query.audit.cose_receipts import cose_receipt as issue_cose_receipt
from query.audit.search import BIGINT_MAX
from query.routes.log import GET_AND_HEAD, LOG_READ
from query.routes.tiles import parse_tile_path, read_tile

Index = Annotated[int, Parameter(ge=0, le=BIGINT_MAX)]
Size = Annotated[int, Parameter(ge=1, le=BIGINT_MAX)]
IMMUTABLE = "public, max-age=31536000, immutable"


class EntryView(msgspec.Struct):
    index: int
    leaf_hash: str
    integrated_at: str
    prev_leaf_hash: str
    envelope_sha256: str
    entry_bytes: str  # hex; SHA-256(0x00 || these bytes) is the leaf hash


@get(
    "/entries/{index:int}",
    opt=LOG_READ,
    summary="A log entry",
    tags=["proofs"],
    sync_to_thread=True,
)
def entry(index: Index, engine: Engine) -> EntryView:
    """The entry at `index`: what its leaf hash commits to, without the record itself."""
    found = []
    # A tree size is a BIGINT, so the last possible index is one less than its maximum;
    # asking the database for the range past it would overflow the column's type.
    if index < BIGINT_MAX:
        with engine.connect() as connection:
            found = rebuild_entries(connection, index, index + 1)
    if not found:
        raise NotFound(f"there is no entry {index}")
    [rebuilt] = found
    return EntryView(
        index,
        rebuilt.stored.leaf_hash.hex(),
        rfc3339(rebuilt.stored.integrated_us),
        rebuilt.prev_leaf.hex(),
        rebuilt.envelope_digest.hex(),
        rebuilt.data.hex(),
    )


@get(
    "/entries/{index:int}/receipt",
    opt=LOG_READ,
    summary="A COSE receipt of a log entry (RFC 9942)",
    tags=["proofs"],
    media_type=COSE_MEDIA_TYPE,
    sync_to_thread=True,
)
def cose_receipt(index: Index, ledger: Ledger, size: Size | None = None) -> Response[bytes]:
    """A COSE_Sign1 receipt, signed by the ledger key, of entry `index` in the latest signed
    checkpoint, or in the stored checkpoint of `size` entries (docs/log-format.md, "COSE
    receipts"). Verify it with the entry bytes of `GET /v1/entries/{index}`."""
    issued = issue_cose_receipt(ledger, index, size)
    # The receipt for one checkpoint never changes; the latest moves as the log grows.
    cache = IMMUTABLE if size is not None else "no-cache"
    return Response(issued.receipt, media_type=COSE_MEDIA_TYPE, headers={"Cache-Control": cache})


@get(
    "/proofs/inclusion",
    opt=LOG_READ,
    summary="Inclusion proof",
    tags=["proofs"],
    sync_to_thread=True,
)
def inclusion(index: Index, engine: Engine, size: Size | None = None) -> dict[str, Any]:
    """RFC 9162 inclusion proof of entry `index` in the tree of `size` (default: current)."""
    with engine.connect() as connection:
        return inclusion_proof(connection, index, size).to_json()


@get(
    "/proofs/consistency",
    opt=LOG_READ,
    summary="Consistency proof",
    tags=["proofs"],
    sync_to_thread=True,
)
def consistency(
    engine: Engine,
    old: Annotated[int, Parameter(query="from", ge=1, le=BIGINT_MAX)],
    new: Annotated[int, Parameter(query="to", ge=1, le=BIGINT_MAX)],
) -> dict[str, Any]:
    """RFC 9162 consistency proof from tree size `from` to tree size `to`."""
    with engine.connect() as connection:
        return consistency_proof(connection, old, new).to_json()


@route(
    "/tile/{path:path}",
    http_method=GET_AND_HEAD,  # tlog-tiles: HEAD answered as GET is
    opt=LOG_READ,
    summary="A tlog-tiles tile",
    tags=["tiles"],
    media_type="application/octet-stream",
    sync_to_thread=True,
)
def tile(path: str, engine: Engine) -> Response[bytes]:
    """A hash tile or an entry bundle, as C2SP tlog-tiles defines them."""
    wanted = parse_tile_path(path)
    with engine.connect() as connection:
        checkpoint = latest_checkpoint(connection)
        if checkpoint is None:
            raise LedgerNotInitialized("the ledger has no checkpoint")
        data = read_tile(connection, wanted, checkpoint.tree_size)
    # A full tile never changes; a partial one is replaced by a wider one as the log grows.
    cache = IMMUTABLE if wanted.full else "no-cache"
    return Response(data, media_type="application/octet-stream", headers={"Cache-Control": cache})
