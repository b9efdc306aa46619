"""The collector's HTTP app: OTLP/HTTP `POST /v1/traces` and `/v1/logs`, answered by the
server's own receive logic (`ingest.routes.otlp`) over the collector's span store, and
`/healthz` and `/readyz`; its lifespan runs the `TraceAssembler` that signs and sends.

Nothing needs an API key: the collector listens on loopback by default, beside the one
service whose key it holds. With a listen token, exports must carry it as a bearer token
(set ``OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20TOKEN`` in the service).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import anyio.to_thread
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ingest.client import AsyncClient
from ingest.otlp import store
from ingest.otlp.assembler import TraceAssembler
from ingest.otlp.decode import PROTOBUF, ExportInvalid, media_type
from ingest.routes.otlp import failure, receive_logs_into, receive_traces_into
from ledger.keys.signing import SigningKey
from service.collector.config import CollectorConfig
from service.collector.forward import Forwarder

_log = logging.getLogger(__name__)
_STATE = "collector"
# google.rpc.Code values: OTLP exporters retry UNAVAILABLE (with 503), never UNAUTHENTICATED.
UNAUTHENTICATED = 16
UNAVAILABLE = 14
RETRY_AFTER_SECONDS = 5


@dataclass(slots=True)
class Running:
    """What the routes need, built once when the app starts."""

    config: CollectorConfig
    engine: Engine
    forwarder: Forwarder | None = None


def _running(request: Request[Any, Any, Any]) -> Running:
    running: Running = request.app.state[_STATE]
    return running


def _kind(request: Request[Any, Any, Any]) -> str:
    try:
        return media_type(request.headers.get("content-type"))
    except ExportInvalid:
        return PROTOBUF


def _authorized(request: Request[Any, Any, Any], token: str | None) -> bool:
    if token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


Receive = Callable[[Request[Any, Any, Any], Engine, str], Awaitable[Response[bytes]]]


async def _receive(request: Request[Any, Any, Any], receive: Receive) -> Response[bytes]:
    running = _running(request)
    if not _authorized(request, running.config.listen_token):
        return failure(401, UNAUTHENTICATED, "a valid listen token is required", _kind(request))
    try:
        return await receive(request, running.engine, running.config.tenant)
    except (SQLAlchemyError, OSError) as error:
        # Not stored, so not acknowledged: 503 makes the exporter send it again.
        _log.exception("the export could not be stored")
        answer = failure(
            503, UNAVAILABLE, f"the collector could not store the export: {error}", _kind(request)
        )
        answer.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return answer


@post("/v1/traces", status_code=200)
async def traces(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Store the export's spans in the span store before answering."""
    return await _receive(request, receive_traces_into)


@post("/v1/logs", status_code=200)
async def logs(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Store the log records that name a span as events of that span."""
    return await _receive(request, receive_logs_into)


@get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process serves requests."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """200 while the span store answers, so exports are kept; with what waits in it and
    what was sent. The ledger being down does not make the collector unready: spans are
    kept until it is back."""
    running = _running(request)
    try:
        traces = await anyio.to_thread.run_sync(store.pending, running.engine)
    except SQLAlchemyError as error:
        return Response(
            {"status": "not-ready", "detail": f"the span store does not answer: {error}"},
            status_code=503,
        )
    forwarder = running.forwarder
    return Response(
        {
            "status": "ready",
            "tenant": running.config.tenant,
            "service": running.config.service,
            "ledger": running.config.ledger_url,
            "traces": traces,
            "sent": asdict(forwarder.counts) if forwarder else None,
        }
    )


def collector_app(config: CollectorConfig, engine: Engine, key: SigningKey) -> Litestar:
    """The app for `config`, over the span store on `engine`, signing with `key`."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        running: Running = app.state[_STATE]
        async with AsyncClient(
            config.ledger_url,
            config.api_key,
            key,
            tenant=config.tenant,
            service=config.service,
            keyid=config.keyid,
            verifier_key=config.verifier_key,
        ) as client:
            forwarder = Forwarder(client, key, config.tenant, config.keyid)
            assembler = TraceAssembler(
                engine, forwarder.sign, forwarder.append, config.policy, service=config.service
            )
            running.forwarder = forwarder
            assembler.start()
            try:
                yield
            finally:
                await assembler.stop()

    return Litestar(
        route_handlers=[traces, logs, healthz, readyz],
        lifespan=[lifespan],
        state=State({_STATE: Running(config, engine)}),
        request_max_body_size=config.max_body_bytes,
        openapi_config=None,
        logging_config=None,  # the command configures logging (`service.cli.collector`)
    )
