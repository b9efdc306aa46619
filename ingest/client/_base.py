"""What the sync and async clients share: configuration, identity, signing and the queue.

Subclasses add only I/O: an HTTP client to run the flows of `_flows` and the primitives
that guard the `BatchBuffer` and run its worker.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar, Unpack

import httpx

from ingest.client._buffer import BatchBuffer
from ingest.client._receipts import BatchItemResult
from ingest.client._records import SignedRecord, chunks, sign_record
from ingest.client._results import flagged, monitor_breached
from ingest.client.builder import DecisionParts, new_decision, new_id, utc_now
from ingest.client.errors import ClientClosed
from ingest.client.freshness import FreshnessCache
from ledger.backoff import Attempts, RetryPolicy
from ledger.keys.signing import SigningKey
from ledger.log.note import NoteVerifier
from ledger.log.receipt import Receipt
from ledger.records.context_change import ContextChange
from ledger.records.decision import Decision

F = TypeVar("F")
SDK_VERSION = "0.1.0"


class ClientBase(ABC, Generic[F]):
    def __init__(
        self,
        base_url: str,
        api_key: str,
        signing_key: SigningKey,
        *,
        tenant: str,
        service: str,
        keyid: str | None = None,
        verifier_key: NoteVerifier | str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_retries: int = 5,
        backoff_base: float = 0.1,
        backoff_cap: float = 10.0,
        max_retry_after: float = 60.0,
        batch_size: int = 100,
        max_batch_bytes: int = 4 * 1024 * 1024,
        flush_interval: float = 0.2,
        queue_bound: int = 10_000,
        freshness_ttl: float = 5.0,
        raise_on_flag: bool = False,
    ) -> None:
        """See `Client` for every parameter."""
        if not api_key:
            raise ValueError("api_key is empty")
        for name, value in (
            ("batch_size", batch_size),
            ("max_batch_bytes", max_batch_bytes),
            ("queue_bound", queue_bound),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1")
        if flush_interval < 0 or timeout <= 0 or connect_timeout <= 0:
            raise ValueError("flush_interval must be >= 0 and timeouts > 0")
        self.base_url = base_url.rstrip("/")
        self.tenant = tenant
        self.service = service
        self._key = signing_key
        self._keyid = keyid
        self._verifier = (
            NoteVerifier.parse(verifier_key) if isinstance(verifier_key, str) else verifier_key
        )
        self._policy = RetryPolicy(max_retries, backoff_base, backoff_cap, max_retry_after)
        # Jitter needs no secrecy, but SystemRandom is safe to share between threads.
        self._rng: random.Random = random.SystemRandom()
        self._batch_size = batch_size
        self._max_batch_bytes = max_batch_bytes
        self._buffer: BatchBuffer[F] = BatchBuffer(
            bound=queue_bound,
            batch_size=batch_size,
            max_batch_bytes=max_batch_bytes,
            flush_interval=flush_interval,
        )
        self._freshness = FreshnessCache(freshness_ttl)
        self.raise_on_flag = raise_on_flag
        self._closed = False
        self._http_options: dict[str, Any] = {
            "base_url": self.base_url,
            "headers": {
                "Authorization": f"Bearer {api_key}",
                "User-Agent": f"prov-python-sdk/{SDK_VERSION}",
                "Accept": "application/json, application/problem+json",
            },
            "timeout": httpx.Timeout(timeout, connect=connect_timeout),
        }
        self._setup()

    @abstractmethod
    def _setup(self) -> None:
        """Create the subclass's HTTP client and synchronization primitives."""

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("the client is closed")

    def __repr__(self) -> str:
        # Never the API key.
        return (
            f"{type(self).__name__}({self.base_url!r}, tenant={self.tenant!r}, "
            f"service={self.service!r})"
        )

    @property
    def verifier_key(self) -> NoteVerifier | None:
        """The ledger key receipts are checked with; None until fetched when not configured.

        Pin `verifier_key.encode()` in configuration after a first fetch to stop trusting
        the server for it."""
        return self._verifier

    @property
    def closed(self) -> bool:
        return self._closed

    def new_decision(
        self,
        decision_type: str,
        *,
        id: str | None = None,
        occurred_at: datetime | None = None,
        **parts: Unpack[DecisionParts],
    ) -> Decision:
        """A decision of this client's tenant and service; see
        `ingest.client.builder.new_decision`."""
        return new_decision(
            tenant=self.tenant,
            service=self.service,
            decision_type=decision_type,
            id=id,
            occurred_at=occurred_at,
            **parts,
        )

    def new_context_change(
        self,
        key: str,
        version: str,
        *,
        id: str | None = None,
        changed_at: datetime | None = None,
        reason: str | None = None,
    ) -> ContextChange:
        """A context change of this client's tenant and service: `key` is now at `version`.
        Appending it makes stale every decision of the tenant that relied on another version
        of `key` (docs/freshness.md); its receipt says how many."""
        return ContextChange(
            id=id or new_id(),
            tenant=self.tenant,
            service=self.service,
            key=key,
            version=version,
            changed_at=changed_at or utc_now(),
            reason=reason,
        )

    def sign(self, decision: Decision | ContextChange | SignedRecord) -> SignedRecord:
        """The record signed with the service key, checked against its schema first
        (`InvalidDecision`). A `SignedRecord` is returned as it is."""
        if isinstance(decision, SignedRecord):
            return decision
        return sign_record(decision, self._key, self._keyid)

    def _sign_all(
        self, decisions: Iterable[Decision | ContextChange | SignedRecord]
    ) -> list[SignedRecord]:
        return [self.sign(decision) for decision in decisions]

    def _chunks(self, records: list[SignedRecord]) -> list[list[SignedRecord]]:
        return [list(c) for c in chunks(records, self._batch_size, self._max_batch_bytes)]

    def _check_flags(self, results: Sequence[BatchItemResult], raise_on_flag: bool | None) -> None:
        """Raise `MonitorBreached` for the first result a `flag` monitor is over in, when
        asked to (per call, else as the client was made); its record is stored already."""
        if not (self.raise_on_flag if raise_on_flag is None else raise_on_flag):
            return
        for result in results:
            if isinstance(result, Receipt) and flagged(result):
                error = monitor_breached(result)
                error.results = list(results)
                raise error

    def _attempts(self) -> Attempts:
        return Attempts(self._policy, self._rng)
