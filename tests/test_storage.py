"""Storage: one migration history that matches the table definitions on both engines,
SQLite's durability settings, and settings read from the environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text

from ledger.ledger import Ledger
from ledger.storage.db import make_engine, normalize_url
from ledger.storage.migrate import migrate, schema_is_current
from ledger.storage.schema import metadata
from service.settings import Settings
from tests.support import PROV


def test_migrations_produce_exactly_the_declared_schema(engine: Engine) -> None:
    assert not schema_is_current(engine)
    migrate(engine)
    migrate(engine)  # idempotent
    assert schema_is_current(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_readiness_follows_the_schema_revision(engine: Engine) -> None:
    """Older than the code: not ready. Newer (a revision this code does not know, as when a
    newer release migrated first during a rolling upgrade): ready."""
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    assert not schema_is_current(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    assert schema_is_current(engine)


def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    ledger = Ledger.init(make_engine(str(tmp_path / "l.db")), tmp_path / "k")
    with ledger.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    ledger.close()


def test_the_ledger_key_is_private_and_kept_across_inits(ledger: Ledger, key_path: Path) -> None:
    assert key_path.stat().st_mode & 0o777 == 0o600
    before = key_path.read_bytes()
    again = Ledger.init(ledger.engine, key_path)
    assert key_path.read_bytes() == before
    assert again.verifier == ledger.verifier
    assert again.origin == ledger.origin  # fixed at first init, whatever is passed later


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("ledger.db", "sqlite:///ledger.db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {"PROV_DATABASE_URL": "postgresql://h/db", "PROV_MAX_RECORD_BYTES": "2048", "HOME": "/"}
    )
    assert settings.database_url == "postgresql://h/db"
    assert settings.max_record_bytes == 2048
    with pytest.raises(ValueError, match="max_record_bytes"):
        Settings.from_env({"PROV_MAX_RECORD_BYTES": "lots"})


def test_a_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [PROV, "verify"],
        env={**os.environ, "PROV_MAX_RECORD_BYTES": "-5"},
        capture_output=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode().startswith("prov: bad PROV_* setting")
    assert len(done.stderr.splitlines()) == 1
