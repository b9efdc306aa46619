"""Operational routes for probes and scrapers: liveness, readiness and Prometheus metrics.
They need no API key, because they reveal nothing about any tenant."""

from __future__ import annotations

import os

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine, text

from ledger.errors import LedgerError
from ledger.storage.migrate import schema_is_current
from query.services import read_services
from service.web.monitor_metrics import monitor_exposition
from service.web.otlp_metrics import otlp_exposition
from service.webhooks.metrics import outbox_exposition
from service.witnessing.metrics import witness_exposition

# The framework appends `; charset=utf-8` to every text/* type, and the client library's
# constant already ends with it: drop it here so that the header names the charset once.
METRICS_MEDIA_TYPE = "; ".join(
    part for part in CONTENT_TYPE_LATEST.split("; ") if not part.startswith("charset=")
)


class Status(msgspec.Struct):
    status: str


class NotReady(LedgerError):
    kind = "not-ready"
    title = "Not ready"


@get("/healthz", summary="Liveness", tags=["operations"])
async def healthz() -> Status:
    """200 while the process serves requests."""
    return Status("ok")


@get("/readyz", summary="Readiness", tags=["operations"], sync_to_thread=True)
def readyz(engine: Engine) -> Status:
    """200 when the database answers and its schema is at the newest migration."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        raise NotReady(f"the database does not answer: {type(error).__name__}") from None
    if not schema_is_current(engine):
        raise NotReady("the database schema is not at the newest migration; run `prov init`")
    return Status("ready")


@get("/metrics", summary="Prometheus metrics", tags=["operations"], sync_to_thread=True)
def metrics(engine: Engine, state: State) -> Response[bytes]:
    """Every worker's metrics: with several workers they share a directory of counters.
    The webhook outbox's gauge and the monitors' metrics are read from the database."""
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    body = (
        generate_latest(registry)
        + outbox_exposition(engine)
        + monitor_exposition(engine)
        + otlp_exposition(engine)
        + witness_exposition(engine, list(read_services(state).witnesses))
    )
    return Response(body, media_type=METRICS_MEDIA_TYPE)
