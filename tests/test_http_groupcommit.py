"""Group commit over HTTP: concurrent single-record POSTs share transactions, and a full
queue answers 429 with Retry-After instead of holding unbounded memory."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from ledger.storage.db import make_engine
from tests.http_server import TENANT, prepared_server
from tests.support import demo_envelopes

CONCURRENT = 16


def _post_all(url: str, key: str, records: list[bytes]) -> list[httpx.Response]:
    def post(raw: bytes) -> httpx.Response:
        return httpx.post(
            f"{url}/v1/records", content=raw, headers={"Authorization": f"Bearer {key}"}
        )

    with ThreadPoolExecutor(len(records)) as pool:
        return list(pool.map(post, records))


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_concurrent_posts_share_commits(db_url: str, tmp_path: Path) -> None:
    # A long wait makes the coalescing certain rather than a matter of timing.
    server = prepared_server(db_url, tmp_path, PROV_COMMIT_MAX_WAIT_MS="300")
    records = demo_envelopes(make_engine(db_url), CONCURRENT, seed=11, tenant=TENANT)
    server.start()
    try:
        answers = _post_all(server.url, server.api_key("ingest"), records)
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    assert [answer.status_code for answer in answers] == [201] * CONCURRENT
    assert sorted(answer.json()["index"] for answer in answers) == list(range(CONCURRENT))
    commits = _metric(metrics, "prov_commit_batch_records_count")
    assert _metric(metrics, "prov_commit_batch_records_sum") == CONCURRENT
    assert commits < CONCURRENT / 2, f"{commits} commits for {CONCURRENT} records"


def test_full_queue_answers_429_with_retry_after(db_url: str, tmp_path: Path) -> None:
    server = prepared_server(
        db_url,
        tmp_path,
        PROV_QUEUE_MAX_RECORDS="2",
        PROV_BATCH_MAX_RECORDS="2",
        PROV_COMMIT_MAX_WAIT_MS="300",
    )
    records = demo_envelopes(make_engine(db_url), CONCURRENT, seed=12, tenant=TENANT)
    server.start()
    try:
        key = server.api_key("ingest")
        answers = _post_all(server.url, key, records)
        refused = [
            raw for raw, answer in zip(records, answers, strict=True) if answer.status_code == 429
        ]
        assert refused, "no request was refused while the queue was full"
        for answer in answers:
            assert answer.status_code in (201, 429), answer.text
            if answer.status_code == 429:
                assert answer.headers["content-type"] == "application/problem+json"
                assert int(answer.headers["retry-after"]) >= 1
                assert answer.json()["type"] == "urn:prov:problem:overloaded"
        stored = sum(answer.status_code == 201 for answer in answers)
        log = httpx.get(f"{server.url}/v1/log", headers=server.auth(key)).json()
        assert log["tree_size"] == stored
        # Retrying what was refused, one at a time, stores it.
        for raw in refused:
            again = httpx.post(f"{server.url}/v1/records", content=raw, headers=server.auth(key))
            assert again.status_code == 201, again.text
    finally:
        server.stop()
