"""Server memory and connections under hostile load, against a real `prov serve` process
started with default settings (one worker), each load on a fresh server and database:

- blobs: 24 concurrent 30 MiB blob uploads (`PUT /v1/blobs/{digest}`). Uploads the
  worker's budgets (temporary-file space, and memory while SQLite stores one) cannot take
  at once are refused 503 with Retry-After; each is retried after that pause until all 24
  are stored.
- batches: 24 concurrent 16 MiB batch bodies of about 6,000 envelopes each, over the
  default 1,000-record limit: each must be refused 413 (or 503 before it is read).
- commits: 24 concurrent batches of 1,000 valid records (about 6.4 MiB each), all of which
  must commit (after Retry-After where refused): memory while the commit queue is full.
- idle: 1,050 connections opened and left silent, then 100 good appends sent concurrently
  on new connections, each retried after Retry-After if refused; all 100 must get receipts,
  and the idle connections must be closed once the header timeout has passed.

Beside each figure: the server's RSS after start on the same run (the baseline). Peak RSS
is VmHWM of the server's processes from /proc, summed over the process tree. Target: peak
under 400 MB for the blob, batch and commit loads.

    python -m bench.hostile_load [--engine sqlite|postgres ...]
        [--load blobs|batches|commits|idle ...]
        [--set PROV_NAME=VALUE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import resource
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import ENGINES, demo_records
from bench.ingest_http import HOST, Server, process_tree, running_server
from service.settings import Settings

MIB = 1 << 20
TARGET_PEAK_MB = 400.0
LOADS = ("blobs", "batches", "commits", "idle")
RETRY_ROUNDS = 200


def memory_kib(pid: int, field: str) -> int:
    """VmRSS or VmHWM of one process, in KiB (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_mb(pids: list[int], field: str) -> float:
    return sum(memory_kib(pid, field) for pid in pids) / 1024 * 1.048576


@dataclass
class Outcome:
    statuses: dict[int, int]
    retries: int
    seconds: float
    note: str = ""


def count(statuses: list[int]) -> dict[int, int]:
    found: dict[int, int] = {}
    for status in statuses:
        found[status] = found.get(status, 0) + 1
    return dict(sorted(found.items()))


async def send_until_taken(
    send: Callable[[], Awaitable[httpx.Response]], *, retry_on: tuple[int, ...] = (503, 429)
) -> tuple[int, int]:
    """Send, and after a refusal with Retry-After wait that long and send again. Returns the
    final status and the number of retries."""
    retries = 0
    for _ in range(RETRY_ROUNDS):
        try:
            answer = await send()
        except httpx.TransportError:
            retries += 1
            await asyncio.sleep(0.5)
            continue
        if answer.status_code not in retry_on:
            return answer.status_code, retries
        retries += 1
        await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
    return -1, retries


async def blob_load(server: Server) -> Outcome:
    contents = [os.urandom(30 * MIB) for _ in range(24)]
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def upload(content: bytes) -> tuple[int, int]:
            digest = "sha256:" + hashlib.sha256(content).hexdigest()
            return await send_until_taken(
                lambda: client.put(
                    f"{server.url}/v1/blobs/{digest}",
                    content=content,
                    headers=server.auth(server.ingest_key)
                    | {"content-type": "application/octet-stream"},
                )
            )

        started = time.perf_counter()
        results = await asyncio.gather(*(upload(content) for content in contents))
    return Outcome(
        count([status for status, _ in results]),
        sum(retries for _, retries in results),
        time.perf_counter() - started,
    )


def oversized_batch(records: list[bytes], limit: int) -> bytes:
    """A JSON array of envelopes, as many as fit in `limit` bytes."""
    parts: list[bytes] = []
    size = 2
    while True:
        record = records[len(parts) % len(records)]
        if size + len(record) + 1 > limit:
            break
        parts.append(record)
        size += len(record) + 1
    return b"[" + b",".join(parts) + b"]"


async def batch_load(server: Server) -> Outcome:
    body = oversized_batch(demo_records(200), 16 * MIB)
    items = body.count(b'"payloadType"')
    bodies = [bytearray(body) for _ in range(24)]  # 24 separate copies, as 24 clients send
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=64)) as client:

        async def send(content: bytearray) -> int:
            try:
                answer = await client.post(
                    f"{server.url}/v1/records/batch",
                    content=bytes(content),
                    headers=server.auth(server.ingest_key) | {"content-type": "application/json"},
                )
            except httpx.TransportError:
                return -1
            return answer.status_code

        started = time.perf_counter()
        statuses = await asyncio.gather(*(send(content) for content in bodies))
    return Outcome(
        count(list(statuses)),
        0,
        time.perf_counter() - started,
        f"{len(body) / MIB:.1f} MiB, {items:,} envelopes each",
    )


