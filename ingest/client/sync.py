"""`Client`: the blocking SDK, on `httpx.Client`, with a background thread for `submit`."""

from __future__ import annotations

import atexit
import functools
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from ingest.client._base import ClientBase
from ingest.client._buffer import Pending
from ingest.client._flows import (
    Flow,
    append_flow,
    batch_flow,
    run_blocking,
    verifier_flow,
)
from ingest.client._receipts import BatchItemResult, parse_receipt
from ingest.client._records import SignedRecord
from ingest.client._results import AppendResult
from ingest.client.blobs import blob_bytes, put_blob_flow
from ingest.client.cose_receipts import cose_receipt_flow
from ingest.client.errors import ClientClosed, QueueFull
from ingest.client.freshness import freshness_flow, reusable
from ingest.client.inclusion import ReceiptInLog, receipt_in_log_flow
from ingest.client.instrument.decision import DecisionArguments, DecisionScope
from ingest.client.monitors import apply_monitors_flow, monitors_body
from ledger.log.note import Checkpoint, NoteVerifier
from ledger.log.receipt import Receipt
from ledger.records.context_change import ContextChange
from ledger.records.decision import Decision
from ledger.records.monitor import MonitorDefinition

T = TypeVar("T")


def _close_at_exit(ref: weakref.ReferenceType[Client]) -> None:
    client = ref()
    if client is not None:
        client.close()


