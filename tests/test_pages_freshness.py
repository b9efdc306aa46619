"""Freshness on the auditor pages, in headless chromium against a real `prov serve`: a
decision that a context change superseded shows as stale with the change named, a decision
of the same conversation that saw another version is flagged, the search page filters stale
decisions, and the signed answer it offers for download passes `prov verify-freshness`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from tests.freshness_support import SERVICE, change, decision, key_for
from tests.http_server import TENANT, Server, prepared_server
from tests.support import PROV, prov
from tests.test_pages import browser, sign_in, verifier_key

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("pages")]
__all__ = ["browser"]  # the shared chromium fixture


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("pages-freshness")
    server = prepared_server(str(directory / "ledger.db"), directory)
    server.start()
    try:
        admin = server.auth(server.admin_key)
        registered = httpx.post(
            f"{server.url}/v1/keys",
            json={
                "service": SERVICE,
                "public_key": key_for(TENANT).public_key.hex(),
                "valid_from": "2000-01-01T00:00:00Z",
            },
            headers=admin,
        )
        assert registered.status_code == 201, registered.text
        for envelope in (
            decision(TENANT, "d-old", [("stock:a", "v1")], trace_id="conv-7"),
            decision(TENANT, "d-new", [("stock:a", "v2")], trace_id="conv-7"),
            decision(TENANT, "d-other", [("price:a", "v1")]),
            change(TENANT, "chg-1", "stock:a", "v2"),
        ):
            answer = httpx.post(f"{server.url}/v1/records", content=envelope, headers=admin)
            assert answer.status_code == 201, answer.text
        yield server
    finally:
        server.stop()


def test_a_stale_decision_page_names_the_change_and_the_disagreeing_decision(
    browser: Browser, site: Server, tmp_path: Path
) -> None:
    context = browser.new_context(base_url=site.url, accept_downloads=True)
    try:
        page = sign_in(context, site.api_key("audit"))
        page.goto("/ui/decisions/d-old")
        assert page.locator('[data-check="freshness-now"] .status').inner_text() == "stale"
        reasons = page.locator("#freshness-reasons li").all_inner_texts()
        assert len(reasons) == 1
        assert "superseded by change chg-1" in reasons[0]
        assert "now v2" in reasons[0]
        assert page.locator("#inconsistent-context").is_visible()
        assert "d-new" in page.locator("#inconsistent-list").inner_text()
        with page.expect_download() as download:
            page.locator("#freshness-download").click()
        saved = tmp_path / "freshness.json"
        download.value.save_as(saved)
        checked = subprocess.run(
            [PROV, "verify-freshness", str(saved), "--verifier-key", verifier_key(site)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        page.goto("/ui/decisions/d-other")
        assert page.locator('[data-check="freshness-now"] .status').inner_text() == "fresh"
        assert page.locator("#inconsistent-context").count() == 0
        page.goto("/ui/")
        page.get_by_label("Freshness").fill("stale")
        page.get_by_role("button", name="Search").click()
        page.wait_for_url("**freshness=stale**")
        shown = page.locator("table a[href^='/ui/decisions/']").all_inner_texts()
        assert shown == ["d-old"]
    finally:
        context.close()


def test_the_cli_lists_stale_decisions_of_the_served_ledger(site: Server) -> None:
    listed = prov(["search", "--stale", "--tenant", TENANT], db=site.db_url, key=site.key_file)
    assert listed.code == 0, listed.err
    assert "d-old" in listed.out
    assert "d-new" not in listed.out
