"""The freshness index at scale (docs/freshness.md), each figure beside a baseline from the
same run:

1. ingest: the same pre-signed decisions (two `depends_on` keys and a context snapshot
   each) appended through `Ledger.admit` + `Ledger.sequence` into two fresh ledgers, one
   with the dependency index on (as admitted) and one off (`freshness=None`); each batch is
   admitted once and sequenced into both, which goes first alternating; medians of the
   per-batch rates. Target: index-on >= 0.9x index-off.
2. invalidation: one context change that marks 100,000 decisions, its append transaction
   timed beside the same append of a change to a key nothing depends on and a plain
   INSERT ... SELECT of the same 100,000 rows into a table shaped like `stale_marks`.
   PostgreSQL statements are cancelled after `--timeout` seconds.
   Target: under 2 s.
3. latency: `freshness_answer` (with and without evidence) over 1,000,000 decisions in
   PostgreSQL, a share of them stale, beside the why-report and an envelope lookup by
   (tenant, id), in process and over HTTP from a real `prov serve`; then where an answer's
   time goes, statement by statement, with EXPLAIN ANALYZE of the costliest. Target: p95
   < 10 ms.

Items 1 and 2 run on each engine (default: both); item 3 on PostgreSQL unless `--engine`
names SQLite. Decisions for items 1 and 3 are real signed envelopes (a fixed template with
per-record id, time, subject and dependency versions); items 2 and 3 store pre-admitted
rows straight through the sequencer, as bench/proof.py does, item 3 with the envelopes its
answers parse and verify, item 2 with placeholder bytes nothing reads.

    python -m bench.freshness [--engine sqlite|postgres] [--only ingest|invalidate|latency]
        [--records 20000] [--batch 1000] [--runs 2] [--invalidate 100000] [--rounds 3]
        [--timeout 30] [--decisions-for-latency 1000000] [--lookups 1000] [--no-http]
        [--breakdown 300] [--explain 3]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, event, func, select, text

import ledger.indexes.freshness as freshness_index
from bench.common import ENGINES, fresh_ledger
from bench.ingest_http import running_server
from bench.query import latencies, percentile
from ledger.admission import Admitted
from ledger.errors import RecordRejected
from ledger.indexes.decisions import IndexRow
from ledger.indexes.freshness import DecisionFreshness
from ledger.keys.ed25519 import SigningKey, derive_keyid
from ledger.keys.keyring import register_key
from ledger.ledger import Ledger
from ledger.log.entry import rfc3339, to_micros
from ledger.log.receipt import Receipt
from ledger.log.sequencer import Appended, append, now_micros
from ledger.records import dsse
from ledger.records.context_change import (
    CONTEXT_CHANGE_PAYLOAD_TYPE,
    ContextChange,
    encode_context_change,
)
from ledger.records.decision import (
    DECISION_PAYLOAD_TYPE,
    ContextSnapshot,
    Decision,
    Dependency,
    Freshness,
    Model,
    Output,
    encode_decision,
)
from ledger.records.signed import PRODUCER_SIGNED
from ledger.storage.db import make_engine
from ledger.storage.schema import context_dependencies, decision_freshness, log_entries
from query.audit.freshness import freshness_answer
from query.audit.why import why_report

TENANT = "acme"
SERVICE = "inventory"
SERVICE_KEY = SigningKey.from_seed(hashlib.sha256(b"prov bench freshness/acme/inventory").digest())
KEYID = derive_keyid(SERVICE_KEY.public_key)
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
T0_US = to_micros(T0)
# Far enough ahead that no answer is `stale` by expiry: only changes make one stale.
VALID_UNTIL = datetime(2030, 1, 1, tzinfo=UTC)
DIGEST = "sha256:" + "5e" * 32
SKUS = 1_000
CUTOFFS, PRICING = "carrier.cutoffs", "pricing.table"
PRICING_VERSION = "p7"
BUILD_BATCH = 20_000
TARGET_RATIO, TARGET_INVALIDATE_S, TARGET_P95_MS = 0.9, 2.0, 10.0


def sku_key(sku: int) -> str:
    return f"inventory/sku-{sku:04d}"


# --- records ------------------------------------------------------------------------------


def _template() -> bytes:
    """One decision's payload with %(name)s slots for what differs between decisions."""
    made = Decision(
        id="SLOT-ID",
        tenant=TENANT,
        service=SERVICE,
        decision_type="order.route",
        occurred_at=datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC),
        subject="SLOT-SUBJECT",
        inputs={
            "order_id": "SLOT-ORDER",
            "sku": "SLOT-SKU",
            "quantity": 2,
            "destination": {"country": "US", "postcode": "94107"},
            "requested_service": "ground",
        },
        context=[
            ContextSnapshot(
                name=PRICING,
                version=PRICING_VERSION,
                digest=DIGEST,
                fetched_at=T0,
                valid_until=VALID_UNTIL,
                blob=DIGEST,
            )
        ],
        model=Model(
            provider="anthropic",
            name="claude-sonnet-4",
            version="claude-sonnet-4-20250514",
            temperature=0.0,
            max_tokens=1024,
        ),
        output=Output(
            decision={"warehouse": "sfo-2", "carrier": "UPS", "ship_by": "2026-12-02"},
            text="Ship from sfo-2 with UPS ground; the order is inside today's cutoff.",
            finish_reason="stop",
        ),
        freshness=Freshness(
            valid_until=VALID_UNTIL,
            depends_on=[
                Dependency(key=CUTOFFS, version="SLOT-CUTOFFS"),
                Dependency(key="SLOT-SKU-KEY", version="SLOT-SKU-VERSION"),
            ],
        ),
        attributes={"region": "us-west", "channel": "web"},
    )
    payload = encode_decision(made).replace(b"%", b"%%")
    for slot, name in (
        (b'"2001-02-03T04:05:06Z"', b'"%(at)s"'),
        (b"SLOT-SKU-VERSION", b"%(sku_version)s"),
        (b"SLOT-SKU-KEY", b"%(sku_key)s"),
        (b"SLOT-CUTOFFS", b"%(cutoffs)s"),
        (b"SLOT-SUBJECT", b"%(subject)s"),
        (b"SLOT-ORDER", b"%(order)s"),
        (b"SLOT-SKU", b"%(sku)s"),
        (b"SLOT-ID", b"%(id)s"),
    ):
        assert payload.count(slot) == 1, slot
        payload = payload.replace(slot, name)
    return payload


