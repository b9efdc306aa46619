"""The Python SDK for appending decisions to the ledger over HTTP (docs/sdk.md).

`Client` blocks and `AsyncClient` awaits; both sign each decision with the service key,
send it, and accept the answer only with a receipt that verifies under the ledger's key and
covers exactly the bytes sent. `submit` queues records for a background sender that batches
them. Every error is a `ClientError`. `authorize` attaches a UCAN delegation chain (read
from a chain file by `read_chain`) and the invocation it proves to a decision.
`verify_receipt_in_log` (and `Client.verify_receipt`) checks that a saved receipt's record
is in the log by an inclusion proof against a checkpoint signed by the ledger key.
`Client.cose_receipt` fetches an entry's COSE receipt (RFC 9942, SCITT), checked under the
ledger's key; `verify_cose_receipt` checks a saved one offline.
`Client.freshness` and `Client.is_fresh` ask whether a decision may still be relied on, and
`new_context_change` reports that a context key changed (docs/freshness.md).
`verify_webhook` checks a webhook's signature by the ledger key before a receiver acts on it.
`instrument_openai` and `instrument_anthropic` record a model client's calls made inside
``with client.decision(...)`` into one decision (`ingest.client.instrument`).
An append answers an `AppendResult`: the receipt with the monitors the record counted toward
(`.monitors`, `.stop`); `raise_on_flag` makes a `flag` monitor over its limit raise
`MonitorBreached`, and `Client.apply_monitors` applies definitions (docs/monitors.md).

The SDK and the offline verifiers import none of the server's dependencies (SQLAlchemy,
Litestar, DuckDB, ...): `pip install provenance-ledger` without the `server` extra is enough.
"""

from typing import TYPE_CHECKING

from ingest.client._receipts import BatchItemResult, verify_receipt
from ingest.client._records import SignedRecord
from ingest.client._results import AppendResult
from ingest.client.builder import DecisionParts, digest_of, new_decision, new_id, utc_now
from ingest.client.cose_receipts import CoseReceiptClaims, verify_cose_receipt
from ingest.client.delegation import authorize, read_chain
from ingest.client.errors import (
    AnswerInvalid,
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
from ingest.client.inclusion import ReceiptInLog, verify_receipt_in_log
from ingest.client.instrument import instrument_anthropic, instrument_openai
from ingest.client.monitors import MonitorBreached, MonitorReading
from ingest.client.sync import Client
from ingest.client.webhooks import WebhookInvalid, verify_webhook
from ledger.log.receipt import Receipt

if TYPE_CHECKING:
    from ingest.client.aio import AsyncClient

__all__ = [
    "AnswerInvalid",
    "AppendResult",
    "AsyncClient",
    "BatchItemResult",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectionFailed",
    "CoseReceiptClaims",
    "DecisionParts",
    "InvalidDecision",
    "MonitorBreached",
    "MonitorReading",
    "ProblemDetail",
    "ProblemError",
    "QueueFull",
    "Receipt",
    "ReceiptInLog",
    "ReceiptInvalid",
    "SignedRecord",
    "UnexpectedResponse",
    "WebhookInvalid",
    "authorize",
    "digest_of",
    "instrument_anthropic",
    "instrument_openai",
    "new_decision",
    "new_id",
    "read_chain",
    "utc_now",
    "verify_cose_receipt",
    "verify_receipt",
    "verify_receipt_in_log",
    "verify_webhook",
]


def __getattr__(name: str) -> object:
    # asyncio is about a fifth of this package's import time: only async callers pay for it.
    if name == "AsyncClient":
        from ingest.client.aio import AsyncClient  # noqa: PLC0415

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
