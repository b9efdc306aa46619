"""Replay records in the ledger, on both engines: signed by the replay key, admitted only
when they name a logged decision of their tenant by its exact entry, indexed with their
entry, verified by `prov verify`, shown by `prov show`, exported and migrated.

The replays are built by hand from logged demo decisions, as a replay engine would build
them: the recorded steps fed back, the usage compared, a verdict and its diff.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from alembic import command
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine, func, inspect, select, text

from ledger.errors import KeyNotAuthorized, LedgerNotInitialized, ReplayOfUnknown, UnknownKey
from ledger.indexes.replays import leaf_reference
from ledger.keys.keyring import list_keys
from ledger.keys.replay_signing import REPLAY_KEY_NAME, replay_keyid, sign_replay
from ledger.keys.signing import SigningKey, load_signing_key
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records import dsse
from ledger.records.decision import Decision, LlmCall, Output, StepError, ToolCall, decode_decision
from ledger.records.replay import (
    REPLAY_SERVICE,
    Diff,
    Divergence,
    FieldChange,
    IntDelta,
    ModelRef,
    MoneyDelta,
    ReplayedLlmCall,
    ReplayedStep,
    ReplayedToolCall,
    ReplayedToolCallRequest,
    ReplayRecord,
    ToolCallChange,
)
from ledger.storage.db import make_engine
from ledger.storage.migrate import _alembic_config, migrate
from ledger.storage.schema import replay_jobs, replays
from query.analytics.views import connect
from query.export.paths import open_location
from service.cli.analytics import export
from service.demo.traffic import demo_signing_key
from service.settings import Settings
from tests.http_helpers import assert_problem
from tests.http_server import Server
from tests.support import PROV, demo_envelopes, prov, table_counts
from tests.test_tamper import disable_append_only_guards

# --- building replays as an engine would ----------------------------------------------------


@dataclass(frozen=True)
class Logged:
    """A decision as the ledger holds it: the payload and the receipt of its entry."""

    decision: Decision
    receipt: Receipt

    @property
    def leaf(self) -> str:
        return leaf_reference(bytes.fromhex(self.receipt.leaf_hash))


def log_decisions(
    ledger: Ledger, count: int, *, tenant: str = "acme", seed: int = 3
) -> list[Logged]:
    raws = demo_envelopes(ledger.engine, count, seed=seed, tenant=tenant)
    receipts = ledger.append(raws)
    logged = []
    for raw, receipt in zip(raws, receipts, strict=True):
        assert isinstance(receipt, Receipt), receipt
        payload = dsse.payload_bytes(dsse.decode_envelope(raw))
        logged.append(Logged(decode_decision(payload), receipt))
    return logged


def replayed_steps(decision: Decision) -> list[ReplayedStep]:
    """The recorded run fed back step by step: each model call with the tool calls it asked
    for, each tool call with its recorded result."""
    calls = [position for position, step in enumerate(decision.steps) if isinstance(step, LlmCall)]
    steps: list[ReplayedStep] = []
    for position, step in enumerate(decision.steps):
        if isinstance(step, LlmCall):
            following = []
            for later in decision.steps[position + 1 :]:
                if isinstance(later, LlmCall):
                    break
                if isinstance(later, ToolCall):
                    following.append(later)
            outputs = step.outputs if isinstance(step.outputs, dict) else {}
            usage = step.usage
            steps.append(
                ReplayedLlmCall(
                    recorded_step=position,
                    text=decision.output.text or ""
                    if position == calls[-1]
                    else outputs.get("text", ""),
                    tool_calls=[
                        ReplayedToolCallRequest(
                            call_id=call.call_id, name=call.name, arguments=call.arguments
                        )
                        for call in following
                    ],
                    finish_reason=step.finish_reason,
                    input_tokens=usage.input_tokens if usage else 0,
                    output_tokens=usage.output_tokens if usage else 0,
                    cost=usage.cost.amount if usage and usage.cost else None,
                    latency_ms=round((step.ended_at - step.started_at) / timedelta(milliseconds=1)),
                    response_id=f"chatcmpl-replay-{position}",
                    model_version=decision.model.version,
                )
            )
        elif isinstance(step, ToolCall):
            steps.append(
                ReplayedToolCall(
                    recorded_step=position,
                    call_id=step.call_id,
                    name=step.name,
                    arguments=step.arguments,
                    result=step.result,
                    error=step.error,
                )
            )
    return steps


def replay_of(
    logged: Logged,
    record_id: str,
    *,
    verdict: str = "identical",
    batch: str | None = None,
    leaf: str | None = None,
    occurred_at: datetime | None = None,
) -> ReplayRecord:
    """A pinned replay of `logged` with the given verdict, and the diff that goes with it."""
    decision = logged.decision
    model = ModelRef(
        provider=decision.model.provider,
        name=decision.model.name,
        version=decision.model.version,
        parameters={"temperature": decision.model.temperature or 0.0},
    )
    steps = replayed_steps(decision)
    usage = decision.usage
    assert usage is not None
    assert usage.cost is not None
    cost_after = usage.cost.amount + Decimal("0.000125")
    diff = Diff(
        input_tokens=IntDelta(usage.input_tokens, usage.input_tokens),
        output_tokens=IntDelta(usage.output_tokens, usage.output_tokens + 4),
        cost=MoneyDelta(usage.cost.amount, cost_after, usage.cost.currency),
        latency_ms=IntDelta(usage.latency_ms, (usage.latency_ms or 0) + 180),
    )
    output: Output | None = decision.output
    extra: dict[str, Any] = {}
    if verdict == "changed":
        first = next(iter(decision.output.decision))
        after = {**decision.output.decision, first: "other"}
        output = Output(decision=after, text=msgspec.json.encode(after).decode())
        diff.decision = [
            FieldChange(
                path=f"/{first}",
                change="changed",
                before=decision.output.decision[first],
                after="other",
            )
        ]
        diff.text_changed = True
        diff.text_before, diff.text_after = decision.output.text, output.text
    elif verdict == "diverged":
        tool = next(step for step in steps if isinstance(step, ReplayedToolCall))
        assert tool.recorded_step is not None
        position = steps.index(tool)
        asked = ReplayedToolCallRequest(
            call_id="call_replayed", name="escalate", arguments={"why": "stock"}
        )
        steps = [
            *steps[:position],
            ReplayedToolCall(call_id="call_replayed", name="escalate", arguments={"why": "stock"}),
        ]
        output = None
        extra["divergence"] = Divergence(
            kind="other_tool",
            recorded_step=tool.recorded_step,
            replayed_step=position,
            expected={"name": tool.name, "arguments": tool.arguments},
            actual={"name": "escalate", "arguments": {"why": "stock"}},
            detail=f"the model asked for escalate instead of {tool.name}",
        )
        diff.tool_calls = [ToolCallChange(position=0, change="name", after=asked)]
    elif verdict == "failed":
        steps = steps[:1]
        output = None
        extra["error"] = StepError(
            type="ProviderError", message="HTTP 503 from the provider after 3 attempts"
        )
    return ReplayRecord(
        id=record_id,
        tenant=decision.tenant,
        service=REPLAY_SERVICE,
        occurred_at=occurred_at or datetime.now(UTC),
        replay_of=decision.id,
        replay_of_leaf=leaf or logged.leaf,
        batch=batch,
        mode="pinned",
        recorded_model=ModelRef(
            provider=decision.model.provider,
            name=decision.model.name,
            version=decision.model.version,
        ),
        model=model,
        verdict=verdict,  # type: ignore[arg-type]
        steps=steps,
        output=output,
        usage=decision.usage if output is not None else None,
        diff=diff,
        **extra,
    )


def replay_rows(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(replays).order_by(replays.c.idx)).all())


# --- appending and verifying ---------------------------------------------------------------


def test_an_appended_replay_is_signed_indexed_and_verifies(
    ledger: Ledger, db_url: str, key_path: Path
) -> None:
    logged = log_decisions(ledger, 6)
    record = replay_of(logged[0], "replay-0001", batch="shadow-gpt-4.1")
    receipt = ledger.append_replay(record)
    assert (receipt.index, receipt.id, receipt.status) == (6, "replay-0001", "created")

    replay_key = key_path.with_name(REPLAY_KEY_NAME)
    assert replay_key.stat().st_mode & 0o777 == 0o600
    public_key = load_signing_key(replay_key).public_key
    with ledger.engine.connect() as connection:
        [registered] = [
            key for key in list_keys(connection, "acme") if key.service == REPLAY_SERVICE
        ]
        stored = connection.execute(
            text("SELECT envelope FROM log_entries WHERE idx = 6")
        ).scalar_one()
    assert registered.keyid == replay_keyid("acme", public_key)
    assert registered.public_key == public_key
    assert registered.revoked_us is None
    envelope = dsse.decode_envelope(bytes(stored))
    assert envelope.payloadType == "application/vnd.prov.replay.v1+json"
    assert [signature.keyid for signature in envelope.signatures] == [registered.keyid]

    [row] = replay_rows(ledger.engine)
    decision = logged[0].decision
    assert row._asdict() | {"occurred_us": 0} == {
        "idx": 6,
        "tenant": "acme",
        "record_id": "replay-0001",
        "replay_of": decision.id,
        "mode": "pinned",
        "verdict": "identical",
        "batch": "shadow-gpt-4.1",
        "model_provider": decision.model.provider,
        "model_name": decision.model.name,
        "model_version": decision.model.version,
        "occurred_us": 0,
    }
    run = prov(["verify", "--signatures"], db=db_url, key=key_path)
    assert run.code == 0, run.err
    assert "ok: size 7" in run.out
    assert "7 signatures" in run.out


def test_a_retry_is_idempotent_and_a_batch_appends_in_one_go(ledger: Ledger) -> None:
    logged = log_decisions(ledger, 4)
    record = replay_of(logged[1], "replay-retry")
    first = ledger.append_replay(record)
    again = ledger.append_replay(record)
    assert (again.index, again.leaf_hash, again.status) == (
        first.index,
        first.leaf_hash,
        "existing",
    )
    results = ledger.append_replays(
        [
            replay_of(item, f"replay-batch-{n}", verdict="changed", batch="b1")
            for n, item in enumerate(logged)
        ]
    )
    assert [r.index for r in results if isinstance(r, Receipt)] == [5, 6, 7, 8]
    assert [(row.idx, row.verdict, row.batch) for row in replay_rows(ledger.engine)] == [
        (4, "identical", None),
        *((index, "changed", "b1") for index in (5, 6, 7, 8)),
    ]


def test_the_replay_key_is_registered_once_per_tenant_however_many_append_at_once(
    ledger: Ledger, db_url: str, key_path: Path
) -> None:
    """Each Ledger opened here registers the key for itself, as separate processes would:
    they race on the registry, and every append still succeeds with one registration."""
    acme = log_decisions(ledger, 8)
    beta = log_decisions(ledger, 2, tenant="beta")
    openers = [Ledger.open(ledger.engine, key_path) for _ in range(4)]
    barrier = threading.Barrier(len(openers))
    failures: list[BaseException] = []

    def append(position: int, opened: Ledger) -> None:
        barrier.wait()
        try:
            opened.append_replay(replay_of(acme[position], f"replay-race-{position}"))
            opened.append_replay(replay_of(beta[position % 2], f"replay-race-{position}"))
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=append, args=item) for item in enumerate(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with ledger.engine.connect() as connection:
        keys = [key for key in list_keys(connection) if key.service == REPLAY_SERVICE]
    assert sorted((key.tenant, key.keyid.split(":")[1]) for key in keys) == [
        ("acme", "acme"),
        ("beta", "beta"),
    ]
    assert len(replay_rows(ledger.engine)) == 8
    for opened in openers:
        opened.pool.close()


@pytest.mark.parametrize(
    ("case", "pointer"),
    [
        ("unknown decision", "/payload/replay_of"),
        ("another tenant's decision", "/payload/replay_of"),
        ("wrong leaf", "/payload/replay_of_leaf"),
        ("a replay's leaf", "/payload/replay_of"),
    ],
)
def test_a_replay_that_names_no_entry_of_its_tenant_is_rejected(
    ledger: Ledger, case: str, pointer: str
) -> None:
    acme = log_decisions(ledger, 3)
    beta = log_decisions(ledger, 3, tenant="beta", seed=11)
    stored = ledger.append_replay(replay_of(acme[0], "replay-stored"))
    bad = {
        "unknown decision": msgspec.structs.replace(
            replay_of(acme[1], "replay-bad"), replay_of="order-000000000000-999999"
        ),
        # beta's decision by its id and its true leaf, claimed for acme
        "another tenant's decision": msgspec.structs.replace(
            replay_of(beta[1], "replay-bad"), tenant="acme"
        ),
        "wrong leaf": replay_of(acme[1], "replay-bad", leaf=acme[2].leaf),
        # a replay is not a decision, even named by its own entry
        "a replay's leaf": msgspec.structs.replace(
            replay_of(acme[1], "replay-bad"),
            replay_of="replay-stored",
            replay_of_leaf=leaf_reference(bytes.fromhex(stored.leaf_hash)),
        ),
    }[case]
    before = table_counts(ledger.engine)
    rows = replay_rows(ledger.engine)
    with pytest.raises(ReplayOfUnknown) as raised:
        ledger.append_replay(bad)
    assert raised.value.kind == "replay-of-unknown"
    assert raised.value.pointer == pointer
    assert "replay_of" in str(raised.value) or "leaf" in str(raised.value)
    assert table_counts(ledger.engine) == before
    assert replay_rows(ledger.engine) == rows


def test_a_rejected_replay_leaves_the_rest_of_its_batch_stored(ledger: Ledger) -> None:
    logged = log_decisions(ledger, 3)
    results = ledger.append_replays(
        [
            replay_of(logged[0], "replay-a"),
            replay_of(logged[1], "replay-b", leaf=logged[0].leaf),
            replay_of(logged[2], "replay-c"),
        ]
    )
    assert isinstance(results[0], Receipt)
    assert isinstance(results[2], Receipt)
    assert isinstance(results[1], ReplayOfUnknown)
    assert [row.record_id for row in replay_rows(ledger.engine)] == ["replay-a", "replay-c"]


def test_a_replay_signed_by_any_other_key_is_rejected(ledger: Ledger) -> None:
    logged = log_decisions(ledger, 2)
    record = replay_of(logged[0], "replay-forged")
    service_key = demo_signing_key("acme", logged[0].decision.service)  # registered for acme
    forged = dsse.encode_envelope(
        dsse.sign_envelope(
            "application/vnd.prov.replay.v1+json",
            msgspec.json.encode(record),
            service_key,
            hashlib.sha256(service_key.public_key).hexdigest(),
        )
    )
    before = table_counts(ledger.engine)
    [refused] = ledger.append([forged])
    assert isinstance(refused, KeyNotAuthorized)
    assert f"not acme/{REPLAY_SERVICE}" in str(refused)
    # Another key under the replay key's own keyid does not verify.
    ledger.append_replay(replay_of(logged[1], "replay-genuine"))
    assert ledger.replay_signer is not None
    impostor = dsse.sign_envelope(
        "application/vnd.prov.replay.v1+json",
        msgspec.json.encode(record),
        SigningKey.generate(),
        replay_keyid("acme", ledger.replay_signer.key.public_key),
    )
    [refused] = ledger.append([dsse.encode_envelope(impostor)])
    assert refused.kind == "bad-signature", refused
    # Nor does a key of its own that no registry holds.
    [refused] = ledger.append([sign_replay(record, SigningKey.generate())])
    assert isinstance(refused, UnknownKey)
    assert table_counts(ledger.engine).entries == before.entries + 1


def test_no_key_but_the_replay_key_can_be_registered_for_replays(
    server: Server, tmp_path: Path
) -> None:
    pem = tmp_path / "service.pub"
    pem.write_bytes(
        SigningKey.generate()
        .private_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    run = prov(
        ["keys", "add", "--tenant", "acme", "--service", REPLAY_SERVICE, "--public-key", str(pem)],
        db=server.db_url,
        key=server.key_file,
    )
    assert run.code == 1
    [line] = run.err.splitlines()
    assert line.startswith("prov: key-registry: "), line
    assert "reserved for the ledger's replay key" in line, line
    answer = httpx.post(
        f"{server.url}/v1/keys",
        json={"service": REPLAY_SERVICE, "public_key": pem.read_text()},
        headers=server.auth(server.admin_key),
    )
    problem = assert_problem(answer, 422, "key-registry")
    assert "reserved" in problem["detail"], problem
    engine = make_engine(server.db_url)
    with engine.connect() as connection:
        assert [key for key in list_keys(connection) if key.service == REPLAY_SERVICE] == []
    engine.dispose()


def test_a_replay_over_http_is_admitted_or_refused_naming_replay_of(server: Server) -> None:
    """`prov serve` created the replay key next to its ledger key; a replay signed with it
    is admitted over HTTP, and one of an unknown decision is a `replay-of-unknown` problem."""
    ledger = Ledger.open(make_engine(server.db_url), server.key_file)
    try:
        logged = log_decisions(ledger, 2)
        assert ledger.replay_signer is not None
        # Registered by the ledger, as the first append of a replay of this tenant does.
        ledger.replay_signer.register(ledger.engine, ["acme"])
        key = load_signing_key(server.key_file.with_name(REPLAY_KEY_NAME))
        ingest = server.auth(server.api_key("ingest"))
        answer = httpx.post(
            f"{server.url}/v1/records",
            content=sign_replay(replay_of(logged[0], "replay-http"), key),
            headers=ingest,
        )
        assert answer.status_code == 201, answer.text
        size = table_counts(ledger.engine).entries
        unknown = msgspec.structs.replace(
            replay_of(logged[1], "replay-http-2"), replay_of="loan-000000000000-000404"
        )
        answer = httpx.post(
            f"{server.url}/v1/records", content=sign_replay(unknown, key), headers=ingest
        )
        problem = assert_problem(answer, 422, "replay-of-unknown")
        assert "loan-000000000000-000404" in problem["detail"], problem
        assert table_counts(ledger.engine).entries == size
    finally:
        ledger.close()


def test_prov_append_reports_a_bad_replay_on_one_line(
    ledger: Ledger, db_url: str, key_path: Path, tmp_path: Path
) -> None:
    logged = log_decisions(ledger, 2)
    ledger.append_replay(replay_of(logged[0], "replay-good"))  # registers the key
    key = load_signing_key(key_path.with_name(REPLAY_KEY_NAME))
    lines = sign_replay(replay_of(logged[1], "replay-cli"), key) + b"\n"
    lines += sign_replay(replay_of(logged[1], "replay-cli-bad", leaf=logged[0].leaf), key)
    run = prov(["append", "-"], db=db_url, key=key_path, stdin=lines)
    assert run.code == 1
    [receipt] = run.json_lines()
    assert receipt["id"] == "replay-cli"
    assert run.err.splitlines()[0].startswith("prov: line 2: replay-of-unknown: decision ")


def test_without_its_key_file_a_ledger_cannot_append_replays(
    ledger: Ledger, key_path: Path, tmp_path: Path
) -> None:
    logged = log_decisions(ledger, 1)
    opened = Ledger.open(ledger.engine, key_path, replay_key_path=tmp_path / "absent.key")
    with pytest.raises(LedgerNotInitialized, match=r"absent\.key is missing; run `prov init`"):
        opened.append_replay(replay_of(logged[0], "replay-x"))
    opened.pool.close()


# --- tampering, show, export, migration ----------------------------------------------------


def test_tampering_a_stored_replay_is_detected_naming_its_entry(
    ledger: Ledger, db_url: str, key_path: Path
) -> None:
    logged = log_decisions(ledger, 5)
    receipt = ledger.append_replay(replay_of(logged[2], "replay-tampered", verdict="changed"))
    ledger.append_replay(replay_of(logged[3], "replay-after"))
    disable_append_only_guards(ledger.engine)
    with ledger.engine.connect() as connection:
        stored = bytes(
            connection.execute(
                text("SELECT envelope FROM log_entries WHERE idx = :i"), {"i": receipt.index}
            ).scalar_one()
        )
    envelope = dsse.decode_envelope(stored)
    payload = dsse.payload_bytes(envelope).replace(b'"verdict":"changed"', b'"verdict":"identical"')
    envelope.payload = dsse.b64encode(payload)
    with ledger.engine.begin() as connection:
        connection.execute(
            text("UPDATE log_entries SET envelope = :e WHERE idx = :i"),
            {"e": dsse.encode_envelope(envelope), "i": receipt.index},
        )
    run = prov(["verify"], db=db_url, key=key_path)
    assert run.code == 1, run
    [line] = run.err.splitlines()
    assert f"FAILED at entry {receipt.index}: leaf-mismatch" in line, line
    run = prov(["verify", "--signatures"], db=db_url, key=key_path)
    assert run.code == 1, run
    [line] = run.err.splitlines()
    assert f"FAILED at entry {receipt.index}: bad-signature" in line, line
    assert "prov-replay:acme:" in line, line


def test_prov_show_decodes_a_replay_and_checks_its_signature(
    ledger: Ledger, db_url: str, key_path: Path
) -> None:
    logged = log_decisions(ledger, 3)
    receipt = ledger.append_replay(replay_of(logged[2], "replay-shown", verdict="diverged"))
    run = prov(["show", str(receipt.index)], db=db_url, key=key_path)
    assert run.code == 0, run.err
    [shown] = run.json_lines()
    assert shown["entry"]["payload_type"] == "application/vnd.prov.replay.v1+json"  # type: ignore[index]
    payload: Any = shown["payload"]
    assert payload["replay_of"] == logged[2].decision.id
    assert payload["verdict"] == "diverged"
    assert payload["divergence"]["kind"] == "other_tool"
    verification: Any = shown["verification"]
    assert verification["signature"]["status"] == "valid"
    assert verification["signature"]["keyid"].startswith("prov-replay:acme:")
    assert verification["inclusion"]["status"] == "valid"


def test_the_export_carries_replays_and_still_verifies(
    ledger: Ledger, db_url: str, key_path: Path, tmp_path: Path
) -> None:
    logged = log_decisions(ledger, 6)
    ledger.append_replays(
        [
            replay_of(logged[0], "replay-e0", batch="shadow-1"),
            replay_of(logged[1], "replay-e1", verdict="changed", batch="shadow-1"),
            replay_of(logged[2], "replay-e2", verdict="diverged", batch="shadow-1"),
            replay_of(logged[3], "replay-e3", verdict="failed"),
        ]
    )
    out = tmp_path / "exports"
    assert prov(["export", "--out", str(out)], db=db_url, key=key_path).code == 0
    checked = CliRunner(env={"PROV_EXPORT_DIR": None}).invoke(
        export, ["verify", str(out), "--verifier-key", ledger.verifier.encode()]
    )
    assert checked.exit_code == 0, checked.stderr
    assert msgspec.json.decode(checked.stdout)["rows"]["replays"] == 4
    query = (
        "SELECT record_id, replay_of, verdict, batch, divergence_kind, error_type, "
        "changed_fields, text_changed, output_tokens_after - output_tokens_before AS more, "
        "replay_of_leaf = (SELECT leaf_hash FROM decisions d WHERE d.record_id = r.replay_of) "
        "AS linked FROM replays r ORDER BY idx"
    )
    with connect(open_location(str(out))) as duck:
        cursor = duck.execute(query)
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        assert duck.execute("SELECT count(*) FROM other_records").fetchone() == (0,)
    first_field = "/" + next(iter(logged[1].decision.output.decision))
    common = {"divergence_kind": None, "error_type": None, "changed_fields": [], "more": 4}
    assert rows == [
        common
        | {"record_id": "replay-e0", "verdict": "identical", "batch": "shadow-1"}
        | {"replay_of": logged[0].decision.id, "text_changed": False, "linked": True},
        common
        | {"record_id": "replay-e1", "verdict": "changed", "batch": "shadow-1"}
        | {"replay_of": logged[1].decision.id, "text_changed": True, "linked": True}
        | {"changed_fields": [first_field]},
        common
        | {"record_id": "replay-e2", "verdict": "diverged", "batch": "shadow-1"}
        | {"replay_of": logged[2].decision.id, "text_changed": False, "linked": True}
        | {"divergence_kind": "other_tool"},
        common
        | {"record_id": "replay-e3", "verdict": "failed", "batch": None}
        | {"replay_of": logged[3].decision.id, "text_changed": False, "linked": True}
        | {"error_type": "ProviderError"},
    ]


def test_the_migration_creates_the_tables_and_indexes_replays_already_logged(
    ledger: Ledger,
) -> None:
    logged = log_decisions(ledger, 4)
    ledger.append_replays([replay_of(item, f"replay-m{n}") for n, item in enumerate(logged)])
    before = replay_rows(ledger.engine)
    assert len(before) == 4
    with ledger.engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "0004")
    names = set(inspect(ledger.engine).get_table_names())
    assert {"replays", "replay_jobs"}.isdisjoint(names)
    migrate(ledger.engine)  # upgrades, and backfills the index from the log
    assert replay_rows(ledger.engine) == before
    with ledger.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(replay_jobs)).scalar() == 0
    indexes = {index["name"] for index in inspect(ledger.engine).get_indexes("replays")}
    assert indexes >= {"ix_replays_tenant_replay_of", "ix_replays_tenant_batch"}


def test_prov_init_creates_the_replay_key_where_the_setting_says(
    db_url: str, tmp_path: Path
) -> None:
    ledger_key = tmp_path / "keys" / "ledger.key"
    configured = tmp_path / "elsewhere" / "replay.pem"

    def init(**env: str) -> None:
        done = subprocess.run(
            [PROV, "init", "--db", db_url, "--key-file", str(ledger_key)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"PATH": "/usr/bin:/bin", **env},
        )
        assert done.returncode == 0, done.stderr

    init(PROV_REPLAY_KEY_FILE=str(configured))
    assert configured.stat().st_mode & 0o777 == 0o600
    assert not ledger_key.with_name(REPLAY_KEY_NAME).exists()
    before = configured.read_bytes()
    init(PROV_REPLAY_KEY_FILE=str(configured))
    assert configured.read_bytes() == before  # kept, never replaced
    init()  # unset: next to the ledger key
    assert ledger_key.with_name(REPLAY_KEY_NAME).stat().st_mode & 0o777 == 0o600

    settings = Settings.from_env({"PROV_REPLAY_KEY_FILE": str(configured)})
    assert settings.replay_key_file == configured
    # Workers get exactly the resolved settings; an unset one stays unset.
    assert Settings.from_env(settings.to_env()) == settings
    assert "PROV_REPLAY_KEY_FILE" not in Settings().to_env()
    assert Settings.from_env(Settings().to_env()) == Settings()
