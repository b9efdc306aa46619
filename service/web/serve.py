"""`prov serve`: initialize the ledger once, then run the ASGI server with its workers.

Migrations run here, in the parent, before any worker starts, so that workers never race
to migrate. Workers read their settings from the environment this process exports, so a
command-line flag reaches every one of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import tempfile

import structlog
import uvicorn

from replay.batch.jobs import fail_interrupted
from service.ledger_setup import init_ledger
from service.settings import Settings
from service.web.http_limits import UNLIMITED_DESCRIPTORS

# glibc's mallopt parameter, and the size from which allocations get their own mapping.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20


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


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open files to the hard one, which workers inherit: the
    usual soft default of 1,024 is a connection flood away from failing every append."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, UNLIMITED_DESCRIPTORS)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # a lower soft limit only lowers the connection cap (service.web.http_limits)
    return soft


def return_large_allocations() -> None:
    """Serve allocations of 1 MiB and more (request bodies, blobs) from their own mappings,
    which go back to the system when freed. glibc otherwise raises that threshold after the
    first large free, and then keeps large bodies' memory in per-thread heaps for good."""
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))  # spawned workers
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)  # this process


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    ledger = init_ledger(settings)
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
    descriptors = raise_descriptor_limit()
    return_large_allocations()
    structlog.get_logger("prov").info("descriptor limit", soft=descriptors)
    os.environ.update(settings.to_env())
    if settings.workers > 1:
        # Each worker counts in its own files here; /metrics in any worker sums them all.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="prov-metrics-"))
    uvicorn.run(
        "service.web.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,
        # Header and body deadlines, a header size bound and the connection cap
        # (PROV_HEADER_TIMEOUT_SECONDS and the rest), which uvicorn does not have.
        http="service.web.http_limits:GuardedHttpToolsProtocol",
        timeout_keep_alive=settings.keep_alive_seconds,
        # No proxy is trusted by default; the headers would also cost a pass per request.
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )
