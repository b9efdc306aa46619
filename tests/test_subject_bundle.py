"""Subject bundles (GDPR Art. 15): every decision about a person as one JSON bundle that
`prov verify-subject` checks offline. A bundle verifies; one altered anywhere (an envelope,
a blob, a proof, the checkpoint's signature, the listed decision, its explanation, or a
decision about someone else swapped in) fails at the step that catches it, naming the
decision or the blob at fault; an erased blob is marked erased and the bundle still
verifies; pages chain to the whole list. Run on SQLite and PostgreSQL, in process, from the
command line and over HTTP."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.keys.signing import SigningKey
from ledger.ledger import Ledger
from ledger.log.note import NoteSigner
from ledger.log.sequencer import now_micros
from ledger.storage.db import make_engine
from query.audit.report_check import Step
from query.subjects.bundle import subject_bundle
from query.subjects.check import verify_subject_bundle
from tests.http_helpers import assert_problem, check_problem_document
from tests.http_server import Server, prepared_server
from tests.subject_support import record_subject
from tests.support import PROV, prov
from tests.test_client_install import SERVER_PACKAGES

TENANT = "acme"
PERSON = "person-1"
OTHER = "person-2"
CONTEST = "Write to complaints@acme.example, quoting the reference."


def bundle_of(ledger: Ledger, subject: str = PERSON, **page: Any) -> dict[str, Any]:
    """The bundle as a client receives it: through JSON."""
    made = subject_bundle(ledger, TENANT, subject, contest=CONTEST, now_us=now_micros(), **page)
    loaded: dict[str, Any] = json.loads(json.dumps(made))
    return loaded


def failure(bundle: dict[str, Any], ledger: Ledger) -> Step:
    check = verify_subject_bundle(bundle, ledger.verifier)
    assert not check, "the altered bundle verified"
    step = check.failure
    assert step is not None
    return step


def flipped(encoded: str, where: float) -> str:
    """`encoded` (base64) with one bit of one byte changed: the byte at `where`, a fraction of
    the length (0 the first byte, 1 the last)."""
    raw = bytearray(base64.b64decode(encoded))
    raw[min(int(len(raw) * where), len(raw) - 1)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def held_blob(bundle: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first decision with a blob whose bytes are in the bundle, and that blob."""
    return next(
        (item, blob)
        for item in bundle["decisions"]
        for blob in item["blobs"]
        if blob["status"] == "present"
    )


@pytest.fixture
def people(ledger: Ledger) -> dict[str, list[str]]:
    """Two people's decisions, interleaved with nothing in between: their bundles share
    one checkpoint."""
    return {
        PERSON: record_subject(ledger, TENANT, PERSON, 6, seed=11),
        OTHER: record_subject(ledger, TENANT, OTHER, 3, seed=12),
    }


