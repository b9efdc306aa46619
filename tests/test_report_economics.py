"""Decision economics in the cost report: cost per decision, cost per unit of exposure
decided, and the cheaper models whose replays already reproduce the decisions.

One SQLite ledger per module holds demo decisions whose cost, currency, exposures, subject
and trace are set here, and replay records of them by other models at chosen costs. The
report's figures are checked by hand and against a brute-force recomputation from the
signed payloads: counts and decimal totals exactly, DOUBLE ratios and quantiles to 1e-12.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records.decision import Cost, Decision, Exposure, Links
from ledger.records.replay import ModelRef, MoneyDelta, ReplayRecord
from ledger.storage.db import make_engine
from query.analytics.charts import render_chart
from query.analytics.reports import DEFAULT_BY, Report, ReportQuery, run_report
from query.analytics.views import connect
from query.export.exporter import export_ledger
from query.export.paths import Location, open_location
from service.cli.analytics import report
from service.demo.scenarios import demo_decisions
from service.demo.traffic import register_demo_keys
from tests.conftest import TEST_ORIGIN
from tests.support import sign
from tests.test_export_helpers import stored_decisions
from tests.test_replay_records import Logged, replay_of

T1, T2, T3 = ("a" * 32, "b" * 32, "c" * 32)
PER_DECISION = ("tenant", "service", "model", "subject", "trace")
EXPOSURE = "Cost per unit of exposure decided"
CHEAPER = "Cheaper models and how often they replay identically"


@dataclass(frozen=True)
class Spec:
    """What a test decision carries on top of its demo template."""

    subject: str | None
    trace: str | None
    cost: tuple[str, str] | None  # (amount, currency)
    exposures: tuple[tuple[str, str, str], ...] = ()  # (group, amount, unit)


# By service (the demo template's): loans by claude-sonnet-4, payments by o4-mini, orders
# by gpt-4.1-mini. Two currencies throughout; L4 has no cost, so it counts nowhere.
SPECS = {
    "L1": (
        "loan",
        Spec("cust-a", T1, ("0.5", "USD"), (("g1", "1000", "USD"), ("g2", "500", "USD"))),
    ),
    "L2": ("loan", Spec("cust-a", T1, ("0.25", "USD"), (("g1", "3000", "USD"),))),
    "L3": (
        "loan",
        Spec("cust-b", T2, ("1.5", "EUR"), (("g3", "2000", "USD"), ("g5", "40", "GBP"))),
    ),
    "L4": ("loan", Spec(None, None, None, (("g1", "7000", "USD"),))),
    "L5": ("loan", Spec("cust-b", T2, ("0.75", "EUR"))),
    "P1": ("payment", Spec("cust-a", T3, ("0.125", "USD"), (("issuer/1", "80", "GBP"),))),
    "P2": ("payment", Spec("cust-c", T3, ("2", "EUR"), (("issuer/2", "20", "GBP"),))),
    "P3": ("payment", Spec("cust-c", None, ("0.375", "USD"))),
    "O1": ("order", Spec("cust-b", T1, ("0.0625", "USD"), (("zero", "0", "USD"),))),
}

# (decision, replay model or None for the recorded one, mode, verdict, cost after or None)
REPLAYS = [
    ("L1", "claude-haiku", "counterfactual", "identical", "0.1"),
    ("L2", "claude-haiku", "counterfactual", "identical", "0.05"),
    ("L3", "claude-haiku", "counterfactual", "changed", "0.3"),
    ("L5", "claude-haiku", "counterfactual", "identical", "0.15"),
    # dearer than the record: never listed
    ("L1", "gpt-4.1", "counterfactual", "identical", "0.9"),
    ("L2", "gpt-4.1", "counterfactual", "identical", "0.6"),
    # cheaper on the one replay priced on both sides; the failed one has no cost after
    ("L1", "claude-mini", "counterfactual", "failed", None),
    ("L2", "claude-mini", "counterfactual", "changed", "0.2"),
    # the recorded model itself, cheaper this time: not another model
    ("L1", None, "pinned", "identical", "0.4"),
    # a deterministic replay feeds the record back and runs no model, whatever it names
    ("L2", "claude-nano", "deterministic", "identical", "0.01"),
    ("P1", "o4-nano", "counterfactual", "identical", "0.0625"),
    ("P2", "o4-nano", "counterfactual", "identical", "1"),
]


def _decision(template: Decision, spec: Spec) -> Decision:
    usage = template.usage
    assert usage is not None
    cost = None if spec.cost is None else Cost(amount=Decimal(spec.cost[0]), currency=spec.cost[1])
    return msgspec.structs.replace(
        template,
        subject=spec.subject,
        links=Links(trace_id=spec.trace),
        usage=msgspec.structs.replace(usage, cost=cost),
        exposures=[Exposure(group=g, amount=Decimal(a), unit=u) for g, a, u in spec.exposures],
    )


def _replay(
    logged: Logged, number: int, model: str | None, mode: str, verdict: str, after: str | None
) -> ReplayRecord:
    record = replay_of(logged, f"replay-econ-{number}", verdict=verdict)
    usage = logged.decision.usage
    assert usage is not None
    cost = usage.cost
    assert cost is not None
    diff = msgspec.structs.replace(
        record.diff,
        cost=MoneyDelta(cost.amount, None if after is None else Decimal(after), cost.currency),
    )
    changes: dict[str, Any] = {"mode": mode, "diff": diff}
    if model is not None:
        provider = logged.decision.model.provider
        changes["model"] = ModelRef(provider=provider, name=model, version=f"{model}-1")
    return msgspec.structs.replace(record, **changes)


@dataclass(frozen=True)
class Exported:
    location: Location
    decisions: list[Decision]
    replays: list[ReplayRecord]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    folder = tmp_path_factory.mktemp("economics")
    ledger = Ledger.init(make_engine(str(folder / "l.db")), folder / "l.key", TEST_ORIGIN)
    register_demo_keys(ledger.engine, "acme")
    templates: dict[str, list[Decision]] = defaultdict(list)
    for template in demo_decisions(15, seed=7, tenant="acme"):
        templates[template.id.partition("-")[0]].append(template)
    made = {name: _decision(templates[kind].pop(), spec) for name, (kind, spec) in SPECS.items()}
    receipts = ledger.append([sign(decision) for decision in made.values()])
    logged = {}
    for (name, decision), receipt in zip(made.items(), receipts, strict=True):
        assert isinstance(receipt, Receipt), receipt
        logged[name] = Logged(decision, receipt)
    replays = [
        _replay(logged[name], number, model, mode, verdict, after)
        for number, (name, model, mode, verdict, after) in enumerate(REPLAYS)
    ]
    assert all(isinstance(r, Receipt) for r in ledger.append_replays(replays))
    location = open_location(str(folder / "exports"))
    export_ledger(ledger, location)
    decisions = [decision for _, decision in stored_decisions(ledger.engine)]
    assert len(decisions) == len(SPECS)
    yield Exported(location, decisions, replays)
    ledger.close()


def _cost(location: Location, **parameters: Any) -> Report:
    return run_report(connect(location), "cost", ReportQuery(**parameters))


def _sections(result: Report) -> dict[str, list[dict[str, Any]]]:
    """Rows by section title, without the limit the title names."""
    return {s.title.split(" (")[0]: s.table.to_pylist() for s in result.sections}


# --- brute force, from the signed payloads ----------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks, as DuckDB's quantile_cont."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


KEYS: dict[str, Callable[[Decision], str | None]] = {
    "tenant": lambda d: d.tenant,
    "service": lambda d: d.service,
    "model": lambda d: d.model.name,
    "subject": lambda d: d.subject,
    "trace": lambda d: d.links.trace_id if d.links else None,
}


def _priced(decision: Decision) -> Cost | None:
    return decision.usage.cost if decision.usage else None


def expected_per_decision(decisions: list[Decision], name: str) -> dict[tuple[Any, ...], Any]:
    costs: dict[tuple[Any, ...], list[Decimal]] = defaultdict(list)
    for decision in decisions:
        cost, key = _priced(decision), KEYS[name](decision)
        if cost is not None and key is not None:
            costs[key, cost.currency].append(cost.amount)
    return {
        key: (
            len(amounts),
            sum(amounts, Decimal(0)),
            float(sum(amounts, Decimal(0))) / len(amounts),
            _quantile([float(a) for a in amounts], 0.5),
            _quantile([float(a) for a in amounts], 0.95),
        )
        for key, amounts in costs.items()
    }


def expected_per_exposure(decisions: list[Decision]) -> dict[tuple[Any, ...], Any]:
    totals: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    for decision in decisions:
        cost = _priced(decision)
        if cost is None:
            continue
        per_unit: dict[str, Decimal] = defaultdict(Decimal)
        for exposure in decision.exposures:
            per_unit[exposure.unit] += exposure.amount
        for unit, amount in per_unit.items():
            total = totals[decision.service, decision.decision_type, cost.currency, unit]
            total[0] += 1
            total[1] += cost.amount
            total[2] += amount
    return {
        key: (n, cost, exposure, float(cost / exposure) if exposure else None)
        for key, (n, cost, exposure) in totals.items()
    }


def per_decision(before: Decimal, after: Decimal, priced: int) -> tuple[float, float]:
    return float(before) / priced, float(after) / priced


def expected_cheaper(
    decisions: list[Decision], replays: list[ReplayRecord]
) -> list[tuple[Any, ...]]:
    types = {d.id: d.decision_type for d in decisions}
    groups: dict[tuple[str | None, ...], list[Any]] = defaultdict(
        lambda: [0, 0, 0, Decimal(0), Decimal(0)]
    )
    for r in replays:
        if r.mode == "deterministic" or r.model.name == r.recorded_model.name:
            continue
        key = (types[r.replay_of], r.recorded_model.name, r.model.name, r.diff.cost.currency)
        group = groups[key]
        group[0] += 1
        group[1] += r.verdict == "identical"
        if r.diff.cost.before is not None and r.diff.cost.after is not None:
            group[2] += 1
            group[3] += r.diff.cost.before
            group[4] += r.diff.cost.after
    rows = [
        (*key, n, same, same / n, priced, before, after, *per_decision(before, after, priced))
        for key, (n, same, priced, before, after) in groups.items()
        if priced and after < before
    ]
    return sorted(rows, key=lambda row: (-row[6], *row[:4]))


# --- the report ---------------------------------------------------------------------------


def test_cost_per_decision_by_each_dimension(exported: Exported) -> None:
    found = _sections(_cost(exported.location))
    for name in PER_DECISION:
        rows = found[f"Cost per decision by {name}"]
        got = {
            (row[name], row["currency"]): (
                row["decisions"],
                row["cost"],
                row["cost_per_decision"],
                row["cost_per_decision_p50"],
                row["cost_per_decision_p95"],
            )
            for row in rows
        }
        expected = expected_per_decision(exported.decisions, name)
        assert got.keys() == expected.keys(), name
        for key, (n, total, mean, p50, p95) in expected.items():
            assert got[key][:2] == (n, total), (name, key)
            assert got[key][2:] == pytest.approx((mean, p50, p95), rel=1e-12), (name, key)
        # one currency after the other, the costliest first
        assert [(r["currency"], -r["cost"]) for r in rows] == sorted(
            (r["currency"], -r["cost"]) for r in rows
        )

    # By hand: cust-b decided in euros and in dollars, two rows that are never added up.
    by_subject = {(r["subject"], r["currency"]): r for r in found["Cost per decision by subject"]}
    assert {key for key in by_subject if key[0] == "cust-b"} == {
        ("cust-b", "EUR"),
        ("cust-b", "USD"),
    }
    euros, dollars = by_subject["cust-b", "EUR"], by_subject["cust-b", "USD"]
    assert (euros["decisions"], euros["cost"]) == (2, Decimal("2.25"))
    assert euros["cost_per_decision"] == 1.125
    assert euros["cost_per_decision_p50"] == 1.125
    assert euros["cost_per_decision_p95"] == pytest.approx(0.75 + 0.95 * 0.75, rel=1e-12)
    assert (dollars["decisions"], dollars["cost"]) == (1, Decimal("0.0625"))
    # L4 has no cost: the loan model's dollar decisions are L1 and L2 alone.
    [sonnet_usd] = [
        r
        for r in found["Cost per decision by model"]
        if r["model"] == "claude-sonnet-4" and r["currency"] == "USD"
    ]
    assert (sonnet_usd["decisions"], sonnet_usd["cost"]) == (2, Decimal("0.75"))
    # Decisions without a trace are not a trace of their own.
    assert None not in {r["trace"] for r in found["Cost per decision by trace"]}
    traces = found["Cost per decision by trace"]
    assert {(r["trace"], r["currency"]): r["decisions"] for r in traces} == {
        (T1, "USD"): 3,
        (T2, "EUR"): 2,
        (T3, "USD"): 1,
        (T3, "EUR"): 1,
    }


def test_subjects_and_traces_are_limited_per_currency(exported: Exported) -> None:
    found = _cost(exported.location, limit=1).sections
    [subjects] = [s for s in found if s.title.startswith("Cost per decision by subject")]
    assert subjects.title == "Cost per decision by subject (the 1 costliest per currency)"
    # USD: cust-a 0.875 beats cust-c 0.375 and cust-b 0.0625; EUR: cust-b 2.25 beats cust-c 2.
    assert [(r["subject"], r["currency"], r["cost"]) for r in subjects.table.to_pylist()] == [
        ("cust-b", "EUR", Decimal("2.25")),
        ("cust-a", "USD", Decimal("0.875")),
    ]
    [tenants] = [s for s in found if s.title == "Cost per decision by tenant"]
    assert tenants.table.num_rows == 2  # tenant, service and model are never cut


def test_cost_per_unit_of_exposure(exported: Exported) -> None:
    rows = _sections(_cost(exported.location))[EXPOSURE]
    got = {
        (r["service"], r["decision_type"], r["currency"], r["unit"]): (
            r["decisions"],
            r["cost"],
            r["exposure"],
            r["cost_per_unit"],
        )
        for r in rows
    }
    expected = expected_per_exposure(exported.decisions)
    assert got.keys() == expected.keys()
    for key, (n, cost, exposure, ratio) in expected.items():
        assert got[key][:3] == (n, cost, exposure), key
        assert got[key][3] == (None if ratio is None else pytest.approx(ratio, rel=1e-12)), key
    # By hand. L1 (two dollar exposures, 1500) and L2 (3000) for 0.75 dollars; L4 carries
    # exposure but no cost, L5 cost but no exposure: neither counts.
    loans = "loan-underwriter", "loan.approve"
    assert got[(*loans, "USD", "USD")][:3] == (2, Decimal("0.75"), Decimal(4500))
    assert got[(*loans, "USD", "USD")][3] == pytest.approx(0.75 / 4500, rel=1e-12)
    # L3, in euros, decided exposure in two units: its cost is set against each.
    assert got[(*loans, "EUR", "USD")] == (1, Decimal("1.5"), Decimal(2000), 0.00075)
    assert got[(*loans, "EUR", "GBP")] == (1, Decimal("1.5"), Decimal(40), 0.0375)
    payments = "payment-retrier", "payment.retry"
    assert got[(*payments, "EUR", "GBP")] == (1, Decimal(2), Decimal(20), 0.1)
    # A decided exposure of zero has no ratio.
    assert got["order-router", "order.route", "USD", "USD"][3] is None


def test_cheaper_models_that_replay_identically(exported: Exported) -> None:
    rows = _sections(_cost(exported.location))[CHEAPER]
    got = [tuple(row.values()) for row in rows]
    expected = expected_cheaper(exported.decisions, exported.replays)
    assert [row[:10] for row in got] == [row[:10] for row in expected]
    assert [row[10:] for row in got] == [pytest.approx(row[10:], rel=1e-12) for row in expected]
    # By hand: only the cheaper models, the identical share first; gpt-4.1 costs more than
    # the record, and the pinned replay ran the recorded model itself.
    assert [
        (r["decision_type"], r["replay_model"], r["currency"], r["replays"], r["identical"])
        for r in rows
    ] == [
        ("loan.approve", "claude-haiku", "USD", 2, 2),
        ("payment.retry", "o4-nano", "EUR", 1, 1),
        ("payment.retry", "o4-nano", "USD", 1, 1),
        ("loan.approve", "claude-haiku", "EUR", 2, 1),
        ("loan.approve", "claude-mini", "USD", 2, 0),
    ]
    haiku_usd, *_, haiku_eur, mini = rows
    assert haiku_usd["recorded_model"] == "claude-sonnet-4"
    assert (haiku_usd["cost_before"], haiku_usd["cost_after"]) == (
        Decimal("0.75"),
        Decimal("0.15"),
    )
    assert haiku_usd["cost_per_decision_before"] == pytest.approx(0.375)
    assert haiku_usd["cost_per_decision_after"] == pytest.approx(0.075)
    assert haiku_eur["share_identical"] == 0.5
    assert (haiku_eur["cost_before"], haiku_eur["cost_after"]) == (
        Decimal("2.25"),
        Decimal("0.45"),
    )
    # The failed replay counts among the replays, not in the prices.
    assert (mini["replays"], mini["priced"], mini["cost_before"], mini["cost_after"]) == (
        2,
        1,
        Decimal("0.25"),
        Decimal("0.2"),
    )
    # The filters choose the replayed decisions.
    only_payments = _sections(_cost(exported.location, decision_type="payment.retry"))[CHEAPER]
    assert {(r["decision_type"], r["replay_model"]) for r in only_payments} == {
        ("payment.retry", "o4-nano")
    }


def test_by_subject_and_trace_and_the_chart(exported: Exported) -> None:
    assert DEFAULT_BY == ("tenant", "service", "decision_type", "model")
    result = _cost(exported.location, by=("subject", "trace"))
    totals = _sections(result)["Totals"]
    expected: dict[tuple[Any, ...], Decimal] = defaultdict(Decimal)
    for decision in exported.decisions:
        cost = _priced(decision)
        if cost is not None:
            expected[KEYS["subject"](decision), KEYS["trace"](decision), cost.currency] += (
                cost.amount
            )
    assert {
        (r["subject"], r["trace"], r["currency"]): r["cost"] for r in totals if r["currency"]
    } == expected
    assert render_chart(result, "png").startswith(b"\x89PNG\r\n\x1a\n")

    answer = CliRunner().invoke(
        report,
        ["cost", "--dir", exported.location.uri, "--by", "trace", "--format", "json"],
    )
    assert answer.exit_code == 0, answer.output
    shown = json.loads(answer.output)
    titles = [section["title"] for section in shown["sections"]]
    assert titles[:2] == ["Cost per day", "Totals"]
    assert titles[-2:] == [EXPOSURE, CHEAPER]
    assert shown["sections"][1]["columns"][:2] == ["trace", "currency"]
