"""The auditor's witness policy: `prov audit` and `prov verify-report` with `--witness`.

The server here has no witnesses, so the checkpoint it serves carries the log's signature
alone: the CLI, run against it, must refuse it under any policy and keep its state. What
a policy accepts is shown with the served checkpoint cosigned in the test by witness keys
made here (`CosignatureSigner`), handed to the auditor's functions, which then ask the
same real server for consistency proofs.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from ledger.errors import AuditFailed, NoteError, WitnessPolicyUnmet
from ledger.keys.ed25519 import SigningKey
from ledger.ledger import Ledger
from ledger.log.note import NoteSigner, NoteVerifier, parse_note
from ledger.log.receipt import Receipt
from ledger.storage.db import make_engine
from ledger.witness.cosignature import CosignatureSigner, add_signature_lines
from ledger.witness.policy import WitnessPolicy
from query.audit.auditor import advance, load_state
from query.audit.report_check import verify_report
from tests.http_server import Server, prepared_server
from tests.support import PROV, Run, demo_envelopes, prov

W1, W2, W3 = (
    CosignatureSigner(f"w{n}.example", SigningKey.from_seed(bytes([n]) * 32)) for n in (1, 2, 3)
)
KEY1, KEY2, KEY3 = (w.verifier.encode() for w in (W1, W2, W3))


def cosign(note: str, *witnesses: CosignatureSigner) -> str:
    """`note` with a cosignature line by each witness, as a witness would add it."""
    body = parse_note(note).body
    stamp = int(time.time())
    return add_signature_lines(note, [w.cosign(body, stamp) for w in witnesses])


def append(server: Server, count: int, seed: int) -> None:
    ledger = Ledger.open(make_engine(server.db_url), server.key_file)
    try:
        assert all(
            isinstance(r, Receipt)
            for r in ledger.append(demo_envelopes(ledger.engine, count, seed=seed))
        )
    finally:
        ledger.close()


_VERIFIER_KEYS: dict[Path, str] = {}


def verifier_key(server: Server) -> str:
    """The log's verifier key, as an auditor is given it (asked of `prov` once per ledger)."""
    if server.key_file not in _VERIFIER_KEYS:
        made = prov(["checkpoint", "--verifier-key"], db=server.db_url, key=server.key_file)
        _VERIFIER_KEYS[server.key_file] = made.out.strip()
    return _VERIFIER_KEYS[server.key_file]


def run_prov(*args: str, env: dict[str, str] | None = None) -> Run:
    done = subprocess.run([PROV, *args], capture_output=True, timeout=120, check=False, env=env)
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("witnessed")
    started = prepared_server(str(directory / "ledger.db"), directory)
    append(started, 12, seed=7)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=server.auth(server.admin_key)) as http:
        yield http


def test_a_policy_trusts_enough_cosignatures_and_is_pinned(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    note = client.get("/checkpoint").text
    result = advance(state, cosign(note, W2, W1), client, verifier_key(server), [KEY1, KEY2])
    assert result.witnesses_line() == ", cosigned by 2 of 2 witnesses (w1.example, w2.example)"
    pinned = load_state(state)
    assert pinned is not None
    assert pinned.witnesses is not None
    assert pinned.witnesses.keys == sorted([KEY1, KEY2])
    assert pinned.witnesses.required == 2
    trusted = state.read_bytes()

    # Later runs apply the pinned policy without the flags: one cosignature is not enough.
    with pytest.raises(WitnessPolicyUnmet, match=r"1 verified cosignature\(s\) \(w1.example\)"):
        advance(state, cosign(note, W1), client)
    # Flags that differ from the pinned policy are refused, not taken as a new policy.
    with pytest.raises(AuditFailed, match="differ from the witness policy pinned"):
        advance(state, cosign(note, W1, W2), client, witnesses=[KEY1, KEY2], witnesses_required=1)
    with pytest.raises(AuditFailed, match="differ from the witness policy pinned"):
        advance(state, cosign(note, W1, W2, W3), client, witnesses=[KEY1, KEY2, KEY3])
    # A cosignature line that names a policy witness but does not verify: an altered note.
    other_body = parse_note(note).body.replace("\n12\n", "\n13\n")
    forged = W2.cosign(other_body, int(time.time()))
    with pytest.raises(WitnessPolicyUnmet, match=r"the cosignature by w2\.example does not verify"):
        advance(state, add_signature_lines(cosign(note, W1), [forged]), client)
    assert state.read_bytes() == trusted  # every refusal left the trusted state alone

    # The log grows; the grown checkpoint, cosigned by both, is trusted through a proof.
    append(server, 5, seed=8)
    grown = client.get("/checkpoint").text
    result = advance(state, cosign(grown, W1, W2), client)
    assert result.previous_size == 12
    assert result.checkpoint.size == 17
    assert result.witnesses_line().endswith("(w1.example, w2.example)")


def test_k_of_n_counts_only_the_policy_witnesses(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    note = client.get("/checkpoint").text
    stranger = CosignatureSigner("stranger.example", SigningKey.from_seed(b"s" * 32))
    state = tmp_path / "state.json"
    with pytest.raises(WitnessPolicyUnmet, match=r"missing: w2\.example, w3\.example"):
        advance(
            state, cosign(note, W1, stranger), client, verifier_key(server), [KEY1, KEY2, KEY3], 2
        )
    assert not state.exists()
    result = advance(
        state, cosign(note, W3, stranger, W1), client, verifier_key(server), [KEY1, KEY2, KEY3], 2
    )
    assert result.witnesses_line() == (
        ", cosigned by 2 of 3 witnesses (w1.example, w3.example), 2 required"
    )
    # The log's own key cannot stand for a witness (type byte 0x01, not 0x04).
    with pytest.raises(AuditFailed, match="not an Ed25519 cosignature/v1 key"):
        advance(tmp_path / "other.json", note, client, verifier_key(server), [verifier_key(server)])


def audit_cli(server: Server, state: Path, *extra: str) -> Run:
    return run_prov(
        "audit", "--url", server.url, "--state", str(state), "--api-key", server.admin_key, *extra
    )


def test_prov_audit_refuses_the_uncosigned_checkpoint_and_keeps_its_state(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    key = verifier_key(server)
    refused = audit_cli(server, state, "--verifier-key", key, "--witness", KEY1, "--witness", KEY2)
    assert refused.code == 1
    assert refused.err.startswith("prov: witness-policy-unmet: the server's checkpoint")
    assert "needs 2 of 2 witnesses (missing: w1.example, w2.example)" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert not state.exists()

    trusted = audit_cli(server, state, "--verifier-key", key)
    assert trusted.code == 0, trusted.err
    assert "cosigned" not in trusted.out
    before = state.read_bytes()
    with_policy = audit_cli(server, state, "--witness", KEY1, "--witnesses-required", "1")
    assert with_policy.code == 1
    assert "witness-policy-unmet" in with_policy.err
    assert state.read_bytes() == before

    with pytest.raises(AuditFailed, match="between 1 and 1"):
        advance(
            state, client.get("/checkpoint").text, client, witnesses=[KEY1], witnesses_required=2
        )
    with pytest.raises(AuditFailed, match="--witnesses-required needs --witness"):
        advance(state, client.get("/checkpoint").text, client, witnesses_required=1)
    assert state.read_bytes() == before

    # A policy pinned by an earlier run applies without flags, and flags must agree with it.
    advance(state, cosign(client.get("/checkpoint").text, W1), client, witnesses=[KEY1])
    pinned = state.read_bytes()
    unflagged = audit_cli(server, state)
    assert unflagged.code == 1
    assert "witness-policy-unmet" in unflagged.err
    other = audit_cli(server, state, "--witness", KEY2)
    assert other.code == 1
    assert "differ from the witness policy pinned in the state file" in other.err
    assert "(1 of 1 witnesses: w1.example)" in other.err
    assert state.read_bytes() == pinned


@pytest.fixture
def report(server: Server, client: httpx.Client) -> dict[str, Any]:
    page = client.get("/v1/decisions", params={"limit": 1}).json()
    record_id = page["decisions"][0]["id"]
    answer = client.get(f"/v1/decisions/{record_id}/why")
    assert answer.status_code == 200, answer.text
    why: dict[str, Any] = answer.json()
    assert why["evidence"]["witnessed"] is None  # no witness has cosigned anything here
    return why


def step(report: dict[str, Any], server: Server, policy: WitnessPolicy) -> tuple[bool, str]:
    result = verify_report(report, NoteVerifier.parse(verifier_key(server)), policy=policy)
    [witnesses] = [s for s in result.steps if s.name == "witnesses"]
    return bool(result), witnesses.detail


def test_verify_report_needs_the_policy_witnesses_on_the_decision_s_checkpoint(
    server: Server, report: dict[str, Any], tmp_path: Path
) -> None:
    policy = WitnessPolicy.parse([KEY1, KEY2])
    ok, detail = step(report, server, policy)
    assert not ok
    assert "the report carries no checkpoint that witnesses cosigned" in detail

    # The report's own checkpoint, cosigned by both.
    cosigned = msgspec.json.decode(msgspec.json.encode(report))
    cosigned["evidence"]["checkpoint"] = cosign(report["evidence"]["checkpoint"], W1, W2)
    ok, detail = step(cosigned, server, policy)
    assert ok, detail
    assert detail.endswith("is cosigned by 2 of 2 witnesses (w1.example, w2.example)")

    # The `witnessed` evidence: a cosigned checkpoint holding the entry, and its proof.
    witnessed = msgspec.json.decode(msgspec.json.encode(report))
    witnessed["evidence"]["witnessed"] = {
        "checkpoint": cosign(report["evidence"]["checkpoint"], W1, W2),
        "inclusion_proof": report["evidence"]["inclusion_proof"],
    }
    unchanged = verify_report(witnessed, NoteVerifier.parse(verifier_key(server)), policy=policy)
    failure = unchanged.failure
    assert failure is not None
    assert failure.name == "verdicts"  # the report's own verdict still says no witness saw it
    assert "witnesses verdict" in failure.detail
    witnessed["verification"]["witnesses"] = {
        "status": "valid",
        "tree_size": report["evidence"]["inclusion_proof"]["tree_size"],
        "witnesses": 2,
        "names": ["w1.example", "w2.example"],
    }
    ok, detail = step(witnessed, server, policy)
    assert ok, detail
    index = report["evidence"]["inclusion_proof"]["index"]
    assert detail.startswith(f"entry {index} is in the tree of size ")
    assert detail.endswith("cosigned by 2 of 2 witnesses (w1.example, w2.example)")
    # Its proof must be of this entry: another entry's leaf does not pass.
    witnessed["evidence"]["witnessed"]["inclusion_proof"] = dict(
        report["evidence"]["inclusion_proof"], leaf_hash="00" * 32
    )
    ok, detail = step(witnessed, server, policy)
    assert not ok
    assert "not entry" in detail or "leaf" in detail

    # The command line: the uncosigned report fails at the witnesses step, the cosigned passes.
    plain, signed = tmp_path / "plain.json", tmp_path / "cosigned.json"
    plain.write_bytes(msgspec.json.encode(report))
    signed.write_bytes(msgspec.json.encode(cosigned))
    key = verifier_key(server)
    failed = run_prov("verify-report", str(plain), "--verifier-key", key, "--witness", KEY1)
    assert failed.code == 1
    assert "report FAILED at witnesses" in failed.err
    passed = run_prov(
        "verify-report", str(signed), "--verifier-key", key, "--witness", KEY1, "--witness", KEY2
    )
    assert passed.code == 0, passed.err
    assert "witnesses: the checkpoint of size" in passed.out
    assert "cosigned by 2 of 2 witnesses (w1.example, w2.example)" in passed.out
    without = verify_report(report, NoteVerifier.parse(key))
    assert without
    assert "witnesses" not in [s.name for s in without.steps]


def test_one_witness_key_never_counts_twice_and_the_log_never_witnesses_itself() -> None:
    # cosignature/v1 does not sign the witness's name: a cosignature copied under a second
    # name with the same key would otherwise count as a second witness.
    twin = CosignatureSigner("twin.example", SigningKey.from_seed(b"1" * 32))
    same_key = CosignatureSigner("w1-again.example", twin.key)
    with pytest.raises(NoteError, match="each witness key once"):
        WitnessPolicy.parse([twin.verifier.encode(), same_key.verifier.encode()], 2)
    # A policy whose witness key is the log's own key: the log could cosign for itself.
    log_key = SigningKey.from_seed(b"L" * 32)
    log = NoteSigner("log.example", log_key)
    itself = CosignatureSigner("itself.example", log_key)
    note = log.sign("log.example\n1\n" + "A" * 43 + "=\n")
    cosigned = add_signature_lines(note, [itself.cosign(note.split("\n\n")[0] + "\n", 1)])
    policy = WitnessPolicy.parse([itself.verifier.encode()], 1)
    assert len(policy.check(cosigned)) == 1  # without the log's key it cannot tell
    with pytest.raises(WitnessPolicyUnmet, match="cannot witness itself"):
        policy.check(cosigned, log.verifier)