_TEMPLATE = _template()
_OUTPUT_JSON = '{"warehouse":"sfo-2","carrier":"UPS","ship_by":"2026-12-02"}'


@dataclass(frozen=True, slots=True)
class Planned:
    """One decision to build: what its payload and its index rows say."""

    n: int
    sku: int
    sku_version: str
    cutoffs: str

    @property
    def record_id(self) -> str:
        return f"fr-{self.n:08d}"

    @property
    def occurred_us(self) -> int:
        return T0_US + self.n * 1_000_000


def payload(plan: Planned) -> bytes:
    return _TEMPLATE % {
        b"id": plan.record_id.encode(),
        b"at": rfc3339(plan.occurred_us).encode(),
        b"subject": b"cust_%05d" % (plan.n % 99_991),
        b"order": b"ord-%08d" % plan.n,
        b"sku": b"sku-%04d" % plan.sku,
        b"sku_key": sku_key(plan.sku).encode(),
        b"sku_version": plan.sku_version.encode(),
        b"cutoffs": plan.cutoffs.encode(),
    }


def sign(payload_type: str, data: bytes) -> bytes:
    return dsse.encode_envelope(dsse.sign_envelope(payload_type, data, SERVICE_KEY, KEYID))


def signed_decision(plan: Planned) -> bytes:
    return sign(DECISION_PAYLOAD_TYPE, payload(plan))


def admitted_decision(plan: Planned, envelope: bytes) -> Admitted:
    """The row admission would make of `signed_decision(plan)` (checked in `check_rows`)."""
    return Admitted(
        envelope,
        DECISION_PAYLOAD_TYPE,
        TENANT,
        plan.record_id,
        KEYID,
        (
            TENANT,
            plan.record_id,
            SERVICE,
            "order.route",
            plan.occurred_us,
            "claude-sonnet-4",
            "claude-sonnet-4-20250514",
            f"cust_{plan.n % 99_991:05d}",
            None,
            _OUTPUT_JSON,
            PRODUCER_SIGNED,
        ),
        freshness=DecisionFreshness(
            ((CUTOFFS, plan.cutoffs), (sku_key(plan.sku), plan.sku_version), (PRICING, "p7")),
            to_micros(VALID_UNTIL),
        ),
    )


def signed_change(record_id: str, key: str, version: str, at_us: int) -> bytes:
    made = ContextChange(
        id=record_id,
        tenant=TENANT,
        service=SERVICE,
        key=key,
        version=version,
        changed_at=datetime.fromtimestamp(at_us / 1_000_000, UTC),
        reason="bench",
    )
    return sign(CONTEXT_CHANGE_PAYLOAD_TYPE, encode_context_change(made))


def register_service_key(engine: Engine) -> None:
    with engine.begin() as connection:
        register_key(
            connection,
            tenant=TENANT,
            service=SERVICE,
            public_key=SERVICE_KEY.public_key,
            valid_from=datetime(2000, 1, 1, tzinfo=UTC),
            now=datetime.now(UTC),
        )


