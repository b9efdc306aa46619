"""Objects in the ledger's own database (the embedded default): the `blob_objects` table.

Each put is its own short transaction beside the log (never the log's lock), streamed in
chunks: SQLite writes into a zero-filled value in place, PostgreSQL takes the row through
COPY, so that a large blob is never whole in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import sqlalchemy.exc
from sqlalchemy import Engine, delete, func, insert, select, text

from ledger.storage.db import conflict_insert, is_sqlite, side_write_transaction
from ledger.storage.schema import blob_objects

_LOCK_SPACE = 0x626C6F62  # "blob"
# COPY's text format: these characters are escaped in a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class DatabaseStore:
    location = "database"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, name: str, chunks: Iterable[bytes], size: int) -> None:
        # Stored concurrently under the same name: content addressing, the same object.
        with contextlib.suppress(sqlalchemy.exc.IntegrityError):
            self._put(name, chunks, size)

    def _put(self, name: str, chunks: Iterable[bytes], size: int) -> None:
        with side_write_transaction(self.engine) as connection:
            if not is_sqlite(self.engine):
                # Concurrent puts of one name take turns, so the later ones find it stored.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
                    {"space": _LOCK_SPACE, "key": name},
                )
            found = connection.execute(
                select(blob_objects.c.name).where(blob_objects.c.name == name)
            ).first()
            if found is not None:
                return
            driver = connection.connection.driver_connection
            assert driver is not None, "a connection in a transaction has its driver connection"
            if is_sqlite(self.engine):
                inserted = connection.execute(
                    insert(blob_objects).values(name=name, content=func.zeroblob(size))
                )
                with driver.blobopen("blob_objects", "content", inserted.lastrowid) as blob:
                    for chunk in chunks:
                        blob.write(chunk)
                return
            with (
                driver.cursor() as cursor,
                cursor.copy("COPY blob_objects (name, content) FROM STDIN") as copy,
            ):
                copy.write(f"{name.translate(_COPY_ESCAPES)}\t\\\\x")
                for chunk in chunks:
                    copy.write(chunk.hex())
                copy.write("\n")

    def put_many(self, objects: Sequence[tuple[str, bytes]]) -> None:
        if not objects:
            return
        with side_write_transaction(self.engine) as connection:
            connection.execute(
                conflict_insert(connection, blob_objects).on_conflict_do_nothing(),
                [{"name": name, "content": content} for name, content in objects],
            )

    def get(self, name: str) -> bytes | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(blob_objects.c.content).where(blob_objects.c.name == name)
            ).first()
        return None if row is None else bytes(row.content)

    def delete(self, name: str) -> None:
        with side_write_transaction(self.engine) as connection:
            connection.execute(delete(blob_objects).where(blob_objects.c.name == name))