async def post_all(
    client: httpx.AsyncClient, server: Server, path: str, bodies: list[bytes]
) -> list[tuple[int, int]]:
    """POST every body at once as the ingest key, each retried until it is taken."""

    async def send(body: bytes) -> tuple[int, int]:
        return await send_until_taken(
            lambda: client.post(
                f"{server.url}{path}",
                content=body,
                headers=server.auth(server.ingest_key) | {"content-type": "application/json"},
            )
        )

    return list(await asyncio.gather(*(send(body) for body in bodies)))


async def commit_load(server: Server) -> Outcome:
    """24 concurrent batches of 1,000 valid records each: the queue full of real work."""
    records = demo_records(24_000, content="inline", seed=5)
    bodies = [b"[" + b",".join(records[n * 1000 : (n + 1) * 1000]) + b"]" for n in range(24)]
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=64)) as client:
        started = time.perf_counter()
        results = await post_all(client, server, "/v1/records/batch", bodies)
        seconds = time.perf_counter() - started
        log = await client.get(f"{server.url}/v1/log", headers=server.auth(server.admin_key))
    return Outcome(
        count([status for status, _ in results]),
        sum(retries for _, retries in results),
        seconds,
        f"{len(bodies[0]) / MIB:.1f} MiB, 1,000 records each; log size {log.json()['tree_size']:,}",
    )


async def idle_load(server: Server, header_timeout: float) -> Outcome:
    idle: list[socket.socket] = []
    for _ in range(1050):
        connection = socket.socket()
        connection.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            connection.connect((HOST, server.port))
        idle.append(connection)
    await asyncio.sleep(0.5)
    records = demo_records(100, seed=7)
    async with httpx.AsyncClient(
        timeout=120, limits=httpx.Limits(max_connections=200, max_keepalive_connections=0)
    ) as client:
        started = time.perf_counter()
        results = await post_all(client, server, "/v1/records", records)
        seconds = time.perf_counter() - started
    closed_at_once = sum(1 for connection in idle if _closed_by_peer(connection))
    await asyncio.sleep(header_timeout + 2)
    closed_later = sum(1 for connection in idle if _closed_by_peer(connection))
    for connection in idle:
        connection.close()
    return Outcome(
        count([status for status, _ in results]),
        sum(retries for _, retries in results),
        seconds,
        f"idle connections closed by the server: {closed_at_once} of 1,050 at once, "
        f"{closed_later} after {header_timeout + 2:g} s",
    )


def _closed_by_peer(connection: socket.socket) -> bool:
    try:
        return connection.recv(65536, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


RUNS: dict[str, Callable[[Server], Coroutine[Any, Any, Outcome]]] = {
    "blobs": blob_load,
    "batches": batch_load,
    "commits": commit_load,
}
TITLES = {
    "blobs": "24 x 30 MiB blob uploads",
    "batches": "24 x 16 MiB batch bodies",
    "commits": "24 x 1,000-record batches",
    "idle": "1,050 idle connections + 100 appends",
}


def run(engine: str, load: str, settings: dict[str, str], server_nofile: int) -> None:
    # The server inherits this process's soft descriptor limit; `prov serve` raises its own.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(server_nofile, hard), hard))
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running_server(engine, 1, settings))
        # The idle load holds over a thousand sockets on this side too.
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
        pids = process_tree(server.process.pid)
        baseline = tree_mb(pids, "VmRSS")
        if load == "idle":
            timeout = Settings.from_env(settings).header_timeout_seconds
            outcome = asyncio.run(idle_load(server, timeout))
        else:
            outcome = asyncio.run(RUNS[load](server))
        peak = tree_mb(process_tree(server.process.pid), "VmHWM")
        after = tree_mb(process_tree(server.process.pid), "VmRSS")
    verdict = ""
    if load != "idle":
        verdict = "met" if peak < TARGET_PEAK_MB else "MISSED"
        verdict = f"  target < {TARGET_PEAK_MB:.0f} MB: {verdict}"
    print(
        f"{engine:<8} {TITLES[load]:<38} baseline {baseline:7.1f} MB  peak {peak:7.1f} MB"
        f"  after {after:7.1f} MB{verdict}"
    )
    print(
        f"{'':<8} answers {outcome.statuses}  retries {outcome.retries}"
        f"  {outcome.seconds:.1f} s  {outcome.note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=ENGINES, action="append", help="default: sqlite")
    parser.add_argument("--load", choices=LOADS, action="append", help="default: all three")
    parser.add_argument("--set", action="append", default=[], help="PROV_NAME=VALUE")
    parser.add_argument(
        "--server-nofile",
        type=int,
        default=1024,
        help="the soft descriptor limit the server starts with (default: 1024, the usual)",
    )
    arguments = parser.parse_args()
    settings = dict(item.split("=", 1) for item in arguments.set)
    for engine in arguments.engine or ["sqlite"]:
        for load in arguments.load or LOADS:
            run(engine, load, settings, arguments.server_nofile)


if __name__ == "__main__":
    main()
