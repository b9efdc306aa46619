"""Group commit: concurrent appends share one transaction, and none is answered before it.

Requests hand their envelopes to `GroupCommitter.append` and wait. One collector task takes
what has queued up, waiting at most `max_wait` after the oldest arrival or until
`max_records` are there, admits the batch (signature checks on worker threads), and hands it
to the single sequencer thread, which appends it under the log's write lock and commits.
While one batch commits, the next is admitted, so the fsync hides behind the CPU work.

One record never fails another: admission refuses a record it cannot check alone, and the
sequencer splits a batch the database refuses until the record at fault stands alone
(`ledger.log.sequencer.append_isolated`). Only a failure of the database as a whole fails a
group, answered 503 with `Retry-After`.

Memory is bounded: a worker holds at most `queue_limit` records that are queued or in
flight, and beyond that `append` raises `Overloaded`, which the service answers with 429.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from httpapi.errors import Overloaded, ShuttingDown
from ingest.commit import metrics
from ledger.admission import Admitted
from ledger.errors import (
    DatabaseUnavailable,
    LedgerError,
    RecordRejected,
    TenantMismatch,
)
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt

Outcome = Receipt | RecordRejected
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Job:
    raws: Sequence[bytes]
    tenant: str
    future: asyncio.Future[list[Outcome]]
    arrived: float = field(default_factory=time.monotonic)


class GroupCommitter:
    def __init__(
        self, ledger: Ledger, *, max_wait_s: float, max_records: int, queue_limit: int
    ) -> None:
        self.ledger = ledger
        self.max_wait_s = max_wait_s
        self.max_records = max_records
        self.queue_limit = queue_limit
        self._jobs: deque[_Job] = deque()
        self._held = 0  # records queued or in flight: the memory bound
        self._waiting = 0  # records queued and not yet taken into a batch
        self._arrived = asyncio.Event()
        self._closing = False
        self._admitter = ThreadPoolExecutor(1, thread_name_prefix="prov-admission")
        self._sequencer = ThreadPoolExecutor(1, thread_name_prefix="prov-sequencer")
        self._collector: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._collector = asyncio.create_task(self._collect(), name="prov-group-commit")

    async def stop(self) -> None:
        """Refuse new work, answer everything already accepted, then release the threads."""
        self._closing = True
        self._arrived.set()
        if self._collector is not None:
            await self._collector
        self._admitter.shutdown()
        self._sequencer.shutdown()

    async def append(self, raws: Sequence[bytes], tenant: str) -> list[Outcome]:
        """Append envelopes sent with `tenant`'s credentials; one outcome per envelope, in
        order. Returns only after the records are committed."""
        if self._closing:
            raise ShuttingDown("the service is shutting down; retry against another worker")
        # An oversized request is still taken when nothing else is held, so that a limit
        # below the batch size cannot starve it forever.
        if self._held and self._held + len(raws) > self.queue_limit:
            raise Overloaded(
                f"{self._held} records are waiting for a commit; retry shortly", retry_after=1
            )
        job = _Job(raws, tenant, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._waiting += len(raws)
        self._hold(len(raws))
        self._arrived.set()
        # A client that hangs up must not cancel a commit others share.
        return await asyncio.shield(job.future)

    def _hold(self, count: int) -> None:
        self._held += count
        metrics.QUEUE_RECORDS.set(self._held)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        committing: asyncio.Task[None] | None = None
        while True:
            if not self._jobs:
                if self._closing:
                    break
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._gather()
            jobs = self._take()
            raws = [raw for job in jobs for raw in job.raws]
            try:
                admitted = await loop.run_in_executor(self._admitter, self.ledger.admit, raws)
            except Exception as error:  # the registry could not be read: fail these jobs
                self._fail(jobs, error)
                continue
            _refuse_other_tenants(jobs, admitted)
            # One commit in flight at a time keeps the log's order equal to arrival order.
            if committing is not None:
                await committing
            committing = asyncio.create_task(self._commit(jobs, admitted))
        if committing is not None:
            await committing

    async def _gather(self) -> None:
        """Wait for more arrivals, until the oldest has waited `max_wait_s` or the batch is
        full."""
        deadline = self._jobs[0].arrived + self.max_wait_s
        while self._waiting < self.max_records:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Job]:
        jobs = [self._jobs.popleft()]
        taken = len(jobs[0].raws)
        while self._jobs and taken + len(self._jobs[0].raws) <= self.max_records:
            job = self._jobs.popleft()
            jobs.append(job)
            taken += len(job.raws)
        self._waiting -= taken
        return jobs

    async def _commit(self, jobs: list[_Job], admitted: list[Admitted | RecordRejected]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            outcomes = await loop.run_in_executor(self._sequencer, self.ledger.sequence, admitted)
        except Exception as error:  # nothing was committed: every job learns so
            self._fail(jobs, error)
            return
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.COMMIT_BATCH_RECORDS.observe(len(outcomes))
        position = 0
        for job in jobs:
            answer = outcomes[position : position + len(job.raws)]
            position += len(job.raws)
            _count(answer)
            self._settle(job, answer)

    def _fail(self, jobs: list[_Job], error: Exception) -> None:
        """Fail a whole group. Admission and sequencing refuse a faulty record alone, so
        what reaches here is about the database as a whole: nothing was committed, and
        every job is told to retry (503), never given a 500."""
        if not isinstance(error, LedgerError):
            _log.warning("group commit failed", exc_info=error)
            error = DatabaseUnavailable(
                "the database did not accept the group; nothing was acknowledged, "
                "so retrying is safe"
            )
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)
            self._hold(-len(job.raws))

    def _settle(self, job: _Job, answer: list[Outcome]) -> None:
        if not job.future.done():
            job.future.set_result(answer)
        self._hold(-len(job.raws))


def _refuse_other_tenants(jobs: list[_Job], admitted: list[Admitted | RecordRejected]) -> None:
    """A record is stored only for the tenant whose credentials sent it."""
    position = 0
    for job in jobs:
        for offset in range(position, position + len(job.raws)):
            item = admitted[offset]
            if isinstance(item, Admitted) and item.tenant != job.tenant:
                admitted[offset] = TenantMismatch(
                    f"the record is for tenant {item.tenant!r}; this API key is for {job.tenant!r}",
                    pointer="/payload/tenant",
                )
        position += len(job.raws)


def _count(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, RecordRejected):
            metrics.RECORDS_REJECTED.labels(outcome.kind).inc()
        else:
            metrics.RECORDS_APPENDED.labels(outcome.status).inc()
