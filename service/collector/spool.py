"""The collector's data directory: its span store, a SQLite file holding only the two span
tables (`ingest.otlp.store`), and the lock that makes the directory one collector's.

SQLite runs in WAL mode with full fsync (`ledger.storage.db`), so a span is on disk before
the collector answers its export. Because no other process may use the directory, a trace
still claimed when the collector starts was claimed by a collector that died mid-assembly:
it is handed back at once rather than after its claim would have lapsed.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import Engine, update

from ingest.otlp.store import BUSY, OPEN
from ledger.errors import ProvError
from ledger.storage.db import make_engine, side_write_transaction
from ledger.storage.schema import metadata, otlp_items, otlp_traces

LOCK_FILE = "collector.lock"
STORE_FILE = "spans.db"


class SpoolError(ProvError):
    """The data directory cannot be used: not writable, or another collector holds it."""

    kind = "spool-unavailable"
    title = "Collector data directory unavailable"


@dataclass(slots=True)
class Spool:
    engine: Engine
    released: int  # traces a previous collector had claimed when it stopped
    _lock: IO[bytes]

    def close(self) -> None:
        self.engine.dispose()
        self._lock.close()  # closing the file drops the lock


def open_spool(data: Path) -> Spool:
    """Lock `data` (created if missing), create the span tables, hand back stale claims."""
    try:
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = (data / LOCK_FILE).open("ab")
    except OSError as error:
        raise SpoolError(f"cannot use {data} as the data directory: {error.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise SpoolError(
            f"{data} is in use by another prov collector; give each its own --data"
        ) from None
    try:
        engine = make_engine(str(data / STORE_FILE))
        metadata.create_all(engine, tables=[otlp_items, otlp_traces])
        released = release_claims(engine)
    except Exception:
        lock.close()
        raise
    return Spool(engine, released, lock)


def release_claims(engine: Engine) -> int:
    """Reopen every claimed trace; only safe while no assembler runs on `engine`."""
    with side_write_transaction(engine) as connection:
        result = connection.execute(
            update(otlp_traces)
            .where(otlp_traces.c.state == BUSY)
            .values(state=OPEN, claimed_us=None)
        )
    return result.rowcount or 0
