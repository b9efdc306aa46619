"""The Python SDK for appending decisions to the ledger over HTTP (docs/sdk.md).

`Client` blocks and `AsyncClient` awaits; both sign each decision with the service key,
send it, and accept the answer only with a receipt that verifies under the ledger's key and
covers exactly the bytes sent. `submit` queues records for a background sender that batches
them. Every error is a `ClientError`. `authorize` attaches a UCAN delegation chain (read
from a chain file by `read_chain`) and the invocation it proves to a decision.
"""

from ingest.client._receipts import BatchItemResult, verify_receipt
from ingest.client._records import SignedRecord
from ingest.client.aio import AsyncClient
from ingest.client.builder import DecisionParts, digest_of, new_decision, new_id, utc_now
from ingest.client.delegation import authorize, read_chain
from ingest.client.errors import (
    ClientClosed,
    ClientError,
    ConnectionFailed,
    InvalidDecision,
    ProblemDetail,
    ProblemError,
    QueueFull,
    ReceiptInvalid,
    UnexpectedResponse,
)
from ingest.client.sync import Client
from ledger.log.receipt import Receipt

__all__ = [
    "AsyncClient",
    "BatchItemResult",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectionFailed",
    "DecisionParts",
    "InvalidDecision",
    "ProblemDetail",
    "ProblemError",
    "QueueFull",
    "Receipt",
    "ReceiptInvalid",
    "SignedRecord",
    "UnexpectedResponse",
    "authorize",
    "digest_of",
    "new_decision",
    "new_id",
    "read_chain",
    "utc_now",
    "verify_receipt",
]
