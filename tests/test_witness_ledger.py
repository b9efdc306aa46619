"""The ledger as a witness client: two real witnesses (`prov witness serve`) and `prov serve`
on loopback.

Every checkpoint the ledger serves carries both witnesses' cosignatures, which verify with
the project's policy check and with an independent verifier (Go's sumdb/note); the why-report
and the log page say who cosigned; a witness that is down never blocks ingest, shows in
/metrics and catches up when it returns. A fork of the log (a copy of its database that grew
another tail) is refused by both witnesses, and an auditor holding a 2-of-2 witness policy
refuses the fork's checkpoint, while one without a policy would have trusted it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from ingest.client import verify_receipt_in_log
from ledger.ledger import Ledger
from ledger.log.note import NoteVerifier
from ledger.log.receipt import Receipt
from ledger.storage.db import make_engine
from ledger.witness.policy import WitnessPolicy
from tests.http_server import Server, prepared_server
from tests.support import PROV, Run, demo_envelopes, prov
from tests.test_pages import browser, sign_in
from tests.witness_support import Witness, go_note_verifier, start_witness

__all__ = ["browser", "go_note_verifier"]  # shared fixtures

FAST = {"PROV_WITNESS_INTERVAL_SECONDS": "0.1", "PROV_WITNESS_TIMEOUT_SECONDS": "2"}


def _append(server: Server, count: int, seed: int) -> list[Receipt]:
    ledger = Ledger.open(make_engine(server.db_url), server.key_file)
    records = demo_envelopes(ledger.engine, count, seed=seed)
    receipts = ledger.append(records)
    ledger.close()
    assert all(isinstance(result, Receipt) for result in receipts)
    return [r for r in receipts if isinstance(r, Receipt)]


def _log_key(server: Server) -> str:
    done = prov(["checkpoint", "--verifier-key"], db=server.db_url, key=server.key_file)
    assert done.code == 0, done.err
    return done.out.strip()


def _served(server: Server) -> str:
    answer = httpx.get(f"{server.url}/checkpoint", headers=server.auth(server.admin_key))
    assert answer.status_code == 200, answer.text
    return answer.text


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _size(note: str) -> int:
    return int(note.split("\n")[1])


def _cosigned_at(server: Server, size: int, witnesses: int = 2) -> Callable[[], bool]:
    """Whether /checkpoint serves size `size` with `witnesses` cosignature lines (until a
    checkpoint reaches the quorum, the latest is served without them)."""

    def check() -> bool:
        note = _served(server)
        return _size(note) == size and note.count("\n\u2014 ") == 1 + witnesses

    return check


def _metric(server: Server, name: str, **labels: str) -> float:
    """A metric's value; a counter not yet counted is absent from /metrics, and reads 0."""
    text = httpx.get(f"{server.url}/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    if name.endswith("_total"):
        return 0.0
    raise AssertionError(f"{name}{{{wanted}}} not in /metrics")


def _audit(server: Server, state: Path, *extra: str) -> Run:
    done = subprocess.run(
        [
            PROV,
            "audit",
            "--url",
            server.url,
            "--state",
            str(state),
            "--api-key",
            server.admin_key,
            *list(extra),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.fixture
def witnessed(tmp_path: Path) -> Iterator[tuple[Server, list[Witness]]]:
    """A ledger of 40 decisions served with two witnesses configured (quorum: both)."""
    server = prepared_server(str(tmp_path / "a.db"), tmp_path, **FAST)
    _append(server, 40, seed=1)
    log_key = _log_key(server)
    witnesses = [start_witness(tmp_path / f"w{n}", f"w{n}.example", [log_key]) for n in (1, 2)]
    try:
        server.extra_env["PROV_WITNESSES"] = ",".join(w.entry for w in witnesses)
        server.start()
        yield server, witnesses
    finally:
        server.stop()
        for witness in witnesses:
            witness.stop()


def test_served_checkpoints_carry_both_cosignatures_that_verify_independently(
    witnessed: tuple[Server, list[Witness]], go_note_verifier: Callable[..., Run], tmp_path: Path
) -> None:
    server, witnesses = witnessed
    policy = WitnessPolicy.parse([w.verifier_key for w in witnesses], 2)
    _wait_for("a checkpoint cosigned by both", _cosigned_at(server, 40))
    note = _served(server)
    assert [c.name for c in policy.check(note)] == ["w1.example", "w2.example"]
    checked = go_note_verifier(_log_key(server), [w.verifier_key for w in witnesses], note)
    assert checked.code == 0, checked.out + checked.err
    altered = note.replace("\n40\n", "\n41\n", 1)
    assert (
        go_note_verifier(_log_key(server), [w.verifier_key for w in witnesses], altered).code != 0
    )

    # The log grows; the served checkpoint follows once both witnesses cosigned the new size.
    _append(server, 25, seed=2)
    _wait_for("the new size cosigned", _cosigned_at(server, 65))
    assert len(policy.check(_served(server))) == 2
    for witness in witnesses:
        assert _metric(server, "prov_witness_cosigned_size", witness=witness.name) == 65
        assert _metric(server, "prov_witness_lag_entries", witness=witness.name) == 0
        assert (
            _metric(server, "prov_witness_requests_total", witness=witness.name, outcome="cosigned")
            >= 1
        )
        # The witness's own record of this log agrees with what the ledger kept.
        assert _size(witness.checkpoint_of(server_origin(note))) == 65

    # The why-report says which witnesses cosigned the checkpoint that holds the decision.
    [newest] = _append(server, 1, seed=3)
    _wait_for("the newest decision cosigned", _cosigned_at(server, 66))
    why = prov(
        ["why", newest.id, "--tenant", "acme", "--json"], db=server.db_url, key=server.key_file
    )
    assert why.code == 0, why.err
    report = json.loads(why.out)
    assert report["verification"]["witnesses"] == {
        "status": "valid",
        "tree_size": 66,
        "witnesses": 2,
        "names": ["w1.example", "w2.example"],
    }
    assert policy.check(report["evidence"]["witnessed"]["checkpoint"])


def test_the_quorum_forms_while_the_log_keeps_growing(
    witnessed: tuple[Server, list[Witness]],
) -> None:
    """Witnesses asked at different moments cosign different sizes; a witness behind goes
    to the size another cosigned, so that /checkpoint advances under steady appends."""
    server, witnesses = witnessed
    _wait_for("both cosigned 40", _cosigned_at(server, 40))
    served: list[int] = []
    for round_number in range(20):
        _append(server, 5, seed=100 + round_number)
        served.append(_size(_served(server)))
        time.sleep(0.15)
    # The log grew to 140 while this ran; the served checkpoint moved with it, cosigned
    # by both, and never went back.
    assert served == sorted(served)
    assert served[-1] > 40, served
    policy = WitnessPolicy.parse([w.verifier_key for w in witnesses], 2)
    assert len(policy.check(_served(server))) == 2


def test_a_witness_that_is_down_never_blocks_ingest_and_catches_up(
    witnessed: tuple[Server, list[Witness]],
) -> None:
    server, (_w1, w2) = witnessed
    _wait_for("both cosigned", _cosigned_at(server, 40))
    w2.kill()
    started = time.monotonic()
    _append(server, 30, seed=4)
    assert time.monotonic() - started < 10  # appends do not wait for witnesses
    _wait_for(
        "w1 to cosign 70 and w2 to be counted unreachable",
        lambda: (
            _metric(server, "prov_witness_cosigned_size", witness="w1.example") == 70
            and _metric(
                server, "prov_witness_requests_total", witness="w2.example", outcome="unreachable"
            )
            >= 1
        ),
    )
    # With a quorum of both, /checkpoint keeps serving the newest checkpoint both cosigned.
    assert _size(_served(server)) == 40
    assert _metric(server, "prov_witness_lag_entries", witness="w2.example") == 30
    # A receipt just given is still checked in the log: the SDK falls back to the latest
    # checkpoint, signed by the same ledger key, when /checkpoint does not hold it yet.
    [late] = _append(server, 1, seed=8)
    verifier = NoteVerifier.parse(_log_key(server))
    found = verify_receipt_in_log(server.url, late, verifier, api_key=server.admin_key)
    assert (found.body.index, found.checkpoint.size) == (70, 71)
    w2.start()  # same state file: it still holds size 40 for this log
    _wait_for("w2 to catch up", _cosigned_at(server, 71), timeout=60)


def test_a_fork_is_refused_by_the_witnesses_and_by_an_auditor_with_a_policy(
    witnessed: tuple[Server, list[Witness]], tmp_path: Path
) -> None:
    a, witnesses = witnessed
    _wait_for("A cosigned at 40", _cosigned_at(a, 40))
    # B: A's database at 40 entries (cosignatures included), then another tail.
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    with sqlite3.connect(a.db_url) as source:
        source.execute(f"VACUUM INTO '{b_dir / 'ledger.db'}'")
    shutil.copy(a.key_file, b_dir / "ledger.key")
    b = prepared_server(str(b_dir / "ledger.db"), b_dir, **FAST)
    _append(a, 10, seed=5)
    _append(b, 30, seed=6)  # longer than A's, so each witness sees a proof that fails
    _wait_for("A cosigned at 50", _cosigned_at(a, 50))
    b.extra_env["PROV_WITNESSES"] = a.extra_env["PROV_WITNESSES"]
    b.start()
    try:
        _wait_for(
            "both witnesses to refuse B",
            lambda: all(
                _metric(b, "prov_witness_requests_total", witness=w.name, outcome="refused") >= 1
                for w in witnesses
            ),
        )
        for witness in witnesses:
            assert _size(witness.checkpoint_of(server_origin(_served(a)))) == 50
        # B can serve only the common prefix as cosigned; its own tail has no cosignature.
        assert _size(_served(b)) == 40
    finally:
        b.stop()
    # The operator serves B's tail without witnesses: a split view for whoever looks.
    del b.extra_env["PROV_WITNESSES"]
    b.start()
    try:
        assert _size(_served(b)) == 70
        keys = [arg for w in witnesses for arg in ("--witness", w.verifier_key)]
        log_key = _log_key(a)
        refused = _audit(b, tmp_path / "policy.json", "--verifier-key", log_key, *keys)
        assert refused.code == 1
        assert "witness-policy-unmet" in refused.err
        assert not (tmp_path / "policy.json").exists()
        # Without a policy, a first audit of B would have trusted the fork.
        assert _audit(b, tmp_path / "naive.json", "--verifier-key", log_key).code == 0
        # The same auditor trusts A's cosigned checkpoint.
        trusted = _audit(a, tmp_path / "policy.json", "--verifier-key", log_key, *keys)
        assert trusted.code == 0, trusted.err
        assert "size 50" in trusted.out
    finally:
        b.stop()


def test_the_log_page_shows_each_witness_and_the_decision_page_who_cosigned(
    witnessed: tuple[Server, list[Witness]], browser: Browser
) -> None:
    server, _ = witnessed
    [decision] = _append(server, 1, seed=7)
    _wait_for("cosigned at 41", _cosigned_at(server, 41))
    context = browser.new_context(base_url=server.url)
    try:
        page = sign_in(context, server.api_key("audit"))
        page.goto("/ui/log")
        rows = page.locator("#witness-table tr.witness")
        assert rows.count() == 2
        for row, name in zip(rows.all(), ["w1.example", "w2.example"], strict=True):
            assert row.get_attribute("data-witness") == name
            assert row.locator(".cosigned-size").inner_text() == "41"
            assert "up to date" in row.inner_text()
            assert row.locator(".age").inner_text().endswith("ago")
        assert page.locator("#served-size").inner_text() == "41"
        assert page.locator("#served-note").inner_text().count("\u2014 ") == 3
        page.goto(f"/ui/decisions/{decision.id}")
        assert page.locator("#witness-count").inner_text() == "2"
        assert "w1.example" in page.locator("#witnesses").inner_text()
    finally:
        context.close()


def server_origin(note: str) -> str:
    return note.split("\n", 1)[0]
