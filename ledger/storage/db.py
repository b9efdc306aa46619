"""Engines and the log's write transaction, for the two supported databases.

SQLite (the embedded default) runs in WAL mode with full fsync, so a committed append
survives a crash; write transactions start with `BEGIN IMMEDIATE` so that two processes
never both read the log head before one of them writes. PostgreSQL goes through psycopg 3,
and appends take a transaction-scoped advisory lock per log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

_WRITE = "prov_write"
# One log per database for now; the advisory lock key is fixed ("prov" in ASCII).
LOG_LOCK_KEY = 0x70726F76
SQLITE_BUSY_TIMEOUT_MS = 60_000


def normalize_url(url: str) -> str:
    """Accept `postgresql://`, `sqlite:///…` or a bare file path; pick the psycopg 3 driver."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser()}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def conflict_insert(connection: Connection, table: Table) -> Any:
    """`table`'s INSERT in the connection's own dialect, which has ON CONFLICT (the generic
    INSERT has none): `.on_conflict_do_nothing()` or `.on_conflict_do_update(...)`."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        # Pooled: closing the last connection to a WAL database checkpoints and truncates
        # the WAL, which costs a commit's worth of fsyncs; a pool keeps one open. The pool
        # hands a connection to one thread at a time, so the driver's thread check is off.
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, pool_size=4, **kwargs
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver so that SQLAlchemy's begin event decides how to BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the log's write lock from its first statement to its end."""
    with engine.connect() as plain:
        connection = plain.execution_options(**{_WRITE: True})
        with connection.begin():
            if not is_sqlite(engine):
                # Held until commit or rollback, so appends from any process serialize here.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOG_LOCK_KEY})")
            yield connection


@contextlib.contextmanager
def side_write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes rows beside the log (blobs, the outbox). On SQLite it
    takes the single writer's lock from its first statement, as the log's does (a read that
    turned into a write could otherwise fail at once, busy); on PostgreSQL it is a plain
    transaction, so that it never holds the log's lock that appends wait on."""
    if is_sqlite(engine):
        with write_transaction(engine) as connection:
            yield connection
    else:
        with engine.begin() as connection:
            yield connection
