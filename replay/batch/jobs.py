"""Replay jobs: replays asked for over HTTP, run in the background of the server process.

A job replays one decision (``single``) or the decisions a search selected (``batch``). Its
row in `replay_jobs` is what `GET /v1/replays/{id}` reads: the request, the state
(``queued`` until a slot is free, ``running``, then ``done`` or ``failed``), the verdict
counts so far, and at the end the report (for a batch, the shadow report; for a single
replay, the replay record and its log index). The replays themselves are ledger records,
appended as they complete; the row is operational state, not evidence.

`JobRunner` runs jobs as tasks on the server's event loop, `max_jobs` at a time, each with
at most `concurrency` replays in flight. Progress is written at most every
`progress_every_s`, so a batch of ten thousand replays is not ten thousand UPDATEs. A job
cannot outlive its process: when the server stops, its jobs are marked failed, and jobs a
crash left queued or running are marked failed when the server starts again
(`fail_interrupted`), each with an error that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Literal

import msgspec
import structlog
from sqlalchemy import Connection, Engine, insert, select, update

from ledger.errors import NotFound, RecordRejected
from ledger.ledger import Ledger
from ledger.log.entry import rfc3339
from ledger.log.sequencer import now_micros
from ledger.records.replay import Mode, ReplayRecord, Verdict
from ledger.storage.db import side_write_transaction
from ledger.storage.schema import replay_jobs
from replay.batch.batch import (
    DEFAULT_CONCURRENCY,
    Progress,
    ledger_blobs,
    load_recorded,
    replay_one,
    run_batch,
)
from replay.batch.shadow_report import ShadowReport
from replay.engine.engine import ReplayPlan
from replay.providers import ProviderPool

log = structlog.get_logger("prov.replay")

JobKind = Literal["single", "batch"]
JobState = Literal["queued", "running", "done", "failed"]
UNFINISHED: Final = ("queued", "running")
INTERRUPTED: Final = (
    "interrupted: the server restarted before the job finished; replays already appended "
    "stay in the ledger; start the job again for the rest"
)
STOPPED: Final = (
    "stopped: the server shut down before the job finished; replays already appended "
    "stay in the ledger; start the job again for the rest"
)


class JobRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What was asked, as the service understood it (the mode is always resolved)."""

    mode: Mode
    decision_id: str | None = None
    where: str | None = None
    limit: int | None = None
    model: str | None = None
    version: str | None = None
    parameters: dict[str, Any] = {}

    def plan(self) -> ReplayPlan:
        return ReplayPlan(
            mode=self.mode, model=self.model, version=self.version, parameters=self.parameters
        )


class SingleResult(msgspec.Struct, kw_only=True):
    """The outcome of a single job: the replay, and where the ledger put it."""

    record: ReplayRecord
    index: int | None
    append_error: str | None = None


class Job(msgspec.Struct, kw_only=True):
    id: str
    tenant: str
    kind: JobKind
    state: JobState
    request: JobRequest
    total: int
    counts: dict[Verdict, int]
    error: str | None
    report: msgspec.Raw | None  # JSON: a `ShadowReport`, or a `SingleResult`
    created_us: int
    updated_us: int

    @property
    def done(self) -> int:
        return sum(self.counts.values())


_request_decoder = msgspec.json.Decoder(JobRequest)
_counts_decoder = msgspec.json.Decoder(dict[Verdict, int])
_single_decoder = msgspec.json.Decoder(SingleResult)
_encoder = msgspec.json.Encoder()


def new_job_id() -> str:
    """A job id; it is also the batch id its replay records carry."""
    return "replay-" + secrets.token_hex(8)


