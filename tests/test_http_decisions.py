"""Decisions over HTTP and in the CLI, against a real `prov serve`: search and the why-report
for the caller's tenant, 404 for another tenant's id in the API and the CLI, and a report
fetched from the server that `prov verify-report` checks with no server at all."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.http_helpers import SQLITE_ONLY, assert_problem
from tests.http_server import Server
from tests.support import PROV, prov


@pytest.fixture
def filled(server: Server) -> Server:
    done = prov(["demo", "--records", "24", "--seed", "4"], db=server.db_url, key=server.key_file)
    assert done.code == 0, done.err
    return server


def verifier_key(server: Server) -> str:
    done = prov(["checkpoint", "--verifier-key"], db=server.db_url, key=server.key_file)
    return done.out.strip()


def run_prov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROV, *args], capture_output=True, text=True, timeout=120, check=False)


def test_search_and_why_over_http(filled: Server) -> None:
    audit = filled.auth(filled.api_key("audit"))
    with httpx.Client(base_url=filled.url, headers=audit, timeout=30) as client:
        page = client.get("/v1/decisions", params={"decision_type": "loan.approve", "limit": 3})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["decisions"]) == 3
        assert {item["decision_type"] for item in body["decisions"]} == {"loan.approve"}
        following = client.get(
            "/v1/decisions", params={"decision_type": "loan.approve", "cursor": body["next_cursor"]}
        ).json()
        indexes = [item["index"] for item in body["decisions"] + following["decisions"]]
        assert indexes == sorted(indexes, reverse=True)
        assert len(set(indexes)) == len(indexes) == 8  # 24 records, three scenarios

        # Who authorized it: every loan decision, and only those, traces back to Priya.
        authorized = client.get(
            "/v1/decisions", params={"root_principal": "priya.natarajan@acme.example"}
        ).json()
        assert {item["decision_type"] for item in authorized["decisions"]} == {"loan.approve"}
        assert len(authorized["decisions"]) == 8
        nobody = client.get("/v1/decisions", params={"root_principal": "nobody@acme.example"})
        assert nobody.json()["decisions"] == []

        approved = client.get("/v1/decisions", params={"output": "approved=true"}).json()
        assert approved["decisions"]
        assert all(item["output"]["approved"] is True for item in approved["decisions"])

        record_id = body["decisions"][0]["id"]
        report = client.get(f"/v1/decisions/{record_id}/why")
        assert report.status_code == 200, report.text
        why = report.json()
        assert why["decision"]["id"] == record_id
        assert why["verification"]["signature"]["status"] == "valid"
        assert why["verification"]["inclusion"]["status"] == "valid"
        assert base64.b64decode(why["evidence"]["envelope"])

        assert_problem(client.get("/v1/decisions", params={"output": "nope"}), 400)
        assert_problem(client.get("/v1/decisions", params={"cursor": "garbage!"}), 400)
        assert_problem(client.get("/v1/decisions/no-such-id/why"), 404, "not-found")


def test_another_tenant_gets_404_in_the_api_and_the_cli(filled: Server) -> None:
    audit = filled.auth(filled.api_key("audit"))
    record_id = httpx.get(f"{filled.url}/v1/decisions", headers=audit).json()["decisions"][0]["id"]
    other = filled.admin_for("globex")
    stranger = filled.auth(filled.api_key("audit", tenant="globex"))
    answer = httpx.get(f"{filled.url}/v1/decisions/{record_id}/why", headers=stranger)
    assert_problem(answer, 404, "not-found")
    assert httpx.get(f"{filled.url}/v1/decisions", headers=stranger).json()["decisions"] == []

    local = prov(["why", record_id, "--tenant", "globex"], db=filled.db_url, key=filled.key_file)
    assert local.code == 1
    assert local.err.strip() == f"prov: not-found: there is no decision {record_id!r}"
    remote = run_prov("why", record_id, "--url", filled.url, "--api-key", other)
    assert remote.returncode == 1
    assert remote.stderr.startswith("prov: 404 ")
    assert len(remote.stderr.strip().splitlines()) == 1


# The CLI is the client here; the server's engine is covered by the tests above.
@SQLITE_ONLY
def test_a_report_from_the_server_verifies_offline(filled: Server, tmp_path: Path) -> None:
    key = filled.api_key("audit")
    listing = run_prov("search", "--url", filled.url, "--api-key", key, "--limit", "1", "--json")
    assert listing.returncode == 0, listing.stderr
    record_id = json.loads(listing.stdout)["decisions"][0]["id"]
    saved = run_prov("why", record_id, "--url", filled.url, "--api-key", key, "--json")
    assert saved.returncode == 0, saved.stderr
    report_file = tmp_path / "report.json"
    report_file.write_text(saved.stdout)
    filled.stop()  # offline: nothing answers any more

    checked = run_prov("verify-report", str(report_file), "--verifier-key", verifier_key(filled))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok: every claim in the report verifies offline" in checked.stdout

    report = json.loads(saved.stdout)
    proof = report["evidence"]["inclusion_proof"]["proof"]
    proof[0] = ("0" if proof[0][0] != "0" else "1") + proof[0][1:]
    report_file.write_text(json.dumps(report))
    broken = run_prov("verify-report", str(report_file), "--verifier-key", verifier_key(filled))
    assert broken.returncode == 1
    assert broken.stderr.strip() == (
        "prov: report FAILED at inclusion: the inclusion proof of entry "
        f"{report['evidence']['entry']['index']} does not reach the checkpoint root"
    )


@SQLITE_ONLY
def test_the_terminal_why_report_shows_the_decision(filled: Server) -> None:
    listing = prov(
        ["search", "--tenant", "acme", "--type", "payment.retry", "--limit", "1", "--json"],
        db=filled.db_url,
        key=filled.key_file,
    )
    item = json.loads(listing.out)["decisions"][0]
    by_tomas = prov(
        ["search", "--tenant", "acme", "--root-principal", "tomas.ferreira@acme.example", "--json"],
        db=filled.db_url,
        key=filled.key_file,
    )
    assert by_tomas.code == 0, by_tomas.err
    assert item["id"] in {found["id"] for found in json.loads(by_tomas.out)["decisions"]}
    shown = subprocess.run(
        [PROV, "why", item["id"], "--tenant", "acme", "--db", filled.db_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
            "PROV_LEDGER_KEY_FILE": str(filled.key_file),
        },
    )
    assert shown.returncode == 0, shown.stderr
    for expected in (item["id"], "payment.retry", "Steps, in order", "Verification", "✔ valid"):
        assert expected in shown.stdout
    assert "authorized by" in shown.stdout  # the demo chain, verified hop by hop


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["why", "x"], "give either --tenant (local ledger) or --url (served)"),
        (["why", "x", "--url", "http://127.0.0.1:9"], "--url needs --api-key"),
        (["verify-report", "/dev/null"], "give --verifier-key or --state"),
    ],
)
def test_cli_usage_errors_are_one_line(args: list[str], message: str) -> None:
    done = run_prov(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
