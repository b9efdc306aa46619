"""Connections and memory under hostile clients, against a real `prov serve` on loopback.

Idle, header-trickling and body-trickling connections are cut off after their timeouts;
connections over the per-worker cap are refused 503 with Retry-After and good appends go
through once the idle ones are cut; oversized bodies and headers are refused before they
are read whole; large bodies wait for the worker's memory budget or are refused 503; blobs
are streamed to the database. Timeouts are set short in each server's environment.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from httpapi.errors import BatchTooLarge, BodyMemoryBusy
from ingest.routes.bodies import BodyBudget
from ingest.routes.records import split_batch
from ledger.storage.db import make_engine
from service.settings import Settings
from service.web.http_limits import limits_for
from tests.http_helpers import SQLITE_ONLY, array, assert_problem, metric
from tests.http_server import TENANT, Server, prepared_server
from tests.support import demo_envelopes

# Long enough for any answer on a loaded machine; a test waits this long only on failure.
PATIENCE = 60.0
MIB = 1 << 20


@pytest.fixture
def short_timeouts(db_url: str, tmp_path: Path) -> Iterator[Server]:
    server = prepared_server(
        db_url,
        tmp_path,
        PROV_HEADER_TIMEOUT_SECONDS="1",
        PROV_BODY_TIMEOUT_SECONDS="1.5",
        PROV_KEEP_ALIVE_SECONDS="1",
        PROV_MAX_HEADER_BYTES="4096",
    )
    server.start()
    yield server
    server.stop()


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def read_answer(connection: socket.socket) -> bytes:
    """One whole answer (headers and a Content-Length body), leaving the connection open."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, f"closed before an answer: {received!r}"
        received += chunk
    _, headers, body = parse_answer(received)
    while len(body) < int(headers["content-length"]):
        chunk = connection.recv(65536)
        assert chunk, f"closed inside an answer: {received!r}"
        body += chunk
    return received.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" + body


def trickle_until_answered(connection: socket.socket, piece: bytes) -> bytes:
    """Send `piece` every 0.1 s until the server answers or closes; what it sent."""
    connection.settimeout(0.1)
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            connection.sendall(piece)
        except OSError:  # closed under us: read what was answered
            break
        try:
            if first := connection.recv(65536):
                connection.settimeout(PATIENCE)
                return first + read_until_closed(connection)
            return b""
        except TimeoutError:
            continue
    connection.settimeout(PATIENCE)
    try:
        return read_until_closed(connection)
    except OSError:
        return b""


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def problem_kind(raw: bytes, status: int) -> str:
    got, headers, body = parse_answer(raw)
    assert got == status, raw[:500]
    assert headers["content-type"].startswith("application/problem+json"), headers
    document = json.loads(body)
    assert document["status"] == status, document
    kind: str = document["type"].rsplit(":", 1)[1]
    return kind


