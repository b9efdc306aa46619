"""Delegation at ingest, on both engines: verified chains are stored with their index rows,
each broken rule is refused naming it, the tenant's mode decides what is checked, replays
are refused across concurrent batches, and a batch is never stored in part."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select

from httpapi.problems import problem_for
from ingest.client import authorize, read_chain
from ledger.delegation import ucan
from ledger.delegation.chain import Rule
from ledger.delegation.mode import DelegationMode, set_mode
from ledger.delegation.records import (
    PRINCIPAL_PAYLOAD_TYPE,
    PRINCIPAL_SERVICE,
    PrincipalRecord,
    RevocationRecord,
    sign_record,
)
from ledger.delegation.ucan_files import format_chain
from ledger.errors import (
    DelegationInvalid,
    InvalidPayload,
    KeyNotAuthorized,
    RecordRejected,
    RecordUnstorable,
)
from ledger.indexes.delegations import AuthorityGuard
from ledger.keys.keyring import derive_keyid
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records import dsse
from ledger.storage.schema import invocations, log_entries, principals, revocations
from service.demo.scenarios import DEMO_SERVICES, demo_decision
from service.demo.traffic import demo_signing_key, register_demo_keys
from tests.support import sign
from tests.test_delegation_chain import HOUR, NOW, Chain, build, key

TENANT = "acme"


def enroll(ledger: Ledger, did: str, name: str = "alice@example.com") -> None:
    record = PrincipalRecord(
        id=f"principal-{name.partition('@')[0]}-{random.getrandbits(32)}",
        tenant=TENANT,
        service=PRINCIPAL_SERVICE,
        occurred_at=datetime.now(UTC),
        did=did,
        name=name,
        display_name="Alice Liddell",
    )
    [result] = ledger.append([sign_record(record, demo_signing_key(TENANT, PRINCIPAL_SERVICE))])
    assert isinstance(result, Receipt), result


def decision(chain: Chain | None, record_id: str | None = None) -> bytes:
    """A loan decision made now, carrying `chain` and its invocation, signed by its service."""
    made = demo_decision(random.Random(7), 1, tenant=TENANT, occurred_at=datetime.now(UTC))
    made = msgspec.structs.replace(made, id=record_id or f"loan-{random.getrandbits(48):x}")
    if chain is not None:
        made = msgspec.structs.replace(made, delegation=chain.links, invocation=chain.invocation)
    return sign(made)


@pytest.fixture
def keyed(ledger: Ledger) -> Ledger:
    register_demo_keys(ledger.engine, TENANT, [*DEMO_SERVICES.values(), PRINCIPAL_SERVICE])
    return ledger


@pytest.fixture
def enrolled(keyed: Ledger) -> tuple[Ledger, Chain]:
    chain = build(prefix="ingest")
    enroll(keyed, chain.root)
    return keyed, chain


def count(ledger: Ledger, table: Any) -> int:
    with ledger.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def refused(result: Receipt | RecordRejected) -> DelegationInvalid:
    assert isinstance(result, DelegationInvalid), result
    return result


def test_a_verified_chain_is_stored_with_its_index_row(enrolled: tuple[Ledger, Chain]) -> None:
    ledger, chain = enrolled
    [result] = ledger.append([decision(chain)])
    assert isinstance(result, Receipt), result
    with ledger.engine.connect() as connection:
        row = connection.execute(select(invocations)).one()
        enrollment = connection.execute(select(principals)).one()
    assert (row.idx, row.tenant, row.root) == (result.index, TENANT, chain.root)
    assert bytes(row.cid) == ucan.cid_of(chain.invocation)
    assert (enrollment.did, enrollment.name) == (chain.root, "alice@example.com")


def _expired(position: int, arguments: dict[str, Any]) -> None:
    arguments["expiration"] = NOW - 60 - position
    arguments["not_before"] = NOW - 2 * HOUR


def _not_yet(position: int, arguments: dict[str, Any]) -> None:
    if position == 2:
        arguments["not_before"] = NOW + HOUR // 2


def _flip(chain: Chain) -> Chain:
    token = bytearray(chain.tokens[0])
    token[20] ^= 0x01
    return Chain(chain.keys, [bytes(token), *chain.tokens[1:]], chain.invocation)


STRANGER = ucan.did_of(key("ingest-stranger"))
CHAINS = {
    "bad signature": (lambda: _flip(build(prefix="ingest")), Rule.SIGNATURE, "/delegation/0"),
    "audience mismatch": (
        lambda: build(prefix="ingest", edit=lambda i, a: a.update(audience=STRANGER) if i else 0),
        Rule.ALIGNMENT,
        "/delegation/1",
    ),
    "subject mismatch": (
        lambda: build(prefix="ingest", edit=lambda i, a: a.update(subject=STRANGER) if i else 0),
        Rule.SUBJECT,
        "/delegation/1",
    ),
    "widened command": (
        lambda: build(prefix="ingest", edit=lambda i, a: a.update(command="/") if i else 0),
        Rule.COMMAND,
        "/delegation/1",
    ),
    "unsatisfied policy": (
        lambda: build(prefix="ingest", invoke=lambda i: i.update(args={"amount": 60_000})),
        Rule.POLICY,
        "/delegation/0",
    ),
    "expired token": (lambda: build(prefix="ingest", edit=_expired), Rule.TIME, "/delegation/0"),
    "token not yet valid": (
        lambda: build(prefix="ingest", edit=_not_yet),
        Rule.TIME,
        "/delegation/2",
    ),
    "unknown root": (lambda: build(prefix="unenrolled"), Rule.ROOT, "/delegation/0"),
}


@pytest.mark.parametrize("case", list(CHAINS))
def test_a_broken_chain_is_refused_at_ingest_naming_the_rule(
    enrolled: tuple[Ledger, Chain], case: str
) -> None:
    ledger, _ = enrolled
    make, rule, pointer = CHAINS[case]
    before = count(ledger, log_entries)
    error = refused(ledger.append([decision(make())])[0])
    assert (error.rule, error.rule_name) == (rule, rule.slug)
    assert error.pointer == "/payload" + pointer
    assert str(error).startswith(f"rule {int(rule)} ({rule.slug}): ")
    problem = problem_for(error)
    assert (problem.status, problem.type) == (422, "urn:prov:problem:delegation-invalid")
    assert problem.errors[0].pointer == "/payload" + pointer
    assert count(ledger, log_entries) == before


def test_a_revoked_delegation_is_refused_from_the_revocation_on(
    enrolled: tuple[Ledger, Chain],
) -> None:
    ledger, chain = enrolled
    [before] = ledger.append([decision(chain)])
    assert isinstance(before, Receipt)
    revocation = revoke(chain, 1)
    [stored] = ledger.append([revocation])
    assert isinstance(stored, Receipt), stored
    again = build(prefix="ingest", invoke=lambda i: i.update(args={"amount": 5}))
    error = refused(ledger.append([decision(again)])[0])
    assert (error.rule, error.pointer) == (Rule.REVOCATION, "/payload/delegation/1")
    assert count(ledger, revocations) == 1


def revoke(chain: Chain, position: int, revoker: int | None = None) -> bytes:
    """A revocation record of hop `position`, signed by the key at `revoker` (its issuer by
    default) and submitted by a registered service."""
    signer = chain.keys[position if revoker is None else revoker]
    revoked = chain.tokens[position]
    record = RevocationRecord(
        id=f"revoke-{random.getrandbits(48):x}",
        tenant=TENANT,
        service="loan-underwriter",
        occurred_at=datetime.now(UTC),
        revocation=ucan.revoke(signer, revoked, issued_at=NOW),
        delegation=revoked,
        reason="the agent went rogue",
    )
    return sign_record(record, demo_signing_key(TENANT, "loan-underwriter"))


def test_a_revocation_earlier_in_the_same_batch_counts(enrolled: tuple[Ledger, Chain]) -> None:
    ledger, chain = enrolled
    results = ledger.append([decision(chain), revoke(chain, 2), decision(build(prefix="ingest"))])
    assert isinstance(results[0], Receipt)
    assert isinstance(results[1], Receipt)
    error = refused(results[2])
    assert (error.rule, error.pointer) == (Rule.REVOCATION, "/payload/delegation/2")


def test_only_the_issuer_may_revoke_a_delegation(enrolled: tuple[Ledger, Chain]) -> None:
    ledger, chain = enrolled
    error = refused(ledger.append([revoke(chain, 2, revoker=0)])[0])
    assert (error.rule, error.pointer) == (Rule.ALIGNMENT, "/payload/revocation")
    assert "did not issue the delegation" in str(error)


def test_a_replayed_invocation_is_refused_in_a_batch_and_across_batches(
    enrolled: tuple[Ledger, Chain],
) -> None:
    ledger, chain = enrolled
    first, same_batch = ledger.append([decision(chain), decision(chain)])
    assert isinstance(first, Receipt)
    assert refused(same_batch).rule == Rule.REPLAY
    error = refused(ledger.append([decision(chain)])[0])
    assert (error.rule, error.pointer) == (Rule.REPLAY, "/payload/invocation")
    assert f"the record at {first.index}" in str(error)
    # A retry of the stored record itself is not a replay.
    retry = ledger.append([ledger_envelope(ledger, first.index)])[0]
    assert isinstance(retry, Receipt)
    assert retry.status == "existing"


def ledger_envelope(ledger: Ledger, index: int) -> bytes:
    with ledger.engine.connect() as connection:
        envelope = connection.execute(
            select(log_entries.c.envelope).where(log_entries.c.idx == index)
        ).scalar_one()
    return bytes(envelope)


def test_the_same_nonce_from_the_same_invoker_is_a_replay(enrolled: tuple[Ledger, Chain]) -> None:
    ledger, _ = enrolled
    nonce = b"same-nonce-1"
    first = build(prefix="ingest", invoke=lambda i: i.update(nonce=nonce))
    second = build(prefix="ingest", invoke=lambda i: i.update(nonce=nonce, args={"amount": 2}))
    assert first.invocation != second.invocation
    assert isinstance(ledger.append([decision(first)])[0], Receipt)
    assert refused(ledger.append([decision(second)])[0]).rule == Rule.REPLAY


def test_concurrent_batches_store_a_replayed_invocation_once(
    enrolled: tuple[Ledger, Chain],
) -> None:
    ledger, chain = enrolled
    barrier = threading.Barrier(4)
    outcomes: list[Receipt | RecordRejected] = []

    def send() -> None:
        records = [decision(chain)]
        barrier.wait()
        outcomes.extend(ledger.append(records))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(outcome, Receipt) for outcome in outcomes) == 1
    assert [refused(o).rule for o in outcomes if not isinstance(o, Receipt)] == [Rule.REPLAY] * 3
    assert count(ledger, invocations) == 1


def test_a_record_the_unique_constraint_refuses_is_never_stored_in_part(
    enrolled: tuple[Ledger, Chain], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, chain = enrolled
    # Were the check under the lock ever to let a replay through, the unique constraint
    # refuses its insert: that record alone is refused, with nothing of it stored, and the
    # records beside it commit.
    monkeypatch.setattr(AuthorityGuard, "admit", lambda *_: None)
    before = count(ledger, log_entries)
    outcomes = ledger.append([decision(None), decision(chain), decision(chain)])
    assert [type(outcome) for outcome in outcomes[:2]] == [Receipt, Receipt]
    assert isinstance(outcomes[2], RecordUnstorable)
    assert count(ledger, log_entries) == before + 2
    assert count(ledger, invocations) == 1


def test_the_tenant_mode_decides_what_is_checked(enrolled: tuple[Ledger, Chain]) -> None:
    ledger, _ = enrolled
    bad = build(prefix="ingest", invoke=lambda i: i.update(args={"amount": 60_000}))
    # optional, the default: a record without an invocation is stored, a bad chain is not.
    assert isinstance(ledger.append([decision(None)])[0], Receipt)
    assert refused(ledger.append([decision(bad)])[0]).rule == Rule.POLICY
    with ledger.engine.begin() as connection:
        set_mode(connection, TENANT, DelegationMode.REQUIRED, now_us=1)
    error = refused(ledger.append([decision(None)])[0])
    assert (error.rule, error.pointer) == (Rule.SIGNATURE, "/payload/invocation")
    assert "requires an invocation" in str(error)
    with ledger.engine.begin() as connection:
        set_mode(connection, TENANT, DelegationMode.OFF, now_us=2)
    assert isinstance(ledger.append([decision(bad)])[0], Receipt)
    assert count(ledger, invocations) == 0  # nothing was verified, so nothing is indexed


def test_principals_are_enrolled_only_by_the_principal_service(keyed: Ledger) -> None:
    did = ucan.did_of(key("someone"))
    record = PrincipalRecord(
        id="principal-someone",
        tenant=TENANT,
        service=PRINCIPAL_SERVICE,
        occurred_at=datetime.now(UTC),
        did=did,
        name="someone@example.com",
    )
    # A decision service's own key may not enroll the principal that would authorize it.
    by_service = sign_record(record, demo_signing_key(TENANT, "loan-underwriter"))
    assert isinstance(keyed.append([by_service])[0], KeyNotAuthorized)
    payload = msgspec.to_builtins(record)
    as_service = sign_payload(payload | {"service": "loan-underwriter"}, "loan-underwriter")
    error = keyed.append([as_service])[0]
    assert isinstance(error, InvalidPayload)
    assert error.pointer == "/service"
    not_a_did = sign_payload(payload | {"did": "did:web:x"}, PRINCIPAL_SERVICE)
    invalid = keyed.append([not_a_did])[0]
    assert isinstance(invalid, InvalidPayload)
    assert invalid.pointer == "/did"


def sign_payload(payload: dict[str, Any], service: str) -> bytes:
    """A principal payload as given, signed by the demo key of `service`."""
    signer = demo_signing_key(TENANT, service)
    envelope = dsse.sign_envelope(
        PRINCIPAL_PAYLOAD_TYPE,
        msgspec.json.encode(payload),
        signer,
        derive_keyid(signer.public_key),
    )
    return dsse.encode_envelope(envelope)


def test_the_sdk_attaches_a_chain_from_a_chain_file(
    enrolled: tuple[Ledger, Chain], tmp_path: Path
) -> None:
    ledger, chain = enrolled
    chain_file = tmp_path / "underwriter.chain"
    chain_file.write_text(
        "# alice -> platform -> team -> underwriter\n" + format_chain(chain.tokens)
    )
    made = demo_decision(random.Random(3), 1, tenant=TENANT, occurred_at=datetime.now(UTC))
    authorized = authorize(made, chain.keys[-1], read_chain(chain_file), {"amount": 900})
    assert authorized.invocation is not None
    assert [link.token for link in authorized.delegation] == chain.tokens
    invoked = ucan.decode_invocation(authorized.invocation)
    assert (invoked.cmd, invoked.sub, invoked.args) == (
        "/loan/approve",
        chain.root,
        {"amount": 900},
    )
    assert invoked.exp == int(made.occurred_at.timestamp()) + 3600
    [result] = ledger.append([sign(authorized)])
    assert isinstance(result, Receipt), result
