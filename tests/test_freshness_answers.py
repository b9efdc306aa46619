"""Freshness answers: fresh, stale (by a change, at birth, by expiry) and unknown, each
signed by the ledger and checked offline from its evidence; altered answers fail."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from ledger.errors import NotFound
from ledger.keys.ed25519 import SigningKey
from ledger.ledger import Ledger
from ledger.log.entry import to_micros
from ledger.log.note import NoteSigner
from ledger.log.sequencer import now_micros
from query.audit.freshness import freshness_answer
from query.audit.freshness_check import verify_freshness
from tests.freshness_support import T0, change, decision, register_tenant


def answer(
    ledger: Ledger,
    record_id: str,
    *,
    tenant: str = "acme",
    now_us: int | None = None,
    evidence: bool = True,
) -> dict[str, Any]:
    with ledger.engine.connect() as connection:
        found = freshness_answer(
            connection,
            ledger.signer,
            ledger.origin,
            tenant,
            record_id,
            now_us=now_us or now_micros(),
            evidence=evidence,
        )
    # What a client holds: the JSON as it crossed the wire.
    return msgspec.json.decode(msgspec.json.encode(found))


def checked(ledger: Ledger, found: dict[str, Any]) -> None:
    result = verify_freshness(found, ledger.verifier)
    assert result, result.failure


@pytest.fixture
def acme(ledger: Ledger) -> Ledger:
    register_tenant(ledger.engine, "acme")
    return ledger


def test_fresh_then_stale_after_a_change(acme: Ledger) -> None:
    acme.append([decision("acme", "d1", [("stock:a", "v1")])])
    fresh = answer(acme, "d1")
    assert (fresh["state"], fresh["reasons"]) == ("fresh", [])
    checked(acme, fresh)
    [receipt] = acme.append([change("acme", "c1", "stock:a", "v2")])
    stale = answer(acme, "d1")
    assert stale["state"] == "stale"
    [reason] = stale["reasons"]
    assert reason["reason"] == "superseded"
    assert not reason["at_decision"]
    assert (reason["key"], reason["version"]) == ("stock:a", "v1")
    assert reason["change"] | {"changed_at": None} == {
        "index": receipt.index,
        "id": "c1",
        "version": "v2",
        "changed_at": None,
    }
    assert set(stale["evidence"]["entries"]) == {str(stale["index"]), str(receipt.index)}
    checked(acme, stale)
    result = verify_freshness(stale, acme.verifier)
    assert any("no other change" in claim for claim in result.unverifiable)


def test_stale_at_birth_names_the_entry_that_held_the_old_version(acme: Ledger) -> None:
    [first] = acme.append([decision("acme", "d1", [("stock:a", "v1")])])
    [moved] = acme.append([change("acme", "c1", "stock:a", "v2")])
    acme.append([decision("acme", "d2", [("stock:a", "v1")])])
    found = answer(acme, "d2")
    [reason] = found["reasons"]
    assert reason["at_decision"]
    assert reason["change"]["index"] == moved.index
    assert reason["replaced"] == first.index
    checked(acme, found)


def test_expiry_and_unknown(acme: Ledger) -> None:
    until = T0 + timedelta(hours=1)
    acme.append(
        [
            decision(
                "acme",
                "d1",
                snapshots=[("stock:a", "v1", until)],
                valid_until=until + timedelta(hours=1),
            ),
            decision("acme", "d2", declare=False),
        ]
    )
    before = answer(acme, "d1", now_us=to_micros(until) - 1)
    assert before["state"] == "fresh"
    assert before["valid_until"].startswith("2026-12-01T13:00:00")  # the snapshot's, earliest
    later = answer(acme, "d1", now_us=to_micros(until + timedelta(hours=2)))
    assert [r["reason"] for r in later["reasons"]] == ["expired", "snapshot_expired"]
    checked(acme, later)
    unknown = answer(acme, "d2")
    assert (unknown["state"], unknown["valid_until"]) == ("unknown", None)
    checked(acme, unknown)


def test_without_evidence_the_verdict_is_still_signed(acme: Ledger) -> None:
    acme.append([decision("acme", "d1", [("stock:a", "v1")])])
    found = answer(acme, "d1", evidence=False)
    assert "evidence" not in found
    assert found["signed"]["signatures"]
    result = verify_freshness(found, acme.verifier)
    assert not result
    assert result.failure is not None
    assert result.failure.name == "format"


def test_another_tenant_sees_nothing(acme: Ledger) -> None:
    acme.append([decision("acme", "d1", [("stock:a", "v1")])])
    with pytest.raises(NotFound):
        answer(acme, "d1", tenant="globex")


def _stale(acme: Ledger) -> dict[str, Any]:
    acme.append([decision("acme", "d1", [("stock:a", "v1")])])
    acme.append([change("acme", "c1", "stock:a", "v2")])
    return answer(acme, "d1")


def _forge(found: dict[str, Any], edit: Any) -> dict[str, Any]:
    forged = copy.deepcopy(found)
    edit(forged)
    return forged


def _change_evidence(found: dict[str, Any]) -> dict[str, Any]:
    [reason] = found["reasons"]
    return found["evidence"]["entries"][str(reason["change"]["index"])]


@pytest.mark.parametrize(
    ("edit", "step"),
    [
        (lambda a: a.update(state="fresh", reasons=[]), "signed"),
        (lambda a: a["reasons"][0]["change"].update(version="v9"), "signed"),
        (lambda a: a.update(checked_at="2000-01-01T00:00:00Z"), "signed"),
        (
            lambda a: a["signed"]["signatures"][0].update(
                sig=a["signed"]["signatures"][0]["sig"][::-1]
            ),
            "signed",
        ),
        (
            lambda a: a["evidence"]["entries"].pop(str(a["reasons"][0]["change"]["index"])),
            "superseded",
        ),
        (
            lambda a: _change_evidence(a).update(
                envelope=a["evidence"]["entries"][str(a["index"])]["envelope"]
            ),
            "superseded",
        ),
        (
            lambda a: (
                _change_evidence(a)["inclusion_proof"]["proof"].reverse()
                or _change_evidence(a)["inclusion_proof"].update(proof=["00" * 32])
            ),
            "superseded",
        ),
        (
            lambda a: a["evidence"].update(
                checkpoint=a["evidence"]["checkpoint"].replace("\n", "\n ", 1)
            ),
            "checkpoint",
        ),
    ],
)
def test_an_altered_answer_fails(acme: Ledger, edit: Any, step: str) -> None:
    found = _stale(acme)
    checked(acme, found)
    result = verify_freshness(_forge(found, edit), acme.verifier)
    assert not result
    assert result.failure is not None
    assert result.failure.name == step, result.failure


def test_an_answer_signed_by_another_ledger_fails(acme: Ledger) -> None:
    found = _stale(acme)
    impostor = NoteSigner(acme.origin, SigningKey.generate())
    with acme.engine.connect() as connection:
        forged = freshness_answer(
            connection, impostor, acme.origin, "acme", "d1", now_us=now_micros()
        )
    result = verify_freshness(msgspec.json.decode(msgspec.json.encode(forged)), acme.verifier)
    assert not result
    assert result.failure is not None
    assert result.failure.name == "signed"
    assert verify_freshness(found, acme.verifier)
