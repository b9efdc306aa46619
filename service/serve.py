"""`prov serve`: initialize the ledger once, then run the ASGI server with its workers.

Migrations run here, in the parent, before any worker starts, so that workers never race
to migrate. Workers read their settings from the environment this process exports, so a
command-line flag reaches every one of them.
"""

from __future__ import annotations

import logging
import os
import tempfile

import structlog
import uvicorn

from ledger.db import make_engine
from ledger.ledger import Ledger
from replay.jobs import fail_interrupted
from service.settings import Settings


def configure_logging(level: str) -> None:
    """JSON lines on stderr, one event each, for log shippers."""
    logging.basicConfig(level=level.upper(), format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
    )


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    ledger = Ledger.init(
        make_engine(settings.database_url),
        settings.ledger_key_file,
        settings.origin,
        replay_key_path=settings.replay_key_file,
    )
    structlog.get_logger("prov").info(
        "ledger ready",
        origin=ledger.origin,
        size=ledger.latest_checkpoint().tree_size,
        verifier_key=ledger.verifier.encode(),
        database=ledger.engine.url.render_as_string(hide_password=True),
    )
    # No worker runs yet, so a replay job still queued or running was left by a process
    # that is gone: it will never finish, and says so.
    if interrupted := fail_interrupted(ledger.engine):
        structlog.get_logger("prov").warning("replay jobs interrupted", jobs=interrupted)
    ledger.close()
    os.environ.update(settings.to_env())
    if settings.workers > 1:
        # Each worker counts in its own files here; /metrics in any worker sums them all.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="prov-metrics-"))
    uvicorn.run(
        "service.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,
        # No proxy is trusted by default; the headers would also cost a pass per request.
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )
