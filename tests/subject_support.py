"""Decisions about one subject, for the subject bundle and explanation tests: demo records
(loans, orders, payments, with salted blobs and human approvals) rewritten to name the
subject, signed with the demo keys, their blobs stored under the subject's key."""

from __future__ import annotations

import msgspec

from ledger.keys.signing import sign_decision
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.log.sequencer import now_micros
from service.demo.scenarios import demo_records
from service.demo.traffic import demo_signing_key, prepare_demo


def record_subject(
    ledger: Ledger, tenant: str, subject: str, count: int, *, seed: int
) -> list[str]:
    """Append `count` demo decisions about `subject` (their blobs first); their ids."""
    shape = prepare_demo(ledger, tenant)
    blobs: list[tuple[str, bytes, str | None]] = []
    envelopes = []
    ids = []
    for record in demo_records(count, seed=seed, tenant=tenant):
        decision = shape(msgspec.structs.replace(record.decision, subject=subject))
        blobs += [(digest, content, subject) for digest, content in record.blobs.items()]
        envelopes.append(sign_decision(decision, demo_signing_key(tenant, decision.service)))
        ids.append(decision.id)
    ledger.blobs.put_many(tenant, blobs, now_us=now_micros())
    results = ledger.append(envelopes)
    assert all(isinstance(result, Receipt) for result in results), results
    return ids
