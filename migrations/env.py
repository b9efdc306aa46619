"""Alembic environment: runs on the connection the caller hands over, or on PROV_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from ledger.storage.db import make_engine
from ledger.storage.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = make_engine(os.environ.get("PROV_DATABASE_URL", "prov.db"))
    with engine.connect() as new_connection, new_connection.begin():
        _run_on(new_connection)


def _run_on(connection: Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()


run()