def admit_all(ledger: Ledger, envelopes: Sequence[bytes]) -> list[Admitted]:
    admitted = ledger.admit(envelopes)
    refused = [item for item in admitted if isinstance(item, RecordRejected)]
    if refused:
        raise RuntimeError(f"{len(refused)} bench records refused, first: {refused[0]}")
    return [item for item in admitted if isinstance(item, Admitted)]


def check_rows(ledger: Ledger, plans: Sequence[Planned]) -> None:
    """The fast-built rows are exactly what admission makes of the signed envelopes."""
    envelopes = [signed_decision(plan) for plan in plans]
    for plan, envelope, real in zip(plans, envelopes, admit_all(ledger, envelopes), strict=True):
        built = admitted_decision(plan, envelope)
        assert (built.index, built.freshness) == (real.index, real.freshness), (built, real)


def sequence_all(ledger: Ledger, admitted: list[Admitted]) -> list[Appended]:
    results = append(ledger.engine, admitted, ledger.signer, ledger.origin, ledger.frontier)
    appended = [result for result in results if isinstance(result, Appended) and result.created]
    if len(appended) != len(admitted):
        raise RuntimeError(f"{len(admitted) - len(appended)} bench records not appended")
    return appended


def count(connection: Connection, table: str) -> int:
    return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def analyze(engine: Engine) -> None:
    """What autovacuum does after a bulk load; committed, or the statistics are lost."""
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")


# --- 1. ingest with the index on and off -----------------------------------------------------


def ingest_plans(records: int, rng: random.Random) -> list[Planned]:
    """Decisions on one of `SKUS` inventory keys at its current version (one in a hundred
    on the version before, so stale when made) and on today's carrier cutoffs."""
    return [
        Planned(n, sku, "r0" if rng.random() < 0.01 else "r1", "2026-12-01")
        for n, sku in ((n, rng.randrange(SKUS)) for n in range(records))
    ]


def preamble(rng: random.Random) -> list[bytes]:
    """The context history the decisions meet: every key of theirs set by a change (each
    inventory key twice, r0 then r1), so the stale-at-birth check finds changes to read."""
    changes = [(CUTOFFS, "2026-12-01"), (PRICING, PRICING_VERSION)]
    changes += [(sku_key(sku), "r0") for sku in range(SKUS)]
    changes += [(sku_key(sku), "r1") for sku in range(SKUS)]
    return [
        signed_change(f"change-pre-{i:05d}", key, version, T0_US - 3_600_000_000 + i)
        for i, (key, version) in enumerate(changes)
    ]


@dataclass
class BatchPair:
    """One batch: its admission, and its sequencing into each ledger."""

    records: int
    admit_s: float
    on_s: float
    off_s: float

    def rates(self, with_admission: bool) -> tuple[float, float]:
        """Records/s with the index on and off."""
        extra = self.admit_s if with_admission else 0.0
        return self.records / (extra + self.on_s), self.records / (extra + self.off_s)


def ingest_run(
    engine_name: str, history: list[bytes], envelopes: list[bytes], batch: int, turn: int
) -> list[BatchPair]:
    """Two fresh ledgers, index on and off, fed the same batches in turn: each batch is
    admitted once, then sequenced into both, which of them goes first alternating."""
    pairs = []
    with fresh_ledger(engine_name) as on, fresh_ledger(engine_name) as off:
        for ledger in (on, off):
            register_service_key(ledger.engine)
            for start in range(0, len(history), batch):
                ledger.sequence(list(admit_all(ledger, history[start : start + batch])))
        for number, start in enumerate(range(0, len(envelopes), batch)):
            t0 = time.perf_counter()
            admitted = admit_all(on, envelopes[start : start + batch])
            admit_s = time.perf_counter() - t0
            without = [replace(item, freshness=None) for item in admitted]
            spent = {}
            order = [(on, admitted), (off, without)]
            for ledger, rows in order if (number + turn) % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                receipts = ledger.sequence(list(rows))
                spent[ledger is on] = time.perf_counter() - t0
                assert all(isinstance(receipt, Receipt) for receipt in receipts)
            pairs.append(BatchPair(len(admitted), admit_s, spent[True], spent[False]))
        for ledger, label in ((on, "on"), (off, "off")):
            with ledger.engine.connect() as connection:
                print(
                    f"    run {turn + 1}, index {label}: {count(connection, 'log_entries'):,} "
                    f"entries, {count(connection, 'context_dependencies'):,} dependency rows, "
                    f"{count(connection, 'stale_marks'):,} decisions stale at birth",
                    flush=True,
                )
    return pairs