def create_job(
    connection: Connection,
    *,
    tenant: str,
    kind: JobKind,
    request: JobRequest,
    total: int,
    now_us: int,
) -> Job:
    job = Job(
        id=new_job_id(),
        tenant=tenant,
        kind=kind,
        state="queued",
        request=request,
        total=total,
        counts={},
        error=None,
        report=None,
        created_us=now_us,
        updated_us=now_us,
    )
    connection.execute(
        insert(replay_jobs).values(
            id=job.id,
            tenant=tenant,
            kind=kind,
            state=job.state,
            request=_encoder.encode(request).decode(),
            total=total,
            counts="{}",
            created_us=now_us,
            updated_us=now_us,
        )
    )
    return job


def read_job(connection: Connection, tenant: str, job_id: str) -> Job:
    """The tenant's job `job_id`; another tenant's job is not found, as a missing one."""
    row = connection.execute(
        select(replay_jobs).where(replay_jobs.c.id == job_id, replay_jobs.c.tenant == tenant)
    ).first()
    if row is None:
        raise NotFound(f"there is no replay job {job_id!r}")
    return Job(
        id=row.id,
        tenant=row.tenant,
        kind=row.kind,
        state=row.state,
        request=_request_decoder.decode(row.request),
        total=row.total,
        counts=_counts_decoder.decode(row.counts),
        error=row.error,
        report=None if row.report is None else msgspec.Raw(row.report.encode()),
        created_us=row.created_us,
        updated_us=row.updated_us,
    )


def single_result(job: Job) -> SingleResult | None:
    if job.kind != "single" or job.report is None:
        return None
    return _single_decoder.decode(job.report)


def update_job(
    engine: Engine,
    job_id: str,
    *,
    state: JobState | None = None,
    counts: Counter[Verdict] | None = None,
    error: str | None = None,
    report: bytes | None = None,
) -> None:
    """Record progress or an end. A job that has ended is never changed again, so a late
    progress write cannot undo a failure recorded by `fail_interrupted`."""
    values: dict[str, Any] = {"updated_us": now_micros()}
    if state is not None:
        values["state"] = state
    if counts is not None:
        values["counts"] = _encoder.encode(dict(counts)).decode()
    if error is not None:
        values["error"] = error
    if report is not None:
        values["report"] = report.decode()
    with side_write_transaction(engine) as connection:
        connection.execute(
            update(replay_jobs)
            .where(replay_jobs.c.id == job_id, replay_jobs.c.state.in_(UNFINISHED))
            .values(**values)
        )


def fail_unfinished(
    connection: Connection, error: str, now_us: int, ids: Sequence[str] | None = None
) -> int:
    """Mark queued or running jobs (all, or those in `ids`) failed with `error`."""
    query = update(replay_jobs).where(replay_jobs.c.state.in_(UNFINISHED))
    if ids is not None:
        query = query.where(replay_jobs.c.id.in_(ids))
    result = connection.execute(query.values(state="failed", error=error, updated_us=now_us))
    return int(result.rowcount)


def fail_interrupted(engine: Engine) -> int:
    """At server start, before any worker runs a job: every job still queued or running
    was left so by a process that is gone. Returns how many were marked failed."""
    with side_write_transaction(engine) as connection:
        return fail_unfinished(connection, INTERRUPTED, now_micros())


class JobView(msgspec.Struct, kw_only=True):
    """A job as `GET /v1/replays/{id}` shows it."""

    id: str
    kind: JobKind
    state: JobState
    request: JobRequest
    total: int
    done: int
    progress: float  # done / total
    counts: dict[Verdict, int]
    error: str | None
    created_at: str
    updated_at: str
    # Once done: a batch's `ShadowReport`, or the replay record of a single replay.
    report: Any = None
    # A single replay's log index, once appended.
    replay_index: int | None = None


def job_view(job: Job) -> JobView:
    view = JobView(
        id=job.id,
        kind=job.kind,
        state=job.state,
        request=job.request,
        total=job.total,
        done=job.done,
        progress=job.done / job.total if job.total else 1.0,
        counts=job.counts,
        error=job.error,
        created_at=rfc3339(job.created_us),
        updated_at=rfc3339(job.updated_us),
        report=job.report,
    )
    single = single_result(job)
    if single is not None:
        view.report = single.record
        view.replay_index = single.index
    return view


