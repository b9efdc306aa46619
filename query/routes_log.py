"""Routes that describe the log itself: its latest signed checkpoint and its identity."""

from __future__ import annotations

import msgspec
from litestar import MediaType, get

from ledger.apikeys import ANY_ROLE, ApiKey
from ledger.ledger import Ledger

# Readable by any key, or by anyone when the service is configured for public reads.
LOG_READ = {"roles": ANY_ROLE, "public_read": True}


class LogInfo(msgspec.Struct):
    origin: str
    verifier_key: str
    tree_size: int
    root_hash: str


@get(
    ["/v1/checkpoint", "/checkpoint"],  # the second is where tlog-tiles clients look
    opt=LOG_READ,
    media_type=MediaType.TEXT,
    summary="The latest signed checkpoint",
    tags=["log"],
    sync_to_thread=True,
)
def checkpoint(ledger: Ledger, caller: ApiKey | None) -> str:
    """The newest checkpoint as a C2SP signed note, signed by the ledger key."""
    return ledger.latest_checkpoint().note


@get("/log", opt=LOG_READ, summary="The log's identity", tags=["log"], sync_to_thread=True)
def log_info(ledger: Ledger, caller: ApiKey | None) -> LogInfo:
    """The log's origin, the verifier key for its checkpoints and receipts, and its size."""
    latest = ledger.latest_checkpoint()
    return LogInfo(
        ledger.origin, ledger.verifier.encode(), latest.tree_size, latest.root_hash.hex()
    )