def request_head(method: str, path: str, key: str, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {key}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_idle_and_trickling_connections_are_cut_off(short_timeouts: Server) -> None:
    server = short_timeouts
    key = server.api_key("ingest")

    # A connection that never sends a byte is closed after the header timeout.
    idle = connect(server)
    started = time.monotonic()
    assert read_until_closed(idle) == b""
    assert time.monotonic() - started >= 0.9
    idle.close()

    # Headers trickled a byte at a time: 408 once the header timeout passes, then closed.
    headers = connect(server)
    headers.sendall(b"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    answer = trickle_until_answered(headers, b"X")
    assert problem_kind(answer, 408) == "request-timeout"
    headers.close()

    # A body trickled after complete headers: 408 after the body timeout, then closed.
    body = connect(server)
    body.sendall(request_head("POST", "/v1/records", key, content_length="100000"))
    body.sendall(b"{")
    answer = trickle_until_answered(body, b" ")
    assert problem_kind(answer, 408) == "request-timeout"
    assert parse_answer(answer)[1].get("connection") == "close"
    body.close()

    # A kept-alive connection left idle after an answer is closed after the keep-alive time.
    kept = connect(server)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert read_until_closed(kept).startswith(b"HTTP/1.1 200")
    kept.close()

    # None of it hurt anyone else, and operators can see it happen.
    [record] = demo_envelopes(make_engine(server.db_url), 1, seed=31, tenant=TENANT)
    good = httpx.post(f"{server.url}/v1/records", content=record, headers=server.auth(key))
    assert good.status_code == 201, good.text
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "prov_http_connections_cut_total", reason="header-timeout") >= 2
    assert metric(text, "prov_http_connections_cut_total", reason="body-timeout") == 1


def test_oversized_headers_are_refused_431(short_timeouts: Server) -> None:
    connection = connect(short_timeouts)
    connection.sendall(request_head("GET", "/v1/log", "k", x_filler="a" * 8192))
    assert problem_kind(read_until_closed(connection), 431) == "headers-too-large"
    connection.close()


@pytest.mark.slow
def test_connections_over_the_cap_are_refused_then_good_appends_commit(
    db_url: str, tmp_path: Path
) -> None:
    server = prepared_server(
        db_url, tmp_path, PROV_MAX_CONNECTIONS="20", PROV_HEADER_TIMEOUT_SECONDS="2"
    )
    records = demo_envelopes(make_engine(db_url), 10, seed=32, tenant=TENANT)
    server.start()
    try:
        key = server.api_key("ingest")
        idle = [connect(server) for _ in range(20)]
        time.sleep(0.3)  # accepted by the server before the next one arrives

        # Over the cap: a clear refusal, and the connection is closed.
        refused = connect(server)
        refused.sendall(
            request_head("POST", "/v1/records", key, content_length=str(len(records[0])))
            + records[0]
        )
        answer = read_until_closed(refused)
        assert problem_kind(answer, 503) == "too-many-connections"
        assert parse_answer(answer)[1]["retry-after"] == "1"
        refused.close()

        # Good appends, retried after Retry-After, all commit once the idle ones are cut.
        def append(record: bytes) -> tuple[int, int]:
            refusals = 0
            while True:
                try:
                    answer = httpx.post(
                        f"{server.url}/v1/records",
                        content=record,
                        headers=server.auth(key),
                        timeout=PATIENCE,
                    )
                except httpx.TransportError:
                    refusals += 1
                    time.sleep(0.2)
                    continue
                if answer.status_code != 503:
                    return answer.status_code, refusals
                assert_problem(answer, 503, "too-many-connections")
                refusals += 1
                time.sleep(float(answer.headers["retry-after"]))

        with ThreadPoolExecutor(len(records)) as pool:
            results = list(pool.map(append, records))
        assert [status for status, _ in results] == [201] * len(records)
        text = httpx.get(f"{server.url}/metrics").text
        assert metric(text, "prov_http_connections_cut_total", reason="over-cap") >= 1
        for connection in idle:
            assert read_until_closed(connection) == b""  # cut by the header timeout
            connection.close()
    finally:
        server.stop()


@SQLITE_ONLY
def test_oversized_bodies_are_refused_before_they_are_read(db_url: str, tmp_path: Path) -> None:
    server = prepared_server(db_url, tmp_path, PROV_MAX_BLOB_BYTES=str(MIB))
    server.start()
    try:
        key = server.api_key("ingest")
        digest = "sha256:" + "0" * 64
        # A Content-Length over the limit: 413 after 64 KiB of 100 MiB were sent.
        announced = connect(server)
        announced.sendall(
            request_head("PUT", f"/v1/blobs/{digest}", key, content_length=str(100 * MIB))
        )
        announced.sendall(b"x" * 65536)
        assert problem_kind(read_answer(announced), 413) == "body-too-large"
        announced.close()
        record = connect(server)
        record.sendall(request_head("POST", "/v1/records", key, content_length=str(100 * MIB)))
        assert problem_kind(read_answer(record), 413) == "record-too-large"
        record.close()

        # Routes that take small bodies, one of them open without a key, take at most 64 KiB.
        filler = "x" * (100 << 10)
        form = httpx.post(f"{server.url}/ui/login", data={"key": filler})
        assert form.status_code == 413, form.text[:300]
        api_key = httpx.post(
            f"{server.url}/v1/api-keys",
            json={"role": "audit", "name": filler},
            headers=server.auth(server.admin_key),
        )
        assert_problem(api_key, 413, "body-too-large")

        # No Content-Length: refused as soon as the chunks pass the limit, before the end.
        chunked = connect(server)
        chunked.sendall(
            request_head("PUT", f"/v1/blobs/{digest}", key, transfer_encoding="chunked")
        )
        chunk = b"%x\r\n" % 65536 + b"y" * 65536 + b"\r\n"
        for _ in range(2 * MIB // 65536):
            chunked.sendall(chunk)  # the final zero-length chunk is never sent
        assert problem_kind(read_answer(chunked), 413) == "body-too-large"
        chunked.close()
    finally:
        server.stop()


@pytest.mark.slow
def test_large_bodies_wait_for_the_memory_budget(db_url: str, tmp_path: Path) -> None:
    server = prepared_server(
        db_url,
        tmp_path,
        PROV_MAX_BODY_BYTES=str(MIB),
        PROV_MAX_BLOB_BYTES=str(MIB),
        PROV_BODY_MEMORY_BYTES=str(3 * MIB // 2),
        PROV_BLOB_SPOOL_BYTES=str(MIB),
        PROV_BODY_MEMORY_WAIT_SECONDS="0.5",
    )
    records = demo_envelopes(make_engine(db_url), 3, seed=33, tenant=TENANT)
    server.start()
    try:
        key = server.api_key("ingest")
        # A batch announced at 1 MiB and sent slowly holds 1 MiB of the 1.5 MiB budget.
        holder = connect(server)
        holder.sendall(request_head("POST", "/v1/records/batch", key, content_length=str(MIB)))
        holder.sendall(b"[")
        time.sleep(0.3)

        # Another 1 MiB body cannot get its share in time: 503, Retry-After, nothing stored.
        padded = array(*records).ljust(MIB - 1024, b" ")
        busy = httpx.post(
            f"{server.url}/v1/records/batch",
            content=padded,
            headers=server.auth(key) | {"content-type": "application/json"},
            timeout=PATIENCE,
        )
        assert_problem(busy, 503, "body-memory-busy")
        assert busy.headers["retry-after"] == "1"
        # A small record takes no budget and is not held up.
        small = httpx.post(f"{server.url}/v1/records", content=records[2], headers=server.auth(key))
        assert small.status_code == 201, small.text

        holder.close()  # the held share comes back once that request is gone
        deadline = time.monotonic() + PATIENCE
        while True:
            retried = httpx.post(
                f"{server.url}/v1/records/batch",
                content=padded,
                headers=server.auth(key) | {"content-type": "application/json"},
                timeout=PATIENCE,
            )
            if retried.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(float(retried.headers["retry-after"]))
        assert retried.status_code == 200, retried.text
        assert [item["status"] for item in retried.json()["results"]] == [201, 201, 200]

        # Blob uploads share the temporary-file space the same way.
        spooling = connect(server)
        digest = "sha256:" + "1" * 64
        spooling.sendall(request_head("PUT", f"/v1/blobs/{digest}", key, content_length=str(MIB)))
        spooling.sendall(b"z")
        time.sleep(0.3)
        blob = os.urandom(MIB // 2)
        blob_url = f"{server.url}/v1/blobs/sha256:{hashlib.sha256(blob).hexdigest()}"
        refused = httpx.put(blob_url, content=blob, headers=server.auth(key), timeout=PATIENCE)
        assert_problem(refused, 503, "body-memory-busy")
        spooling.close()
        deadline = time.monotonic() + PATIENCE
        while True:
            stored = httpx.put(blob_url, content=blob, headers=server.auth(key), timeout=PATIENCE)
            if stored.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(float(stored.headers["retry-after"]))
        assert stored.status_code == 201, stored.text
    finally:
        server.stop()


def test_blobs_stream_to_the_database(db_url: str, tmp_path: Path) -> None:
    server = prepared_server(db_url, tmp_path)
    server.start()
    try:
        key = server.api_key("ingest")
        content = os.urandom(3 * MIB + 17)
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        url = f"{server.url}/v1/blobs/{digest}"

        def upload() -> httpx.Response:
            return httpx.put(url, content=content, headers=server.auth(key), timeout=PATIENCE)

        with ThreadPoolExecutor(4) as pool:  # the same blob, concurrently: no 500
            statuses = sorted(
                answer.status_code for answer in pool.map(lambda _: upload(), range(4))
            )
        assert statuses == [200, 200, 200, 201], statuses
        assert upload().json() == {"digest": digest, "size": len(content)}
        stored = httpx.get(url, headers=server.auth(server.admin_key), timeout=PATIENCE)
        assert stored.status_code == 200
        assert stored.content == content

        # Bytes that do not hash to the digest never reach the database.
        other = "sha256:" + hashlib.sha256(b"other").hexdigest()
        wrong = httpx.put(
            f"{server.url}/v1/blobs/{other}", content=content, headers=server.auth(key)
        )
        assert_problem(wrong, 422, "digest-mismatch")
        missing = httpx.get(f"{server.url}/v1/blobs/{other}", headers=server.auth(server.admin_key))
        assert_problem(missing, 404, "not-found")
    finally:
        server.stop()


@SQLITE_ONLY  # the process's limits, whatever its database
def test_serve_raises_its_descriptor_limit(db_url: str, tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard descriptor limit is {hard}: nothing to raise")
    server = prepared_server(db_url, tmp_path)
    # The server inherits a low soft limit from this process, as from a default shell.
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        server.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert server.process is not None
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
        [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
        assert int(line.split()[3]) > 256, line
    finally:
        server.stop()


# --- units --------------------------------------------------------------------------------


def test_connection_cap_stays_below_the_descriptor_limit() -> None:
    settings = Settings(max_connections=5000)
    low = limits_for(settings, 1024)
    assert low.max_connections < low.drop_above <= 1024 - 128
    high = limits_for(settings, 1 << 20)
    assert high.max_connections == 5000
    assert high.drop_above > 5000
    with pytest.raises(ValueError, match="PROV_BODY_MEMORY_BYTES"):
        Settings.from_env({"PROV_BODY_MEMORY_BYTES": str(MIB)})
    assert Settings.from_env(Settings(max_connections=7).to_env()).max_connections == 7


def test_budget_serves_waiters_in_order_and_refuses_after_the_wait() -> None:
    async def scenario() -> list[str]:
        budget = BodyBudget(100, wait_s=0.5)
        events: list[str] = []
        await budget.acquire(80)

        async def waiter(name: str, size: int) -> None:
            try:
                await budget.acquire(size)
            except BodyMemoryBusy as error:
                events.append(f"{name} busy {error.retry_after}")
                return
            events.append(f"{name} got")

        first = asyncio.create_task(waiter("a", 50))
        await asyncio.sleep(0)
        second = asyncio.create_task(waiter("b", 10))  # fits, but waits behind "a"
        await asyncio.sleep(0.05)
        assert events == []
        budget.release(80)
        await asyncio.gather(first, second)
        assert budget.used == 60
        late = asyncio.create_task(waiter("c", 60))
        await late
        assert budget.used == 60  # a refused waiter holds nothing
        cancelled = asyncio.create_task(budget.acquire(90))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        budget.release(60)
        assert budget.used == 0
        return events

    assert asyncio.run(scenario()) == ["a got", "b got", "c busy 1"]


def test_batches_are_counted_before_they_are_copied() -> None:
    lines = b"\n".join(b'{"n": %d}' % n for n in range(5)) + b"\n"
    assert split_batch(lines, "application/x-ndjson", 5)[4] == b'{"n": 4}'
    with pytest.raises(BatchTooLarge, match="3 or more"):
        split_batch(bytearray(lines), "application/x-ndjson", 2)
    with pytest.raises(BatchTooLarge, match="5 or more"):
        split_batch(bytearray(b"[1,2,3,4,5]"), "application/json", 4)
    assert split_batch(bytearray(b"[1, {}]"), "", 4) == [b"1", b"{}"]


def test_trickle_helper_sees_a_closed_connection() -> None:
    # The helper the tests above lean on: a peer that closes yields what it sent.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_once() -> None:
        peer, _ = listener.accept()
        peer.recv(10)
        peer.sendall(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        peer.close()

    thread = threading.Thread(target=answer_once)
    thread.start()
    client = socket.create_connection(("127.0.0.1", port))
    assert trickle_until_answered(client, b"x").startswith(b"HTTP/1.1 408")
    thread.join()
    client.close()
    listener.close()
