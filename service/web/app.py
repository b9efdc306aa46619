"""The Litestar application, assembled in one factory from settings.

Routes live with their packages (`ingest` writes, `query` reads, `service.web.ops` operates);
this module wires them to the ledger, the group committer and the API key cache, maps every
API error to RFC 9457 problem+json, and describes the API at `/schema`. The auditor pages
under `/ui` (`query.ui.pages`) render their own errors as HTML.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy.exc
from litestar import Litestar, Request, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme
from sqlalchemy import Engine

from ingest.commit.groupcommit import GroupCommitter
from ingest.routes import blobs as routes_blobs
from ingest.routes import keys as routes_keys
from ingest.routes import monitors as routes_monitors
from ingest.routes import otlp as routes_otlp
from ingest.routes import records as routes_records
from ingest.routes import subscriptions as routes_subscriptions
from ingest.routes.bodies import SMALL_BODY_BYTES, BodyBudget
from ingest.routes.request_state import WRITE_SERVICES, WriteServices
from ledger.errors import LedgerError
from ledger.keys.apikeys import ApiKey
from ledger.ledger import Ledger
from query.routes import decisions as routes_decisions
from query.routes import log as routes_log
from query.routes import monitors as routes_monitor_reads
from query.routes import proofs as routes_proofs
from query.routes import reports as routes_reports
from query.routes import subjects as routes_subjects
from query.services import READ_SERVICES, ReadServices, SessionPolicy, read_services
from query.ui import pages
from query.ui.view import template_config
from service.ledger_setup import open_ledger
from service.settings import Settings
from service.web import ops, routes_erasure, routes_policy, routes_replays
from service.web.auth import ApiKeyCache, require_api_key
from service.web.erasure_jobs import erasure_lifespan
from service.web.http_limits import read_deadline
from service.web.http_metrics import count_requests
from service.web.otlp_assembly import otlp_assembly_lifespan
from service.web.problems import (
    database_error_handler,
    http_error_handler,
    internal_error_handler,
    ledger_error_handler,
)
from service.web.request_guard import refuse_nul
from service.webhooks.worker import webhooks_lifespan
from service.witnessing.lifespan import witnessing_lifespan

API_VERSION = "1.0.0"
# In the OpenAPI document: /v1 routes take an API key; probes and metrics do not.
KEY_REQUIRED: list[SecurityRequirement] = [{"apiKey": []}]


def create_app(settings: Settings | None = None) -> Litestar:
    """The service for `settings` (default: the `PROV_*` environment). The ledger must
    already be initialized; `prov serve` does that before starting workers."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        ledger = open_ledger(settings)
        committer = GroupCommitter(
            ledger,
            max_wait_s=settings.commit_max_wait_ms / 1000,
            max_records=settings.commit_max_records,
            queue_limit=settings.queue_max_records,
        )
        app.state[READ_SERVICES] = ReadServices(
            ledger=ledger,
            api_keys=ApiKeyCache(ledger.engine, settings.auth_cache_seconds),
            public_reads=settings.public_reads,
            export_dir=settings.export_dir,
            export_s3=settings.s3_options(),
            ui_sessions=SessionPolicy(
                ttl_s=settings.ui_session_ttl_seconds,
                idle_s=settings.ui_session_idle_seconds,
                trust_proxy_headers=settings.trust_proxy_headers,
            ),
            contest_contact=settings.contest_contact,
            witnesses=tuple(w.name for w in settings.witness_endpoints()),
            witness_quorum=settings.served_quorum(),
        )
        app.state[WRITE_SERVICES] = WriteServices(
            committer=committer,
            batch_limit=settings.batch_max_records,
            body_budget=BodyBudget(settings.body_memory_bytes, settings.body_memory_wait_seconds),
            spool_budget=BodyBudget(
                settings.blob_spool_bytes,
                settings.body_memory_wait_seconds,
                "blob uploads in flight",
            ),
        )
        committer.start()
        try:
            yield
        finally:
            await committer.stop()
            ledger.close()

    def provide_caller(request: Request[Any, Any, State]) -> ApiKey | None:
        # Set by the require_api_key guard; None only on a public read.
        caller: ApiKey | None = request.state.caller
        return caller

    def provide_ledger(state: State) -> Ledger:
        return read_services(state).ledger

    def provide_engine(state: State) -> Engine:
        return provide_ledger(state).engine

    records = Router(
        "/v1/records",
        route_handlers=[routes_records.append_record],
        request_max_body_size=settings.max_record_bytes,
        security=KEY_REQUIRED,
        # An envelope over the limit is a record too large, whoever notices it first.
        opt={"too_large_kind": "record-too-large"},
    )
    batch = Router(
        "/v1/records",
        route_handlers=[routes_records.append_batch],
        request_max_body_size=settings.max_body_bytes,
        security=KEY_REQUIRED,
    )
    blobs = Router(
        "/v1/blobs",
        route_handlers=[routes_blobs.upload_blob, routes_blobs.download_blob, routes_blobs.erase],
        request_max_body_size=settings.max_blob_bytes,
        security=KEY_REQUIRED,
    )
    keys = Router(
        "/v1/keys",
        route_handlers=[
            routes_keys.register_service_key,
            routes_keys.list_service_keys,
            routes_keys.revoke_service_key,
        ],
        security=KEY_REQUIRED,
    )
    api_keys = Router(
        "/v1/api-keys",
        route_handlers=[
            routes_keys.create_api_key_route,
            routes_keys.list_api_keys_route,
            routes_keys.revoke_api_key_route,
        ],
        security=KEY_REQUIRED,
    )
    subscriptions = Router(
        "/v1/subscriptions",
        route_handlers=[
            routes_subscriptions.subscribe,
            routes_subscriptions.subscriptions_of_tenant,
            routes_subscriptions.unsubscribe,
            routes_subscriptions.deliveries,
            routes_subscriptions.retry,
        ],
        security=KEY_REQUIRED,
    )
    # Applying (admin) and reading (audit) monitors share one router: Litestar refuses two
    # routers on the same path (each would answer its OPTIONS).
    monitors = Router(
        "/v1/monitors",
        route_handlers=[
            routes_monitors.apply_monitors,
            routes_monitor_reads.list_monitors_route,
            routes_monitor_reads.monitor_route,
        ],
        security=KEY_REQUIRED,
    )
    decisions = Router(
        "/v1/decisions",
        route_handlers=[
            routes_decisions.search_decisions,
            routes_decisions.why,
            routes_decisions.freshness,
        ],
        security=KEY_REQUIRED,
    )
    otlp_traces = Router(
        "/v1/traces",
        route_handlers=[routes_otlp.receive_traces],
        request_max_body_size=settings.otlp_max_bytes,
        security=KEY_REQUIRED,
    )
    otlp_logs = Router(
        "/v1/logs",
        route_handlers=[routes_otlp.receive_logs],
        request_max_body_size=settings.otlp_max_bytes,
        security=KEY_REQUIRED,
    )
    reports = Router("/v1/reports", route_handlers=[routes_reports.report], security=KEY_REQUIRED)
    subjects = Router(
        "/v1/subjects", route_handlers=[routes_subjects.subject_decisions], security=KEY_REQUIRED
    )
    breaches = Router(
        "/v1/breaches", route_handlers=[routes_monitor_reads.breach_route], security=KEY_REQUIRED
    )
    erasures = Router(
        "/v1/erasures",
        route_handlers=[
            routes_erasure.erase_subject,
            routes_erasure.list_erasures,
            routes_erasure.erasure,
        ],
        security=KEY_REQUIRED,
    )
    retention = Router(
        "/v1/retention",
        route_handlers=[routes_erasure.retention, routes_erasure.set_retention],
        security=KEY_REQUIRED,
    )
    holds = Router(
        "/v1/holds",
        route_handlers=[
            routes_erasure.list_holds,
            routes_erasure.hold,
            routes_erasure.add_hold,
            routes_erasure.release_hold,
        ],
        security=KEY_REQUIRED,
    )
    policies = Router(
        "/v1/policies", route_handlers=[routes_policy.list_policy_versions], security=KEY_REQUIRED
    )
    policy_checks = Router(
        "/v1/policy-checks", route_handlers=[routes_policy.check_policies], security=KEY_REQUIRED
    )
    replays = Router(
        "/v1/replays",
        route_handlers=[routes_replays.start_replay, routes_replays.replay_job],
        security=KEY_REQUIRED,
    )
    log = Router(
        "/v1",
        route_handlers=[
            routes_log.log_info,
            routes_proofs.entry,
            routes_proofs.cose_receipt,
            routes_proofs.inclusion,
            routes_proofs.consistency,
        ],
        security=KEY_REQUIRED,
    )
    # C2SP tlog-tiles paths sit at the root, where transparency-log clients expect them.
    tiles = Router(
        "/",
        route_handlers=[routes_log.checkpoint, routes_log.latest_checkpoint, routes_proofs.tile],
        security=KEY_REQUIRED,
    )

    return Litestar(
        route_handlers=[
            records,
            batch,
            blobs,
            keys,
            api_keys,
            subscriptions,
            monitors,
            decisions,
            otlp_traces,
            otlp_logs,
            reports,
            subjects,
            breaches,
            erasures,
            retention,
            holds,
            replays,
            policies,
            policy_checks,
            log,
            tiles,
            ops.healthz,
            ops.readyz,
            ops.metrics,
            *pages.page_routers(),
        ],
        lifespan=[
            lifespan,
            routes_replays.replays_lifespan(settings),
            webhooks_lifespan(settings),
            otlp_assembly_lifespan(settings),
            erasure_lifespan(settings),
            witnessing_lifespan(settings),
        ],
        dependencies={
            "caller": Provide(provide_caller, sync_to_thread=False),
            "ledger": Provide(provide_ledger, sync_to_thread=False),
            "engine": Provide(provide_engine, sync_to_thread=False),
        },
        exception_handlers={
            LedgerError: ledger_error_handler,
            # Under /ui, an unmatched address or method is an HTML page, not a problem.
            HTTPException: pages.or_error_page(http_error_handler),
            sqlalchemy.exc.OperationalError: database_error_handler,
            Exception: internal_error_handler,
        },
        guards=[require_api_key],
        middleware=[
            count_requests,
            refuse_nul,
            read_deadline(settings.body_timeout_seconds),
        ],
        # The pages' security headers, on every answer under /ui (errors and 404s included).
        before_send=[pages.secure_page_headers],
        template_config=template_config(),
        # Routes other than appends and blobs (keys, replays, page forms; some answer
        # without an API key) take small bodies: each connection holds little.
        request_max_body_size=SMALL_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="Provenance Ledger",
            version=API_VERSION,
            description="Signed, append-only records of AI decisions. Errors are RFC 9457 "
            "problem+json; /v1 routes take `Authorization: Bearer <API key>`.",
            path="/schema",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(type="http", scheme="bearer", description="API key")
                }
            ),
        ),
    )


def create_app_from_env() -> Litestar:
    """The factory `prov serve` hands to the ASGI server in each worker process."""
    return create_app()