def test_a_bundle_verifies_and_every_alteration_names_the_fault(
    ledger: Ledger, people: dict[str, list[str]]
) -> None:
    bundle = bundle_of(ledger)
    check = verify_subject_bundle(bundle, ledger.verifier)
    assert check, check.failure
    assert [step.name for step in check.steps] == [
        "1. format", "2. checkpoint", "3. entries", "4. inclusion", "5. records", "6. subject",
        "7. blobs", "8. explanations",
    ]  # fmt: skip
    # Exactly this person's decisions, newest first, each with its explanation and blobs.
    listed = [item["id"] for item in bundle["decisions"]]
    assert sorted(listed) == sorted(people[PERSON])
    indexes = [item["evidence"]["entry"]["index"] for item in bundle["decisions"]]
    assert indexes == sorted(indexes, reverse=True)
    assert bundle["next_cursor"] is None
    assert {item["decision"]["subject"] for item in bundle["decisions"]} == {PERSON}
    assert all(CONTEST in item["explanation"] for item in bundle["decisions"])
    held = sum(
        blob["status"] == "present" for item in bundle["decisions"] for blob in item["blobs"]
    )
    assert held > 0
    assert (
        check.steps[6].detail == f"{held} blobs held hash to their signed digests ({held} salted)"
    )

    other = bundle_of(ledger, OTHER)
    assert other["checkpoint"] == bundle["checkpoint"], "no append between the two exports"

    # Each alteration returns who it touched: the step must name it, and say what is wrong.
    def envelope_byte(copied: dict[str, Any]) -> str:
        item = copied["decisions"][1]
        item["evidence"]["envelope"] = flipped(item["evidence"]["envelope"], 0.5)
        return f"decision {item['id']!r}"

    def blob_byte(copied: dict[str, Any]) -> str:
        item, blob = held_blob(copied)
        blob["bytes"] = flipped(blob["bytes"], 1)
        return f"decision {item['id']!r}: blob {blob['digest']} at {blob['pointer']}"

    def proof_hash(copied: dict[str, Any]) -> str:
        item = next(i for i in copied["decisions"] if i["evidence"]["inclusion_proof"]["proof"])
        nodes = item["evidence"]["inclusion_proof"]["proof"]
        nodes[0] = ("0" if nodes[0][0] != "0" else "1") + nodes[0][1:]
        return f"decision {item['id']!r}"

    def checkpoint_signature(copied: dict[str, Any]) -> str:
        body, _, signature = copied["checkpoint"].rstrip("\n").rpartition(" ")
        copied["checkpoint"] = f"{body} {flipped(signature, 1)}\n"
        return "checkpoint: "

    def swapped(copied: dict[str, Any]) -> str:
        copied["decisions"][2] = copy.deepcopy(other["decisions"][0])
        return f"decision {other['decisions'][0]['id']!r}"

    def listed_decision(copied: dict[str, Any]) -> str:
        item = copied["decisions"][0]
        item["decision"]["inputs"]["forged"] = True
        return f"decision {item['id']!r}"

    def explanation(copied: dict[str, Any]) -> str:
        item = copied["decisions"][0]
        line = item["explanation"].splitlines().index("What was decided") + 1
        item["explanation"] = item["explanation"].replace("What was decided", "Decided by a person")
        return (
            f"decision {item['id']!r}: the explanation is not what its signed decision and "
            f"blobs say (line {line} differs)"
        )

    def listed_twice(copied: dict[str, Any]) -> str:
        copied["decisions"].append(copy.deepcopy(copied["decisions"][0]))
        return f"decision {copied['decisions'][0]['id']!r}"

    alterations: list[tuple[Callable[[dict[str, Any]], str], str, str]] = [
        (envelope_byte, "3. entries", "does not hash to the entry's envelope_sha256"),
        (blob_byte, "7. blobs", "do not hash to its signed digest"),
        (proof_hash, "4. inclusion", "does not reach the checkpoint root"),
        (checkpoint_signature, "2. checkpoint", "does not verify"),
        (swapped, "6. subject", f"is about {OTHER!r}, not {PERSON!r}"),
        (listed_decision, "5. records", "differs from the signed payload at /inputs/forged"),
        (explanation, "8. explanations", "differs"),
        (listed_twice, "1. format", "is listed twice"),
    ]
    for edit, step_name, why in alterations:
        copied = copy.deepcopy(bundle)
        named = edit(copied)
        step = failure(copied, ledger)
        assert step.name == step_name, (edit.__name__, step)
        assert named in step.detail, (edit.__name__, step)
        assert why in step.detail, (edit.__name__, step)

    # Trusting another key of the same name, the genuine bundle is refused.
    stranger = NoteSigner(ledger.verifier.name, SigningKey.generate()).verifier
    refused = verify_subject_bundle(bundle, stranger)
    assert not refused
    assert refused.failure is not None
    assert refused.failure.name == "2. checkpoint"


def test_an_erased_blob_is_marked_erased_and_the_bundle_still_verifies(
    ledger: Ledger, people: dict[str, list[str]]
) -> None:
    before = bundle_of(ledger)
    item, blob = held_blob(before)
    erased_at = now_micros()
    ledger.blobs.erase_now(TENANT, [blob["digest"]], now_us=erased_at)

    after = bundle_of(ledger)
    check = verify_subject_bundle(after, ledger.verifier)
    assert check, check.failure
    [shown] = [
        b
        for i in after["decisions"]
        if i["id"] == item["id"]
        for b in i["blobs"]
        if b["digest"] == blob["digest"]
    ]
    assert shown["status"] == "erased"
    assert shown["erasure_index"] is None  # erased directly, with no erasure record
    assert shown["erased_at"].startswith(before["generated_at"][:10])
    assert "bytes" not in shown
    # Its bytes are nowhere in the bundle, and what is left of it is the server's word.
    assert blob["bytes"] not in json.dumps(after)
    assert any(blob["digest"] in claim and "erased at" in claim for claim in check.unverifiable)
    [explained] = [i["explanation"] for i in after["decisions"] if i["id"] == item["id"]]
    assert "erased on " in explained
    assert "have been erased since" in explained