class Client(ClientBase[Future[Receipt]]):
    """Appends signed decisions to a ledger and verifies every receipt.

    Parameters (all but the first three are keyword-only):

    - `base_url`: the ledger service, e.g. ``http://127.0.0.1:8080``.
    - `api_key`: an ``ingest`` (or ``admin``) API key, sent as ``Authorization: Bearer``.
    - `signing_key`: the service's Ed25519 key, registered with ``POST /v1/keys``.
    - `tenant`, `service`: what `new_decision` fills in; the key must be bound to both.
    - `keyid`: the DSSE keyid the key was registered under (default: derived from the key).
    - `verifier_key`: the ledger's note verifier key (``<origin>+<hex id>+<base64>``, from
      ``prov checkpoint --verifier-key``). When None it is fetched once from
      ``GET /v1/log``, which trusts that server on first use; pin it in production.
    - `timeout`, `connect_timeout`: seconds per request (an append waits for its commit).
    - `max_retries`, `backoff_base`, `backoff_cap`, `max_retry_after`: see docs/sdk.md.
    - `batch_size`, `max_batch_bytes`: limits of one batch request; keep them within the
      server's ``PROV_BATCH_MAX_RECORDS`` and ``PROV_MAX_BODY_BYTES``.
    - `flush_interval`: seconds the oldest queued record may wait for a batch to fill.
    - `queue_bound`: records `submit` may hold before it blocks or raises `QueueFull`.
    - `raise_on_flag`: `append` and `append_batch` raise `MonitorBreached` when a `flag`
      monitor the record counted toward is over its limit (the record is stored); each
      call may say otherwise. `submit`'s futures always resolve to the result.

    Thread-safe. Use it as a context manager, or call `close()`, so queued records are sent.
    """

    def _setup(self) -> None:
        self._http = httpx.Client(**self._http_options)
        self._cond = threading.Condition()
        self._verifier_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        # A process that exits without close() would drop queued records; send them then.
        # A weak reference, so that registering does not keep the client alive.
        self._at_exit = functools.partial(_close_at_exit, weakref.ref(self))

    # -- I/O: the only part that differs from AsyncClient ---------------------------------

    def _run(self, flow: Flow[T]) -> T:
        return run_blocking(self._http, flow)

    def verifier(self) -> NoteVerifier:
        """The ledger's verifier key: the configured one, or fetched once from the server."""
        if self._verifier is None:
            with self._verifier_lock:
                if self._verifier is None:
                    self._verifier = self._run(verifier_flow(self._attempts()))
        return self._verifier

    def verify_receipt(
        self, receipt: Receipt | bytes, *, trusted: Checkpoint | None = None
    ) -> ReceiptInLog:
        """Check that a (saved) receipt's record is in the log: its signature, the server's
        latest checkpoint, and an inclusion proof of its leaf (`ingest.client.inclusion`).

        `trusted` is a checkpoint trusted before, which the server's must extend. Raises
        `ReceiptInvalid` when the record is not shown to be in the log.
        """
        parsed = parse_receipt(receipt) if isinstance(receipt, bytes) else receipt
        verifier = self.verifier()
        return self._run(receipt_in_log_flow(parsed, verifier, self._attempts(), trusted))

    def cose_receipt(self, index: int, *, size: int | None = None) -> bytes:
        """The COSE receipt (RFC 9942) of log entry `index`, in the latest signed checkpoint
        or in the one of `size` entries: a COSE_Sign1 by the ledger key, checked here
        against that key and the entry's bytes (`ReceiptInvalid` otherwise). Any RFC 9942
        verifier checks it with the entry bytes of `GET /v1/entries/{index}`."""
        verifier = self.verifier()
        return self._run(cose_receipt_flow(index, verifier, self._attempts(), size))

    # -- Freshness ------------------------------------------------------------------------

    def freshness(self, record_id: str, *, evidence: bool = True) -> dict[str, Any]:
        """The ledger's freshness answer for decision `record_id` (docs/freshness.md), its
        signed verdict checked against the ledger's key (`AnswerInvalid` otherwise). Save it
        with its evidence and check it offline with `prov verify-freshness`."""
        self._check_open()
        verifier = self.verifier()
        answer = self._run(freshness_flow(record_id, verifier, self._attempts(), evidence=evidence))
        self._freshness.put(record_id, answer["state"])
        return answer

    def is_fresh(self, record_id: str, *, unknown_is_fresh: bool = True) -> bool:
        """Whether decision `record_id` may still be relied on: not stale by an expiry or a
        context change. Verdicts are cached for `freshness_ttl` seconds. A decision that
        declares no freshness is `unknown`: fresh unless `unknown_is_fresh` is False."""
        state = self._freshness.get(record_id)
        if state is None:
            state = (self.freshness(record_id, evidence=False))["state"]
        return reusable(state, unknown_is_fresh=unknown_is_fresh)

    # -- Direct appends -------------------------------------------------------------------

    def append(
        self,
        decision: Decision | ContextChange | SignedRecord,
        *,
        raise_on_flag: bool | None = None,
    ) -> AppendResult:
        """Sign, send and wait for one record; its verified receipt, with the monitors it
        counted toward (`.monitors`, and `.stop` when a `flag` monitor is over its limit).

        Raises `InvalidDecision` before sending, `ProblemError` when refused,
        `ReceiptInvalid`, or `ConnectionFailed` once retries are spent; with `raise_on_flag`
        (default: the client's), `MonitorBreached` once the record is stored, when a `flag`
        monitor is over its limit (the result is `error.result`).
        """
        self._check_open()
        record = self.sign(decision)
        result = self._run(append_flow(record, self.verifier(), self._attempts()))
        self._check_flags([result], raise_on_flag)
        return result

    def append_batch(
        self,
        decisions: Iterable[Decision | ContextChange | SignedRecord],
        *,
        raise_on_flag: bool | None = None,
    ) -> list[BatchItemResult]:
        """Send records in batches of at most `batch_size`; one result per record, in order:
        its verified `Receipt` (an `AppendResult`), or the `ClientError` that kept it out
        (`ProblemError`, `ReceiptInvalid`). Raises when a whole batch request fails; earlier
        batches stay appended, and sending them all again is safe. With `raise_on_flag`,
        raises `MonitorBreached` after every batch is sent when a `flag` monitor is over its
        limit in a result (`error.result`: the first such; `error.results`: all)."""
        self._check_open()
        records = self._sign_all(decisions)
        results: list[BatchItemResult] = []
        for chunk in self._chunks(records):
            results.extend(self._run(batch_flow(chunk, self.verifier(), self._attempts())))
        self._check_flags(results, raise_on_flag)
        return results

    # -- Decisions made in a block (drop-in instrumentation) ---------------------------

    def decision(
        self, decision_type: str, *, inputs: dict[str, Any], **arguments: Unpack[DecisionArguments]
    ) -> DecisionScope:
        """A decision made by the block it opens: ``with client.decision("loan.approve",
        inputs=...) as d:``. Instrumented model clients' calls inside it are recorded into
        it; when it ends it is signed and appended (`d.result`: its verified receipt). See
        `DecisionArguments` and docs/sdk.md, "Drop-in instrumentation".
        """
        self._check_open()
        return DecisionScope(self, decision_type, inputs=inputs, **arguments)

    # -- Blobs ----------------------------------------------------------------------------

    def put_blob(self, content: bytes, *, subject: str | None = None, salt: bool = True) -> str:
        """Upload `content` as a blob and return the digest a record references it by.
        Salted unless `salt=False` (a fresh salt: the digest hides the content); sealed on
        the server under `subject`'s key, so erasing the subject erases it
        (`ingest.client.blobs`)."""
        self._check_open()
        blob = blob_bytes(content, salt=salt)
        return self._run(put_blob_flow(blob, subject, self._attempts()))

    # -- Monitors -------------------------------------------------------------------------

    def apply_monitors(
        self,
        definitions: str | Mapping[str, Any] | Sequence[MonitorDefinition | Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """Apply monitor definitions (`monitors.toml` text, `{"monitor": [...]}`, or a list)
        with `POST /v1/monitors`, which takes an admin key; one answer per monitor: its
        version, digest and status (`applied` with the log index, or `unchanged`).
        A refused definition raises `ProblemError` (`monitor-invalid`, with the pointer)."""
        self._check_open()
        return self._run(apply_monitors_flow(monitors_body(definitions), self._attempts()))

    # -- Background batching --------------------------------------------------------------

    def submit(
        self,
        decision: Decision | ContextChange | SignedRecord,
        *,
        block: bool = True,
        timeout: float | None = None,
    ) -> Future[Receipt]:
        """Sign now, queue for the background sender, and return a future of its receipt.

        When the queue holds `queue_bound` records this waits for room, at most `timeout`
        seconds if given; with `block=False` or once `timeout` passes it raises `QueueFull`.
        The future resolves to the verified receipt, or fails with the record's error.
        """
        record = self.sign(decision)
        future: Future[Receipt] = Future()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    raise ClientClosed("the client is closed")
                if not self._buffer.full:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if not block or (remaining is not None and remaining <= 0):
                    raise QueueFull(f"{self._buffer.bound} records already queued")
                self._cond.wait(remaining)
            self._buffer.put(record, future, time.monotonic())
            self._start_worker()
            self._cond.notify_all()
        return future

    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._work, name=f"prov-client-{self.service}", daemon=True
            )
            self._worker.start()
            atexit.register(self._at_exit)

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._buffer.finished:
                        return
                    wait = self._buffer.wait_time(time.monotonic())
                    if wait == 0:
                        break
                    self._cond.wait(wait)
                batch = self._buffer.take()
                self._cond.notify_all()  # room for blocked submitters
            self._send(batch)
            with self._cond:
                self._buffer.settle(len(batch))
                self._cond.notify_all()  # flush() and close() waiters

    def _send(self, batch: list[Pending[Future[Receipt]]]) -> None:
        # A future cancelled while queued is dropped; the rest can no longer be cancelled.
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = self._run(
                batch_flow([p.record for p in live], self.verifier(), self._attempts())
            )
        except Exception as error:  # the worker must survive anything and report it
            for pending in live:
                pending.future.set_exception(error)
            return
        for pending, result in zip(live, results, strict=True):
            if isinstance(result, Receipt):
                pending.future.set_result(result)
            else:
                pending.future.set_exception(result)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything submitted so far now and wait until each future is resolved.
        False if `timeout` passed first. Do not call it from a future's callback, which
        runs on the sender thread."""
        with self._cond:
            target = self._buffer.request_flush()
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._buffer.settled >= target, timeout)

    def close(self) -> None:
        """Send every queued record, wait for the sender, and close the connections.
        Idempotent; `submit` and `append` raise `ClientClosed` afterwards."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._buffer.closing = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join()
            atexit.unregister(self._at_exit)
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
