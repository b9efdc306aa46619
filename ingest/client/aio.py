"""`AsyncClient`: the asyncio SDK, on `httpx.AsyncClient`, with a worker task for `submit`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from ingest.client._base import ClientBase
from ingest.client._buffer import Pending
from ingest.client._flows import (
    Flow,
    Request,
    Response,
    Sleep,
    Unreachable,
    append_flow,
    batch_flow,
    request_headers,
    unreachable,
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
from ingest.client.instrument.decision import AsyncDecisionScope, DecisionArguments
from ingest.client.monitors import apply_monitors_flow, monitors_body
from ledger.log.note import Checkpoint, NoteVerifier
from ledger.log.receipt import Receipt
from ledger.records.context_change import ContextChange
from ledger.records.decision import Decision
from ledger.records.monitor import MonitorDefinition

T = TypeVar("T")


class AsyncClient(ClientBase[asyncio.Future[Receipt]]):
    """The asyncio twin of `Client`: the same parameters, guarantees and errors.

    Bound to the event loop it is first used in. Use ``async with``, or await `close()`,
    so queued records are sent: nothing can flush them after the loop has stopped.
    """

    def _setup(self) -> None:
        self._http = httpx.AsyncClient(**self._http_options)
        self._cond = asyncio.Condition()
        self._verifier_lock = asyncio.Lock()
        self._worker: asyncio.Task[None] | None = None

    # -- I/O: the only part that differs from Client --------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        reply: Response | Unreachable | None = None
        while True:
            try:
                action = flow.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
                reply = None
            else:
                reply = await self._exchange(action)

    async def _exchange(self, request: Request) -> Response | Unreachable:
        try:
            response = await self._http.request(
                request.method, request.path, content=request.body, headers=request_headers(request)
            )
        except httpx.TransportError as error:
            return unreachable(error)
        return Response(
            response.status_code, response.reason_phrase, response.headers, response.content
        )

    async def verifier(self) -> NoteVerifier:
        """The ledger's verifier key: the configured one, or fetched once from the server."""
        if self._verifier is None:
            async with self._verifier_lock:
                if self._verifier is None:
                    self._verifier = await self._run(verifier_flow(self._attempts()))
        return self._verifier

    async def verify_receipt(
        self, receipt: Receipt | bytes, *, trusted: Checkpoint | None = None
    ) -> ReceiptInLog:
        """Check that a (saved) receipt's record is in the log: its signature, the server's
        latest checkpoint, and an inclusion proof of its leaf (`ingest.client.inclusion`).

        `trusted` is a checkpoint trusted before, which the server's must extend. Raises
        `ReceiptInvalid` when the record is not shown to be in the log.
        """
        parsed = parse_receipt(receipt) if isinstance(receipt, bytes) else receipt
        verifier = await self.verifier()
        return await self._run(receipt_in_log_flow(parsed, verifier, self._attempts(), trusted))

    async def cose_receipt(self, index: int, *, size: int | None = None) -> bytes:
        """The COSE receipt (RFC 9942) of log entry `index`, in the latest signed checkpoint
        or in the one of `size` entries: a COSE_Sign1 by the ledger key, checked here
        against that key and the entry's bytes (`ReceiptInvalid` otherwise). Any RFC 9942
        verifier checks it with the entry bytes of `GET /v1/entries/{index}`."""
        verifier = await self.verifier()
        return await self._run(cose_receipt_flow(index, verifier, self._attempts(), size))

    # -- Freshness ------------------------------------------------------------------------

    async def freshness(self, record_id: str, *, evidence: bool = True) -> dict[str, Any]:
        """The ledger's freshness answer for decision `record_id` (docs/freshness.md), its
        signed verdict checked against the ledger's key (`AnswerInvalid` otherwise). Save it
        with its evidence and check it offline with `prov verify-freshness`."""
        self._check_open()
        verifier = await self.verifier()
        answer = await self._run(
            freshness_flow(record_id, verifier, self._attempts(), evidence=evidence)
        )
        self._freshness.put(record_id, answer["state"])
        return answer

    async def is_fresh(self, record_id: str, *, unknown_is_fresh: bool = True) -> bool:
        """Whether decision `record_id` may still be relied on: not stale by an expiry or a
        context change. Verdicts are cached for `freshness_ttl` seconds. A decision that
        declares no freshness is `unknown`: fresh unless `unknown_is_fresh` is False."""
        state = self._freshness.get(record_id)
        if state is None:
            state = (await self.freshness(record_id, evidence=False))["state"]
        return reusable(state, unknown_is_fresh=unknown_is_fresh)

    # -- Direct appends -------------------------------------------------------------------

    async def append(
        self,
        decision: Decision | ContextChange | SignedRecord,
        *,
        raise_on_flag: bool | None = None,
    ) -> AppendResult:
        """Sign, send and wait for one record; its verified receipt with the monitors it
        counted toward (see `Client.append`, also for `raise_on_flag`)."""
        self._check_open()
        record = self.sign(decision)
        result = await self._run(append_flow(record, await self.verifier(), self._attempts()))
        self._check_flags([result], raise_on_flag)
        return result

    async def append_batch(
        self,
        decisions: Iterable[Decision | ContextChange | SignedRecord],
        *,
        raise_on_flag: bool | None = None,
    ) -> list[BatchItemResult]:
        """One verified receipt or error per record, in order (see `Client.append_batch`)."""
        self._check_open()
        records = self._sign_all(decisions)
        results: list[BatchItemResult] = []
        for chunk in self._chunks(records):
            verifier = await self.verifier()
            results.extend(await self._run(batch_flow(chunk, verifier, self._attempts())))
        self._check_flags(results, raise_on_flag)
        return results

    # -- Decisions made in a block (drop-in instrumentation) ---------------------------

    def decision(
        self, decision_type: str, *, inputs: dict[str, Any], **arguments: Unpack[DecisionArguments]
    ) -> AsyncDecisionScope:
        """``async with client.decision(...) as d:``: see `Client.decision`."""
        self._check_open()
        return AsyncDecisionScope(self, decision_type, inputs=inputs, **arguments)

    # -- Blobs ----------------------------------------------------------------------------

    async def put_blob(
        self, content: bytes, *, subject: str | None = None, salt: bool = True
    ) -> str:
        """Upload `content` as a blob and return the digest a record references it by.
        Salted unless `salt=False` (a fresh salt: the digest hides the content); sealed on
        the server under `subject`'s key, so erasing the subject erases it
        (`ingest.client.blobs`)."""
        self._check_open()
        return await self._run(
            put_blob_flow(blob_bytes(content, salt=salt), subject, self._attempts())
        )

    # -- Monitors -------------------------------------------------------------------------

    async def apply_monitors(
        self,
        definitions: str | Mapping[str, Any] | Sequence[MonitorDefinition | Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """Apply monitor definitions with `POST /v1/monitors` (see `Client.apply_monitors`)."""
        self._check_open()
        return await self._run(apply_monitors_flow(monitors_body(definitions), self._attempts()))

    # -- Background batching --------------------------------------------------------------

    async def submit(
        self,
        decision: Decision | ContextChange | SignedRecord,
        *,
        block: bool = True,
        timeout: float | None = None,
    ) -> asyncio.Future[Receipt]:
        """Sign now, queue for the worker task, and return a future of the verified receipt.

        When the queue is full this waits for room, at most `timeout` seconds if given;
        with `block=False` or once `timeout` passes it raises `QueueFull`.
        """
        record = self.sign(decision)
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        async with self._cond:
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        if self._closed:
                            raise ClientClosed("the client is closed")
                        if not self._buffer.full:
                            break
                        if not block:
                            raise QueueFull(f"{self._buffer.bound} records already queued")
                        await self._cond.wait()
            except TimeoutError:
                raise QueueFull(f"{self._buffer.bound} records already queued") from None
            self._buffer.put(record, future, time.monotonic())
            if self._worker is None:
                self._worker = asyncio.create_task(self._work(), name="prov-client-worker")
            self._cond.notify_all()
        return future

    async def _wait(self, seconds: float | None) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._cond.wait()
        except TimeoutError:
            pass  # Condition.wait has re-acquired the lock, as after a notify

    async def _work(self) -> None:
        while True:
            async with self._cond:
                while True:
                    if self._buffer.finished:
                        return
                    wait = self._buffer.wait_time(time.monotonic())
                    if wait == 0:
                        break
                    await self._wait(wait)
                batch = self._buffer.take()
                self._cond.notify_all()
            await self._send(batch)
            async with self._cond:
                self._buffer.settle(len(batch))
                self._cond.notify_all()

    async def _send(self, batch: list[Pending[asyncio.Future[Receipt]]]) -> None:
        live = [p for p in batch if not p.future.done()]  # done here means cancelled
        if not live:
            return
        try:
            verifier = await self.verifier()
            results = await self._run(
                batch_flow([p.record for p in live], verifier, self._attempts())
            )
        except Exception as error:  # the worker must survive anything and report it
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        for pending, result in zip(live, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, Receipt):
                pending.future.set_result(result)
            else:
                pending.future.set_exception(result)

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything submitted so far now and wait until each future is resolved.
        False if `timeout` passed first."""
        async with self._cond:
            target = self._buffer.request_flush()
            self._cond.notify_all()
            try:
                async with asyncio.timeout(timeout):
                    await self._cond.wait_for(lambda: self._buffer.settled >= target)
            except TimeoutError:
                return False
            return True

    async def close(self) -> None:
        """Send every queued record, wait for the worker, and close the connections."""
        async with self._cond:
            if self._closed:
                return
            self._closed = True
            self._buffer.closing = True
            self._cond.notify_all()
        if self._worker is not None:
            await self._worker
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
