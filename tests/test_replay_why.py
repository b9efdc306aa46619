"""Replays in the why-report, `prov why`, `prov verify-report` and the decision page.

The report lists every replay of the decision in its tenant, each checked as the decision
is (leaf, inclusion in the same checkpoint, the replay key's signature, and the link to
this very entry), and carries their evidence, so that the offline check verifies each one
and every value it shows; only the completeness of the list is the server's word.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from ledger.records import dsse
from ledger.records.replay import VERDICTS
from ledger.storage.db import make_engine
from query.audit.report_check import verify_report
from query.audit.why import replay_summary, replays_status, why_report
from tests.http_server import Server
from tests.support import PROV, prov
from tests.test_replay_records import Logged, log_decisions, replay_of
from tests.test_tamper import disable_append_only_guards
from tests.test_why import leaves, mutated

# The server's word in a report with replays: its clock, blob states, and the validity
# windows of the keys, which the offline check applies but cannot confirm.
SERVER_CLAIMS = re.compile(
    r"^/generated_at$|^/verification/blobs/\d+/(status|size|erased_at)$"
    r"|^/evidence/(replays/\d+/)?signing_key/(valid_from|valid_until)$"
)


def report_for(ledger: Ledger, record_id: str, tenant: str = "acme") -> dict[str, Any]:
    with ledger.engine.connect() as connection:
        return why_report(
            connection, ledger.verifier, ledger.origin, tenant, record_id, now_us=now_micros()
        )


@pytest.fixture
def replayed(ledger: Ledger) -> tuple[Ledger, list[Logged]]:
    """Six decisions of acme; the first replayed four times, the fourth once; and beta's
    decision of the same id as acme's first (the demo's ids repeat per seed), replayed."""
    acme = log_decisions(ledger, 6)
    beta = log_decisions(ledger, 1, tenant="beta")
    assert beta[0].decision.id == acme[0].decision.id
    ledger.append_replays(
        [
            replay_of(acme[0], "replay-w0", batch="shadow-4.1"),
            replay_of(acme[0], "replay-w1", verdict="changed", batch="shadow-4.1"),
            replay_of(acme[3], "replay-other"),
            replay_of(beta[0], "replay-beta"),
            replay_of(acme[0], "replay-w2", verdict="diverged"),
            replay_of(acme[0], "replay-w3", verdict="failed"),
        ]
    )
    return ledger, acme


def test_the_report_lists_each_replay_of_the_decision_and_verifies_offline(
    replayed: tuple[Ledger, list[Logged]],
) -> None:
    ledger, acme = replayed
    report = report_for(ledger, acme[0].decision.id)
    replays = report["verification"]["replays"]
    assert replays["status"] == "recorded"
    assert replays["count"] == 4
    assert replays["detail"] == "4 replays recorded: 1 identical, 1 changed, 1 diverged, 1 failed"
    items = replays["replays"]
    assert [(item["id"], item["index"]) for item in items] == [
        ("replay-w0", 7),
        ("replay-w1", 8),
        ("replay-w2", 11),
        ("replay-w3", 12),
    ]
    decision = acme[0].decision
    first = items[0]
    assert first["signature"]["status"] == "valid"
    assert first["signature"]["keyid"].startswith("prov-replay:acme:")
    assert (first["leaf"], first["inclusion"], first["link"]) == ("valid", "valid", "valid")
    assert first["mode"] == "pinned"
    assert first["batch"] == "shadow-4.1"
    assert first["model"] == {
        "provider": decision.model.provider,
        "name": decision.model.name,
        "version": decision.model.version,
    }
    assert first["summary"] is None
    assert items[1]["summary"].startswith("decision fields changed: /")
    assert items[2]["summary"].startswith("other_tool at recorded step ")
    assert items[3]["summary"] == "ProviderError: HTTP 503 from the provider after 3 attempts"
    evidence = report["evidence"]["replays"]
    assert [item["entry"]["index"] for item in evidence] == [7, 8, 11, 12]
    assert all(item["signing_key"]["service"] == "prov-replay" for item in evidence)

    result = verify_report(report, ledger.verifier)
    assert result, result.failure
    assert result.steps[-1].name == "replays"
    assert result.steps[-1].detail == "4 replays of this entry verify"
    assert "replays: the 4 listed are all the log holds of this decision" in result.unverifiable

    # The other decision's report lists only its own replay, and beta's only beta's.
    other = report_for(ledger, acme[3].decision.id)["verification"]["replays"]
    assert [item["id"] for item in other["replays"]] == ["replay-other"]
    beta = report_for(ledger, decision.id, tenant="beta")
    assert [item["id"] for item in beta["verification"]["replays"]["replays"]] == ["replay-beta"]
    assert verify_report(beta, ledger.verifier)
    untouched = report_for(ledger, acme[1].decision.id)
    assert untouched["verification"]["replays"]["status"] == "none"
    assert untouched["evidence"]["replays"] == []


def test_changing_any_value_of_a_report_with_replays_fails_its_check(
    replayed: tuple[Ledger, list[Logged]],
) -> None:
    ledger, acme = replayed
    report = report_for(ledger, acme[0].decision.id)
    checked = 0
    for pointer in leaves(report):
        if SERVER_CLAIMS.search(pointer):
            continue
        result = verify_report(mutated(report, pointer), ledger.verifier)
        assert not result, f"a change at {pointer} went unnoticed"
        checked += 1
    replay_values = [p for p in leaves(report) if "/replays/" in p and not SERVER_CLAIMS.search(p)]
    assert len(replay_values) > 150
    assert checked > 300


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda r: r["evidence"]["replays"].pop(1), "the report's replays are not what"),
        (lambda r: r["verification"]["replays"]["replays"].pop(), "the report's replays are not"),
        (
            lambda r: r["evidence"]["replays"].reverse(),
            "the report's replays are not what their evidence says",
        ),
        (
            lambda r: r["verification"]["replays"].update(status="none"),
            "the report's replays are not what their evidence says, at /status",
        ),
    ],
)
def test_a_replay_left_out_or_moved_is_named(
    replayed: tuple[Ledger, list[Logged]], change: Any, says: str
) -> None:
    ledger, acme = replayed
    report = copy.deepcopy(report_for(ledger, acme[0].decision.id))
    change(report)
    result = verify_report(report, ledger.verifier)
    assert result.failure is not None
    assert result.failure.name == "replays"
    assert says in result.failure.detail


def test_a_replay_of_another_decision_in_the_evidence_is_refused(
    replayed: tuple[Ledger, list[Logged]],
) -> None:
    ledger, acme = replayed
    report = report_for(ledger, acme[0].decision.id)
    other = report_for(ledger, acme[3].decision.id)
    report["evidence"]["replays"][0] = other["evidence"]["replays"][0]
    result = verify_report(report, ledger.verifier)
    assert result.failure is not None
    assert result.failure.detail == (
        f"replay 0: entry 9 replays {acme[3].decision.id!r}, not this decision"
    )


def test_a_tampered_replay_is_flagged_by_the_report_and_fails_offline(
    replayed: tuple[Ledger, list[Logged]],
) -> None:
    ledger, acme = replayed
    disable_append_only_guards(ledger.engine)
    with ledger.engine.connect() as connection:
        stored = bytes(
            connection.execute(text("SELECT envelope FROM log_entries WHERE idx = 8")).scalar_one()
        )
    envelope = dsse.decode_envelope(stored)
    payload = dsse.payload_bytes(envelope).replace(
        b'"verdict":"changed"', b'"verdict":"equivalent"'
    )
    envelope.payload = dsse.b64encode(payload)
    with ledger.engine.begin() as connection:
        connection.execute(
            text("UPDATE log_entries SET envelope = :e WHERE idx = 8"),
            {"e": dsse.encode_envelope(envelope)},
        )
    report = report_for(ledger, acme[0].decision.id)
    replays = report["verification"]["replays"]
    assert replays["status"] == "invalid"
    assert replays["detail"] == "the replay at entry 8 does not verify"
    tampered = replays["replays"][1]
    assert tampered["leaf"] == "invalid"
    assert tampered["signature"]["status"] == "invalid"
    assert tampered["signature"]["kind"] == "bad-signature"
    assert report["verification"]["signature"]["status"] == "valid"  # the decision is intact
    result = verify_report(report, ledger.verifier)
    assert result.failure is not None
    assert result.failure.name == "replays"
    assert result.failure.detail.startswith("replay 1: entry 8: ")


def test_prov_why_shows_the_replays_and_its_json_verifies_offline(
    replayed: tuple[Ledger, list[Logged]], db_url: str, key_path: Path, tmp_path: Path
) -> None:
    ledger, acme = replayed
    record_id = acme[0].decision.id
    shown = subprocess.run(
        [PROV, "why", record_id, "--tenant", "acme", "--db", db_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "220", "PATH": "/usr/bin:/bin", "PROV_LEDGER_KEY_FILE": str(key_path)},
    )
    assert shown.returncode == 0, shown.stderr
    panel = shown.stdout[shown.stdout.index("Replays") :]
    for expected in ("replay-w0", "batch shadow-4.1", "identical", "changed", "diverged"):
        assert expected in panel, expected
    assert "ProviderError: HTTP 503" in panel
    assert "· recorded" in panel  # the list is not drawn as a pass
    saved = tmp_path / "report.json"
    run = prov(["why", record_id, "--tenant", "acme", "--json"], db=db_url, key=key_path)
    assert run.code == 0, run.err
    saved.write_text(run.out)
    assert json.loads(run.out)["verification"]["replays"]["count"] == 4
    checked = subprocess.run(
        [PROV, "verify-report", str(saved), "--verifier-key", ledger.verifier.encode()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "4 replays of this entry verify" in checked.stdout


def test_the_decision_page_lists_the_replays(server: Server) -> None:
    ledger = Ledger.open(make_engine(server.db_url), server.key_file)
    try:
        logged = log_decisions(ledger, 3)
        ledger.append_replays(
            [
                replay_of(logged[0], "replay-page-0"),
                replay_of(logged[0], "replay-page-1", verdict="diverged", batch="b-7"),
            ]
        )
    finally:
        ledger.close()
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        signed_in = browser.post("/ui/login", data={"api_key": server.api_key("audit")})
        assert signed_in.status_code == 303, signed_in.text
        page = browser.get(f"/ui/decisions/{logged[0].decision.id}")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'data-check="replays"' in html
    rows = re.findall(r'<tr data-replay="(\d+)">(.*?)</tr>', html, re.S)
    assert [index for index, _ in rows] == ["3", "4"]
    first, second = (row for _, row in rows)
    assert '<span class="verdict verdict-identical">identical</span>' in first
    assert '<span class="verdict verdict-diverged">diverged</span>' in second
    assert "batch <code>b-7</code>" in second
    assert 'data-check="replay-signature:4"><span class="mark" aria-hidden="true">✔' in second
    assert "other_tool at recorded step" in second


# --- the report's replay verdicts, as pure functions ---------------------------------------

_STATUS = st.sampled_from(["valid", "invalid", "not-yet-checkpointed"])
_ITEM = st.fixed_dictionaries(
    {
        "index": st.integers(min_value=0, max_value=10**6),
        "verdict": st.sampled_from(VERDICTS),
        "leaf": _STATUS,
        "inclusion": _STATUS,
        "link": _STATUS,
        "signature": st.fixed_dictionaries({"status": _STATUS}),
    }
)


@given(st.lists(_ITEM, max_size=12))
def test_the_replay_list_status_says_what_its_items_say(items: list[dict[str, Any]]) -> None:
    status = replays_status(items)
    assert status["count"] == len(items)
    assert status["replays"] == items
    failing = [
        item
        for item in items
        if {item["leaf"], item["inclusion"], item["link"], item["signature"]["status"]} != {"valid"}
    ]
    if not items:
        assert status["status"] == "none"
    elif failing:
        assert status["status"] == "invalid"
        assert all(str(item["index"]) in status["detail"] for item in failing)
    else:
        assert status["status"] == "recorded"
        counts = re.findall(r"(\d+) (\w+)", status["detail"].partition(": ")[2])
        assert sum(int(count) for count, _ in counts) == len(items)
        assert {verdict for _, verdict in counts} == {item["verdict"] for item in items}


@given(
    st.sampled_from(VERDICTS),
    st.text(min_size=1, max_size=30),
    st.lists(st.from_regex(r"(/[a-z_]{1,8}){0,3}", fullmatch=True), max_size=4),
)
def test_a_replay_summary_names_what_differs(verdict: str, detail: str, paths: list[str]) -> None:
    replay = {
        "verdict": verdict,
        "divergence": {"kind": "ended_early", "recorded_step": 3, "detail": detail},
        "error": {"type": "Timeout", "message": detail},
        "diff": {"decision": [{"path": path} for path in paths]},
    }
    summary = replay_summary(replay)
    if verdict == "identical":
        assert summary is None
        return
    assert summary
    if verdict in ("diverged", "failed"):
        assert summary.endswith(detail)
    if verdict == "changed":
        for path in paths:
            assert (path or "/") in summary
