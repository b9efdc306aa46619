"""COSE receipt (RFC 9942) latency at 1,000,000 entries over HTTP (target: p95 under 5 ms),
beside baselines from the same run and the same random entries: the entry itself
(`GET /v1/entries/{index}`), its JSON inclusion proof (`GET /v1/proofs/inclusion`) and the
HTTP floor (`GET /v1/log`).

The log is built through the real sequencer from pre-admitted small records, as
bench/proof.py builds it (signing a million decisions would measure signing, not
receipts), under a running `prov serve` (one worker, loopback, one client, requests one
after another). Each receipt timed over HTTP is then verified with the ledger's key and the
entry's bytes. `--entries` scales the log down when 1,000,000 takes too long to build.

    python -m bench.cose_receipts [--entries 1000000] [--lookups 2000]
        [--engine sqlite|postgres]
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import httpx
from sqlalchemy import text

from bench.common import ENGINES, engine_arguments
from bench.ingest_http import running_server
from bench.proof import build
from bench.query import latencies, percentile
from ledger.ledger import Ledger
from ledger.log.cose_receipt import verify_cose_receipt
from ledger.storage.db import make_engine
from query.audit.cose_receipts import cose_receipt

TARGET_P95_MS = 5.0


def summary(name: str, samples: list[float], target: float | None = None) -> str:
    p95 = percentile(samples, 0.95)
    verdict = "" if target is None else (" met" if p95 <= target else " NOT met")
    goal = "" if target is None else f"  target p95 <= {target:g} ms:{verdict}"
    return (
        f"  {name:<38} p50 {statistics.median(samples):6.2f} ms  p95 {p95:6.2f} ms  "
        f"p99 {percentile(samples, 0.99):6.2f} ms{goal}"
    )


def in_process(ledger: Ledger, indexes: list[int]) -> list[float]:
    """Milliseconds per `cose_receipt` call, without HTTP."""
    timings = []
    for index in indexes:
        started = time.perf_counter()
        cose_receipt(ledger, index)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def over_http(url: str, headers: dict[str, str], indexes: list[int]) -> dict[str, list[float]]:
    """Each shape's milliseconds, the shapes interleaved per entry so that drift in the
    machine's load falls on all of them alike."""
    shapes: dict[str, Callable[[int], str]] = {
        "GET /v1/entries/{i}/receipt (COSE)": lambda i: f"/v1/entries/{i}/receipt",
        "baseline GET /v1/entries/{i}": lambda i: f"/v1/entries/{i}",
        "baseline GET /v1/proofs/inclusion": lambda i: f"/v1/proofs/inclusion?index={i}",
        "HTTP floor: GET /v1/log": lambda i: "/v1/log",
    }
    timings: dict[str, list[float]] = {name: [] for name in shapes}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        warm = indexes[:50]
        for path in shapes.values():
            latencies(client, [path(i) for i in warm])
        for index in indexes:
            for name, path in shapes.items():
                timings[name].extend(latencies(client, [path(index)]))
    return timings


def check_receipts(url: str, headers: dict[str, str], ledger: Ledger, indexes: list[int]) -> None:
    """The receipts the server answered verify for their entries under the ledger key."""
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for index in indexes:
            receipt = client.get(f"/v1/entries/{index}/receipt")
            entry = bytes.fromhex(client.get(f"/v1/entries/{index}").json()["entry_bytes"])
            claims = verify_cose_receipt(receipt.content, ledger.verifier, entry_bytes=entry)
            if claims.index != index:
                raise RuntimeError(f"the receipt of entry {index} is for {claims.index}")


def run(engine_name: str, entries: int, lookups: int) -> None:
    print(f"\n[{engine_name}] COSE receipts over {entries:,} entries, {lookups:,} lookups")
    with running_server(engine_name, 1, {}) as server:
        audit = httpx.post(
            f"{server.url}/v1/api-keys",
            json={"role": "audit", "name": "bench"},
            headers={"Authorization": f"Bearer {server.admin_key}"},
        )
        audit.raise_for_status()
        headers = {"Authorization": f"Bearer {audit.json()['key']}"}
        ledger = Ledger.open(make_engine(server.db_url), server.key_file)
        try:
            started = time.perf_counter()
            build(ledger, entries)
            if engine_name == "postgres":
                with ledger.engine.begin() as connection:
                    connection.execute(text("ANALYZE"))
            print(f"  built in {time.perf_counter() - started:.0f}s", flush=True)
            rng = random.Random(7)
            indexes = [rng.randrange(entries) for _ in range(lookups)]
            print(summary("cose_receipt() in process", in_process(ledger, indexes[:500])))
            print("  over HTTP (prov serve, one worker, loopback, one client):")
            for name, samples in over_http(server.url, headers, indexes).items():
                target = TARGET_P95_MS if "COSE" in name else None
                print(summary(name, samples, target))
            check_receipts(server.url, headers, ledger, indexes[:200])
            print("  200 served receipts verified under the ledger key")
        finally:
            ledger.close()


def main() -> None:
    parser = engine_arguments(__doc__ or "")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    args = parser.parse_args()
    for engine_name in args.engine or ENGINES:
        run(engine_name, args.entries, args.lookups)


if __name__ == "__main__":
    main()
