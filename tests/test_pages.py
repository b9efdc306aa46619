"""The auditor pages in a real headless chromium, against a real `prov serve` with demo data.

Everything a page claims is compared with what the API answers for the same key: the rows
of a search, and the id, output, steps and every verification status of a decision. The
downloaded report must pass `prov verify-report` offline. Signing in, signing out, bad keys,
bad filters and another tenant's decision are checked as a browser meets them.

The tests share one server (SQLite: the pages add nothing engine-specific) and one browser,
so they run together on one worker. Without chromium they skip, unless
PROV_REQUIRE_BROWSER=1, in which case they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from query.ui.view import environment
from tests.http_server import Server, prepared_server
from tests.support import PROV, prov

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("pages")]

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSES = {"valid", "present", "registered"}


def chromium_path() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        if os.environ.get("PROV_REQUIRE_BROWSER") == "1":
            pytest.fail("PROV_REQUIRE_BROWSER=1 but chromium is not installed")
        pytest.skip("chromium is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A served ledger with 30 demo decisions of tenant acme (order, loan and payment)."""
    with served_demo(tmp_path_factory.mktemp("pages")) as server:
        yield server


@contextlib.contextmanager
def served_demo(directory: Path, **env: str) -> Iterator[Server]:
    """`prov serve` over a new ledger in `directory` holding 30 demo decisions (seed 3)."""
    server = prepared_server(str(directory / "ledger.db"), directory, **env)
    server.start()
    try:
        demo = prov(
            ["demo", "--records", "30", "--seed", "3"], db=server.db_url, key=server.key_file
        )
        assert demo.code == 0, demo.err
        yield server
    finally:
        server.stop()


@pytest.fixture
def context(browser: Browser, site: Server) -> Iterator[BrowserContext]:
    """A fresh browser profile: no cookie."""
    fresh = browser.new_context(base_url=site.url, accept_downloads=True)
    yield fresh
    fresh.close()


def sign_in(context: BrowserContext, key: str) -> Page:
    page = context.new_page()
    page.goto("/ui/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/")
    return page