def bench_ingest(engine_name: str, args: argparse.Namespace) -> None:
    rng = random.Random(11)
    plans = ingest_plans(args.records, rng)
    started = time.perf_counter()
    envelopes = [signed_decision(plan) for plan in plans]
    history = preamble(rng)
    size = sum(map(len, envelopes)) / len(envelopes)
    print(
        f"\n[{engine_name}] 1. ingest, index on vs off: {args.records:,} decisions "
        f"(envelope {size:,.0f} bytes, 3 dependencies each), batches of {args.batch:,}, "
        f"after {len(history):,} context changes; signed in {time.perf_counter() - started:.1f}s; "
        f"{args.runs} run(s), each into two fresh ledgers, batches alternating",
        flush=True,
    )
    pairs = [
        pair
        for turn in range(args.runs)
        for pair in ingest_run(engine_name, history, envelopes, args.batch, turn)
    ]
    for label, with_admission in (
        ("sequence only (Ledger.sequence)", False),
        ("admit + sequence", True),
    ):
        rates = [pair.rates(with_admission) for pair in pairs]
        with_index = statistics.median(on for on, _ in rates)
        without = statistics.median(off for _, off in rates)
        ratios = sorted(on / off for on, off in rates)
        ratio = with_index / without
        print(
            f"  {label:<32} index on {with_index:>7,.0f}/s  baseline index off "
            f"{without:>7,.0f}/s  ratio {ratio:.2f} (per batch: median "
            f"{statistics.median(ratios):.2f}, quartiles {percentile(ratios, 0.25):.2f}-"
            f"{percentile(ratios, 0.75):.2f}, n={len(ratios)})  target >= {TARGET_RATIO}: "
            f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}"
        )


# --- 2. one change invalidating 100,000 decisions --------------------------------------------


def placeholder_index_row(record_id: str, occurred_us: int) -> IndexRow:
    return (
        TENANT, record_id, SERVICE, "order.route", occurred_us, "m", "1", None, None, "{}",
        PRODUCER_SIGNED,
    )  # fmt: skip


def build_dependents(ledger: Ledger, keys: tuple[str, ...], first: int, count_: int) -> None:
    """`count_` pre-admitted decisions relying on each of `keys` at v1, as bench/proof.py
    builds entries: placeholder bytes (nothing reads them here), real index rows."""
    relied_on = tuple((key, "v1") for key in keys)
    for start in range(first, first + count_, BUILD_BATCH):
        rows = [
            Admitted(
                b"decision %d" % n,
                DECISION_PAYLOAD_TYPE,
                TENANT,
                f"dep-{n:08d}",
                KEYID,
                placeholder_index_row(f"dep-{n:08d}", T0_US + n),
                freshness=DecisionFreshness(relied_on, None),
            )
            for n in range(start, min(start + BUILD_BATCH, first + count_))
        ]
        sequence_all(ledger, rows)


def timed_change(
    ledger: Ledger, record_id: str, key: str, version: str
) -> tuple[float, int | None]:
    """Seconds of the append transaction of one context change, and what it invalidated;
    None when the database cancelled it at the statement timeout (nothing was stored)."""
    [admitted] = admit_all(ledger, [signed_change(record_id, key, version, now_micros())])
    started = time.perf_counter()
    try:
        [appended] = sequence_all(ledger, [admitted])
    except sqlalchemy.exc.OperationalError as error:
        if "statement timeout" not in str(error):
            raise
        return time.perf_counter() - started, None
    return time.perf_counter() - started, appended.invalidated or 0


def statement_timeout(engine: Engine, seconds: float) -> None:
    """PostgreSQL cancels any statement of `engine` that runs longer than `seconds`."""
    if engine.dialect.name != "postgresql":
        return

    def limit(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(seconds * 1000)}")
        dbapi_connection.commit()

    event.listen(engine, "connect", limit)
    engine.dispose()


def insert_select_baseline(ledger: Ledger, key: str) -> tuple[float, int]:
    """A plain INSERT ... SELECT of the same dependency rows into a table with the columns,
    key and indexes of `stale_marks`, in its own transaction: the floor for writing marks."""
    postgres = ledger.engine.dialect.name == "postgresql"
    with ledger.engine.begin() as connection:
        if postgres:
            connection.exec_driver_sql("CREATE TABLE bench_marks (LIKE stale_marks INCLUDING ALL)")
        else:
            connection.exec_driver_sql(
                "CREATE TABLE bench_marks (idx BIGINT, key VARCHAR(256), version VARCHAR(256),"
                " tenant VARCHAR(64), change_idx BIGINT, stale_us BIGINT,"
                " PRIMARY KEY (idx, key, version))"
            )
            connection.exec_driver_sql(
                "CREATE INDEX bench_marks_a ON bench_marks (tenant, stale_us, idx)"
            )
            connection.exec_driver_sql(
                "CREATE INDEX bench_marks_b ON bench_marks (change_idx, idx)"
            )
    started = time.perf_counter()
    with ledger.engine.begin() as connection:
        copied = connection.execute(
            text(
                "INSERT INTO bench_marks (idx, key, tenant, version, change_idx, stale_us)"
                " SELECT idx, key, tenant, version, 0, 0 FROM context_dependencies"
                " WHERE tenant = :tenant AND key = :key"
            ),
            {"tenant": TENANT, "key": key},
        ).rowcount
    seconds = time.perf_counter() - started
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE bench_marks")
    return seconds, copied


