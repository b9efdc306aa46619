"""Schema migrations: one Alembic history (the top-level `migrations` package) for both
engines. Kept apart from `ledger.storage.db` so that code which only reads the log never pays for
importing Alembic."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from ledger.errors import LedgerNotInitialized
from ledger.storage.db import write_transaction


def _scripts() -> Path:
    """The Alembic history's folder. Found, not imported: the migrations import nothing of
    the ledger they migrate, and the ledger runs them as Alembic's scripts."""
    spec = importlib.util.find_spec("migrations")
    if spec is None or spec.origin is None:
        raise LedgerNotInitialized("the `migrations` package is not installed beside the ledger")
    return Path(spec.origin).parent


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_scripts()))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    with write_transaction(engine) as connection:
        command.upgrade(_alembic_config(connection), "head")


def schema_is_current(engine: Engine) -> bool:
    """True when the schema is at this code's newest migration, or at one this code does not
    know: a newer release has migrated it. Migrations only add, so older code keeps working
    while a rolling upgrade replaces it."""
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
        scripts = ScriptDirectory.from_config(_alembic_config(connection))
    if current == set(scripts.get_heads()):
        return True
    known = {script.revision for script in scripts.walk_revisions()}
    return bool(current) and not current & known
