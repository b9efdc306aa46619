"""The OTLP assembler in the server's lifespan: one task per server process, started once
the group committer runs and stopped before it stops (docs/otlp.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar

from ingest.otlp.assembler import AssemblyPolicy, TraceAssembler
from ingest.routes.request_state import write_services
from service.settings import Settings

OTLP_ASSEMBLER = "otlp_assembler"


def assembly_policy(settings: Settings) -> AssemblyPolicy:
    return AssemblyPolicy(
        settle_s=settings.otlp_settle_seconds,
        grace_s=settings.otlp_grace_seconds,
        claim_s=settings.otlp_claim_seconds,
        keep_s=settings.otlp_keep_seconds,
    )


def otlp_assembly_lifespan(
    settings: Settings,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        committer = write_services(app.state).committer
        ledger = committer.ledger
        assembler = TraceAssembler(
            ledger.engine, ledger.attest_decisions, committer.append, assembly_policy(settings)
        )
        app.state[OTLP_ASSEMBLER] = assembler
        assembler.start()
        try:
            yield
        finally:
            await assembler.stop()

    return lifespan