class JobRunner:
    """Runs replay jobs in the background of one server process."""

    def __init__(
        self,
        ledger: Ledger,
        pool: ProviderPool | None,
        *,
        max_jobs: int = 2,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress_every_s: float = 0.5,
    ) -> None:
        self.ledger = ledger
        self.pool = pool
        self.concurrency = concurrency
        self.progress_every_s = progress_every_s
        self._slots = asyncio.Semaphore(max_jobs)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start_single(self, job: Job, index: int) -> None:
        """Run `job`, the replay of the decision at log `index`."""
        self._start(job, lambda: self._single(job, index))

    def start_batch(self, job: Job, indexes: Sequence[int]) -> None:
        """Run `job`, the replays of the decisions at log `indexes`."""
        self._start(job, lambda: self._batch(job, indexes))

    async def stop(self) -> None:
        """Cancel every job of this process and mark those not ended failed."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:
            ids = list(self._tasks)
            with side_write_transaction(self.ledger.engine) as connection:
                fail_unfinished(connection, STOPPED, now_micros(), ids)

    def _start(self, job: Job, work: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            async with self._slots:
                try:
                    await asyncio.to_thread(update_job, self.ledger.engine, job.id, state="running")
                    await work()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("replay job failed", job=job.id, error=str(error))
                    await asyncio.to_thread(
                        update_job,
                        self.ledger.engine,
                        job.id,
                        state="failed",
                        error=f"{type(error).__name__}: {error}",
                    )
            self._tasks.pop(job.id, None)

        self._tasks[job.id] = asyncio.create_task(run(), name=f"prov-{job.id}")

    async def _single(self, job: Job, index: int) -> None:
        [recorded] = await asyncio.to_thread(lambda: list(load_recorded(self.ledger, [index])))
        record = await replay_one(
            recorded,
            plan=job.request.plan(),
            pool=self.pool,
            blobs=ledger_blobs(self.ledger.blobs, job.tenant),
            tools=None,
            record_id=job.id,
            batch=None,
        )
        [outcome] = await asyncio.to_thread(self.ledger.append_replays, [record])
        state: JobState = "done"
        error = None
        if isinstance(outcome, RecordRejected):
            result = SingleResult(
                record=record, index=None, append_error=f"{outcome.kind}: {outcome}"
            )
            state, error = "failed", f"the ledger refused the replay: {result.append_error}"
        else:
            result = SingleResult(record=record, index=outcome.index)
        await asyncio.to_thread(
            update_job,
            self.ledger.engine,
            job.id,
            state=state,
            counts=Counter({record.verdict: 1}),
            error=error,
            report=_encoder.encode(result),
        )

    async def _batch(self, job: Job, indexes: Sequence[int]) -> None:
        engine = self.ledger.engine
        written = time.monotonic()
        pending: asyncio.Task[None] | None = None

        def progress(now: Progress) -> None:
            nonlocal written, pending
            # One write in flight at a time, at most every `progress_every_s`.
            if time.monotonic() - written < self.progress_every_s or (
                pending is not None and not pending.done()
            ):
                return
            written = time.monotonic()
            pending = asyncio.create_task(
                asyncio.to_thread(update_job, engine, job.id, counts=now.counts)
            )

        report: ShadowReport = await run_batch(
            load_recorded(self.ledger, indexes),
            total=len(indexes),
            plan=job.request.plan(),
            pool=self.pool,
            blobs=ledger_blobs(self.ledger.blobs, job.tenant),
            append=self.ledger.append_replays,
            batch=job.id,
            tenant=job.tenant,
            concurrency=self.concurrency,
            progress=progress,
        )
        if pending is not None:
            await pending
        counts = Counter({share.verdict: share.count for share in report.verdicts if share.count})
        await asyncio.to_thread(
            update_job,
            engine,
            job.id,
            state="done",
            counts=counts,
            report=_encoder.encode(report),
        )
