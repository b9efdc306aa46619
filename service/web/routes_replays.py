"""Replays over HTTP: `POST /v1/replays` starts a replay job, `GET /v1/replays/{id}` follows it.

The body names one decision (``{"decision_id": …}``) or a batch (``{"where": "<the query
string GET /v1/decisions takes>", "limit": N}``), and optionally ``mode``, ``model``,
``version`` and sampling ``parameters``. Everything is checked before the job exists (the
decision or the selection, the plan against the model registry), so a bad request is a
problem document and nothing starts. The answer is 202 with the job and its `Location`;
the replays run in the background (`replay.batch.jobs`) and are appended to the ledger one by one.

Roles: only admin keys start replays, because a replay calls models (at the tenant's
expense) and appends records to the log; audit and admin keys read jobs. Ingest keys do
neither. Jobs are the tenant's: another tenant's job id answers 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
import msgspec
import structlog
from litestar import Litestar, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from msgspec import Meta

from httpapi.problems import problem_spec
from ingest.routes.request_state import caller_of
from ledger.errors import BadRequest, NotFound
from ledger.keys.apikeys import ADMINS, READERS, ApiKey
from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from ledger.records.decision import Id, Label
from ledger.records.replay import Mode
from ledger.storage.db import side_write_transaction
from query.audit.why import find_decision_index
from query.services import read_services
from replay.batch.batch import load_recorded
from replay.batch.jobs import Job, JobRequest, JobRunner, JobView, create_job, job_view, read_job
from replay.providers import ProviderPool, RegistryError, load_registry
from service.cli.replay_inputs import (
    DEFAULT_BATCH_LIMIT,
    MAX_BATCH,
    check_plan,
    parse_where,
    resolve_mode,
    select_decisions,
)
from service.settings import Settings
from service.web.ops import NotReady

log = structlog.get_logger("prov.replay")


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    decision_id: Id | None = None
    where: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_BATCH)] | None = None
    mode: Mode | None = None
    model: Label | None = None
    version: Label | None = None
    parameters: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Replays:
    """What the replay routes share in one worker: its job runner and its provider pool,
    or why there is none (a registry file that does not load)."""

    runner: JobRunner
    pool: ProviderPool | None
    registry_problem: str | None


def replays_lifespan(settings: Settings) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The worker's job runner and provider pool, after the ledger (`ReadServices.ledger`) is
    open and stopped before it closes. A registry that does not load is logged and leaves
    the rest of the service up: only the replays that call models answer 503."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool: ProviderPool | None = None
        problem: str | None = None
        if settings.replay_registry is not None:
            try:
                pool = ProviderPool(load_registry(settings.replay_registry))
            except RegistryError as error:
                problem = f"the model registry does not load: {error}"
                log.warning("replays that call models are unavailable", error=str(error))
        runner = JobRunner(read_services(app.state).ledger, pool)
        app.state.replays = Replays(runner, pool, problem)
        try:
            yield
        finally:
            await runner.stop()
            if pool is not None:
                await pool.aclose()

    return lifespan


def _prepare(
    ledger: Ledger, replays: Replays, tenant: str, body: ReplayRequest
) -> tuple[Job, list[int]]:
    """Check the request, select its decisions and create its job (queued)."""
    if (body.decision_id is None) == (body.where is None):
        raise BadRequest(
            "give `decision_id` to replay one decision, or `where` to replay a batch", pointer=""
        )
    if body.limit is not None and body.where is None:
        raise BadRequest("`limit` bounds a batch; it needs `where`", pointer="/limit")
    request = JobRequest(
        mode=resolve_mode(
            body.mode, model=body.model, version=body.version, parameters=body.parameters
        ),
        decision_id=body.decision_id,
        where=body.where,
        limit=None if body.where is None else body.limit or DEFAULT_BATCH_LIMIT,
        model=body.model,
        version=body.version,
        parameters=body.parameters,
    )
    if replays.registry_problem is not None and request.mode != "deterministic":
        raise NotReady(replays.registry_problem)
    with ledger.engine.connect() as connection:
        if body.where is not None:
            where = parse_where(tenant, body.where)
            selected = select_decisions(connection, where, body.limit or DEFAULT_BATCH_LIMIT)
            if not selected:
                raise BadRequest("no decision of this tenant matches `where`", pointer="/where")
            indexes = [summary.index for summary in selected]
            models = [(summary.model, summary.model_version) for summary in selected]
        else:
            assert body.decision_id is not None  # exactly one of the two, checked above
            indexes = [find_decision_index(connection, tenant, body.decision_id)]
            [recorded] = load_recorded(ledger, indexes)
            models = [(recorded.decision.model.name, recorded.decision.model.version)]
    check_plan(request.plan(), replays.pool, models)
    with side_write_transaction(ledger.engine) as connection:
        job = create_job(
            connection,
            tenant=tenant,
            kind="single" if body.decision_id is not None else "batch",
            request=request,
            total=len(indexes),
            now_us=now_micros(),
        )
    return job, indexes


@post(
    "/",
    opt={"roles": ADMINS},
    summary="Start a replay job",
    tags=["replays"],
    status_code=202,
    responses={
        202: ResponseSpec(JobView, description="The job, queued; `Location` names it"),
        400: problem_spec("The body, the filter, the plan or a parameter is malformed"),
        403: problem_spec("Only admin keys start replays"),
        404: problem_spec("No such decision for this tenant"),
        503: problem_spec("The model registry is not usable on this server"),
    },
)
async def start_replay(request: Request[Any, Any, Any], data: ReplayRequest) -> Response[JobView]:
    """Replay one decision, or a batch selected by a decision filter, in the background.
    Poll the job at `Location` for its progress and, when it is done, its report."""
    replays: Replays = request.app.state.replays
    ledger = read_services(request.app.state).ledger
    job, indexes = await anyio.to_thread.run_sync(
        _prepare, ledger, replays, caller_of(request).tenant, data
    )
    if job.kind == "single":
        replays.runner.start_single(job, indexes[0])
    else:
        replays.runner.start_batch(job, indexes)
    return Response(job_view(job), status_code=202, headers={"Location": f"/v1/replays/{job.id}"})


@get(
    "/{job_id:str}",
    opt={"roles": READERS},
    summary="A replay job",
    tags=["replays"],
    sync_to_thread=True,
    responses={404: problem_spec("No such replay job for this tenant")},
)
def replay_job(job_id: str, caller: ApiKey, ledger: Ledger) -> JobView:
    """The job's state, verdict counts and progress; when done, its report (for a batch,
    the shadow report; for one decision, the replay record and its log index)."""
    if "\x00" in job_id:  # no job has one, and PostgreSQL refuses it as a parameter
        raise NotFound(f"there is no replay job {job_id[:80]!r}")
    with ledger.engine.connect() as connection:
        return job_view(read_job(connection, caller.tenant, job_id))
