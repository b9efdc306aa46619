"""kill -9 of the server while clients write: every record that got a receipt survives, the
log verifies after a restart, and retrying what was not acknowledged stores each once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from tests.http_server import TENANT, Server, prepared_server
from tests.support import demo_envelopes

WRITERS = 8
PER_WRITER = 1_000  # more than a writer sends before the kill, so the kill hits mid-stream


def _write(
    server: Server, key: str, records: list[bytes], acknowledged: list[dict[str, object]]
) -> None:
    """POST records one by one until the server goes away; keep every receipt."""
    with httpx.Client(base_url=server.url, headers=server.auth(key), timeout=10) as client:
        for raw in records:
            try:
                answer = client.post("/v1/records", content=raw)
            except httpx.TransportError:
                return
            assert answer.status_code == 201, answer.text
            acknowledged.append(answer.json())


def test_acknowledged_records_survive_kill_9(db_url: str, tmp_path: Path) -> None:
    server = prepared_server(db_url, tmp_path)
    engine = make_engine(db_url)
    records = demo_envelopes(engine, WRITERS * PER_WRITER, seed=7, tenant=TENANT)
    server.start()
    key = server.api_key("ingest")
    acknowledged: list[dict[str, object]] = []
    writers = [
        threading.Thread(
            target=_write,
            args=(server, key, records[n * PER_WRITER : (n + 1) * PER_WRITER], acknowledged),
        )
        for n in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    for writer in writers:
        writer.join(timeout=60)
    assert len(acknowledged) >= 300, "the server acknowledged too little before the kill"

    ledger = Ledger.open(engine, server.key_file)
    report = ledger.verify()
    assert report, report.fault
    assert report.size < len(records), "the kill came too late to test anything"
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT idx, record_id, leaf_hash FROM log_entries"))
        stored = {record_id: (idx, bytes(leaf).hex()) for idx, record_id, leaf in rows}
    for receipt in acknowledged:
        assert stored[str(receipt["id"])] == (receipt["index"], receipt["leaf_hash"])

    # After a restart, re-sending everything stores the rest, each record exactly once.
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers=server.auth(key), timeout=60) as client:
            for start in range(0, len(records), 1000):
                batch = b"[" + b",".join(records[start : start + 1000]) + b"]"
                answer = client.post("/v1/records/batch", content=batch)
                assert answer.status_code == 200, answer.text
                assert answer.json()["rejected"] == 0
    finally:
        server.stop()
    final = ledger.verify(signatures=True)
    assert final, final.fault
    assert final.size == len(records)
    ledger.close()
