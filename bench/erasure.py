"""Erasing a subject with 10,000 decisions, end to end, beside baselines from the same run.

On each engine, a fresh ledger holds one subject's decisions (demo records, each with its
salted blobs sealed under the subject's key) and as many about other subjects. Timed:

1. the erasure, end to end (`Ledger.erasures.erase_subject`): find the subject's digests,
   check the floor and holds, sign and append the erasure records, mark every blob erased
   (and delete the database store's objects) in that commit, then drop the objects and
   destroy the key;
2. of it, finding the digests alone (`ledger.erasure.targets.subject_digests`);
3. baselines: reading the subject's decisions' index rows, and storing the decisions and
   their blobs in the first place.
Target: under 5 s on each engine.

    python -m bench.erasure [--decisions 10000] [--engine sqlite|postgres] [--store DIR]
"""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
from sqlalchemy import select

from bench.common import ENGINES, engine_arguments, fresh_ledger, timed
from ledger.blobs.stores.filesystem import FilesystemStore
from ledger.erasure.targets import subject_digests
from ledger.keys.signing import sign_decision
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.log.sequencer import now_micros
from ledger.storage.schema import decisions
from service.demo.scenarios import demo_records
from service.demo.traffic import demo_signing_key, prepare_demo

TENANT = "acme"
SUBJECT = "bench-subject"
CHUNK = 2_000
PAST_FLOOR_US = 200 * 86_400 * 1_000_000


def record_subject(ledger: Ledger, subject: str, count: int, seed: int) -> int:
    """Append `count` demo decisions about `subject`, their blobs first; how many blobs."""
    shape = prepare_demo(ledger, TENANT)
    stored = 0
    records = demo_records(count, seed=seed, tenant=TENANT)
    while chunk := list(itertools.islice(records, CHUNK)):
        items = []
        envelopes = []
        for record in chunk:
            decision = shape(msgspec.structs.replace(record.decision, subject=subject))
            items += [(digest, content, subject) for digest, content in record.blobs.items()]
            envelopes.append(sign_decision(decision, demo_signing_key(TENANT, decision.service)))
        ledger.blobs.put_many(TENANT, items, now_us=now_micros())
        stored += len(items)
        results = ledger.append(envelopes)
        assert all(isinstance(result, Receipt) for result in results)
    return stored


def run(ledger: Ledger, count: int) -> None:
    stored: list[int] = []
    store = timed(lambda: stored.append(record_subject(ledger, SUBJECT, count, seed=1)))
    [held] = stored
    record_subject(ledger, "someone-else", count // 5, seed=2)

    def read_rows() -> None:
        with ledger.engine.connect() as connection:
            rows = connection.execute(
                select(decisions).where(
                    decisions.c.tenant == TENANT, decisions.c.subject == SUBJECT
                )
            ).all()
        assert len(rows) == count

    read = timed(read_rows)

    def find() -> None:
        with ledger.engine.connect() as connection:
            assert len(subject_digests(connection, TENANT, SUBJECT)) == held

    found = timed(find)
    views = []
    erase = timed(
        lambda: views.append(
            ledger.erasures.erase_subject(
                TENANT,
                SUBJECT,
                reason="benchmark",
                requested_by="bench",
                now_us=now_micros() + PAST_FLOOR_US,
            )
        )
    )
    [view] = views
    assert view.state == "done"
    assert view.digests == held
    print(f"  {count:,} decisions, {held:,} blobs, {len(view.records)} erasure records")
    print(f"  erase the subject, end to end                 {erase:8.2f} s")
    print(f"    of which: find its digests                  {found:8.2f} s")
    print(f"  baseline: read its decisions' index rows      {read:8.2f} s")
    print(f"  baseline: store its decisions and blobs       {store:8.2f} s")


def main() -> None:
    parser = engine_arguments(__doc__ or "")
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--store", type=Path, help="a directory for the blob objects")
    arguments = parser.parse_args()
    for engine in arguments.engine or ENGINES:
        print(f"{engine}:")
        with fresh_ledger(engine) as ledger:
            if arguments.store is not None:
                folder = arguments.store / engine
                folder.mkdir(parents=True, exist_ok=True)
                ledger.blob_store = FilesystemStore(folder)
            run(ledger, arguments.decisions)


if __name__ == "__main__":
    main()
