"""Blobs over HTTP with their bytes on real S3 (SeaweedFS on loopback, started by the test
fixture): an upload lands sealed in the bucket and reads back whole; while the object
store is down, uploads and reads answer 503 with Retry-After as problem+json and records
still go in; once it is back, every blob acknowledged before the outage reads back."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.fs as pafs  # type: ignore[import-untyped]
import pytest

from ledger.blobs.salted import content_of, salted
from tests.http_server import Server, prepared_server
from tests.s3_server import SeaweedFS

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_server(db_url: str, tmp_path: Path, seaweedfs: SeaweedFS) -> Iterator[tuple[Server, str]]:
    url = seaweedfs.fresh_url("http")
    running = prepared_server(db_url, tmp_path, PROV_BLOB_STORE=url, **seaweedfs.env())
    running.start()
    yield running, url
    running.stop()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _objects(seaweedfs: SeaweedFS, url: str) -> dict[str, bytes]:
    base = url.removeprefix("s3://")
    s3 = seaweedfs.filesystem()
    found = s3.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    files = [info.path for info in found if info.type == pafs.FileType.File]
    out = {}
    for path in files:
        with s3.open_input_stream(path) as stream:
            out[path] = stream.read()
    return out


def test_blobs_live_sealed_in_s3_and_an_outage_is_a_503_that_loses_nothing(
    s3_server: tuple[Server, str], seaweedfs: SeaweedFS
) -> None:
    server, url = s3_server
    writer = server.auth(server.api_key("ingest"))
    reader = server.auth(server.api_key("audit"))
    personal = salted(b'{"name": "Ada Example"}')
    big = salted(bytes(range(256)) * 4096)  # 1 MiB and a salt
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for blob, subject in ((personal, "cust-1"), (big, "cust-2")):
            stored = http.put(
                f"/v1/blobs/{_digest(blob)}",
                content=blob,
                headers={**writer, "Prov-Subject": subject},
            )
            assert stored.status_code == 201, stored.text
        objects = _objects(seaweedfs, url)
        assert len(objects) == 2
        # In the bucket: ciphertext only, never the content or its salt.
        assert all(b"Ada Example" not in sealed for sealed in objects.values())
        assert all(personal[20:52] not in sealed for sealed in objects.values())
        assert http.get(f"/v1/blobs/{_digest(big)}", headers=reader).content == big

        later = salted(b"uploaded during the outage")
        with seaweedfs.paused():
            started = time.monotonic()
            refused = http.put(f"/v1/blobs/{_digest(later)}", content=later, headers=writer)
            unread = http.get(f"/v1/blobs/{_digest(personal)}", headers=reader)
            took = time.monotonic() - started
        for answer in (refused, unread):
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["type"].endswith(":blob-store-unavailable")
            assert int(answer.headers["retry-after"]) >= 1
            assert "127.0.0.1" not in answer.json()["detail"]  # no endpoint leaks out
        assert took < 30  # bounded time limits, not a client's default minutes
        # Nothing acknowledged was lost, and the refused upload was not half-stored.
        for blob in (personal, big):
            assert content_of(http.get(f"/v1/blobs/{_digest(blob)}", headers=reader).content) == (
                content_of(blob)
            )
        assert http.get(f"/v1/blobs/{_digest(later)}", headers=reader).status_code == 404
        again = http.put(f"/v1/blobs/{_digest(later)}", content=later, headers=writer)
        assert again.status_code == 201, again.text
