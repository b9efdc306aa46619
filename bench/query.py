"""The auditor's reads over HTTP at scale: why-reports, filtered search pages and inclusion
proofs from a real `prov serve`, over a ledger of 1,000,000 demo decisions (PostgreSQL by
default). Targets: why-report p95 <= 50 ms, a filtered search page p95 <= 100 ms, an
inclusion proof p95 <= 10 ms.

Beside each figure, from the same run and the same server: the HTTP floor (an authenticated
`GET /v1/log`, which reads one row), and the database floor (the same reads' primary-key
lookup, in process). Requests are sequential, one client, so each latency is the request's
own and not queueing.

    python -m bench.query [--decisions 1000000] [--requests 1000] [--engine postgres|sqlite]
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator

import httpx
from sqlalchemy import func, select

from bench.common import ENGINES, demo_records, engine_arguments, rate
from bench.ingest_http import Server, running_server
from ledger.errors import RecordRejected
from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from ledger.storage.schema import decisions, log_entries

WHY_TARGET_MS = 50.0
SEARCH_TARGET_MS = 100.0
PROOF_TARGET_MS = 10.0
FILL_CHUNK = 2_000


def fill(server: Server, count: int) -> float:
    """Append `count` signed demo decisions (full records, with their delegation chains)
    through the ledger's own batch path; returns the seconds it took."""
    ledger = Ledger.open(make_engine(server.db_url), server.key_file)
    started = time.perf_counter()
    made = 0
    try:

        def chunks() -> Iterator[list[bytes]]:
            nonlocal made
            while made < count:
                size = min(FILL_CHUNK, count - made)
                # A new seed per chunk keeps ids unique and the demo generator's state small.
                yield demo_records(size, content="inline", seed=made + 1)
                made += size

        for results in ledger.append_many(chunks()):
            if any(isinstance(result, RecordRejected) for result in results):
                raise RuntimeError("a demo decision was rejected")
            if made % 100_000 < FILL_CHUNK:
                print(f"  … {made:,} decisions", flush=True)
    finally:
        ledger.close()
    return time.perf_counter() - started


def latencies(client: httpx.Client, paths: list[str]) -> list[float]:
    """Milliseconds per request, each checked to answer 200."""
    timings = []
    for path in paths:
        started = time.perf_counter()
        answer = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:300]}")
    return timings


def percentile(samples: list[float], share: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(share * len(samples)))]


def report(name: str, samples: list[float], target: float | None = None) -> None:
    p95 = percentile(samples, 0.95)
    verdict = "" if target is None else (" met" if p95 <= target else " NOT met")
    goal = "" if target is None else f"  target p95 <= {target:g} ms:{verdict}"
    print(
        f"  {name:<34} p50 {statistics.median(samples):7.2f} ms  p95 {p95:7.2f} ms  "
        f"p99 {percentile(samples, 0.99):7.2f} ms{goal}"
    )


def search_paths(server: Server, rng: random.Random, count: int) -> list[tuple[str, str]]:
    """Filtered search pages as an auditor asks for them: by type, service, model version,
    subject, a time window, an output value, and combinations, 50 to a page; each with the
    name of its filter shape."""
    engine = make_engine(server.db_url)
    with engine.connect() as connection:
        low, high = connection.execute(
            select(func.min(decisions.c.occurred_us), func.max(decisions.c.occurred_us))
        ).one()
        subjects = [
            row[0]
            for row in connection.execute(
                select(decisions.c.subject).where(decisions.c.idx % 997 == 0).limit(500)
            )
        ]
    engine.dispose()
    day = 86_400_000_000

    def window() -> str:
        start = rng.randrange(low, max(low + 1, high - day))
        return f"from={_iso(start)}&to={_iso(start + day)}"

    shapes: dict[str, Callable[[], str]] = {
        "type": lambda: "decision_type=loan.approve",
        "service and type": lambda: "service=payment-retrier&decision_type=payment.retry",
        "model and version": lambda: "model=claude-sonnet-4&model_version=claude-sonnet-4-20250514",
        "subject": lambda: f"subject={rng.choice(subjects)}",
        "one-day window": window,
        "type and output": lambda: "decision_type=loan.approve&output=approved%3Dfalse",
        "type and window": lambda: f"decision_type=order.route&{window()}",
        "output": lambda: "output=carrier%3DUPS",
    }
    names = [rng.choice(list(shapes)) for _ in range(count)]
    return [(name, f"/v1/decisions?{shapes[name]()}&limit=50") for name in names]


