"""Who authorized a decision, in the why-report and search, on both engines: the demo's
chains verify back to named humans, the verdict is recomputed offline, any edit of it is
caught, broken chains stored unchecked are reported with the rule named, and the `prov`
delegation commands make chains the ledger accepts."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from ingest.client import authorize, read_chain
from ledger.delegation.mode import DelegationMode, set_mode
from ledger.delegation.records import PRINCIPAL_SERVICE
from ledger.keys.ed25519 import SigningKey, load_signing_key, save_signing_key
from ledger.keys.keyring import register_key
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.log.sequencer import now_micros
from query.audit.report_check import verify_report
from query.audit.search import DecisionFilter, search
from query.audit.why import why_report
from service.cli.delegation import COMMANDS
from service.demo.scenarios import DEMO_SERVICES, demo_decision
from service.demo.traffic import demo_envelopes, prepare_demo, register_demo_keys
from tests.support import sign
from tests.test_delegation_chain import Chain, build
from tests.test_delegation_ingest import TENANT, decision, enroll, revoke
from tests.test_why import leaves, mutated

HUMANS = {
    "order.route": ("Maria Chen", "maria.chen@acme.example"),
    "loan.approve": ("Priya Natarajan", "priya.natarajan@acme.example"),
    "payment.retry": ("Tomás Ferreira", "tomas.ferreira@acme.example"),
}


def report(ledger: Ledger, record_id: str) -> dict[str, Any]:
    with ledger.engine.connect() as connection:
        return why_report(
            connection, ledger.verifier, ledger.origin, TENANT, record_id, now_us=now_micros()
        )


@pytest.fixture
def demo(ledger: Ledger) -> list[Receipt]:
    shape = prepare_demo(ledger, TENANT)
    prepare_demo(ledger, TENANT)  # enrolling again is an idempotent retry
    results = ledger.append(list(demo_envelopes(12, seed=21, tenant=TENANT, shape=shape)))
    assert all(isinstance(result, Receipt) for result in results), results
    return [result for result in results if isinstance(result, Receipt)]


def test_demo_decisions_are_authorized_by_named_humans(ledger: Ledger, demo: list[Receipt]) -> None:
    for receipt in demo[:3]:
        why = report(ledger, receipt.id)
        delegation = why["verification"]["delegation"]
        display, name = HUMANS[why["decision"]["decision_type"]]
        assert delegation["status"] == "valid", delegation["detail"]
        assert delegation["principal"] == {
            "did": delegation["root"],
            "name": name,
            "display_name": display,
            "kind": "human",
        }
        assert delegation["detail"].startswith(f"authorized by {display} <{name}>")
        assert [rule["status"] for rule in delegation["rules"]] == ["valid"] * 10
        assert delegation["at"] == why["evidence"]["entry"]["integrated_at"]
        root, leaf = delegation["hops"]
        assert root["iss"] == root["sub"] == delegation["root"]
        assert leaf["cmd"] == "/" + why["decision"]["decision_type"].replace(".", "/")
        assert leaf["pol"]
        assert leaf["exp"] is not None
        assert set(leaf["checks"].values()) == {"valid"}
        assert delegation["invocation"]["checks"]["replay"] == "valid"
        # The report checks offline, as served (JSON) too, and says what it cannot check.
        for shown in (why, msgspec.json.decode(msgspec.json.encode(why))):
            result = verify_report(shown, ledger.verifier)
            assert result, result.failure
        assert any("uniqueness in the ledger is unique" in c for c in result.unverifiable)


def test_any_edit_of_the_delegation_verdict_or_its_evidence_is_caught(
    ledger: Ledger, demo: list[Receipt]
) -> None:
    why = report(ledger, demo[1].id)
    checked = 0
    for pointer in leaves(why):
        if pointer.startswith(("/verification/delegation/", "/evidence/delegation/")):
            result = verify_report(mutated(why, pointer), ledger.verifier)
            assert not result, f"a change at {pointer} went unnoticed"
            assert result.failure is not None
            assert result.failure.name == "verdicts"
            checked += 1
    assert checked > 80


def test_search_finds_what_a_principal_authorized(ledger: Ledger, demo: list[Receipt]) -> None:
    unauthorized = sign(demo_decision(random.Random(2), 1, tenant=TENANT))
    assert isinstance(ledger.append([unauthorized])[0], Receipt)  # a bare chain: not verified
    with ledger.engine.connect() as connection:
        for decision_type, (_, name) in HUMANS.items():
            found = search(connection, DecisionFilter(TENANT, root_principal=name)).decisions
            assert found
            assert {item.decision_type for item in found} == {decision_type}
        everyone = search(connection, DecisionFilter(TENANT)).decisions
        nobody = DecisionFilter.from_query(TENANT, {"root_principal": "nobody@example.com"})
        assert not search(connection, nobody).decisions
    assert len(everyone) == len(demo) + 1


@pytest.fixture
def unchecked(ledger: Ledger) -> Ledger:
    """A ledger whose tenant stores chains unchecked, with Alice enrolled."""
    register_demo_keys(ledger.engine, TENANT, [*DEMO_SERVICES.values(), PRINCIPAL_SERVICE])
    enroll(ledger, build(prefix="report").root)
    with ledger.engine.begin() as connection:
        set_mode(connection, TENANT, DelegationMode.OFF, now_us=1)
    return ledger


def stored(ledger: Ledger, chain: Chain) -> str:
    [result] = ledger.append([decision(chain)])
    assert isinstance(result, Receipt), result
    return result.id


def test_a_broken_chain_stored_unchecked_is_reported_with_the_rule(unchecked: Ledger) -> None:
    record_id = stored(
        unchecked, build(prefix="report", invoke=lambda i: i.update(args={"amount": 99_999}))
    )
    why = report(unchecked, record_id)
    delegation = why["verification"]["delegation"]
    assert delegation["status"] == "invalid"
    assert delegation["detail"].startswith("rule 7 (policy) fails at /delegation/0")
    assert delegation["hops"][0]["checks"]["policy"] == "invalid"
    # Unchecked at ingest, so not indexed: uniqueness is not known.
    assert why["evidence"]["delegation"]["uniqueness"] == "unchecked"
    assert next(r for r in delegation["rules"] if r["rule"] == 10)["status"] == "not-checked"
    result = verify_report(why, unchecked.verifier)
    assert result, result.failure


def test_revocations_and_replays_count_from_their_place_in_the_log(unchecked: Ledger) -> None:
    with unchecked.engine.begin() as connection:
        set_mode(connection, TENANT, DelegationMode.OPTIONAL, now_us=2)
    chain = build(prefix="report")
    earlier = stored(unchecked, chain)
    with unchecked.engine.begin() as connection:
        set_mode(connection, TENANT, DelegationMode.OFF, now_us=3)
    replayed = stored(unchecked, chain)
    assert isinstance(unchecked.append([revoke(chain, 1)])[0], Receipt)
    later = stored(unchecked, build(prefix="report"))

    def rules(record_id: str) -> dict[str, str]:
        why = report(unchecked, record_id)
        assert verify_report(why, unchecked.verifier)
        return {r["name"]: r["status"] for r in why["verification"]["delegation"]["rules"]}

    assert set(rules(earlier).values()) == {"valid"}  # revoked after it, not before
    assert rules(replayed)["replay"] == "invalid"
    assert rules(replayed)["revocation"] == "valid"
    assert rules(later)["revocation"] == "invalid"
    why = report(unchecked, later)
    assert [item["cid"] for item in why["evidence"]["delegation"]["revoked"]] == [
        why["verification"]["delegation"]["hops"][1]["cid"]
    ]


# --- The prov commands ---------------------------------------------------------------------

_cli = click.Group("prov", commands=list(COMMANDS))


def run(ledger_args: list[str], *args: str) -> Any:
    result = CliRunner().invoke(_cli, [*args, *ledger_args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def key_file(folder: Path, name: str) -> tuple[Path, SigningKey]:
    signing_key = SigningKey.generate()
    path = folder / f"{name}.pem"
    save_signing_key(signing_key, path)
    return path, signing_key


def register(engine: Engine, signing_key: SigningKey, service: str) -> None:
    with engine.begin() as connection:
        register_key(
            connection,
            tenant=TENANT,
            service=service,
            public_key=signing_key.public_key,
            valid_from=datetime(2000, 1, 1, tzinfo=UTC),
            now=datetime.now(UTC),
        )


def test_the_delegation_commands_make_chains_the_ledger_accepts(
    ledger: Ledger, db_url: str, key_path: Path, tmp_path: Path
) -> None:
    on_ledger = ["--db", db_url, "--key-file", str(key_path)]
    admin, admin_key = key_file(tmp_path, "admin")
    service, service_key = key_file(tmp_path, "service")
    register(ledger.engine, admin_key, PRINCIPAL_SERVICE)
    register(ledger.engine, service_key, "loan-underwriter")
    alice, platform, team = (key_file(tmp_path, name)[0] for name in ("alice", "platform", "team"))
    dids = {
        path: run([], "principal", "did", str(path)).output.strip()
        for path in (alice, platform, team, service)
    }

    run(
        on_ledger,
        "principal", "add", "--tenant", TENANT, "--did", dids[alice],
        "--name", "alice@example.com", "--display-name", "Alice Liddell",
        "--signing-key", str(admin),
    )  # fmt: skip
    listing = run(on_ledger, "principal", "list", "--tenant", TENANT).output
    listed = [msgspec.json.decode(line) for line in listing.splitlines()]
    assert [(p["did"], p["name"]) for p in listed] == [(dids[alice], "alice@example.com")]

    chain = tmp_path / "underwriter.chain"
    expires = "2036-01-01T00:00:00"
    hops = [
        (alice, platform, "/loan", "[]", None),
        (platform, team, "/loan/approve", '[["<=", ".amount", 50000]]', chain),
        (team, service, "/loan/approve", '[[">", ".amount", 0]]', chain),
    ]
    for issuer, audience, command, policy, parent in hops:
        args = ["delegate", "--issuer-key", str(issuer), "--audience", dids[audience]]
        args += ["--command", command, "--policy", policy, "--expires", expires]
        args += ["--out", str(chain)] + ([] if parent is None else ["--chain", str(parent)])
        made = msgspec.json.decode(run([], *args).output)
    assert made["hops"] == 3
    assert made["sub"] == dids[alice]

    widening = CliRunner().invoke(
        _cli,
        ["delegate", "--issuer-key", str(service), "--audience", dids[alice], "--command", "/",
         "--chain", str(chain), "--out", str(tmp_path / "wide.chain")],
    )  # fmt: skip
    assert widening.exit_code == 1
    assert "widens" in widening.output

    tokens = read_chain(chain)
    invoker = load_signing_key(service).private_key()
    made_decision = demo_decision(random.Random(4), 1, tenant=TENANT, occurred_at=datetime.now(UTC))
    authorized = authorize(made_decision, invoker, tokens, {"amount": 4200})
    [result] = ledger.append([sign(authorized, service_key)])
    assert isinstance(result, Receipt), result
    why = report(ledger, result.id)["verification"]["delegation"]
    assert why["status"] == "valid", why["detail"]
    assert why["principal"]["name"] == "alice@example.com"
    assert len(why["hops"]) == 3

    run(
        on_ledger,
        "revoke", "--tenant", TENANT, "--chain", str(chain), "--hop", "1",
        "--revoker-key", str(platform), "--service", "loan-underwriter",
        "--signing-key", str(service), "--reason", "reorganized",
    )  # fmt: skip
    again = authorize(made_decision, invoker, tokens, {"amount": 4201})
    refused = ledger.append([sign(msgspec.structs.replace(again, id="again"), service_key)])[0]
    assert not isinstance(refused, Receipt)
    assert "rule 9 (revocation)" in str(refused)

    run(on_ledger, "tenant", "set-delegation-mode", TENANT, "required")
    shown = msgspec.json.decode(run(on_ledger, "tenant", "delegation-mode", TENANT).output)
    assert shown == {"tenant": TENANT, "delegation_mode": "required"}


def test_a_bare_chain_is_shown_as_the_service_recorded_it(ledger: Ledger) -> None:
    register_demo_keys(ledger.engine, TENANT)
    bare = demo_decision(random.Random(5), 1, tenant=TENANT)
    [result] = ledger.append([sign(bare)])
    assert isinstance(result, Receipt)
    delegation = report(ledger, result.id)["verification"]["delegation"]
    assert delegation["status"] == "not-checked"
    assert [hop["iss"] for hop in delegation["hops"]] == [link.iss for link in bare.delegation]
