"""Policy re-evaluation: decisions per second for the demo's Cedar lending policy, beside a
baseline from the same run.

1. Evaluation alone: the recorded policy inputs of the demo's loan decisions, in memory,
   evaluated under v1 (which must reproduce every recorded result) and v2:
   - Cedar, one request per call (`CedarPolicy.evaluate`: what a single check does);
   - Cedar, the batch's requests in one call (`CedarPolicy.evaluate_many`);
   - baseline: the Python engine on the same inputs (`loan_rules.approve_loan_v1`, the rule
     the Cedar policy rewrites, loaded as a registered Python policy).
   Target: at least 2,000 decisions/s for Cedar.
2. End to end on a fresh SQLite ledger (`--engine` for PostgreSQL too): a batch check
   (`PolicyChecker.check_batch`) pinned and against v2, each decision read from the log,
   evaluated, and its check signed and appended.

    python -m bench.policy_eval [--records 30000] [--ledger-records 6000] [--engine sqlite]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import ENGINES, fresh_ledger
from ledger.records.decision import Decision
from ledger.records.policy import PolicyOutcome, document_digest
from query.audit.search import DecisionFilter
from replay.policy.cedar import CedarPolicy
from replay.policy.check import PolicyChecker, principal_of, recorded_inputs
from replay.policy.python import PythonPolicy
from service.cli.replay_inputs import select_decisions
from service.demo import loan_rules
from service.demo.loan_policy import LOAN_POLICY_SCHEMA, LOAN_POLICY_V1, LOAN_POLICY_V2
from service.demo.scenarios import demo_decisions
from service.demo.traffic import demo_envelopes, prepare_demo

TARGET = 2_000.0
TENANT = "acme"


def rate(count: int, work: Callable[[], object]) -> float:
    """Decisions per second for `work`, over `count` decisions, best of three runs."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return count / best


def evaluation(loans: Sequence[Decision]) -> dict[str, float]:
    """Decisions per second of each way of evaluating the loans' recorded inputs."""
    v1 = CedarPolicy(LOAN_POLICY_V1.document, LOAN_POLICY_SCHEMA)
    v2 = CedarPolicy(LOAN_POLICY_V2.document, LOAN_POLICY_SCHEMA)
    python = PythonPolicy(
        document_digest(Path(loan_rules.__file__).read_bytes()),
        None,
        "service.demo.loan_rules:approve_loan_v1",
    )
    items = [(recorded_inputs(d), principal_of(d), d.id) for d in loans]
    recorded = [
        PolicyOutcome(result=d.policy.result, reasons=d.policy.reasons)
        for d in loans
        if d.policy is not None
    ]
    # Pinned must reproduce every recorded result, on both engines.
    assert [v1.evaluate(*item) for item in items] == recorded
    assert [python.evaluate(*item) for item in items] == recorded

    def one_by_one(policy: Any) -> Callable[[], object]:
        return lambda: [policy.evaluate(*item) for item in items]

    def batched(policy: CedarPolicy) -> Callable[[], object]:
        return lambda: policy.evaluate_many([policy.request(*item) for item in items])

    return {
        "cedar v1, one call each (pinned)": rate(len(items), one_by_one(v1)),
        "cedar v2, one call each (against)": rate(len(items), one_by_one(v2)),
        "cedar v1, one call per batch": rate(len(items), batched(v1)),
        "python baseline, loan_rules v1": rate(len(items), one_by_one(python)),
    }


def end_to_end(engine_name: str, records: int) -> dict[str, float]:
    """A batch check of every demo loan in a fresh ledger, pinned and against v2."""
    with fresh_ledger(engine_name) as ledger:
        shape = prepare_demo(ledger, TENANT)
        raws = list(demo_envelopes(records, seed=3, tenant=TENANT, shape=shape))
        for start in range(0, len(raws), 1000):
            ledger.append(raws[start : start + 1000])
        with ledger.engine.connect() as connection:
            where = DecisionFilter(TENANT, decision_type="loan.approve")
            indexes = [s.index for s in select_decisions(connection, where, records)]
        checker = PolicyChecker(ledger)
        figures = {}
        for label, against in (("pinned", None), ("against v2", "v2")):
            started = time.perf_counter()
            report = checker.check_batch(TENANT, indexes, against)
            elapsed = time.perf_counter() - started
            assert report.stored == len(indexes), report.unchecked[:3]
            if against is None:
                assert {line.verdict for line in report.checks} == {"reproduced"}
            figures[f"{engine_name}: {label}, read + evaluate + sign + append"] = (
                len(indexes) / elapsed
            )
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=30_000, help="demo decisions in memory")
    parser.add_argument(
        "--ledger-records", type=int, default=6_000, help="demo decisions in the ledger"
    )
    parser.add_argument("--engine", choices=ENGINES, action="append", help="default: sqlite")
    args = parser.parse_args()
    loans = [d for d in demo_decisions(args.records, seed=3, tenant=TENANT) if d.policy is not None]
    print(f"{len(loans):,} demo loan decisions; target {TARGET:,.0f} decisions/s for Cedar")
    for label, figure in evaluation(loans).items():
        print(f"  {label:<45} {figure:>10,.0f} decisions/s")
    for engine_name in args.engine or ["sqlite"]:
        for label, figure in end_to_end(engine_name, args.ledger_records).items():
            print(f"  {label:<45} {figure:>10,.0f} decisions/s")


if __name__ == "__main__":
    main()
