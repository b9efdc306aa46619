"""`prov audit` follows a log from a trusted checkpoint and refuses forks and rollbacks.

Three servers share one ledger key and origin. B and C start as exact copies of A's
database at 100 entries; then A and B grow apart (a fork with a common prefix) and C stays
behind (a rollback once a larger tree was trusted). The auditor is a client of the HTTP API,
so these run on SQLite only: the server's engine is not what is under test.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.storage.db import make_engine
from tests.http_server import Server, prepared_server
from tests.support import PROV, Run, demo_envelopes, prov


def _append(server: Server, count: int, seed: int) -> None:
    ledger = Ledger.open(make_engine(server.db_url), server.key_file)
    records = demo_envelopes(ledger.engine, count, seed=seed)
    assert all(isinstance(result, Receipt) for result in ledger.append(records))
    ledger.close()


def _audit(server: Server, state: Path, *extra: str) -> Run:
    done = subprocess.run(
        [
            PROV,
            "audit",
            "--url",
            server.url,
            "--state",
            str(state),
            "--api-key",
            server.admin_key,
            *extra,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


def _copy_of(origin: Server, directory: Path) -> Server:
    directory.mkdir()
    database = directory / "ledger.db"
    with sqlite3.connect(origin.db_url) as source:
        source.execute(f"VACUUM INTO '{database}'")
    shutil.copy(origin.key_file, directory / "ledger.key")
    return prepared_server(str(database), directory)


def test_auditor_follows_growth_and_refuses_forks_and_rollbacks(tmp_path: Path) -> None:
    a = prepared_server(str(tmp_path / "a.db"), tmp_path)
    _append(a, 100, seed=1)
    b = _copy_of(a, tmp_path / "b")
    c = _copy_of(a, tmp_path / "c")
    verifier = prov(["checkpoint", "--verifier-key"], db=a.db_url, key=a.key_file).out.strip()
    state = tmp_path / "trusted.json"
    servers = (a, b, c)
    for server in servers:
        server.start()
    try:
        first = _audit(a, state)
        assert first.code == 1
        assert "verifier key" in first.err
        assert (
            _audit(a, state, "--verifier-key", verifier.replace(verifier[-8:], "AAAAAAAA")).code
            == 1
        )
        assert not state.exists()

        trusted = _audit(a, state, "--verifier-key", verifier)
        assert trusted.code == 0, trusted.err
        assert "size 100" in trusted.out
        assert "first checkpoint trusted" in trusted.out
        at_100 = state.read_bytes()

        _append(a, 50, seed=2)
        _append(b, 80, seed=3)  # the same first 100 entries, then another history
        grown = _audit(a, state)
        assert grown.code == 0, grown.err
        assert "size 150" in grown.out
        assert "consistent with the trusted size 100" in grown.out
        at_150 = state.read_bytes()

        fork = _audit(b, state)
        assert fork.code == 1
        assert "audit-failed: fork" in fork.err
        assert state.read_bytes() == at_150  # a refusal leaves the trusted state alone

        rollback = _audit(c, state)
        assert rollback.code == 1
        assert "audit-failed: rollback" in rollback.err
        assert state.read_bytes() == at_150

        # From the common prefix, B is a valid extension: forks are judged from what was trusted.
        state.write_bytes(at_100)
        assert _audit(b, state).code == 0
        behind = _audit(a, state)  # B's 180 is trusted now, and A has only 150
        assert behind.code == 1
        assert "rollback" in behind.err
    finally:
        for server in servers:
            server.stop()
