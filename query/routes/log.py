"""Routes that describe the log itself: its latest signed checkpoint and its identity.

The checkpoint follows C2SP tlog-tiles: ``text/plain; charset=utf-8``, headers that keep
caches from holding it beyond a moment (it changes with every batch), and HEAD answered as
GET is (the server sends the same status and headers without the body).
"""

from __future__ import annotations

import anyio.to_thread
import msgspec
from litestar import HttpMethod, MediaType, Response, get, route
from litestar.datastructures import State

from ledger.keys.apikeys import ANY_ROLE, ApiKey
from ledger.ledger import Ledger
from query.services import read_services

# Readable by any key, or by anyone when the service is configured for public reads.
LOG_READ = {"roles": ANY_ROLE, "public_read": True}
# tlog-tiles: the checkpoint is mutable, so caches may not keep it beyond a few seconds;
# "no-cache" makes them revalidate every time, so a client never sees an older tree.
CHECKPOINT_CACHE = "no-cache"
GET_AND_HEAD = [HttpMethod.GET, HttpMethod.HEAD]


class LogInfo(msgspec.Struct):
    origin: str
    verifier_key: str
    tree_size: int
    root_hash: str


@route(
    ["/v1/checkpoint", "/checkpoint"],  # the second is where tlog-tiles clients look
    http_method=GET_AND_HEAD,
    opt=LOG_READ,
    media_type=MediaType.TEXT,
    summary="The latest signed checkpoint (with witnesses: the newest they cosigned)",
    tags=["log"],
)
async def checkpoint(state: State, caller: ApiKey | None) -> Response[str]:
    """The newest checkpoint as a C2SP signed note, signed by the ledger key, with the
    cosignatures of the witnesses that cosigned it. With witnesses configured, the newest
    checkpoint that enough of them cosigned (docs/witness.md)."""
    services = read_services(state)
    # Async with an explicit thread: a sync_to_thread handler on two paths and two methods
    # answers with an unawaited coroutine in litestar 2.25 (a 500).
    served = await anyio.to_thread.run_sync(
        services.ledger.served_checkpoint, services.witness_quorum, services.witnesses
    )
    return Response(
        served.note,
        media_type=MediaType.TEXT,
        headers={"Cache-Control": CHECKPOINT_CACHE},
    )


@route(
    "/v1/checkpoint/latest",
    http_method=GET_AND_HEAD,
    opt=LOG_READ,
    media_type=MediaType.TEXT,
    summary="The latest signed checkpoint, witnessed or not",
    tags=["log"],
)
async def latest_checkpoint(ledger: Ledger, caller: ApiKey | None) -> Response[str]:
    """The newest checkpoint the ledger signed, with whatever cosignatures it has so far.
    With witnesses, `/checkpoint` may trail it by the witnesses' round trip; a client that
    trusts the ledger key alone (the SDK checking a receipt it was just given) reads this."""
    latest = await anyio.to_thread.run_sync(ledger.served_checkpoint, 0)
    return Response(
        latest.note,
        media_type=MediaType.TEXT,
        headers={"Cache-Control": CHECKPOINT_CACHE},
    )


@get("/log", opt=LOG_READ, summary="The log's identity", tags=["log"], sync_to_thread=True)
def log_info(ledger: Ledger, caller: ApiKey | None) -> LogInfo:
    """The log's origin, the verifier key for its checkpoints and receipts, and its size."""
    latest = ledger.latest_checkpoint()
    return LogInfo(
        ledger.origin, ledger.verifier.encode(), latest.tree_size, latest.root_hash.hex()
    )
