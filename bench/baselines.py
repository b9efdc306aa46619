"""The two ceilings every write benchmark prints beside its figure, measured in the same run
on the same records: a raw INSERT of the same rows into a plain table, and a bare
Ed25519 verification loop over the same envelopes."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, String, Table, insert

from bench.common import median_of
from ledger.keys.ed25519 import verify
from ledger.keys.keyring import list_keys
from ledger.ledger import Ledger
from ledger.records import dsse


def raw_insert_baseline(ledger: Ledger, records: list[bytes], batch: int) -> float:
    """The same rows through a plain executemany into an unindexed-but-for-its-key table."""
    table = Table(
        "bench_raw",
        MetaData(),
        Column("idx", BigInteger, primary_key=True, autoincrement=False),
        Column("record_id", String(256)),
        Column("envelope", LargeBinary),
        Column("leaf_hash", LargeBinary(32)),
    )
    table.create(ledger.engine)
    rows = [
        {"idx": n, "record_id": str(n), "envelope": raw, "leaf_hash": hashlib.sha256(raw).digest()}
        for n, raw in enumerate(records)
    ]

    def insert_all() -> None:
        for start in range(0, len(rows), batch):
            with ledger.engine.begin() as connection:
                connection.execute(insert(table), rows[start : start + batch])

    seconds = median_of(1, insert_all)
    table.drop(ledger.engine)
    return seconds


def verify_loop_baseline(ledger: Ledger, records: list[bytes], threads: int) -> float:
    """Ed25519 verify of each record's PAE under its registered key, and nothing else."""
    with ledger.engine.connect() as connection:
        keys = {key.keyid: key.public_key for key in list_keys(connection)}
    work = []
    for raw in records:
        envelope = dsse.decode_envelope(raw)
        message = dsse.pae(envelope.payloadType, dsse.payload_bytes(envelope))
        work.append(
            (keys[envelope.signatures[0].keyid], message, dsse.signature_bytes(envelope, 0))
        )

    def check(item: tuple[bytes, bytes, bytes]) -> None:
        if not verify(*item):
            raise AssertionError("a demo record did not verify")

    with ThreadPoolExecutor(threads) as pool:
        return median_of(3, lambda: list(pool.map(check, work, chunksize=256)))
