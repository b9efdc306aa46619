"""Policy as code over HTTP, against a real `prov serve` on a loopback port, on both engines:
`POST /v1/policy-checks` for one decision and for a batch (JSON and HTML), `GET /v1/policies`,
the checks in the why-report, and every bad input a problem document with nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.keys.signing import sign_policy
from ledger.records.policy import document_digest
from service.demo.loan_policy import LOAN_POLICY_SCHEMA, LOAN_POLICY_V1, POLICY_SERVICE
from service.demo.scenarios import demo_decisions
from service.demo.traffic import demo_signing_key
from tests.http_helpers import assert_problem, pointers, tree_size
from tests.http_server import Server, prepared_server
from tests.policy_support import policy_record
from tests.replay_demo import record_demo

SEED = 11
COUNT = 15


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """`prov serve` over the demo: its policies v1 and v2 and 15 decisions (5 loans)."""
    server = prepared_server(db_url, tmp_path)
    record_demo(db_url, server.key_file, COUNT, seed=SEED)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def auditor(served: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=served.url, headers=served.auth(served.api_key("audit")), timeout=60
    ) as client:
        yield client


def loans() -> list[str]:
    return [d.id for d in demo_decisions(COUNT, seed=SEED) if d.decision_type == "loan.approve"]


def check_count(client: httpx.Client, decision_id: str) -> int:
    why = client.get(f"/v1/decisions/{decision_id}/why")
    assert why.status_code == 200, why.text
    count: int = why.json()["verification"]["policy_checks"]["count"]
    return count


def one_decision_pinned_and_against_v2(auditor: httpx.Client) -> None:
    loan = loans()[0]
    pinned = auditor.post("/v1/policy-checks", json={"decision_id": loan})
    assert pinned.status_code == 201, pinned.text
    body = pinned.json()
    assert body["check"]["verdict"] == "reproduced"
    assert body["check"]["policy"]["digest"] == LOAN_POLICY_V1.digest
    assert body["receipt"]["id"] == body["check"]["id"]
    against = auditor.post("/v1/policy-checks", json={"decision_id": loan, "against": "v2"})
    assert against.status_code == 201, against.text
    assert against.json()["check"]["verdict"] in ("same", "changed")
    why = auditor.get(f"/v1/decisions/{loan}/why").json()
    assert why["verification"]["policy"]["status"] == "registered"
    listed = why["verification"]["policy_checks"]
    assert [item["verdict"] for item in listed["checks"]] == [
        "reproduced",
        against.json()["check"]["verdict"],
    ]
    policies = auditor.get("/v1/policies", params={"policy_id": "lending/personal_loan"})
    assert [p["version"] for p in policies.json()] == ["v1", "v2"]


def a_batch_answers_json_or_its_html_page(auditor: httpx.Client) -> None:
    body = {"where": "decision_type=loan.approve", "against": "v2"}
    answer = auditor.post("/v1/policy-checks", json=body)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["format"], report["mode"], report["checked"]) == (
        "prov.policy-check/v1",
        "against",
        len(loans()),
    )
    assert report["stored"] == report["checked"]
    page = auditor.post("/v1/policy-checks", json=body, headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Policy check" in page.text
    pinned = auditor.post("/v1/policy-checks", json={"where": "decision_type=loan.approve"})
    verdicts = {v["verdict"]: v["count"] for v in pinned.json()["verdicts"]}
    assert verdicts["reproduced"] == len(loans())


BAD_REQUESTS: list[tuple[dict[str, Any], int, str | None, str | None]] = [
    ({}, 400, "bad-request", ""),
    ({"decision_id": "x", "where": "service=a"}, 400, "bad-request", ""),
    ({"decision_id": "loan-nowhere"}, 404, "not-found", None),
    ({"where": "decision_type=nothing.here"}, 400, "bad-request", "/where"),
    ({"where": "model==="}, 400, "bad-request", "/where"),
    ({"decision_id": "LOAN", "against": "v9"}, 404, "not-found", "/against"),
    ({"decision_id": "LOAN", "against": "v\u0000"}, 400, "bad-request", "/against"),
    ({"decision_id": "ORDER"}, 400, "bad-request", "/decision_id"),
    ({"decision_id": "LOAN", "colour": "red"}, 400, None, None),
]


def bad_requests_are_problems_and_store_nothing(served: Server, auditor: httpx.Client) -> None:
    order = next(d.id for d in demo_decisions(COUNT, seed=SEED) if d.policy is None)
    named = {"LOAN": loans()[0], "ORDER": order}
    size = tree_size(served)
    for given, status, kind, pointer in BAD_REQUESTS:
        body = given | (
            {"decision_id": named.get(given["decision_id"], given["decision_id"])}
            if "decision_id" in given
            else {}
        )
        problem = assert_problem(auditor.post("/v1/policy-checks", json=body), status, kind)
        if pointer is not None:
            assert pointers(problem) == [pointer], body
    assert tree_size(served) == size


def ingest_keys_may_not_check(served: Server) -> None:
    answer = httpx.post(
        f"{served.url}/v1/policy-checks",
        json={"decision_id": loans()[0]},
        headers=served.auth(served.api_key("ingest")),
    )
    assert_problem(answer, 403, "forbidden")


def test_checks_one_decision_and_batches_and_refuses_bad_requests(
    served: Server, auditor: httpx.Client
) -> None:
    one_decision_pinned_and_against_v2(auditor)
    a_batch_answers_json_or_its_html_page(auditor)
    bad_requests_are_problems_and_store_nothing(served, auditor)
    ingest_keys_may_not_check(served)


def test_bad_policy_records_and_bad_inputs_over_http(served: Server, auditor: httpx.Client) -> None:
    writer = httpx.Client(
        base_url=served.url, headers=served.auth(served.api_key("ingest")), timeout=60
    )
    key = demo_signing_key("acme", POLICY_SERVICE)

    def post(**changes: Any) -> httpx.Response:
        record = policy_record(**changes)
        return writer.post(
            "/v1/records",
            content=sign_policy(record, key),
            headers={"Content-Type": "application/json"},
        )

    size = tree_size(served)
    for changes, kind, pointer in (
        (
            {"id": "p-1", "version": "v8", "engine": "opa"},
            "unknown-policy-engine",
            "/payload/engine",
        ),
        (
            {"id": "p-2", "version": "v8", "document": "permit ("},
            "policy-unparsable",
            "/payload/document",
        ),
        (
            {"id": "p-3", "version": "v8", "digest": "sha256:" + "a" * 64},
            "policy-digest-mismatch",
            "/payload/digest",
        ),
        (
            {"id": "p-4", "document": LOAN_POLICY_V1.document + "\n"},
            "policy-version-conflict",
            "/payload/version",
        ),
    ):
        problem = assert_problem(post(**changes), 409 if "conflict" in kind else 422, kind)
        assert pointers(problem) == [pointer]
    assert tree_size(served) == size
    # A version whose schema asks for an input the recorded loans never had.
    schema = json.loads(json.dumps(LOAN_POLICY_SCHEMA))
    attributes = schema["Lending"]["actions"]["approve"]["appliesTo"]["context"]["attributes"]
    attributes["employment_years"] = {"type": "Long"}
    document = LOAN_POLICY_V1.document + (
        "\nforbid (principal, action, resource) when { context.employment_years < 1 };\n"
    )
    created = post(
        id="p-5", version="v3", document=document, digest=document_digest(document), schema=schema
    )
    assert created.status_code == 201, created.text
    loan = loans()[0]
    before = check_count(auditor, loan)
    problem = assert_problem(
        auditor.post("/v1/policy-checks", json={"decision_id": loan, "against": "v3"}),
        422,
        "policy-inputs-invalid",
    )
    assert pointers(problem) == ["/inputs/employment_years"]
    assert check_count(auditor, loan) == before
    writer.close()
