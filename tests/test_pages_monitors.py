"""Monitors on the auditor pages, in headless chromium against a real `prov serve`: the list
shows each monitor with its groups' values, red where breached, and reloads itself; the
monitor's page draws its history as an SVG chart with the limit; a breach links to its page,
which shows the window, value and limit and links to the decision that crossed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser

from ledger.errors import RecordRejected
from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from tests.http_server import TENANT, Server, prepared_server
from tests.monitor_support import definition, loan, register_tenant
from tests.test_pages import browser, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("pages")]
__all__ = ["browser"]  # the shared chromium fixture

SECTORS = ["b", "a", "a", "b", "a", "a", "a", "a"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("pages-monitors")
    server = prepared_server(str(directory / "ledger.db"), directory)
    server.start()
    engine = make_engine(server.db_url)
    ledger = Ledger.open(engine, server.key_file)
    try:
        register_tenant(engine, TENANT)
        for _, result in ledger.apply_monitors(
            [
                definition(
                    TENANT,
                    "conc",
                    aggregate="share",
                    unit="USD",
                    group_by="group",
                    window="1h",
                    limit="0.5",
                    min_count=3,
                    action="flag",
                    select={"group": "sector:*"},
                )
            ],
            applied_by="test",
        ):
            assert not isinstance(result, RecordRejected), result
        for number, sector in enumerate(SECTORS):
            ledger.append([loan(TENANT, f"loan-{number}", sector=sector)])
        yield server
    finally:
        ledger.close()
        engine.dispose()
        server.stop()


def test_the_monitor_pages_from_the_list_to_the_crossing_decision(
    browser: Browser, site: Server
) -> None:
    context = browser.new_context(base_url=site.url)
    try:
        page = sign_in(context, site.api_key("audit"))
        page.get_by_role("link", name="Monitors").click()
        page.wait_for_url("**/ui/monitors")
        refresh = page.locator('meta[http-equiv="refresh"]').get_attribute("content")
        assert refresh is not None
        assert int(refresh) > 0
        card = page.locator('[data-monitor="conc"]')
        assert card.is_visible()
        row = card.locator('tr[data-group="sector:a"]')
        assert row.locator(".value").inner_text() == "0.75"
        assert row.get_attribute("data-breached") == "true"
        assert row.locator(".gauge-bar.over").count() == 1
        assert card.locator('tr[data-group="sector:b"] .gauge-bar.over').count() == 0
        shown = context.request.get("/ui/monitors.json").json()
        assert [m["monitor_id"] for m in shown["monitors"]] == ["conc"]

        card.get_by_role("link", name="conc").click()
        page.wait_for_url("**/ui/monitors/conc")
        chart = page.locator("svg#history-chart")
        assert chart.is_visible()
        lines = chart.locator("polyline.series")
        assert lines.count() == 2
        points = lines.first.get_attribute("points")
        assert points is not None
        # One point per batch from a's first loan on: every batch moves each share.
        assert len(points.split()) == len(SECTORS) - SECTORS.index("a")
        assert chart.locator("#limit-line").count() == 1
        assert chart.locator("circle.breached-point").count() > 0
        states = page.locator("#breaches .status").all_inner_texts()
        assert states == ["breached", "cleared", "breached"]

        page.locator("#breaches a.breach-link").last.click()
        page.wait_for_url("**/ui/breaches/**")
        assert page.locator("#breach-state .status").inner_text() == "breached"
        assert page.locator("#breach-limit").inner_text() == "0.5"
        assert page.locator("#breach-value").inner_text() == "0.666666"
        assert "3 decisions" in page.locator("#breach-count").inner_text()
        window = page.locator("#window-decisions a").all_inner_texts()
        assert window == ["loan-0", "loan-1", "loan-2"]
        crossing = page.locator("#crossing-decision")
        assert crossing.inner_text() == "loan-2"
        crossing.click()
        page.wait_for_url("**/ui/decisions/loan-2")
        assert "loan-2" in page.locator("h1").inner_text()
    finally:
        context.close()


def test_the_monitor_pages_need_a_session(site: Server) -> None:
    for path in ("/ui/monitors", "/ui/monitors.json", "/ui/monitors/conc", "/ui/breaches/x"):
        answer = httpx.get(f"{site.url}{path}", follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/ui/login"
