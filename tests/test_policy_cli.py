"""`prov policy` as a user runs it, on SQLite and PostgreSQL: `prov demo` registers the
lending policy v1 and v2, `prov policy list` shows them, `prov policy check` re-evaluates a
loan decision pinned and against v2, and a batch writes its JSON and HTML report. Bad input
(an unknown engine, a document that does not parse, a version registered with another
document, inputs the policy's schema refuses) is one line on stderr, a non-zero exit, and
nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ledger.keys.signing import save_signing_key
from ledger.storage.db import make_engine
from service.demo.loan_policy import LOAN_POLICY_SCHEMA, LOAN_POLICY_V1, POLICY_SERVICE
from service.demo.scenarios import demo_decisions
from service.demo.traffic import demo_signing_key
from tests.http_helpers import SQLITE_ONLY
from tests.policy_support import counts
from tests.support import Run, prov

SEED = 5
LOAN_BATCH = ("policy", "check", "--where", "decision_type=loan.approve")


@pytest.fixture
def demo(db_url: str, tmp_path: Path) -> tuple[str, Path]:
    key = tmp_path / "ledger.key"
    assert prov(["init"], db=db_url, key=key).code == 0
    made = prov(["demo", "--records", "12", "--seed", str(SEED)], db=db_url, key=key)
    assert made.code == 0, made.err
    return db_url, key


@pytest.fixture
def engine(demo: tuple[str, Path]) -> Engine:
    return make_engine(demo[0])


def loan_ids() -> list[str]:
    return [d.id for d in demo_decisions(12, seed=SEED) if d.decision_type == "loan.approve"]


def one_failure(run: Run, kind: str) -> str:
    assert run.code != 0, run
    assert run.out == ""
    [line] = run.err.splitlines()
    assert line.startswith(f"prov: {kind}: "), line
    return line


def test_demo_policies_are_listed_and_a_loan_is_checked_pinned_and_against_v2(
    demo: tuple[str, Path], tmp_path: Path
) -> None:
    db, key = demo
    listed = prov(["policy", "list", "--tenant", "acme"], db=db, key=key)
    assert listed.code == 0, listed.err
    versions = listed.json_lines()
    assert [(v["version"], v["engine"]) for v in versions] == [("v1", "cedar"), ("v2", "cedar")]
    assert versions[0]["digest"] == LOAN_POLICY_V1.digest
    loan = loan_ids()[0]
    pinned = prov(["policy", "check", loan, "--tenant", "acme"], db=db, key=key)
    assert pinned.code == 0, pinned.err
    assert "verdict  reproduced" in pinned.out
    against = prov(
        ["policy", "check", loan, "--tenant", "acme", "--against", "v2", "--json"], db=db, key=key
    )
    assert against.code == 0, against.err
    [record] = against.json_lines()
    assert (record["mode"], record["policy"]["version"]) == ("against", "v2")
    assert record["verdict"] in ("same", "changed")
    folder = tmp_path / "report"
    batch = prov(
        [*LOAN_BATCH, "--against", "v2", "--tenant", "acme", "--report", str(folder)],
        db=db,
        key=key,
    )
    assert batch.code == 0, batch.err
    assert "4 of 4 decisions checked (4 appended)" in batch.out
    report = json.loads((folder / "report.json").read_text())
    assert (report["format"], report["against"], report["checked"]) == (
        "prov.policy-check/v1",
        "v2",
        4,
    )
    assert "Policy check" in (folder / "report.html").read_text()
    missing = prov(["policy", "check", loan, "--tenant", "acme", "--against", "v9"], db=db, key=key)
    one_failure(missing, "not-found")


# The CLI's refusals; the same records are refused on both engines in test_policy_records.py.
@SQLITE_ONLY
def test_register_a_version_again_and_bad_documents(
    demo: tuple[str, Path], engine: Engine, tmp_path: Path
) -> None:
    db, key = demo
    pem = tmp_path / "risk-policy.pem"
    save_signing_key(demo_signing_key("acme", POLICY_SERVICE), pem)
    schema = json.loads(json.dumps(LOAN_POLICY_SCHEMA))
    context = schema["Lending"]["actions"]["approve"]["appliesTo"]["context"]
    context["attributes"]["employment_years"] = {"type": "Long"}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    v3 = LOAN_POLICY_V1.document + (
        '\n@id("employed_under_a_year")\nforbid (principal, action, resource)\n'
        "when { context.employment_years < 1 };\n"
    )
    (tmp_path / "v3.cedar").write_text(v3)

    def register(document: str, *extra: str) -> Run:
        return prov(
            [
                *("policy", "register", str(tmp_path / document), "--tenant", "acme"),
                *("--service", POLICY_SERVICE, "--signing-key", str(pem)),
                *("--policy-id", "lending/personal_loan", "--version", "v3"),
                *("--schema", str(tmp_path / "schema.json"), *extra),
            ],
            db=db,
            key=key,
        )

    created = register("v3.cedar", "--engine", "cedar")
    assert created.code == 0, created.err
    [receipt] = created.json_lines()
    assert (receipt["status"], receipt["id"]) == ("created", "policy:lending:personal_loan@v3")
    again = register("v3.cedar", "--engine", "cedar")
    assert again.code == 0, again.err
    assert again.json_lines()[0]["status"] == "existing"
    assert again.json_lines()[0]["index"] == receipt["index"]
    before = counts(engine)
    (tmp_path / "other.cedar").write_text(v3.replace("< 1", "< 2"))
    line = one_failure(register("other.cedar", "--engine", "cedar"), "policy-version-conflict")
    assert line.endswith("(at /payload/version)")
    one_failure(register("v3.cedar", "--engine", "rego"), "unknown-policy-engine")
    (tmp_path / "broken.cedar").write_text("permit (principal, action, resource) when {")
    one_failure(register("broken.cedar", "--engine", "cedar"), "policy-unparsable")
    assert counts(engine) == before
    # v3 reads an input the demo's loans never recorded: refused, and no check is stored.
    refused = prov(
        ["policy", "check", loan_ids()[0], "--tenant", "acme", "--against", "v3"], db=db, key=key
    )
    line = one_failure(refused, "policy-inputs-invalid")
    assert "/inputs/employment_years is missing" in line
    assert counts(engine) == before
    # In a batch the same fault is each decision's `error`, recorded, and the batch goes on.
    batch = prov(
        [*LOAN_BATCH, "--against", "v3", "--tenant", "acme", "--report", str(tmp_path / "r3")],
        db=db,
        key=key,
    )
    assert batch.code == 1
    assert "4 error" in batch.out
    assert "every check failed" in batch.err
