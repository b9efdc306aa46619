"""The explanation page in a real headless chromium, against a real `prov serve` with demo
data: a referred loan explained for the person it is about (the outcome, the rules' result
and reasons, the underwriter who reviewed it, the operator's contest text), in words and
with no JSON; the same text as the subject bundle's; printable without the navigation; a
blob erased since shown as erased; another tenant's decision not found.

Shares the browser and the `pages` worker group with tests/test_pages.py; skips without
chromium unless PROV_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext

from query.subjects.explain import words
from tests.http_server import Server
from tests.test_pages import (  # noqa: F401 - fixtures
    api,
    artifacts_dir,
    browser,
    served_demo,
    sign_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("pages")]

CONTEST = "Write to appeals@acme.example within 30 days, quoting the reference below."


@pytest.fixture(scope="module")
def site(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    """A served ledger with 30 demo decisions, whose operator says how to contest."""
    with served_demo(
        tmp_path_factory.mktemp("explanation"), PROV_CONTEST_CONTACT=CONTEST
    ) as server:
        yield server


@pytest.fixture
def context(browser: Browser, site: Server) -> Iterator[BrowserContext]:  # noqa: F811
    fresh = browser.new_context(base_url=site.url, accept_downloads=True)
    yield fresh
    fresh.close()


def reports(site: Server, key: str, decision_type: str) -> Iterator[dict[str, Any]]:
    found = api(site, key, "/v1/decisions", decision_type=decision_type, limit="100")
    for item in found["decisions"]:
        yield api(site, key, f"/v1/decisions/{item['id']}/why")


def reviewed(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in report["decision"]["steps"] if step["kind"] == "human_approval"]


def test_a_referred_loan_explained_in_plain_words(
    site: Server, context: BrowserContext, tmp_path: Path
) -> None:
    key = site.api_key("audit")
    report = next(r for r in reports(site, key, "loan.approve") if reviewed(r))
    decision = report["decision"]
    record_id = decision["id"]
    [approval] = reviewed(report)

    page = sign_in(context, key)
    page.goto(f"/ui/decisions/{record_id}")
    page.get_by_role("link", name="Explanation for the person affected").click()
    page.wait_for_url(f"**/ui/decisions/{record_id}/explanation")

    outcome = page.locator("#section-outcome").inner_text()
    approved = decision["output"]["decision"]["approved"]
    assert f"approved: {'yes' if approved else 'no'}" in outcome
    rules = page.locator("#section-rules").inner_text()
    policy = decision["policy"]
    assert f"gave the result “{policy['result']}”" in rules
    for reason in policy["reasons"]:
        assert words(reason) in rules
    assert f"amount: {decision['inputs']['amount']}" in page.locator("#section-inputs").inner_text()
    context_names = page.locator("#section-context").inner_text()
    assert all(snapshot["name"] in context_names for snapshot in decision["context"])
    review = page.locator("#section-review").inner_text()
    assert "A person reviewed this decision" in review
    assert f"Reviewer: {approval['approver']}" in review
    referred = ", ".join(words(code) for code in approval["inputs"]["referred_for"])
    assert f"Asked to review / referred for: {referred}" in review
    assert f"Outcome of the review / approved: {'yes' if approved else 'no'}" in review
    contest = page.locator("#section-contest").inner_text()
    assert CONTEST in contest
    assert f"Reference to quote: {record_id}" in contest
    said = page.locator("#section-reasoning").inner_text()
    assert "in its own words" in said
    # No raw JSON anywhere on the page: the model's structured answer is the outcome above.
    shown = page.locator("main").inner_text()
    for mark in ("{", "}", '":'):
        assert mark not in shown
    assert decision["output"]["text"].strip() not in shown

    # The page's words are the subject bundle's, for the same decision, word for word.
    with page.expect_download() as download:
        page.get_by_role("link", name="download it as text").click()
    saved = tmp_path / "explanation.txt"
    download.value.save_as(saved)
    bundle = api(site, key, f"/v1/subjects/{decision['subject']}/decisions")
    [item] = [item for item in bundle["decisions"] if item["id"] == record_id]
    assert saved.read_text() == item["explanation"]
    for section in ("What was decided", "Whether a person reviewed it", CONTEST):
        assert section in shown

    screenshot = artifacts_dir() / "explanation-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 0

    # Printed: the explanation alone, without the navigation and the page's own notes.
    page.emulate_media(media="print")
    assert page.locator("header.topbar").is_hidden()
    assert page.locator("#explanation-note").is_hidden()
    assert page.locator("#section-contest").is_visible()
    assert page.pdf()[:4] == b"%PDF"


def test_unreviewed_and_erased_say_so_and_another_tenant_finds_nothing(
    site: Server, context: BrowserContext
) -> None:
    key = site.api_key("audit")
    report = next(
        r
        for r in reports(site, key, "loan.approve")
        if not reviewed(r) and any(b["status"] == "present" for b in r["verification"]["blobs"])
    )
    record_id = report["decision"]["id"]
    blob = next(b for b in report["verification"]["blobs"] if b["status"] == "present")
    erased = httpx.delete(
        f"{site.url}/v1/blobs/{blob['digest']}", headers=site.auth(site.admin_key), timeout=30
    )
    assert erased.status_code in (200, 204), erased.text

    page = sign_in(context, key)
    page.goto(f"/ui/decisions/{record_id}/explanation")
    review = page.locator("#section-review").inner_text()
    assert "no review by a person" in review
    data = page.locator("#section-data").inner_text()
    assert "erased on " in data
    assert "have been erased since" in data

    # No session, no page: the browser is sent to sign in.
    signed_out = httpx.get(f"{site.url}/ui/decisions/{record_id}/explanation", timeout=30)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/ui/login"

    elsewhere = sign_in(context, site.api_key("audit", tenant="globex"))
    explanation = f"/ui/decisions/{record_id}/explanation"
    for path in (explanation, f"{explanation}.txt"):
        answer = elsewhere.goto(path)
        assert answer is not None
        assert answer.status == 404
        assert answer.headers["content-type"].startswith("text/html")