def explain_invalidate(ledger: Ledger, key: str) -> None:
    """The plan PostgreSQL makes now for the sequencer's invalidation of `key` (EXPLAIN
    without ANALYZE: running it is what the timeout cancels)."""
    if ledger.engine.dialect.name != "postgresql":
        return
    with ledger.engine.connect() as connection:
        change = ledger.latest_checkpoint().tree_size
        plan = connection.execute(
            text("EXPLAIN " + str(freshness_index._INVALIDATE.text)),
            {"change": change, "tenant": TENANT, "key": key, "version": "v2", "now": 0},
        )
        print("    plan of the invalidation statement:")
        for (line,) in plan:
            print(f"      {line}")


def bench_invalidate(engine_name: str, args: argparse.Namespace) -> None:
    print(
        f"\n[{engine_name}] 2. one change invalidating {args.invalidate:,} decisions "
        f"({args.rounds} round(s) in one growing ledger, each on new keys; PostgreSQL "
        f"statement timeout {args.timeout:g}s)",
        flush=True,
    )
    figures: dict[str, list[float]] = {}
    with fresh_ledger(engine_name) as ledger:
        register_service_key(ledger.engine)
        statement_timeout(ledger.engine, args.timeout)
        for round_ in range(args.rounds):
            key, other = f"catalog/region-{round_}", f"catalog/zone-{round_}"
            started = time.perf_counter()
            # Each decision relies on both keys: both changes are timed, the second on a
            # table that already holds the first's marks.
            build_dependents(ledger, (key, other), round_ * args.invalidate, args.invalidate)
            built = time.perf_counter() - started
            unrelated, none = timed_change(ledger, f"unrelated-{round_}", f"other/{round_}", "v2")
            assert none == 0, none
            copy_s, copied = insert_select_baseline(ledger, key)
            assert copied == args.invalidate, copied
            if args.explain:
                explain_invalidate(ledger, key)
            seconds, invalidated = timed_change(ledger, f"change-{round_}", key, "v2")
            second, also = timed_change(ledger, f"change-alt-{round_}", other, "v2")
            assert invalidated in (None, args.invalidate), invalidated
            assert also == args.invalidate, also
            figures.setdefault("change", []).append(seconds if invalidated else math.inf)
            figures.setdefault("second", []).append(second)
            figures.setdefault("unrelated", []).append(unrelated)
            figures.setdefault("insert", []).append(copy_s)
            outcome = (
                f"{seconds:.3f}s ({invalidated:,} invalidated)"
                if invalidated
                else f"cancelled at the {seconds:.0f}s statement timeout"
            )
            print(
                f"  round {round_ + 1}: built {args.invalidate:,} in {built:.1f}s; "
                f"change {outcome}; a second change on the same decisions {second:.3f}s; "
                f"change to an unrelated key {unrelated:.3f}s; INSERT ... SELECT {copy_s:.3f}s",
                flush=True,
            )

    def shown(value: float) -> str:
        return f"{value:.3f}s" if math.isfinite(value) else f"> {args.timeout:g}s (cancelled)"

    worst = max(figures["change"])
    print(
        f"  invalidating change (sequencer append), median "
        f"{shown(statistics.median(figures['change']))}, worst {shown(worst)}  target < "
        f"{TARGET_INVALIDATE_S:g}s in every round: "
        f"{'met' if worst < TARGET_INVALIDATE_S else 'NOT met'}"
    )
    print(
        "  a second change over the same decisions, median "
        f"{statistics.median(figures['second']):.3f}s, worst {max(figures['second']):.3f}s"
    )
    print(
        "  baseline change to an unrelated key, median "
        f"{statistics.median(figures['unrelated']):.3f}s"
    )
    print(
        f"  baseline INSERT ... SELECT of the same {args.invalidate:,} rows into a "
        f"stale_marks-shaped table, median {statistics.median(figures['insert']):.3f}s"
    )


# --- 3. freshness_answer latency over 1,000,000 decisions -----------------------------------


@dataclass
class History:
    """The context's state while the log is built: each key's current version."""

    rng: random.Random
    sku_versions: list[int] = field(default_factory=lambda: [1] * SKUS)
    cutoffs: str = "2026-12-01"
    changes: int = 0

    def plan(self, n: int) -> Planned:
        sku = self.rng.randrange(SKUS)
        version = self.sku_versions[sku]
        # One decision in a hundred relied on the version before its key's latest change.
        if version > 1 and self.rng.random() < 0.01:
            version -= 1
        return Planned(n, sku, f"r{version}", self.cutoffs)

    def change(self, key: str, version: str, at_us: int) -> bytes:
        self.changes += 1
        return signed_change(f"change-{self.changes:06d}", key, version, at_us)

    def sku_change(self, at_us: int) -> bytes:
        sku = self.rng.randrange(SKUS)
        self.sku_versions[sku] += 1
        return self.change(sku_key(sku), f"r{self.sku_versions[sku]}", at_us)


