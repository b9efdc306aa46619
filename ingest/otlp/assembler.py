"""The assembler: ready traces from a span store become signed decisions.

One task per process polls the store (`ingest.otlp.store.claim`), maps each claimed trace's
spans to decisions (`ingest.otlp.mapping`), signs them and appends them; only after the
append is acknowledged is the trace marked done and its spans deleted (`store.finish`).
Who signs and where they go is the caller's: in the server, the ledger signs with its
record key (`Ledger.attest_decisions`: the spans were unsigned, so the ledger vouches only
that it received them) and the group committer appends, as for `POST /v1/records`, so
admission, monitors and receipts apply unchanged; in `prov collector`, the service's own
key signs and the SDK sends them (producer-signed).

A crash anywhere in between loses nothing: the claim expires and the trace is assembled
again; the mapping is deterministic and Ed25519 signatures are too, so the second append
carries the same bytes and the log answers it as a retry, not a second record. A trace
that cannot become a record (its decision refused by admission, say) is marked failed with
the reason, logged, and counted, and never retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio.to_thread
from sqlalchemy import Engine

from ingest.otlp import metrics, store
from ingest.otlp.mapping import decisions_of
from ledger.errors import RecordRejected
from ledger.log.receipt import Receipt
from ledger.log.sequencer import now_micros
from ledger.records.decision import Decision

_log = logging.getLogger(__name__)

Append = Callable[[Sequence[bytes], str], Awaitable[Sequence[Receipt | RecordRejected | None]]]
Sign = Callable[[list[Decision]], list[bytes]]


@dataclass(frozen=True, slots=True)
class AssemblyPolicy:
    """When a trace is assembled, and how the assembler paces itself (docs/otlp.md)."""

    settle_s: float = 1.0  # quiet time after a head span arrived
    grace_s: float = 300.0  # a trace with no head, quiet this long, is closed incomplete
    claim_s: float = 60.0  # a claim older than this is taken again (its worker died)
    keep_s: float = 86_400.0  # done traces are remembered this long (late spans refused)
    poll_s: float = 0.2
    batch: int = 256
    in_flight: int = 2  # batches assembled at once


class TraceAssembler:
    """Polls the span store and appends the decisions of ready traces."""

    def __init__(
        self,
        engine: Engine,
        sign: Sign,
        append: Append,
        policy: AssemblyPolicy,
        *,
        service: str | None = None,
    ) -> None:
        """`sign` turns decisions into envelopes (in a worker thread); `append` sends one
        tenant's envelopes and answers per envelope a receipt, a refusal, or None when the
        producer vouches for delivery without a receipt."""
        self.engine = engine
        self.sign = sign
        self.append = append
        self.policy = policy
        self.service = service  # every decision's service, when one key signs them all
        self._task: asyncio.Task[None] | None = None
        self._pruned_us = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="otlp-assembler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        # Up to `in_flight` batches at once: while one is appended (admission and the
        # sequencer's commit), the next is claimed, read and mapped. A claimed trace is
        # busy, so no batch takes another's traces.
        running: set[asyncio.Task[None]] = set()
        while True:
            try:
                claimed = await self._claim()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop outlives any one failure
                _log.exception("OTLP claim failed; retrying")
                claimed = []
            if claimed:
                task = asyncio.create_task(self._guarded(claimed))
                running.add(task)
                task.add_done_callback(running.discard)
            if len(running) >= self.policy.in_flight:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            elif len(claimed) < self.policy.batch:
                await asyncio.sleep(self.policy.poll_s)

    async def _guarded(self, claimed: list[store.Claimed]) -> None:
        try:
            await self._assemble(claimed)
        except Exception:  # the claims expire and the traces are assembled again
            _log.exception("OTLP assembly failed; retrying after the claim expires")

    async def step(self) -> int:
        """Claim one batch of ready traces and assemble it; returns how many were claimed."""
        claimed = await self._claim()
        if claimed:
            await self._assemble(claimed)
        return len(claimed)

    async def _claim(self) -> list[store.Claimed]:
        policy = self.policy
        now_us = now_micros()
        claimed = await anyio.to_thread.run_sync(
            lambda: store.claim(
                self.engine,
                now_us,
                settle_us=int(policy.settle_s * 1e6),
                grace_us=int(policy.grace_s * 1e6),
                stale_us=int(policy.claim_s * 1e6),
                limit=policy.batch,
            )
        )
        if now_us - self._pruned_us > 60_000_000:
            self._pruned_us = now_us
            before = now_us - int(policy.keep_s * 1e6)
            await anyio.to_thread.run_sync(store.prune, self.engine, before)
        return claimed

    def _build(
        self, claimed: list[store.Claimed]
    ) -> list[tuple[store.Claimed, list[Decision] | str]]:
        """Read and map the claimed traces (in a worker thread: mapping a batch takes
        tens of milliseconds the event loop must not wait for)."""
        traces = store.load(self.engine, claimed)
        built: list[tuple[store.Claimed, list[Decision] | str]] = []
        for trace in claimed:
            items = traces[(trace.tenant, trace.trace_id)]
            try:
                decisions = decisions_of(
                    trace.tenant,
                    items.spans,
                    items.events,
                    closing=trace.closing,
                    service=self.service,
                )
                built.append((trace, decisions))
            except Exception as error:  # one trace's fault stays its own
                _log.exception("trace %s could not be mapped", trace.trace_id)
                built.append((trace, f"the spans could not be mapped: {error}"))
        return built

    async def _assemble(self, claimed: list[store.Claimed]) -> None:
        built = await anyio.to_thread.run_sync(self._build, claimed)
        outcomes = await self._append(built)
        await anyio.to_thread.run_sync(lambda: store.finish(self.engine, outcomes, now_micros()))
        for trace, count, note in outcomes:
            outcome = (
                "failed" if note is not None else "incomplete" if trace.closing else "complete"
            )
            metrics.TRACES.labels(outcome).inc()
            metrics.DECISIONS.inc(count)

    async def _append(
        self, built: list[tuple[store.Claimed, list[Decision] | str]]
    ) -> list[tuple[store.Claimed, int, str | None]]:
        """Sign and append every decision, one committer call per tenant; each trace's
        outcome is (trace, decisions appended, why it failed or None)."""
        by_tenant: dict[str, list[Decision]] = {}
        for _, decisions in built:
            if not isinstance(decisions, str):
                for decision in decisions:
                    by_tenant.setdefault(decision.tenant, []).append(decision)
        refused: dict[tuple[str, str], str] = {}
        for tenant, decisions in by_tenant.items():
            raws = await anyio.to_thread.run_sync(self.sign, decisions)
            results = await self.append(raws, tenant)
            for decision, result in zip(decisions, results, strict=True):
                if isinstance(result, RecordRejected):
                    refused[(tenant, decision.id)] = f"decision {decision.id}: {result}"
        outcomes: list[tuple[store.Claimed, int, str | None]] = []
        for trace, decisions in built:
            if isinstance(decisions, str):
                outcomes.append((trace, 0, decisions))
                continue
            reasons = [refused[(d.tenant, d.id)] for d in decisions if (d.tenant, d.id) in refused]
            if reasons:
                _log.warning("trace %s: %s", trace.trace_id, "; ".join(reasons))
            note = "; ".join(reasons) if reasons else None
            outcomes.append((trace, len(decisions) - len(reasons), note))
        return outcomes
