"""Helpers for the export, verification and report tests (this module holds no tests).

The ledger's own figures are computed here from the stored envelopes with the strict
record decoder, independently of the export's partial one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine, select

from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records import dsse
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision, decode_decision
from ledger.storage.schema import log_entries
from tests.support import demo_envelopes


def append_all(ledger: Ledger, raws: Iterable[bytes], batch: int = 100) -> None:
    pending = list(raws)
    for start in range(0, len(pending), batch):
        results = ledger.append(pending[start : start + batch])
        assert all(isinstance(result, Receipt) for result in results), results


def fill(ledger: Ledger, count: int, *, seed: int = 1, tenant: str = "acme") -> None:
    append_all(ledger, demo_envelopes(ledger.engine, count, seed=seed, tenant=tenant))


def stored_decisions(engine: Engine) -> list[tuple[int, Decision]]:
    """(index, decision) of every decision in the log, strictly decoded."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(log_entries.c.idx, log_entries.c.envelope)
            .where(log_entries.c.payload_type == DECISION_PAYLOAD_TYPE)
            .order_by(log_entries.c.idx)
        ).all()
    return [
        (row.idx, decode_decision(dsse.payload_bytes(dsse.decode_envelope(bytes(row.envelope)))))
        for row in rows
    ]


@dataclass
class Totals:
    decisions: int = 0
    cost: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0


def ledger_totals(engine: Engine) -> dict[str, Totals]:
    """Per tenant: decisions, cost, input and output tokens, from the signed payloads."""
    totals: dict[str, Totals] = defaultdict(Totals)
    for _, decision in stored_decisions(engine):
        tenant = totals[decision.tenant]
        tenant.decisions += 1
        if decision.usage is not None:
            tenant.input_tokens += decision.usage.input_tokens
            tenant.output_tokens += decision.usage.output_tokens
            if decision.usage.cost is not None:
                tenant.cost += decision.usage.cost.amount
    return dict(totals)