def _iso(micros: int) -> str:
    seconds, rest = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:06d}Z"


def database_floor(server: Server, ids: list[str]) -> list[float]:
    """One indexed lookup of an entry's envelope by (tenant, id), in process."""
    engine = make_engine(server.db_url)
    timings = []
    with engine.connect() as connection:
        for record_id in ids:
            started = time.perf_counter()
            connection.execute(
                select(log_entries.c.envelope).where(
                    log_entries.c.tenant == "acme", log_entries.c.record_id == record_id
                )
            ).one()
            timings.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    return timings


def main() -> None:
    parser = engine_arguments(__doc__ or "")
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1_000)
    args = parser.parse_args()
    rng = random.Random(7)
    for engine_name in args.engine or ["postgres"]:
        assert engine_name in ENGINES
        with running_server(engine_name, 1, {}) as server:
            print(f"{engine_name}: filling {args.decisions:,} decisions", flush=True)
            seconds = fill(server, args.decisions)
            print(f"  filled in {seconds:,.0f} s ({rate(args.decisions, seconds).strip()})")
            engine = make_engine(server.db_url)
            with engine.begin() as connection:
                # What autovacuum does after a load this size; the bench must not wait for it.
                # Committed: statistics gathered in a transaction that rolls back are lost,
                # and without them PostgreSQL plans a search as a bitmap scan and a sort.
                connection.exec_driver_sql("ANALYZE")
            with engine.connect() as connection:
                size = connection.execute(select(func.count()).select_from(log_entries)).scalar()
                picks = sorted(rng.sample(range(size or 1), args.requests))
                ids = [
                    row[0]
                    for row in connection.execute(
                        select(log_entries.c.record_id).where(log_entries.c.idx.in_(picks))
                    )
                ]
            engine.dispose()
            rng.shuffle(ids)
            audit = httpx.post(
                f"{server.url}/v1/api-keys",
                json={"role": "audit", "name": "bench"},
                headers=server.auth(server.admin_key),
            ).json()["key"]
            with httpx.Client(base_url=server.url, headers=server.auth(audit), timeout=60) as c:
                latencies(c, ["/v1/log"] * 50)  # warm the connection and the key cache
                print(f"  {size:,} entries, {args.requests:,} sequential requests each")
                report("HTTP floor: GET /v1/log", latencies(c, ["/v1/log"] * args.requests))
                report("DB floor: envelope by (tenant, id)", database_floor(server, ids))
                report(
                    "why-report",
                    latencies(c, [f"/v1/decisions/{i}/why" for i in ids]),
                    WHY_TARGET_MS,
                )
                searches = search_paths(server, rng, args.requests)
                timings = latencies(c, [path for _, path in searches])
                report("filtered search page (50)", timings, SEARCH_TARGET_MS)
                by_shape: dict[str, list[float]] = {}
                for (shape, _), timing in zip(searches, timings, strict=True):
                    by_shape.setdefault(shape, []).append(timing)
                for shape, samples in sorted(by_shape.items()):
                    report(f"  search by {shape}", samples)
                report(
                    "inclusion proof",
                    latencies(
                        c,
                        [
                            f"/v1/proofs/inclusion?index={rng.randrange(size or 1)}"
                            for _ in range(args.requests)
                        ],
                    ),
                    PROOF_TARGET_MS,
                )


if __name__ == "__main__":
    main()
