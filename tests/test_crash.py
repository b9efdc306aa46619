"""An acknowledged record is never lost: `prov append` killed with SIGKILL mid-stream
leaves a log that verifies and holds every record whose receipt was printed."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import msgspec
from sqlalchemy import text

from ledger.ledger import Ledger
from tests.support import PROV, demo_envelopes, prov

RECORDS = 10_000


def test_receipts_printed_before_a_kill_survive_it(
    ledger: Ledger, db_url: str, key_path: Path, tmp_path: Path
) -> None:
    source = tmp_path / "records.ndjson"
    source.write_bytes(b"\n".join(demo_envelopes(ledger.engine, RECORDS, seed=42)) + b"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}
    process = subprocess.Popen(
        [PROV, "append", str(source), "--db", db_url, "--key-file", str(key_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    acknowledged = []
    # Read the first committed batch's receipts, then kill while later batches are in flight.
    while len(acknowledged) < 1_000:
        line = process.stdout.readline()
        assert line, "prov append ended before the kill"
        acknowledged.append(msgspec.json.decode(line))
    process.send_signal(signal.SIGKILL)
    acknowledged += [msgspec.json.decode(line) for line in process.stdout.read().splitlines()]
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    report = ledger.verify()
    assert report, report.fault
    assert report.size < RECORDS, "the kill came too late to test anything"
    with ledger.engine.connect() as connection:
        rows = connection.execute(text("SELECT record_id, leaf_hash FROM log_entries"))
        stored = {record_id: bytes(leaf) for record_id, leaf in rows}
    for receipt in acknowledged:
        assert stored[receipt["id"]].hex() == receipt["leaf_hash"]

    # Running the same file again finishes the job; nothing is stored twice.
    again = prov(["append", str(source)], db=db_url, key=key_path)
    assert again.code == 0, again.err
    statuses = [line["status"] for line in again.json_lines()]
    assert statuses.count("existing") == report.size
    assert statuses.count("created") == RECORDS - report.size
    final = ledger.verify(signatures=True)
    assert final, final.fault
    assert final.size == RECORDS
