"""Live monitors at ingest (docs/monitors.md), each figure beside a baseline from the same run:

1. ingest: the microloans demo's pre-signed loan approvals, admitted once per batch and
   sequenced into two fresh ledgers, one with five monitors in force (the sector
   concentration share, exposure sums per sector, a distinct-subject count, cost per day
   and model calls per trace) and one with none; which goes first alternates per batch.
   Medians of the per-batch rates, for sequencing alone and for admission + sequencing
   (the admission time is the batch's, counted for both). Target: with >= 0.8x without.
2. evaluation: the 50,000-loan scenario's monitor evaluation alone, apart from signing,
   admission and HTTP: reading each decision's members from its envelope
   (`ledger.monitors.facts`) and counting it in the concentration window
   (`ledger.monitors.window`), beside reading the members alone and beside a strict decode
   of the whole decision. Then the whole scenario through the ledger (`run_microloans`),
   which must end with the breach recorded. Target: >= 10,000 decisions/s of evaluation.

    python -m bench.monitors [--engine sqlite|postgres] [--only ingest|evaluate]
        [--records 20000] [--batch 1000] [--loans 50000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from bench.common import ENGINES, fresh_ledger
from ledger.ledger import Ledger
from ledger.monitors.compile import compile_monitor
from ledger.monitors.facts import facts_from_envelope
from ledger.monitors.window import MonitorWindow
from ledger.records import dsse
from ledger.records.decision import decode_decision
from ledger.records.monitor import MonitorDefinition, Selector
from service.demo.microloans import (
    SERVICE,
    concentration_monitor,
    default_min_count,
    loan_envelopes,
    run_microloans,
)
from service.demo.traffic import register_demo_keys

TENANT = "acme"


def five_monitors(tenant: str, records: int) -> list[MonitorDefinition]:
    loans = Selector(decision_type="loan.*")
    return [
        concentration_monitor(tenant, min_count=default_min_count(records)),
        MonitorDefinition(
            id="sector-exposure",
            tenant=tenant,
            select=Selector(group="sector:*"),
            aggregate="sum_exposure",
            unit="USD",
            group_by="group",
            window="1h",
            limit="100000000",
        ),
        MonitorDefinition(
            id="borrowers",
            tenant=tenant,
            select=loans,
            aggregate="distinct_subjects",
            window="calendar:day",
            limit="1000000",
        ),
        MonitorDefinition(
            id="spend",
            tenant=tenant,
            aggregate="sum_cost",
            unit="USD",
            window="calendar:day",
            limit="1000000",
        ),
        MonitorDefinition(
            id="loops",
            tenant=tenant,
            aggregate="model_calls",
            group_by="trace",
            window="10m",
            limit="50",
        ),
    ]


def ingest(engine: str, records: int, batch: int) -> None:
    envelopes = list(loan_envelopes(records, seed=7, tenant=TENANT))
    with fresh_ledger(engine) as watched, fresh_ledger(engine) as plain:
        for ledger in (watched, plain):
            register_demo_keys(ledger.engine, TENANT, [SERVICE])
        applied = watched.apply_monitors(five_monitors(TENANT, records), applied_by="bench")
        assert all(result is not None for _, result in applied)
        sequencing: list[tuple[float, float]] = []
        whole: list[tuple[float, float]] = []
        for number, start in enumerate(range(0, records, batch)):
            chunk = envelopes[start : start + batch]
            began = time.perf_counter()
            admitted = watched.admit(chunk)
            admitting = time.perf_counter() - began
            order: Sequence[Ledger] = (watched, plain) if number % 2 == 0 else (plain, watched)
            seconds: dict[int, float] = {}
            for ledger in order:
                began = time.perf_counter()
                ledger.sequence(list(admitted))
                seconds[id(ledger)] = time.perf_counter() - began
            on, off = seconds[id(watched)], seconds[id(plain)]
            sequencing.append((len(chunk) / on, len(chunk) / off))
            whole.append((len(chunk) / (admitting + on), len(chunk) / (admitting + off)))
        for name, rates in (("sequencing", sequencing), ("admission + sequencing", whole)):
            with_monitors = statistics.median(on for on, _ in rates)
            without = statistics.median(off for _, off in rates)
            ratios = sorted(on / off for on, off in rates)
            print(
                f"{engine:<8} ingest, {name:<24} 5 monitors {with_monitors:>8,.0f}/s  none "
                f"{without:>8,.0f}/s  ratio {with_monitors / without:.2f} (per batch median "
                f"{statistics.median(ratios):.2f})  target >= 0.80"
            )


def evaluate(engine: str, loans: int) -> None:
    envelopes = list(loan_envelopes(loans, seed=7, tenant=TENANT))
    monitor = compile_monitor(concentration_monitor(TENANT, min_count=default_min_count(loans)))

    def members_only() -> None:
        for raw in envelopes:
            facts_from_envelope(raw)

    def strict_decode() -> None:
        for raw in envelopes:
            decode_decision(dsse.payload_bytes(dsse.decode_envelope(raw)))

    def evaluation() -> int:
        window = MonitorWindow(monitor, record_index=0)
        breaches = 0
        for index, raw in enumerate(envelopes, start=1):
            outcome = window.observe(index, 1_000_000, facts_from_envelope(raw))
            if outcome is not None:
                breaches += len(outcome[1])
        return breaches

    figures = {}
    for name, action in (
        ("members read (the floor)", members_only),
        ("strict decode of the whole decision", strict_decode),
        ("evaluation: members read + window", evaluation),
    ):
        runs = []
        for _ in range(3):
            began = time.perf_counter()
            action()
            runs.append(time.perf_counter() - began)
        figures[name] = loans / statistics.median(runs)
        print(f"{engine:<8} {name:<38} {figures[name]:>10,.0f} decisions/s")
    print(
        f"{engine:<8} evaluation {figures['evaluation: members read + window']:,.0f}/s  "
        "target >= 10,000/s"
    )
    with fresh_ledger(engine) as ledger:
        began = time.perf_counter()
        run = run_microloans(ledger, loans, seed=7, tenant=TENANT, batch=1000)
        seconds = time.perf_counter() - began
        for line in run.summary():
            print(f"{engine:<8}   {line}")
        print(
            f"{engine:<8} whole scenario through the ledger: {loans:,} in {seconds:.1f}s "
            f"({loans / seconds:,.0f}/s), breach recorded: {run.breach_index is not None}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES)
    parser.add_argument("--only", choices=("ingest", "evaluate"))
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--loans", type=int, default=50_000)
    args = parser.parse_args()
    for engine in (args.engine,) if args.engine else ENGINES:
        if args.only in (None, "ingest"):
            ingest(engine, args.records, args.batch)
        if args.only in (None, "evaluate"):
            evaluate(engine, args.loans)


if __name__ == "__main__":
    main()