def api(site: Server, key: str, path: str, **params: str) -> Any:
    answer = httpx.get(f"{site.url}{path}", params=params, headers=site.auth(key), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def verifier_key(site: Server) -> str:
    done = prov(["checkpoint", "--verifier-key"], db=site.db_url, key=site.key_file)
    assert done.code == 0, done.err
    return done.out.strip()


def badges(page: Page, scope: str) -> dict[str, tuple[str, bool]]:
    """check -> (the status word shown, whether it is drawn as a pass)."""
    shown = {}
    for badge in page.locator(f"{scope} [data-check]").all():
        check = badge.get_attribute("data-check")
        assert check is not None
        classes = badge.get_attribute("class") or ""
        shown[check] = (badge.locator(".status").inner_text(), "badge-pass" in classes)
    return shown


def expected_badges(report: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    verification = report["verification"]
    statuses = {
        "signature": verification["signature"]["status"],
        "leaf": verification["leaf"]["status"],
        "inclusion": verification["inclusion"]["status"],
        "delegation": verification["delegation"]["status"],
        "replays": verification["replays"]["status"],
        "policy": verification["policy"]["status"],
        "policy_checks": verification["policy_checks"]["status"],
        "witnesses": verification["witnesses"]["status"],
    } | {f"blob:{blob['pointer']}": blob["status"] for blob in verification["blobs"]}
    return {check: (status, status in PASSES) for check, status in statuses.items()}


def artifacts_dir() -> Path:
    directory = Path(os.environ.get("PROV_ARTIFACTS_DIR", REPO_ROOT / "artifacts"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_search_then_a_decision_page_that_agrees_with_the_api(
    site: Server, context: BrowserContext, tmp_path: Path
) -> None:
    key = site.api_key("audit")
    page = sign_in(context, key)

    page.get_by_label("Decision type").fill("loan.approve")
    page.get_by_label("Output match").fill("approved=true")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(lambda url: "decision_type=loan.approve" in url)
    listed = api(site, key, "/v1/decisions", decision_type="loan.approve", output="approved=true")
    assert listed["decisions"], "the demo data has approved loans"
    rows = page.locator("table.results tbody tr")
    assert rows.count() == len(listed["decisions"])
    for row, item in zip(rows.all(), listed["decisions"], strict=True):
        cells = row.locator("td").all_inner_texts()
        assert int(cells[0]) == item["index"]
        assert cells[1] == item["id"]
        assert cells[2] == item["decision_type"] == "loan.approve"
        assert cells[3] == item["occurred_at"]
        assert cells[5] == (item["subject"] or "")
        assert json.loads(cells[6]) == item["output"]
        assert item["output"]["approved"] is True

    record_id = listed["decisions"][0]["id"]
    page.get_by_role("link", name=record_id).click()
    page.wait_for_url(f"**/ui/decisions/{record_id}")
    report = api(site, key, f"/v1/decisions/{record_id}/why")
    decision = report["decision"]
    assert page.locator("#decision-id").inner_text() == record_id
    assert json.loads(page.locator("#output pre").inner_text()) == decision["output"]["decision"]
    assert int(page.locator("#entry-index").inner_text()) == report["evidence"]["entry"]["index"]

    steps = page.locator("tr.step")
    assert steps.count() == len(decision["steps"]) == len(report["analysis"]["timeline"])
    for row, step, line in zip(
        steps.all(), decision["steps"], report["analysis"]["timeline"], strict=True
    ):
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == step["kind"]
        assert row.locator("th").inner_text().startswith(line["label"])
    assert page.locator("ol.timeline li").count() == len(decision["steps"])

    assert badges(page, "#verification") == expected_badges(report)
    assert expected_badges(report)["signature"] == ("valid", True)
    checkpoint_size = report["evidence"]["inclusion_proof"]["tree_size"]
    assert int(page.locator("#checkpoint-size").inner_text()) == checkpoint_size
    freshness = [seen["freshness"] for seen in report["analysis"]["context"]]
    shown = badges(page, "main")
    assert [shown[f"context:{n}"][0] for n in range(len(freshness))] == freshness
    chain = report["verification"]["delegation"]["status"]  # not-checked is never a pass
    assert shown["delegation-chain"] == (chain, chain == "valid")

    trusted_key = verifier_key(site)
    assert page.locator("#verifier-key").inner_text() == trusted_key
    with page.expect_download() as download:
        page.get_by_role("link", name="Download report.json").click()
    saved = tmp_path / "report.json"
    download.value.save_as(saved)
    assert json.loads(saved.read_text())["decision"] == decision
    checked = subprocess.run(
        [PROV, "verify-report", str(saved), "--verifier-key", trusted_key],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    screenshot = artifacts_dir() / "decision-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 0


def test_the_log_page_shows_the_current_checkpoint(site: Server, context: BrowserContext) -> None:
    key = site.api_key("audit")
    page = sign_in(context, key)
    page.get_by_role("link", name="Log").click()
    page.wait_for_url("**/ui/log")
    log = api(site, key, "/v1/log")
    assert int(page.locator("#tree-size").inner_text()) == log["tree_size"] >= 30
    assert page.locator("#root-hash").inner_text() == log["root_hash"]
    assert page.locator("#verifier-key").inner_text() == verifier_key(site)
    note = httpx.get(f"{site.url}/checkpoint", headers=site.auth(key)).text
    assert page.locator("#checkpoint-note").inner_text().strip() == note.strip()


def test_signing_in_and_out(site: Server, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto("/ui/")
    assert page.url == f"{site.url}/ui/login"

    page.get_by_label("API key").fill("prov_0000_not-a-key")
    with page.expect_response("**/ui/login") as unknown:
        page.get_by_role("button", name="Sign in").click()
    assert unknown.value.status == 401
    assert "unknown or has been revoked" in page.get_by_role("alert").inner_text()

    page.get_by_label("API key").fill(site.api_key("ingest"))
    with page.expect_response("**/ui/login") as wrong_role:
        page.get_by_role("button", name="Sign in").click()
    assert wrong_role.value.status == 403
    assert "cannot read decisions" in page.get_by_role("alert").inner_text()
    assert context.cookies() == []

    admin = site.api_key("admin")
    page = sign_in(context, admin)
    [cookie] = context.cookies()
    assert cookie["name"] == "prov_ui_session"
    # The browser holds a session id, never the key or any part of it.
    assert admin not in cookie["value"]
    assert admin.split("_")[1] not in cookie["value"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain HTTP on loopback
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login")
    assert context.cookies() == []
    page.goto("/ui/log")
    assert page.url == f"{site.url}/ui/login"
    # Sign-out ended the session on the server: a copy of the cookie signs no one in.
    copied = httpx.get(f"{site.url}/ui/log", cookies={cookie["name"]: cookie["value"]})
    assert copied.status_code == 303
    assert copied.headers["location"] == "/ui/login"

    # A form on another site may neither sign a browser in nor out.
    forged = httpx.post(
        f"{site.url}/ui/login",
        data={"api_key": site.api_key("audit")},
        headers={"Origin": "https://elsewhere.example"},
    )
    assert forged.status_code == 403
    assert "set-cookie" not in forged.headers


def test_a_bad_filter_is_shown_on_the_page(site: Server, context: BrowserContext) -> None:
    page = sign_in(context, site.api_key("audit"))
    answer = page.goto("/ui/?output=no-equals-sign")
    assert answer is not None
    assert answer.status == 400
    assert "an output match is PATH=VALUE" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Output match").input_value() == "no-equals-sign"


def test_another_tenants_decision_is_not_found(site: Server, context: BrowserContext) -> None:
    acme = site.api_key("audit")
    record_id = api(site, acme, "/v1/decisions")["decisions"][0]["id"]
    page = sign_in(context, site.api_key("audit", tenant="other"))
    assert page.locator("table.results").count() == 0
    for path in (f"/ui/decisions/{record_id}", f"/ui/decisions/{record_id}/report.json"):
        answer = page.goto(path)
        assert answer is not None
        assert answer.status == 404
        assert answer.headers["content-type"].startswith("text/html")
        # An error page is guarded like any other page.
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        assert record_id in page.locator("main").inner_text()


def test_revoking_the_key_signs_the_browser_out(site: Server, context: BrowserContext) -> None:
    key = site.api_key("audit")
    page = sign_in(context, key)
    revoked = httpx.delete(
        f"{site.url}/v1/api-keys/{key.split('_')[1]}", headers=site.auth(site.admin_key)
    )
    assert revoked.status_code == 200, revoked.text
    page.goto("/ui/log")
    assert page.url == f"{site.url}/ui/login"
    assert context.cookies() == []


def test_a_record_that_no_longer_decodes_shows_no_pass(site: Server) -> None:
    """A stored record altered after admission: the report has no decision, and the page
    draws each failed check as a failure."""
    key = site.api_key("audit")
    record_id = api(site, key, "/v1/decisions")["decisions"][0]["id"]
    report = api(site, key, f"/v1/decisions/{record_id}/why")
    report |= {"decision": None, "analysis": None}
    report["verification"] |= {
        "signature": {"status": "invalid", "kind": "invalid-payload", "detail": "not JSON"},
        "leaf": {"status": "invalid"},
        "inclusion": {"status": "invalid"},
        "blobs": [],
        "delegation": {"status": "none", "detail": "the record carries no delegation chain"},
        "freshness": None,  # as why_report gives it for a payload that does not decode
    }
    html = (
        environment()
        .get_template("decision.html")
        .render(
            caller=None,
            section="search",
            record_id=record_id,
            report=report,
            bars=[],
            blobs={},
            checkpoint_size=30,
            verifier_key="KEY",
        )
    )
    assert "no longer decodes" in html
    assert "badge-pass" not in html
    for check in ("signature", "leaf", "inclusion"):
        assert f'class="badge badge-fail" data-check="{check}"' in html
