"""What every benchmark needs: a fresh ledger on each engine, demo records, and timing."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from service.demo.scenarios import content_by_reference
from service.demo.traffic import demo_envelopes, register_demo_keys

POSTGRES_ADMIN_URL = os.environ.get(
    "PROV_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ENGINES = ("sqlite", "postgres")


def engine_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=ENGINES, action="append", help="default: both")
    parser.add_argument(
        "--content",
        choices=("by-reference", "inline"),
        default="by-reference",
        help="by-reference: ~2.8 KB payloads, bulky content as blob digests (default); "
        "inline: the full demo records, ~4.3 KB, with their UCAN delegation chains",
    )
    return parser


@contextlib.contextmanager
def fresh_database(engine_name: str) -> Iterator[str]:
    """A new empty database URL, removed afterwards."""
    if engine_name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="prov-bench-") as folder:
            yield str(Path(folder) / "bench.db")
        return
    name = f"prov_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_ledger(engine_name: str) -> Iterator[Ledger]:
    with fresh_database(engine_name) as url, tempfile.TemporaryDirectory() as keys:
        ledger = Ledger.init(make_engine(url), Path(keys) / "ledger.key", "bench.local/ledger")
        try:
            yield ledger
        finally:
            ledger.close()


DEMO_TENANT = "acme"


def signed_demo_records(
    ledger: Ledger, count: int, *, content: str = "by-reference", seed: int = 1
) -> list[bytes]:
    register_demo_keys(ledger.engine, DEMO_TENANT)
    return demo_records(count, content=content, seed=seed)


def demo_records(count: int, *, content: str = "by-reference", seed: int = 1) -> list[bytes]:
    """Signed demo records for `DEMO_TENANT`; wherever they go, `register_demo_keys` first."""
    shape = content_by_reference if content == "by-reference" else None
    return list(demo_envelopes(count, seed=seed, tenant=DEMO_TENANT, shape=shape))


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f}/s"


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median_of(runs: int, action: Callable[[], object]) -> float:
    return statistics.median(timed(action) for _ in range(runs))
