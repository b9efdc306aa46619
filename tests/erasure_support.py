"""Decisions about subjects, with their blobs, for the erasure tests; and the clock those
tests move: a day in microseconds and a time past the default retention floor."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from sqlalchemy import func, select

from ledger.keys.signing import sign_decision
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.log.sequencer import now_micros
from ledger.records.erasure import ERASURE_PAYLOAD_TYPE
from ledger.storage.schema import log_entries
from service.demo.scenarios import demo_records
from service.demo.traffic import demo_signing_key, prepare_demo

TENANT = "acme"
DAY_US = 86_400 * 1_000_000
SAME = "same"


def days_later(days: float) -> int:
    """Now plus `days`, in microseconds: past a floor without waiting for it."""
    return now_micros() + int(days * DAY_US)


@dataclass
class Recorded:
    """Decisions appended about one subject, and the blobs they reference."""

    ids: list[str] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest -> the stored bytes


def record_about(
    ledger: Ledger,
    subject: str,
    count: int,
    *,
    seed: int,
    tenant: str = TENANT,
    stored_as: str | None = SAME,
    blobs_now_us: int | None = None,
) -> Recorded:
    """Append `count` demo decisions about `subject`, their blobs stored first: under the
    subject's key (`stored_as` SAME), another subject's, or none (None)."""
    shape = prepare_demo(ledger, tenant)
    recorded = Recorded()
    envelopes = []
    items = []
    for record in demo_records(count, seed=seed, tenant=tenant):
        decision = shape(msgspec.structs.replace(record.decision, subject=subject))
        owner = subject if stored_as == SAME else stored_as
        items += [(digest, content, owner) for digest, content in record.blobs.items()]
        recorded.blobs.update(record.blobs)
        envelopes.append(sign_decision(decision, demo_signing_key(tenant, decision.service)))
        recorded.ids.append(decision.id)
    ledger.blobs.put_many(tenant, items, now_us=blobs_now_us or now_micros())
    results = ledger.append(envelopes)
    assert all(isinstance(result, Receipt) for result in results), results
    return recorded


def erasure_entries(ledger: Ledger) -> int:
    """How many erasure records the log holds."""
    with ledger.engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).where(log_entries.c.payload_type == ERASURE_PAYLOAD_TYPE)
            ).scalar_one()
        )