def test_an_erasure_record_is_carried_and_checked_offline(
    ledger: Ledger, people: dict[str, list[str]]
) -> None:
    """A blob erased by an erasure record: the bundle carries the record's evidence, and the
    offline check proves the record in the log, signed by the ledger, listing the blob."""
    item, blob = held_blob(bundle_of(ledger))
    view = ledger.erasures.erase_blobs(
        TENANT, [blob["digest"]], reason="asked by the person", requested_by="test",
        now_us=now_micros(),
    )  # fmt: skip
    assert view is not None
    [record_index] = view.records

    bundle = bundle_of(ledger)
    check = verify_subject_bundle(bundle, ledger.verifier)
    assert check, check.failure
    assert check.steps[6].detail.endswith(
        "1 erased, each listed by a signed erasure record in the log"
    )
    [shown] = [
        b for i in bundle["decisions"] if i["id"] == item["id"] for b in i["blobs"]
        if b["digest"] == blob["digest"]
    ]  # fmt: skip
    assert shown == {
        "pointer": blob["pointer"],
        "digest": blob["digest"],
        "status": "erased",
        "erased_at": view.erased_at,
        "erasure_index": record_index,
    }
    assert [e["entry"]["index"] for e in bundle["erasures"]] == [record_index]
    # Proven, so not listed as the server's word.
    assert not any(blob["digest"] in claim for claim in check.unverifiable)
    [explained] = [i["explanation"] for i in bundle["decisions"] if i["id"] == item["id"]]
    assert f"(erasure record {record_index} in the ledger)" in explained

    def refused(edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> Step:
        copied = copy.deepcopy(bundle)
        [target] = [
            b for i in copied["decisions"] for b in i["blobs"] if b["digest"] == blob["digest"]
        ]
        edit(copied, target)
        return failure(copied, ledger)

    # Another entry named as the erasure record, a time it does not state, a record altered.
    step = refused(lambda _, target: target.update(erasure_index=record_index - 1))
    assert step.name == "7. blobs"
    assert f"blob {blob['digest']} at {blob['pointer']}" in step.detail
    assert f"carries no erasure record {record_index - 1}" in step.detail
    step = refused(lambda _, target: target.update(erased_at="2020-01-01T00:00:00.000000Z"))
    assert f"erasure record {record_index} erased it at {view.erased_at}" in step.detail

    def altered_record(copied: dict[str, Any], _: dict[str, Any]) -> None:
        copied["erasures"][0]["envelope"] = flipped(copied["erasures"][0]["envelope"], 0.5)

    step = refused(altered_record)
    assert step.name == "7. blobs"
    assert step.detail.startswith("erasure record: ")


def test_pages_chain_to_every_decision_and_each_verifies_alone(
    ledger: Ledger, people: dict[str, list[str]]
) -> None:
    whole = [item["id"] for item in bundle_of(ledger)["decisions"]]

    @settings(
        max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(limit=st.integers(1, 7), budget=st.sampled_from([None, 0, 1, 2_000, 10**9]))
    def pages_match_the_whole(limit: int, budget: int | None) -> None:
        listed: list[str] = []
        cursor = None
        while True:
            page = bundle_of(ledger, cursor=cursor, limit=limit, blob_budget=budget)
            assert verify_subject_bundle(page, ledger.verifier)
            ids = [item["id"] for item in page["decisions"]]
            assert 1 <= len(ids) <= limit
            sizes = [
                sum(blob.get("size", 0) for blob in item["blobs"]) for item in page["decisions"]
            ]
            if budget is not None and len(ids) > 1:
                assert sum(sizes) <= budget  # a page passes the budget only by one decision
            listed += ids
            cursor = page["next_cursor"]
            if cursor is None:
                break
            if budget is not None and len(ids) < limit:
                # It stopped early: the next decision would have passed the budget.
                following = whole[len(listed)]
                assert following not in ids
        assert listed == whole  # the brute-force oracle: the unpaged list, in order

    pages_match_the_whole()


def test_an_unknown_subject_is_not_found(ledger: Ledger, people: dict[str, list[str]]) -> None:
    with pytest.raises(Exception, match="no decision about subject 'nobody'") as raised:
        bundle_of(ledger, "nobody")
    assert getattr(raised.value, "kind", None) == "not-found"
    with pytest.raises(Exception, match="no decision about subject") as raised:
        subject_bundle(ledger, "globex", PERSON, contest=CONTEST, now_us=now_micros())
    assert getattr(raised.value, "kind", None) == "not-found"


def test_the_offline_check_imports_nothing_of_the_server() -> None:
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, query.subjects.check, query.subjects.explain; "
            f"print(sorted(m for m in {SERVER_PACKAGES!r} if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "[]"


# --- from the command line ------------------------------------------------------------------


@pytest.fixture
def cli_ledger(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    key = tmp_path / "ledger.key"
    assert prov(["init"], db=db_url, key=key).code == 0
    ledger = Ledger.open(make_engine(db_url), key)
    ids = record_subject(ledger, TENANT, PERSON, 4, seed=21)
    yield db_url, key, ids
    ledger.engine.dispose()


@pytest.mark.slow
def test_export_explain_and_verify_from_the_command_line(
    cli_ledger: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    db, key, ids = cli_ledger
    saved = tmp_path / "bundle.json"
    exported = prov(
        ["subject", "export", PERSON, "--tenant", TENANT, "--out", str(saved)], db=db, key=key
    )
    assert exported.code == 0, exported.err
    assert exported.out == f"wrote 4 decisions about {PERSON!r} to {saved}\n"
    verifier_key = prov(["checkpoint", "--verifier-key"], db=db, key=key).out.strip()

    done = verify(saved, verifier_key)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for number, name in enumerate(
        ("format", "checkpoint", "entries", "inclusion", "records", "subject", "blobs"), start=1
    ):
        assert any(line.startswith(f"✔ {number}. {name}: ") for line in lines), lines
    assert lines[-1] == f"ok: 4 decisions about {PERSON!r} verify offline"

    bundle = json.loads(saved.read_text())
    explained = prov(["subject", "explain", ids[1], "--tenant", TENANT], db=db, key=key)
    assert explained.code == 0, explained.err
    [item] = [item for item in bundle["decisions"] if item["id"] == ids[1]]
    assert explained.out == item["explanation"]
    assert "Contact the organisation that made this decision" in explained.out  # the default

    # One byte of one blob altered: one line naming the blob and its decision, exit 1.
    item, blob = held_blob(bundle)
    blob["bytes"] = flipped(blob["bytes"], 0)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bundle))
    done = verify(tampered, verifier_key)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("prov: subject bundle FAILED at 7. blobs: ")
    assert f"decision {item['id']!r}: blob {blob['digest']}" in line
    assert "ok:" not in done.stdout

    unknown = prov(["subject", "export", "nobody", "--tenant", TENANT], db=db, key=key)
    assert unknown.code == 1
    assert unknown.err.startswith("prov: not-found: ")
    elsewhere = prov(["subject", "explain", ids[0], "--tenant", "globex"], db=db, key=key)
    assert elsewhere.code == 1
    assert "not-found" in elsewhere.err


def verify(path: Path, verifier_key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROV, "verify-subject", str(path), "--verifier-key", verifier_key],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
def subject_server(db_url: str, tmp_path: Path) -> Iterator[tuple[Server, list[str]]]:
    """A served ledger whose operator set how to contest, with a person's decisions."""
    server = prepared_server(db_url, tmp_path, PROV_CONTEST_CONTACT=CONTEST)
    ledger = Ledger.open(make_engine(db_url), server.key_file)
    ids = record_subject(ledger, TENANT, PERSON, 5, seed=31)
    ledger.engine.dispose()
    server.start()
    yield server, ids
    server.stop()


@pytest.mark.slow
def test_export_over_http_verifies_and_is_scoped_to_the_tenant(
    subject_server: tuple[Server, list[str]], tmp_path: Path
) -> None:
    server, ids = subject_server
    audit = server.auth(server.api_key("audit"))
    path = f"/v1/subjects/{PERSON}/decisions"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        answer = client.get(path, headers=audit)
        assert answer.status_code == 200, answer.text
        bundle = answer.json()
        assert sorted(item["id"] for item in bundle["decisions"]) == sorted(ids)
        assert bundle["contest"] == CONTEST
        saved = tmp_path / "bundle.json"
        saved.write_bytes(answer.content)
        verifier_key = prov(["checkpoint", "--verifier-key"], db=server.db_url, key=server.key_file)
        done = verify(saved, verifier_key.out.strip())
        assert done.returncode == 0, done.stdout + done.stderr

        # Pages of two, each a bundle of its own, chain to the same five.
        listed, cursor = [], None
        while True:
            page = client.get(
                path, params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=audit
            )
            assert page.status_code == 200, page.text
            assert len(page.json()["decisions"]) <= 2
            listed += [item["id"] for item in page.json()["decisions"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert listed == [item["id"] for item in bundle["decisions"]]

        # Who may ask: an ingest key is refused, another tenant finds nothing.
        refused = client.get(path, headers=server.auth(server.api_key("ingest")))
        assert_problem(refused, 403, "forbidden")
        other = client.get(path, headers=server.auth(server.api_key("audit", tenant="globex")))
        assert_problem(other, 404, "not-found")
        unknown = client.get("/v1/subjects/nobody/decisions", headers=audit)
        problem = assert_problem(unknown, 404, "not-found")
        assert "nobody" in problem["detail"]
        for params in ({"cursor": "not-a-cursor"}, {"limit": 0}, {"limit": 101}):
            assert_problem(client.get(path, params=params, headers=audit), 400)
        # A reference no decision can name (NUL, too long, not UTF-8) is refused, never a 500.
        for ref in ("%00", "a" * 300, "%ED%A0%80"):
            answer = client.get(f"/v1/subjects/{ref}/decisions", headers=audit)
            assert answer.status_code in {400, 404}, (ref, answer.text)
            check_problem_document(answer.json(), answer.status_code)
        assert client.get(path).status_code == 401
