"""The microloans demo (`prov demo --scenario microloans`): a sector concentration limit
watched live as small loans are approved, until one sector crosses it.

A lender approves many small loans (500 to 5,000 USD), each exposing its amount to the
borrower's sector (`sector:<name>`). Its risk team caps any sector's share of the approved
exposure at 25% over the last hour: a monitor (`sector-concentration`: `share` of
`sector:*` exposures in USD, grouped by group, window 1h, limit 0.25, action `flag`,
counting approved `loan.approve` decisions) applied before the first loan, with a
`min_count` so that the first few loans of a window are not 100% of it.

The loans start spread evenly over eight sectors; after the first sixth of the run,
`sector:crypto-mining` gets a growing part of the new loans, so that its share of the
window crosses 25% around the middle of the run. Every value comes from a `random.Random`
seeded with `--seed`, and `occurred_at` runs from a fixed moment over three minutes, so a
seed always gives the same envelopes. A few loans are declined; they count for nothing.

The loans go through the real ingest path: admitted and sequenced in batches by
`Ledger.append_many`, the monitor evaluated by the sequencer, and every receipt answer
carrying the monitor's reading. `run_microloans` returns what the answers said: where the
monitor's breach record sits, which decision crossed, the value then, and how many later
answers said the sector stood over the limit.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ledger.errors import RecordRejected
from ledger.keys.signing import SigningKey, sign_decision
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records.decision import Decision, Exposure, Model, Output
from ledger.records.monitor import MonitorDefinition, MonitorReading, Selector
from service.demo.traffic import demo_signing_key, register_demo_keys

SERVICE = "microloans"
MONITOR_ID = "sector-concentration"
LIMIT = "0.25"
DRIFTING = "crypto-mining"
SECTORS = (
    "agriculture",
    "construction",
    DRIFTING,
    "education",
    "healthcare",
    "hospitality",
    "retail",
    "transport",
)
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SPAN = timedelta(minutes=3)
BATCH = 1_000
DECLINED = 0.04  # the share of applications declined
# The drifting sector's part of the new loans: even (1/8) until DRIFT_FROM of the run,
# then rising by DRIFT_SLOPE per run, at most DRIFT_CAP. With these, its share of the
# approved exposure so far reaches 25% near the middle of the run.
DRIFT_FROM = 0.15
DRIFT_SLOPE = 1.02
DRIFT_CAP = 0.9
MODEL = Model(provider="demo", name="microloan-scorer", version="2026-03-01")


def default_min_count(count: int) -> int:
    """500 decisions, or a tenth of a shorter run's, before the limit applies."""
    return max(1, min(500, count // 10))


def concentration_monitor(tenant: str, *, min_count: int) -> MonitorDefinition:
    return MonitorDefinition(
        id=MONITOR_ID,
        tenant=tenant,
        description="No sector may hold more than 25% of the approved exposure of the "
        "last hour (microloans demo).",
        select=Selector(
            decision_type="loan.approve",
            group="sector:*",
            where=["output.decision.approved == true"],
        ),
        aggregate="share",
        unit="USD",
        window="1h",
        group_by="group",
        limit=LIMIT,
        min_count=min_count,
        action="flag",
    )


def drift_share(progress: float) -> float:
    """The drifting sector's chance of the next loan, `progress` (0 to 1) into the run."""
    even = 1 / len(SECTORS)
    return min(DRIFT_CAP, even + DRIFT_SLOPE * max(0.0, progress - DRIFT_FROM))


def loan_decisions(count: int, *, seed: int, tenant: str) -> Iterator[Decision]:
    """`count` loan decisions, deterministic for `seed`."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    others = [sector for sector in SECTORS if sector != DRIFTING]
    for position in range(count):
        progress = position / max(1, count - 1)
        sector = DRIFTING if rng.random() < drift_share(progress) else rng.choice(others)
        amount = rng.randrange(500, 5001)
        approved = rng.random() >= DECLINED
        yield Decision(
            id=f"microloan-{seed}-{position:07d}",
            tenant=tenant,
            service=SERVICE,
            decision_type="loan.approve",
            occurred_at=START + SPAN * progress,
            subject=f"borrower-{rng.randrange(10**9):09d}",
            inputs={"amount": amount, "currency": "USD", "sector": sector},
            model=MODEL,
            output=Output(decision={"approved": approved, "amount": amount, "sector": sector}),
            exposures=[Exposure(group=f"sector:{sector}", amount=Decimal(amount), unit="USD")],
        )


def loan_envelopes(count: int, *, seed: int, tenant: str) -> Iterator[bytes]:
    key: SigningKey = demo_signing_key(tenant, SERVICE)
    for decision in loan_decisions(count, seed=seed, tenant=tenant):
        yield sign_decision(decision, key)


def loan_batches(
    ledger: Ledger, count: int, *, seed: int, tenant: str, batch: int
) -> Iterator[list[bytes]]:
    """The signed loans in batches of `batch`, each signed on the ledger's worker pool
    (Ed25519 releases the GIL), so that signing keeps up with admission."""
    key: SigningKey = demo_signing_key(tenant, SERVICE)
    decisions = loan_decisions(count, seed=seed, tenant=tenant)

    def sign(decision: Decision) -> bytes:
        return sign_decision(decision, key)

    while chunk := list(itertools.islice(decisions, batch)):
        yield ledger.pool.map(sign, chunk)


@dataclass
class MicroloansRun:
    """What the run's answers said of the monitor."""

    sent: int
    monitor_version: int
    monitor_index: int | None  # None when the monitor was applied before, unchanged
    elapsed_s: float
    rejected: int = 0
    # The first reading of the run that caused a breach record: the decision that crossed.
    crossing: MonitorReading | None = None
    crossing_id: str | None = None
    crossing_index: int | None = None
    # Answers after the crossing that said its group stood over the limit.
    later_breached: int = 0
    receipts: list[Receipt] = field(default_factory=list)

    @property
    def breach_index(self) -> int | None:
        return None if self.crossing is None else self.crossing.breach

    def summary(self) -> list[str]:
        rate = self.sent / self.elapsed_s if self.elapsed_s else 0.0
        lines = [
            f"sent {self.sent} loan decisions in {self.elapsed_s:.2f}s ({rate:,.0f}/s), "
            f"{self.rejected} rejected; monitor {MONITOR_ID} v{self.monitor_version}"
            + ("" if self.monitor_index is None else f" at log index {self.monitor_index}"),
        ]
        if self.crossing is None:
            lines.append(
                f"no group crossed the limit {LIMIT} during this run "
                f"({self.later_breached} answers said breached)"
            )
            return lines
        lines += [
            f"breach record at log index {self.breach_index}: {self.crossing.group} "
            f"reached {self.crossing.value} > {self.crossing.limit} "
            f"over {self.crossing.count} decisions",
            f"crossed by decision {self.crossing_id} at log index {self.crossing_index}",
            f"{self.later_breached} later answers said breached",
        ]
        return lines


def run_microloans(
    ledger: Ledger,
    count: int,
    *,
    seed: int,
    tenant: str,
    min_count: int | None = None,
    batch: int = BATCH,
    keep_receipts: bool = False,
) -> MicroloansRun:
    """Register the demo key, apply the monitor, and append `count` loans in batches."""
    register_demo_keys(ledger.engine, tenant, [SERVICE])
    monitor = concentration_monitor(
        tenant, min_count=default_min_count(count) if min_count is None else min_count
    )
    [(planned, applied)] = ledger.apply_monitors([monitor], applied_by="prov demo")
    if isinstance(applied, RecordRejected):
        raise applied
    run = MicroloansRun(
        sent=count,
        monitor_version=planned.version,
        monitor_index=None if applied is None else applied.index,
        elapsed_s=0.0,
    )
    started = time.perf_counter()
    chunks = loan_batches(ledger, count, seed=seed, tenant=tenant, batch=batch)
    for results in ledger.append_many(chunks):
        _observe(run, results, keep_receipts)
    run.elapsed_s = time.perf_counter() - started
    return run


def _observe(run: MicroloansRun, results: Sequence[Receipt | RecordRejected], keep: bool) -> None:
    for result in results:
        if isinstance(result, RecordRejected):
            run.rejected += 1
            continue
        if keep:
            run.receipts.append(result)
        for reading in result.monitors or ():
            if reading.monitor != MONITOR_ID or not reading.breached:
                continue
            if run.crossing is None and reading.breach is not None:
                run.crossing = reading
                run.crossing_id = result.id
                run.crossing_index = result.index
            elif run.crossing is not None and reading.group == run.crossing.group:
                run.later_breached += 1
