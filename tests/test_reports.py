"""The canned reports over an export, their charts, and `GET /v1/reports/{name}`.

One SQLite ledger is exported per module: two tenants of demo decisions, where the loan
underwriter of tenant `acme` moves to a new model version halfway, after which it
approves nothing. The figures are checked against the signed payloads.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.testing import TestClient

from ledger.errors import LedgerError, NotFound
from ledger.keys.apikeys import ApiKey, Role
from ledger.ledger import Ledger
from ledger.records.decision import Decision
from ledger.storage.db import make_engine
from query.analytics.charts import render_chart
from query.analytics.reports import ReportQuery, run_report
from query.analytics.views import connect
from query.export.exporter import export_ledger
from query.export.paths import Location, open_location
from query.routes.reports import report
from query.services import READ_SERVICES, ReadServices
from service.demo.scenarios import demo_decisions
from service.demo.traffic import register_demo_keys
from service.web.problems import ledger_error_handler
from tests.conftest import TEST_ORIGIN
from tests.support import sign
from tests.test_export_helpers import append_all, fill, stored_decisions

NEW_VERSION = "claude-sonnet-4-20250901"


def _shifted(decision: Decision, position: int) -> Decision:
    """From the 120th record on, the loan model is upgraded and approves nothing."""
    if decision.decision_type != "loan.approve" or position < 120:
        return decision
    model = msgspec.structs.replace(decision.model, version=NEW_VERSION)
    output = msgspec.structs.replace(decision.output, decision={"approved": False})
    return msgspec.structs.replace(decision, model=model, output=output, exposures=[])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ledger, Location]]:
    folder = tmp_path_factory.mktemp("reports")
    ledger = Ledger.init(make_engine(str(folder / "l.db")), folder / "l.key", TEST_ORIGIN)
    register_demo_keys(ledger.engine, "acme")
    decisions = demo_decisions(240, seed=41, tenant="acme")
    append_all(ledger, [sign(_shifted(d, n)) for n, d in enumerate(decisions)])
    fill(ledger, 30, seed=42, tenant="globex")
    location = open_location(str(folder / "exports"))
    export_ledger(ledger, location)
    yield ledger, location
    ledger.close()


def _report(location: Location, name: str, **parameters: Any) -> list[Any]:
    tenant = parameters.pop("tenant", None)
    result = run_report(connect(location, tenant=tenant), name, ReportQuery(**parameters))
    return [section.table.to_pylist() for section in result.sections]


def _acme(ledger: Ledger) -> list[Decision]:
    return [d for _, d in stored_decisions(ledger.engine) if d.tenant == "acme"]


def test_cost_totals_are_the_ledgers(exported: tuple[Ledger, Location]) -> None:
    ledger, location = exported
    over_time, totals, *_ = _report(location, "cost", by=("tenant", "service"))
    for row in totals:
        mine = [
            d
            for _, d in stored_decisions(ledger.engine)
            if (d.tenant, d.service) == (row["tenant"], row["service"])
        ]
        assert row["decisions"] == len(mine)
        assert row["cost"] == sum(
            (d.usage.cost.amount for d in mine if d.usage and d.usage.cost), Decimal(0)
        )
        assert row["input_tokens"] == sum(d.usage.input_tokens for d in mine if d.usage)
    assert sum(row["cost"] for row in over_time) == sum(row["cost"] for row in totals)
    assert {row["tenant"] for row in totals} == {"acme", "globex"}
    [only_acme] = [
        {row["tenant"] for row in section}
        for section in _report(location, "cost", tenant="acme", by=("tenant",))[1:2]
    ]
    assert only_acme == {"acme"}


def test_drift_shows_version_shares_and_the_output_shift(
    exported: tuple[Ledger, Location],
) -> None:
    ledger, location = exported
    shares, shifts = _report(location, "drift", tenant="acme", service="loan-underwriter")
    model_rows = [row for row in shares if row["dimension"] == "model"]
    for day in {row["day"] for row in model_rows}:
        assert sum(row["share"] for row in model_rows if row["day"] == day) == pytest.approx(1)
    assert any(row["version"].endswith(NEW_VERSION) for row in model_rows)

    loans = [d for d in _acme(ledger) if d.decision_type == "loan.approve"]
    before = [d for d in loans if d.model.version != NEW_VERSION]
    approved_before = sum(d.output.decision["approved"] for d in before) / len(before)
    [row] = [r for r in shifts if r["field"] == "approved" and r["value"] == "true"]
    assert row["dimension"] == "model"
    assert row["version"].endswith(NEW_VERSION)
    assert row["share_before"] == pytest.approx(approved_before)
    assert row["share_after"] == 0
    assert row["distance"] == pytest.approx(approved_before)


def test_latency_quantiles(exported: tuple[Ledger, Location]) -> None:
    ledger, location = exported
    per_decision, per_step = _report(location, "latency", tenant="acme")
    for row in per_decision:
        latencies = [
            d.usage.latency_ms
            for d in _acme(ledger)
            if d.service == row["service"]
            and d.model.name == row["model"]
            and d.usage
            and d.usage.latency_ms is not None
        ]
        assert row["latency_ms_p50"] == pytest.approx(statistics.median(latencies))
        assert row["latency_ms_p50"] <= row["latency_ms_p95"] <= row["latency_ms_p99"]
    assert {row["kind"] for row in per_step} >= {"llm_call", "tool_call"}


def test_exposure_over_a_window_longer_than_the_data(exported: tuple[Ledger, Location]) -> None:
    ledger, location = exported
    [rows] = _report(location, "exposure", tenant="acme", window=timedelta(days=3650), limit=500)
    expected: dict[tuple[str, str], Decimal] = {}
    for decision in _acme(ledger):
        for exposure in decision.exposures:
            key = (exposure.group, exposure.unit)
            expected[key] = expected.get(key, Decimal(0)) + exposure.amount
    assert {(r["group"], r["unit"]): r["total_exposure"] for r in rows} == expected
    for row in rows:  # amounts are positive, so the widest window peaks at the total
        assert row["peak_exposure"] == row["total_exposure"]
        assert 0 < row["share_at_peak"] <= 1


def test_freshness_at_two_moments(exported: tuple[Ledger, Location]) -> None:
    ledger, location = exported
    long_ago, *_ = _report(
        location, "freshness", tenant="acme", at=datetime(2000, 1, 1, tzinfo=UTC)
    )
    assert all(row["expired"] == 0 for row in long_ago)
    summary, listed, *_ = _report(
        location, "freshness", tenant="acme", at=datetime(2100, 1, 1, tzinfo=UTC), limit=1000
    )
    expiring = [d for d in _acme(ledger) if d.freshness and d.freshness.valid_until]
    assert sum(row["expired"] for row in summary) == len(expiring) == len(listed)


def test_charts_are_png_and_reproducible_svg(exported: tuple[Ledger, Location]) -> None:
    _, location = exported
    for name in ("cost", "drift", "latency", "exposure", "freshness"):
        result = run_report(connect(location), name, ReportQuery())
        assert render_chart(result, "png").startswith(b"\x89PNG\r\n\x1a\n")
        svg = render_chart(result, "svg")
        assert b"<svg" in svg
        assert svg == render_chart(result, "svg")


def test_an_unknown_report_is_not_found(exported: tuple[Ledger, Location]) -> None:
    _, location = exported
    with pytest.raises(NotFound):
        run_report(connect(location), "gossip", ReportQuery())


class _NoKeys:
    """The route under test takes its caller from a dependency; no key is looked up."""

    async def lookup(self, token: str) -> ApiKey | None:
        return None


def _client(ledger: Ledger, export_dir: str | None, tenant: str) -> TestClient[Litestar]:
    caller = ApiKey("key1", tenant, Role.AUDIT, "auditor", 0, None)
    app = Litestar(
        route_handlers=[Router("/v1/reports", route_handlers=[report])],
        dependencies={"caller": Provide(lambda: caller, sync_to_thread=False)},
        exception_handlers={LedgerError: ledger_error_handler},
    )
    app.state[READ_SERVICES] = ReadServices(ledger, _NoKeys(), export_dir=export_dir)
    return TestClient(app)


def test_the_http_report_is_scoped_to_the_callers_tenant(
    exported: tuple[Ledger, Location],
) -> None:
    ledger, location = exported
    with _client(ledger, location.uri, "globex") as client:
        answer = client.get("/v1/reports/cost", params={"by": "tenant,service"})
        assert answer.status_code == 200, answer.text
        [_, totals, *_] = answer.json()["sections"]
        assert {row[0] for row in totals["rows"]} == {"globex"}
        assert sum(row[3] for row in totals["rows"]) == 30
        svg = client.get("/v1/reports/latency", params={"format": "svg"})
        assert svg.headers["content-type"].startswith("image/svg+xml")
        png = client.get("/v1/reports/exposure", params={"format": "png", "window": "7d"})
        assert png.content.startswith(b"\x89PNG")
    with _client(ledger, location.uri, "nobody") as client:
        empty = client.get("/v1/reports/cost").json()
        assert all(section["rows"] == [] for section in empty["sections"])


def test_http_report_problems(exported: tuple[Ledger, Location], tmp_path: Path) -> None:
    ledger, location = exported
    with _client(ledger, location.uri, "acme") as client:
        assert client.get("/v1/reports/gossip").status_code == 404
        bad = client.get("/v1/reports/exposure", params={"window": "soon"})
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert client.get("/v1/reports/cost", params={"by": "colour"}).status_code == 400
    with _client(ledger, str(tmp_path / "never-exported"), "acme") as client:
        answer = client.get("/v1/reports/cost")
        assert answer.status_code == 404
        assert "nothing has been exported" in answer.json()["detail"]
    with _client(ledger, None, "acme") as client:
        assert client.get("/v1/reports/cost").status_code == 404
