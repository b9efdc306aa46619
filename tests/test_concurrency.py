"""Several processes appending at once produce one gap-free chain that verifies."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from sqlalchemy import text

from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.storage.db import make_engine
from tests.support import demo_envelopes

WORKERS = 4
PER_WORKER = 60
BATCH = 5


def _append_in_small_batches(
    db_url: str, key_path: str, raws: list[bytes]
) -> list[tuple[str, int]]:
    ledger = Ledger.open(make_engine(db_url), Path(key_path))
    placed = []
    try:
        for start in range(0, len(raws), BATCH):
            for result in ledger.append(raws[start : start + BATCH]):
                assert isinstance(result, Receipt), result
                placed.append((result.id, result.index))
    finally:
        ledger.close()
    return placed


def test_concurrent_appenders_never_fork_the_chain(
    ledger: Ledger, db_url: str, key_path: Path
) -> None:
    own = [demo_envelopes(ledger.engine, PER_WORKER, seed=100 + n) for n in range(WORKERS)]
    # Every worker also races to append the same ten records.
    shared = demo_envelopes(ledger.engine, 10, seed=999)
    jobs = [(db_url, str(key_path), shared[n::2] + own[n] + shared) for n in range(WORKERS)]
    with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
        placements = pool.starmap(_append_in_small_batches, jobs)

    expected_size = WORKERS * PER_WORKER + len(shared)
    report = ledger.verify(signatures=True)
    assert report, report.fault
    assert report.size == expected_size
    # Every record got one index, and everyone who asked about a record was told the same one.
    where: dict[str, int] = {}
    for record_id, index in (item for placed in placements for item in placed):
        assert where.setdefault(record_id, index) == index
    assert sorted(where.values()) == list(range(expected_size))
    with ledger.engine.connect() as connection:
        sizes = [row[0] for row in connection.execute(text("SELECT tree_size FROM checkpoints"))]
    assert max(sizes) == expected_size
    assert len(sizes) == len(set(sizes))