def build_log(ledger: Ledger, decisions: int, sku_changes_per_batch: int) -> dict[str, float]:
    """`decisions` signed decisions in batches of `BUILD_BATCH`, each batch followed by
    `sku_changes_per_batch` inventory changes; the carrier cutoffs change once, a quarter
    of the way in. The first context changes set every key's first version. The next batch
    is signed while one is sequenced."""
    history = History(random.Random(5))
    first = [history.change(CUTOFFS, "2026-12-01", T0_US), history.change(PRICING, "p7", T0_US)]
    first += [history.change(sku_key(sku), "r1", T0_US) for sku in range(SKUS)]
    sequence_all(ledger, admit_all(ledger, first))
    check_rows(ledger, [history.plan(n) for n in range(decisions, decisions + 200)])

    def make(start: int) -> list[Admitted]:
        plans = [history.plan(n) for n in range(start, min(start + BUILD_BATCH, decisions))]
        envelopes = ledger.pool.map(signed_decision, plans)
        rows = [admitted_decision(p, e) for p, e in zip(plans, envelopes, strict=True)]
        at_us = plans[-1].occurred_us + 1
        changes = [history.sku_change(at_us) for _ in range(sku_changes_per_batch)]
        if start <= decisions // 4 < start + BUILD_BATCH:
            history.cutoffs = "2026-12-02"
            changes.append(history.change(CUTOFFS, history.cutoffs, at_us))
        return rows + admit_all(ledger, changes)

    spent = {"waiting for signing": 0.0, "sequencer": 0.0}
    starts = list(range(0, decisions, BUILD_BATCH))
    with ThreadPoolExecutor(1) as producer:
        pending = producer.submit(make, starts[0])
        for position, start in enumerate(starts):
            t0 = time.perf_counter()
            rows = pending.result()
            if position + 1 < len(starts):
                pending = producer.submit(make, starts[position + 1])
            t1 = time.perf_counter()
            sequence_all(ledger, rows)
            spent["waiting for signing"] += t1 - t0
            spent["sequencer"] += time.perf_counter() - t1
            done = min(start + BUILD_BATCH, decisions)
            if done % 200_000 < BUILD_BATCH:
                print(f"    {done:,} decisions", flush=True)
    return spent


@dataclass(frozen=True, slots=True)
class Pick:
    record_id: str
    marks: int  # stale marks: 0 fresh, else the keys superseded
    at_birth: bool  # some mark names a change made before the decision


def picks(engine: Engine, lookups: int, rng: random.Random) -> list[Pick]:
    with engine.connect() as connection:
        top = int(connection.execute(select(func.max(decision_freshness.c.idx))).scalar_one() or 0)
        wanted: set[int] = set()
        while len(wanted) < lookups:
            wanted |= {rng.randrange(top + 1) for _ in range(lookups - len(wanted))}
            found = connection.execute(
                select(decision_freshness.c.idx).where(decision_freshness.c.idx.in_(wanted))
            )
            wanted = {row.idx for row in found}
        rows = connection.execute(
            text(
                "SELECT e.record_id, count(m.idx) AS marks,"
                " coalesce(sum(CASE WHEN m.change_idx < e.idx THEN 1 ELSE 0 END), 0) AS birth"
                " FROM log_entries e LEFT JOIN stale_marks m ON m.idx = e.idx"
                " WHERE e.idx IN (" + ", ".join(map(str, sorted(wanted))) + ")"
                " GROUP BY e.idx, e.record_id"
            )
        )
        found_picks = [Pick(row.record_id, int(row.marks), int(row.birth) > 0) for row in rows]
    rng.shuffle(found_picks)
    return found_picks


def summary(name: str, samples: list[float], target: float | None = None) -> str:
    p95 = percentile(samples, 0.95)
    goal = ""
    if target is not None:
        goal = f"  target p95 < {target:g} ms: {'met' if p95 < target else 'NOT met'}"
    return (
        f"  {name:<44} p50 {statistics.median(samples):6.2f}  p95 {p95:6.2f}  "
        f"p99 {percentile(samples, 0.99):6.2f} ms  (n={len(samples)}){goal}"
    )


