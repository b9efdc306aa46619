"""Batch replay: the engine's own CPU per replay, and a shadow batch end to end, each beside
a baseline from the same run.

1. Engine CPU: deterministic replays of in-memory demo records (no provider, no ledger),
   process CPU time per replay. Target: at most 2 ms.
2. A pinned batch over demo decisions in a fresh SQLite ledger, against the demo models
   (`service.demo.models` behind the product wire server, `service.demo.model_server`) in a
   process of their own, answering every call after `--latency-ms`:
   - end to end: decisions read from the ledger, replayed `--concurrency` at a time, every
     replay signed and appended as it completes;
   - engine only: the same decisions, already in memory, replayed at the same concurrency
     with nothing appended;
   - baseline: as many bare provider calls as the batch made, through the same provider
     pool at the same concurrency. The floor is calls x latency / concurrency.
   Target, for 10,000 one-call replays (``--decision-type loan.approve``) at 50 ms and 32
   in flight: at most 25 s (floor 15.6 s).

    python -m bench.replay [--records 10000] [--decision-type loan.approve]
        [--concurrency 32] [--latency-ms 50] [--cpu-records 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from ledger.ledger import Ledger
from ledger.log.store import read_entries
from ledger.records import dsse
from ledger.records.replay import ReplayedLlmCall, ReplayRecord, decode_replay
from ledger.storage.db import make_engine
from query.audit.search import DecisionFilter
from replay.batch.batch import Recorded, ledger_blobs, load_recorded, replay_one, run_batch
from replay.engine.engine import ReplayPlan, replay_decision
from replay.providers import ChatMessage, ChatRequest, ProviderPool, Registry, load_registry
from service.cli.replay_inputs import select_decisions
from service.demo.model_server import AsgiApp, Receive, Scope, Send, model_app
from service.demo.models import demo_model
from service.demo.scenarios import demo_records

PROV = str(Path(sys.executable).with_name("prov"))
EXAMPLE_REGISTRY = Path(__file__).resolve().parents[1] / "examples" / "replay-registry.toml"
TENANT = "acme"
PINNED = ReplayPlan(mode="pinned")
CPU_TARGET_MS = 2.0
BATCH_TARGET_S = 25.0


def slow(app: AsgiApp, latency_s: float) -> AsgiApp:
    """`app`, answering each request after `latency_s`, as a hosted model would."""

    async def delayed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(latency_s)
        await app(scope, receive, send)

    return delayed


def serve_models(port: int, latency_s: float) -> None:
    """The model server process: the demo models, every answer after `latency_s`."""
    uvicorn.run(
        slow(model_app(demo_model), latency_s),
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_model_server(latency_s: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.replay",
            "--serve-models",
            str(port),
            "--latency-ms",
            str(latency_s * 1000),
        ]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process, port
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the model server did not start")


def registry_for(port: int, concurrency: int) -> Registry:
    """The example registry's routes, pointed at `port`, each provider allowed
    `concurrency` calls in flight (the example allows a laptop's few)."""
    example = load_registry(EXAMPLE_REGISTRY)
    providers = {
        name: dataclasses.replace(
            config,
            base_url=(config.base_url or "").replace("127.0.0.1:8090", f"127.0.0.1:{port}"),
            max_concurrency=concurrency,
        )
        for name, config in example.providers.items()
    }
    routes = [
        dataclasses.replace(route, provider=providers[route.provider.name])
        for route in example.routes.values()
    ]
    return Registry(providers, routes, source=f"{EXAMPLE_REGISTRY} on port {port}")


def engine_cpu(count: int) -> tuple[float, float]:
    """Deterministic replays of `count` demo records: CPU ms and wall ms per replay."""
    decisions = [record.decision for record in demo_records(count, seed=11, tenant=TENANT)]
    plan = ReplayPlan(mode="deterministic")

    async def replay_all() -> None:
        for number, decision in enumerate(decisions):
            record = await replay_decision(
                decision,
                leaf_hash=bytes(32),
                plan=plan,
                pool=None,
                blobs=lambda digest: None,
                record_id=f"cpu-{number}",
            )
            assert record.verdict == "identical", (decision.id, record.verdict, record.error)

    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(replay_all())
    return (
        (time.process_time() - cpu) * 1000 / count,
        (time.perf_counter() - wall) * 1000 / count,
    )


def fill(db_url: str, key: Path, count: int) -> None:
    done = subprocess.run(
        [
            PROV,
            "demo",
            "--records",
            str(count),
            "--seed",
            "5",
            "--db",
            db_url,
            "--key-file",
            str(key),
        ],
        capture_output=True,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("PROV_")},
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode())


async def with_pool(
    registry: Registry, work: Callable[[ProviderPool], Awaitable[Any]]
) -> tuple[Any, float]:
    """`work` with a fresh pool; its result and its wall time in seconds."""
    async with ProviderPool(registry) as pool:
        started = time.perf_counter()
        result = await work(pool)
        return result, time.perf_counter() - started


