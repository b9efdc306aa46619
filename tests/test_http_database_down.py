"""When PostgreSQL goes away under a running server, appends answer 503 problem+json with
Retry-After (nothing was acknowledged), and readiness says so; the process stays up."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest

from ledger.storage.db import make_engine
from tests.conftest import POSTGRES_ADMIN_URL
from tests.http_server import TENANT, prepared_server
from tests.support import demo_envelopes


@pytest.mark.postgres
def test_appends_answer_503_while_the_database_is_gone(postgres_url: str, tmp_path: Path) -> None:
    server = prepared_server(postgres_url, tmp_path)
    engine = make_engine(postgres_url)
    records = demo_envelopes(engine, 2, seed=31, tenant=TENANT)
    engine.dispose()
    server.start()
    try:
        key = server.api_key("ingest")
        first = httpx.post(f"{server.url}/v1/records", content=records[0], headers=server.auth(key))
        assert first.status_code == 201, first.text
        name = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        answer = httpx.post(
            f"{server.url}/v1/records", content=records[1], headers=server.auth(key)
        )
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["type"] == "urn:prov:problem:database-unavailable"
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["type"] == "urn:prov:problem:not-ready"
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