def in_process(ledger: Ledger, chosen: list[Pick]) -> dict[str, list[float]]:
    """Milliseconds per read, the four reads of each pick one after another."""
    timings: dict[str, list[float]] = {}
    reads: dict[str, Callable[[Connection, str], object]] = {
        "freshness_answer, evidence": lambda c, i: freshness_answer(
            c, ledger.signer, ledger.origin, TENANT, i, now_us=now_micros()
        ),
        "freshness_answer, no evidence": lambda c, i: freshness_answer(
            c, ledger.signer, ledger.origin, TENANT, i, now_us=now_micros(), evidence=False
        ),
        "baseline why_report": lambda c, i: why_report(
            c, ledger.verifier, ledger.origin, TENANT, i, now_us=now_micros()
        ),
        "baseline envelope by (tenant, id)": lambda c, i: c.execute(
            select(log_entries.c.envelope).where(
                log_entries.c.tenant == TENANT, log_entries.c.record_id == i
            )
        ).one(),
    }
    with ledger.engine.connect() as connection:
        for pick in chosen[:20]:  # warm the connection and the statement cache
            for read in reads.values():
                read(connection, pick.record_id)
                connection.rollback()
        for pick in chosen:
            for name, read in reads.items():
                started = time.perf_counter()
                read(connection, pick.record_id)
                timings.setdefault(name, []).append((time.perf_counter() - started) * 1000)
                connection.rollback()  # each read its own snapshot, as a request's is
    return timings


def by_state(chosen: list[Pick], samples: list[float]) -> list[tuple[str, list[float]]]:
    groups: dict[str, list[float]] = {}
    for pick, sample in zip(chosen, samples, strict=True):
        state = (
            "fresh"
            if pick.marks == 0
            else f"stale on {pick.marks} key{'s' if pick.marks > 1 else ''}"
            + (", at birth" if pick.at_birth else "")
        )
        groups.setdefault(state, []).append(sample)
    return sorted(groups.items())


def over_http(
    server_url: str, headers: dict[str, str], chosen: list[Pick]
) -> dict[str, list[float]]:
    ids = [pick.record_id for pick in chosen]
    with httpx.Client(base_url=server_url, headers=headers, timeout=60) as client:
        latencies(client, ["/v1/log"] * 50 + [f"/v1/decisions/{i}/freshness" for i in ids[:20]])
        timings: dict[str, list[float]] = {}
        shapes: dict[str, Callable[[str], str]] = {
            "HTTP floor: GET /v1/log": lambda i: "/v1/log",
            "GET .../freshness": lambda i: f"/v1/decisions/{i}/freshness",
            "GET .../freshness?evidence=false": lambda i: (
                f"/v1/decisions/{i}/freshness?evidence=false"
            ),
            "baseline GET .../why": lambda i: f"/v1/decisions/{i}/why",
        }
        for record_id in ids:
            for name, path in shapes.items():
                timings.setdefault(name, []).extend(latencies(client, [path(record_id)]))
    return timings


@contextlib.contextmanager
def latency_ledger(
    engine_name: str, http: bool
) -> Iterator[tuple[Ledger, str | None, dict[str, str]]]:
    """A fresh ledger, and with `http` a `prov serve` over it with an audit key."""
    if not http:
        with fresh_ledger(engine_name) as ledger:
            yield ledger, None, {}
        return
    with running_server(engine_name, 1, {}) as server:
        audit = httpx.post(
            f"{server.url}/v1/api-keys",
            json={"role": "audit", "name": "bench"},
            headers=server.auth(server.admin_key),
        )
        audit.raise_for_status()
        ledger = Ledger.open(make_engine(server.db_url), server.key_file)
        try:
            yield ledger, server.url, server.auth(str(audit.json()["key"]))
        finally:
            ledger.close()


def bench_latency(engine_name: str, args: argparse.Namespace) -> None:
    decisions = args.decisions_for_latency
    print(
        f"\n[{engine_name}] 3. freshness answers over {decisions:,} decisions, "
        f"{args.lookups:,} random lookups{' (in process and over HTTP)' if args.http else ''}",
        flush=True,
    )
    with latency_ledger(engine_name, args.http) as (ledger, url, headers):
        register_service_key(ledger.engine)
        started = time.perf_counter()
        spent = build_log(ledger, decisions, args.sku_changes)
        analyze(ledger.engine)
        built = time.perf_counter() - started
        with ledger.engine.connect() as connection:
            stale = int(
                connection.execute(text("SELECT count(DISTINCT idx) FROM stale_marks")).scalar_one()
            )
            changes = count(connection, "context_changes")
            deps = int(
                connection.execute(
                    select(func.count()).select_from(context_dependencies)
                ).scalar_one()
            )
        print(
            f"  built in {built:.0f}s ("
            + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in spent.items())
            + f"): {changes:,} context changes, {deps:,} dependency rows, "
            f"{stale:,} decisions stale ({stale / decisions:.0%})",
            flush=True,
        )
        chosen = picks(ledger.engine, args.lookups, random.Random(3))
        timings = in_process(ledger, chosen)
        print("  in process (one connection, one read after another):")
        for name, samples in timings.items():
            target = TARGET_P95_MS if name.startswith("freshness_answer") else None
            print(summary(name, samples, target))
        for state, samples in by_state(chosen, timings["freshness_answer, evidence"]):
            print(summary(f"  evidence, {state}", samples))
        if url is not None:
            print("  over HTTP (prov serve, one worker, loopback, one client):")
            remote = over_http(url, headers, chosen)
            for name, samples in remote.items():
                target = TARGET_P95_MS if "freshness" in name else None
                print(summary(name, samples, target))
            for state, samples in by_state(chosen, remote["GET .../freshness"]):
                print(summary(f"  evidence, {state}", samples))
        breakdown(ledger, chosen[: args.breakdown], args.explain)