async def engine_only(pool: ProviderPool, recorded: Sequence[Recorded], concurrency: int) -> None:
    """The replays alone: decisions and their blobs in memory, nothing appended."""
    slots = asyncio.Semaphore(concurrency)

    async def one(number: int, item: Recorded) -> ReplayRecord:
        async with slots:
            return await replay_one(
                item,
                plan=PINNED,
                pool=pool,
                blobs=lambda digest: None,
                tools=None,
                record_id=f"engine-{number}",
                batch=None,
            )

    records = await asyncio.gather(*(one(n, item) for n, item in enumerate(recorded)))
    assert all(record.verdict != "failed" for record in records)


async def bare_calls(pool: ProviderPool, calls: int, concurrency: int) -> None:
    """`calls` bare requests through the pool, `concurrency` at a time."""
    request = ChatRequest(
        model="claude-sonnet-4",
        version="claude-sonnet-4-20250514",
        messages=[ChatMessage(role="user", content="Assess: {}")],
        max_tokens=200,
    )
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            await pool.complete(request)

    await asyncio.gather(*(one() for _ in range(calls)))


def model_calls(ledger: Ledger, indexes: Sequence[int]) -> int:
    """The model calls the replays at `indexes` made, read back from their records."""
    calls = 0
    with ledger.engine.connect() as connection:
        for entry in read_entries(connection, min(indexes), max(indexes) + 1):
            record = decode_replay(dsse.payload_bytes(dsse.decode_envelope(entry.envelope)))
            calls += sum(isinstance(step, ReplayedLlmCall) for step in record.steps)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000, help="decisions to replay")
    parser.add_argument("--decision-type", help="replay only these (loan.approve: one call)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--cpu-records", type=int, default=3_000)
    parser.add_argument("--serve-models", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    latency_s = args.latency_ms / 1000
    if args.serve_models is not None:
        serve_models(args.serve_models, latency_s)
        return

    cpu_ms, wall_ms = engine_cpu(args.cpu_records)
    print(f"{os.cpu_count()} cores")
    print(
        f"engine CPU, deterministic, no provider: {cpu_ms:.3f} ms CPU per replay "
        f"({wall_ms:.3f} ms wall) over {args.cpu_records:,} demo records; "
        f"target <= {CPU_TARGET_MS} ms: {'met' if cpu_ms <= CPU_TARGET_MS else 'NOT met'}"
    )

    server, port = start_model_server(latency_s)
    try:
        with tempfile.TemporaryDirectory(prefix="prov-bench-") as folder:
            db_url = str(Path(folder) / "bench.db")
            key = Path(folder) / "ledger.key"
            ledger = Ledger.init(make_engine(db_url), key, "bench.local/ledger")
            scenarios = 3 if args.decision_type else 1
            fill(db_url, key, args.records * scenarios)
            with ledger.engine.connect() as connection:
                where = DecisionFilter(TENANT, decision_type=args.decision_type)
                indexes = [s.index for s in select_decisions(connection, where, args.records)]
            registry = registry_for(port, args.concurrency)
            run(ledger, registry, indexes, args.concurrency, latency_s)
            ledger.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def run(
    ledger: Ledger, registry: Registry, indexes: list[int], concurrency: int, latency_s: float
) -> None:
    count = len(indexes)
    cpu = time.process_time()
    report, batch_s = asyncio.run(
        with_pool(
            registry,
            lambda pool: run_batch(
                load_recorded(ledger, indexes),
                total=count,
                plan=PINNED,
                pool=pool,
                blobs=ledger_blobs(ledger.blobs, TENANT),
                append=ledger.append_replays,
                batch="bench",
                tenant=TENANT,
                concurrency=concurrency,
            ),
        )
    )
    batch_cpu = time.process_time() - cpu
    assert report.stored == count, f"{count - report.stored} replays not stored"
    logged = [line.index for line in report.replays if line.index is not None]
    calls = model_calls(ledger, logged)
    recorded = list(load_recorded(ledger, indexes))
    _, engine_s = asyncio.run(
        with_pool(registry, lambda pool: engine_only(pool, recorded, concurrency))
    )
    _, bare_s = asyncio.run(with_pool(registry, lambda pool: bare_calls(pool, calls, concurrency)))
    floor = calls * latency_s / concurrency
    shares = ", ".join(f"{v.verdict} {v.share:.1%}" for v in report.verdicts if v.count)
    print(
        f"\npinned batch: {count:,} decisions, {calls:,} model calls "
        f"({calls / count:.2f} per replay), {concurrency} in flight, "
        f"{latency_s * 1000:g} ms per call; floor {floor:.1f} s"
    )
    print(f"  verdicts: {shares}")
    print(
        f"  end to end, SQLite ledger, every replay appended  {batch_s:7.1f} s "
        f"({count / batch_s:,.0f} replays/s, {batch_cpu * 1000 / count:.2f} ms CPU per replay)"
    )
    print(f"  engine only, nothing read or appended             {engine_s:7.1f} s")
    print(f"  baseline: {calls:,} bare provider calls            {bare_s:7.1f} s")
    print(f"  end to end / baseline = {batch_s / bare_s:.2f}, / floor = {batch_s / floor:.2f}")
    if calls == count:
        verdict = "met" if batch_s <= BATCH_TARGET_S * count / 10_000 else "NOT met"
        print(f"  target {BATCH_TARGET_S * count / 10_000:.1f} s for {count:,}: {verdict}")


if __name__ == "__main__":
    main()