@dataclass
class StatementTimes:
    """Time in each distinct SQL statement (driver text), its calls, and one parameter set."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    example: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def statement_times(engine: Engine) -> Iterator[StatementTimes]:
    times = StatementTimes()

    def before(connection: Any, _cursor: Any, *_: Any) -> None:
        connection.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(connection: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        spent = time.perf_counter() - connection.info["bench_started"].pop()
        times.seconds[statement] = times.seconds.get(statement, 0.0) + spent
        times.calls[statement] = times.calls.get(statement, 0) + 1
        times.example.setdefault(statement, parameters)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield times
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def breakdown(ledger: Ledger, chosen: list[Pick], explain: int) -> None:
    """Where an evidence answer's time goes: its SQL statements, each timed at the driver,
    and the rest (decoding, Ed25519, hashing, JSON). With `explain`, the plans of that many
    of the costliest statements, run again under EXPLAIN ANALYZE with one call's parameters."""
    answers = len(chosen)
    with ledger.engine.connect() as connection, statement_times(ledger.engine) as times:
        started = time.perf_counter()
        for pick in chosen:
            freshness_answer(
                connection,
                ledger.signer,
                ledger.origin,
                TENANT,
                pick.record_id,
                now_us=now_micros(),
            )
            connection.rollback()
        total = time.perf_counter() - started
    in_sql = sum(times.seconds.values())
    print(
        f"  where an evidence answer's time goes ({answers} answers, in process): "
        f"{total / answers * 1000:.2f} ms each, of which SQL {in_sql / answers * 1000:.2f} ms in "
        f"{sum(times.calls.values()) / answers:.1f} statements, the rest "
        f"{(total - in_sql) / answers * 1000:.2f} ms"
    )
    ranked = sorted(times.seconds, key=lambda statement: -times.seconds[statement])
    for statement in ranked[:8]:
        calls = times.calls[statement]
        print(
            f"    {times.seconds[statement] / answers * 1000:5.2f} ms/answer  "
            f"{calls / answers:4.1f} calls  {times.seconds[statement] / calls * 1000:5.2f} ms/call"
            f"  {' '.join(statement.split())[:110]}"
        )
    if ledger.engine.dialect.name != "postgresql":
        return
    with ledger.engine.connect() as connection:
        for statement in ranked[:explain]:
            print(f"  EXPLAIN ANALYZE of: {' '.join(statement.split())[:300]}")
            plan = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + statement, times.example[statement]
            )
            for (line,) in plan:
                print(f"      {line}")
            connection.rollback()


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=ENGINES, action="append", help="default: both")
    parser.add_argument(
        "--only", choices=("ingest", "invalidate", "latency"), action="append", help="default: all"
    )
    parser.add_argument("--records", type=int, default=20_000, help="1: decisions per run")
    parser.add_argument("--batch", type=int, default=1_000, help="1: records per batch")
    parser.add_argument("--runs", type=int, default=2, help="1: runs, each into two ledgers")
    parser.add_argument("--invalidate", type=int, default=100_000, help="2: decisions marked")
    parser.add_argument("--rounds", type=int, default=3, help="2: invalidating changes timed")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="2: PostgreSQL statement timeout, seconds"
    )
    parser.add_argument("--decisions-for-latency", type=int, default=1_000_000, help="3")
    parser.add_argument("--sku-changes", type=int, default=10, help="3: changes per 20,000")
    parser.add_argument("--lookups", type=int, default=1_000, help="3: random decisions read")
    parser.add_argument("--no-http", dest="http", action="store_false", help="3: in process only")
    parser.add_argument("--breakdown", type=int, default=300, help="3: answers broken down")
    parser.add_argument("--explain", type=int, default=3, help="3: statements EXPLAINed")
    args = parser.parse_args()
    items = args.only or ["ingest", "invalidate", "latency"]
    started = time.perf_counter()
    for engine_name in args.engine or ENGINES:
        if "ingest" in items:
            bench_ingest(engine_name, args)
        if "invalidate" in items:
            bench_invalidate(engine_name, args)
    for engine_name in args.engine or ["postgres"]:
        if "latency" in items:
            bench_latency(engine_name, args)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
