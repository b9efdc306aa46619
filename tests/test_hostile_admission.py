"""Hostile records hurt no one else: the admission contract, per-record isolation in a
group, linear signature checks, and a structure-aware fuzzer over the admission path.

Every hostile record here was accepted, or failed its neighbours, before the admission
contract existed (issue: "hostile input hurts no one else"). Each is refused alone, with a
problem that names the member at fault, on SQLite and PostgreSQL alike, while the good
records sent beside it are stored.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from ingest.client import Client, SignedRecord
from ledger.errors import RecordRejected
from ledger.keys import ed25519 as _ed25519
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records import dsse
from ledger.storage.db import make_engine
from service.demo.traffic import demo_signing_key
from tests.conftest import TEST_ORIGIN
from tests.http_server import TENANT, prepared_server
from tests.support import demo_envelopes

GOOD_BESIDE_EACH = 100


def _payload(raw: bytes) -> dict[str, Any]:
    envelope = msgspec.json.decode(raw)
    decoded: dict[str, Any] = json.loads(dsse.b64decode(envelope["payload"]))
    return decoded


def _resign(raw: bytes, payload_text: bytes) -> bytes:
    """`raw`'s envelope around new payload bytes, signed by the same demo key."""
    envelope = msgspec.json.decode(raw)
    payload = _payload(raw)
    key = demo_signing_key(payload["tenant"], payload["service"])
    return dsse.encode_envelope(
        dsse.sign_envelope(
            envelope["payloadType"], payload_text, key, envelope["signatures"][0]["keyid"]
        )
    )


def _edited(edit: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def make(raw: bytes) -> bytes:
        payload = _payload(raw)
        edit(payload)
        return _resign(raw, json.dumps(payload).encode())

    return make


def _spliced(member: str, value_text: str) -> Callable[[bytes], bytes]:
    """Put `"member": <value_text>` first in `inputs`, as raw JSON text."""

    def make(raw: bytes) -> bytes:
        text_ = json.dumps(_payload(raw))
        spliced = text_.replace(
            '"inputs": {', f'"inputs": {{{json.dumps(member)}: {value_text}, ', 1
        )
        return _resign(raw, spliced.encode())

    return make


def _duplicate_subject(raw: bytes) -> bytes:
    text_ = json.dumps(_payload(raw))
    return _resign(raw, text_.replace("{", '{"subject": "first-wins", ', 1).encode())


def _nine_signatures(raw: bytes) -> bytes:
    envelope = msgspec.json.decode(raw)
    envelope["signatures"] = envelope["signatures"] * 9
    return msgspec.json.encode(envelope)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def edit(payload: dict[str, Any]) -> None:
        node = payload
        for name in parents:
            node = node[name]
        node[last] = value

    return edit


# The 65th container down `inputs.d`: the first one past the limit of 64.
DEEP_POINTER = "/inputs/d/" + "/".join(["0"] * 62)
# name -> (make the hostile envelope from a good one, problem kind, pointer it names)
HOSTILE: dict[str, tuple[Callable[[bytes], bytes], str, str]] = {
    "nested 1,500 deep": (
        _spliced("d", "[" * 1500 + "]" * 1500),
        "invalid-payload",
        DEEP_POINTER,
    ),
    # The payload and `inputs` are two levels; 63 arrays make 65.
    "nested 65 deep": (_spliced("d", "[" * 63 + "]" * 63), "invalid-payload", DEEP_POINTER),
    "NUL in subject": (_edited(_set("subject", "a\u0000b")), "invalid-payload", "/subject"),
    "NUL in model.name": (
        _edited(_set("model.name", "gpt\u0000")),
        "invalid-payload",
        "/model/name",
    ),
    "NUL in a member name": (_spliced("a\u0000", "1"), "invalid-payload", "/inputs/a\u0000"),
    "lone surrogate": (_spliced("s", '"\\ud800"'), "invalid-payload", "/inputs/s"),
    "year 10000 in UTC": (
        _edited(_set("occurred_at", "9999-12-31T23:59:59-05:00")),
        "invalid-payload",
        "/occurred_at",
    ),
    "before 1970": (
        _edited(_set("occurred_at", "1969-12-31T23:59:59Z")),
        "invalid-payload",
        "/occurred_at",
    ),
    "2^64 tokens": (
        _edited(_set("usage.input_tokens", 2**64)),
        "invalid-payload",
        "/usage/input_tokens",
    ),
    "integer below int64": (_spliced("n", str(-(2**63) - 1)), "invalid-payload", "/inputs/n"),
    "1e400": (_spliced("zz", "1e400"), "invalid-payload", "/inputs/zz"),
    "NaN": (_spliced("zz", "NaN"), "invalid-payload", "/inputs/zz"),
    "duplicate member": (_duplicate_subject, "invalid-payload", "/subject"),
    "long member name": (_spliced("k" * 1025, "1"), "invalid-payload", "/inputs/" + "k" * 1025),
    "money past 10^26": (
        _edited(_set("usage.cost.amount", "1e27")),
        "invalid-payload",
        "/usage/cost/amount",
    ),
    "nine signatures": (_nine_signatures, "malformed-envelope", "/signatures"),
}
# Kept apart so the HTTP round stays short: one of each class of fault.
HTTP_HOSTILE = ["nested 1,500 deep", "NUL in subject", "year 10000 in UTC", "2^64 tokens",
                "duplicate member", "nine signatures"]  # fmt: skip

_ids = itertools.count()


def _unique(raw: bytes, prefix: str) -> bytes:
    """The envelope re-signed under a fresh id, so that each use is a new record."""
    return _edited(_set("id", f"{prefix}-{next(_ids)}"))(raw)


def _refusal(outcome: Receipt | RecordRejected) -> tuple[str, str | None]:
    assert isinstance(outcome, RecordRejected), f"accepted: {outcome}"
    return outcome.kind, outcome.pointer


def test_each_hostile_record_is_refused_alone_and_its_batch_commits(ledger: Ledger) -> None:
    good = demo_envelopes(ledger.engine, 3 * len(HOSTILE), seed=41)
    base = demo_envelopes(ledger.engine, 1, seed=42)[0]
    hostile = {name: make(_unique(base, "hostile")) for name, (make, _, _) in HOSTILE.items()}
    batch: list[bytes] = []
    for position, raw in enumerate(hostile.values()):
        batch.extend([good[3 * position], raw, *good[3 * position + 1 : 3 * position + 3]])
    outcomes = ledger.append(batch)
    by_raw = dict(zip(batch, outcomes, strict=True))
    for name, (_, kind, pointer) in HOSTILE.items():
        assert _refusal(by_raw[hostile[name]]) == (kind, pointer), name
    assert all(isinstance(by_raw[raw], Receipt) for raw in good)
    assert ledger.latest_checkpoint().tree_size == len(good)
    assert ledger.verify(signatures=True)


def test_a_record_the_database_refuses_fails_alone(ledger: Ledger) -> None:
    """The sequencer splits a batch the database refuses until the record at fault stands
    alone. A trigger that refuses one subject is a real refusal by the real database."""
    poison = "poison-pill"
    with ledger.engine.begin() as connection:
        if ledger.engine.dialect.name == "postgresql":
            connection.execute(
                text(
                    "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.subject = '{poison}' THEN RAISE EXCEPTION 'refused'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_poison BEFORE INSERT ON decisions "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_poison BEFORE INSERT ON decisions "
                    f"WHEN NEW.subject = '{poison}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
    good = demo_envelopes(ledger.engine, 7, seed=43)
    bad = _edited(_set("subject", poison))(demo_envelopes(ledger.engine, 1, seed=44)[0])
    outcomes = ledger.append([*good[:3], bad, *good[3:]])
    assert _refusal(outcomes[3])[0] == "record-unstorable"
    receipts = [outcome for outcome in outcomes if isinstance(outcome, Receipt)]
    assert len(receipts) == 7
    # Arrival order is kept across the split transactions.
    assert [receipt.index for receipt in receipts] == list(range(7))
    assert ledger.verify(signatures=True)


def test_signatures_are_checked_once_each(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight signatures under one registered keyid cost eight verifications, not 8 x 8;
    a ninth signature is refused before any is checked."""
    raw = _unique(demo_envelopes(ledger.engine, 1, seed=45)[0], "sigs")
    envelope = msgspec.json.decode(raw)
    bad = dict(envelope["signatures"][0], sig=dsse.b64encode(bytes(64)))
    envelope["signatures"] = [bad] * 7 + envelope["signatures"]
    eight = msgspec.json.encode(envelope)
    calls = []
    real_verify = _ed25519.verify

    def counting_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
        calls.append(signature)
        return real_verify(public_key, message, signature)

    monkeypatch.setattr(_ed25519, "verify", counting_verify)
    [outcome] = ledger.append([eight])
    assert isinstance(outcome, Receipt)
    assert len(calls) == 8
    calls.clear()
    [refused] = ledger.append([_nine_signatures(_unique(raw, "sigs"))])
    assert _refusal(refused) == ("malformed-envelope", "/signatures")
    assert calls == []


# -- Over HTTP: 100 good records sent concurrently beside each hostile one ----------------


@pytest.fixture
def server_and_records(db_url: str, tmp_path: Path) -> Iterator[tuple[Any, list[bytes]]]:
    server = prepared_server(db_url, tmp_path, PROV_COMMIT_MAX_WAIT_MS="20")
    engine = make_engine(db_url)
    records = demo_envelopes(engine, GOOD_BESIDE_EACH * (len(HTTP_HOSTILE) + 2), seed=46)
    engine.dispose()
    server.start()
    try:
        yield server, records
    finally:
        server.stop()


async def _post_concurrently(url: str, key: str, bodies: list[bytes]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        return list(
            await asyncio.gather(
                *(client.post("/v1/records", content=body, headers=headers) for body in bodies)
            )
        )


@pytest.mark.slow
def test_good_records_beside_hostile_ones_all_get_receipts(
    server_and_records: tuple[Any, list[bytes]],
) -> None:
    server, records = server_and_records
    key = server.api_key("ingest")
    chunks = [
        records[start : start + GOOD_BESIDE_EACH]
        for start in range(0, len(records), GOOD_BESIDE_EACH)
    ]
    for name, good in zip(HTTP_HOSTILE, chunks, strict=False):
        make, kind, pointer = HOSTILE[name]
        hostile = make(_unique(good[0], "http"))
        # The hostile record goes in the middle, so that it shares a group with good ones.
        bodies = [*good[:50], hostile, *good[50:]]
        answers = asyncio.run(_post_concurrently(server.url, key, bodies))
        refused = answers.pop(50)
        assert [answer.status_code for answer in answers] == [201] * GOOD_BESIDE_EACH, name
        assert refused.status_code in (413, 422), (name, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"] == f"urn:prov:problem:{kind}", name
        assert problem["errors"][0]["pointer"] == (
            pointer if kind == "malformed-envelope" else "/payload" + pointer
        ), name

    # A batch holding one hostile item: that item is refused, every other one is stored.
    batch = chunks[len(HTTP_HOSTILE)]
    hostile = HOSTILE["nested 1,500 deep"][0](_unique(batch[0], "batch"))
    body = b"[" + b",".join([*batch[:10], hostile, *batch[10:]]) + b"]"
    answer = httpx.post(
        f"{server.url}/v1/records/batch",
        content=body,
        headers={**server.auth(key), "Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["created"], result["rejected"]) == (GOOD_BESIDE_EACH, 1)
    assert result["results"][10]["problem"]["type"] == "urn:prov:problem:invalid-payload"

    # Through the SDK's background batcher: one record with a NUL fails its own future only.
    sdk_records = chunks[len(HTTP_HOSTILE) + 1]
    nul = HOSTILE["NUL in subject"][0](_unique(sdk_records[0], "sdk"))
    with Client(
        server.url, key, demo_signing_key(TENANT, "order-router"), tenant=TENANT,
        service="order-router",
    ) as client:  # fmt: skip
        futures = [
            client.submit(SignedRecord.from_envelope(raw))
            for raw in [*sdk_records[:50], nul, *sdk_records[50:]]
        ]
        outcomes = [future.exception(timeout=60) for future in futures]
    assert outcomes.pop(50) is not None
    assert outcomes == [None] * GOOD_BESIDE_EACH
    log = httpx.get(f"{server.url}/v1/log", headers=server.auth(key)).json()
    assert log["tree_size"] == GOOD_BESIDE_EACH * (len(HTTP_HOSTILE) + 2)


# -- Fuzzing: valid envelopes with mutated payloads, on both engines at once ---------------

_EDGE_STRINGS = st.sampled_from(["", "a\u0000b", "\ud800", "\udfff x", "ok", "é" * 300, "\u2028"])
_EDGE_NUMBERS = st.sampled_from(
    [0, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, 1.5, 1e308, -0.0]
)
_LEAVES = st.one_of(
    st.none(), st.booleans(), _EDGE_NUMBERS, st.integers(), st.floats(), _EDGE_STRINGS,
    st.text(max_size=20),
)  # fmt: skip
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
# Where a mutation lands: free-form members, and typed ones the indexes and exports read.
_PATHS = st.sampled_from(
    [
        "inputs.x", "attributes.x", "subject", "model.name", "model.seed", "model.max_tokens",
        "usage.input_tokens", "usage.latency_ms", "occurred_at", "output.decision.x",
        "usage.cost.amount", "decision_type", "service",
    ]
)  # fmt: skip
_TIMES = st.sampled_from(
    ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00", "1970-01-01T00:00:00Z",
     "9999-12-31T23:59:59Z", "2025-02-30T00:00:00Z", "2025-06-01T12:00:00+14:00"]
)  # fmt: skip


@st.composite
def _mutations(draw: st.DrawFn) -> list[tuple[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=3))
    mutations = []
    for _ in range(count):
        path = draw(_PATHS)
        if path == "occurred_at" and draw(st.booleans()):
            value = draw(_TIMES)
        else:
            # Edge values half the time, so that few examples reach every class of fault.
            value = draw(st.one_of(_EDGE_STRINGS, _EDGE_NUMBERS, _VALUES))
        mutations.append((path, value))
    return mutations


def _mutated(raw: bytes, mutations: list[tuple[str, Any]], depth: int, duplicate: bool) -> bytes:
    payload = _payload(raw)
    payload["id"] = f"fuzz-{next(_ids)}"
    for path, value in mutations:
        _set(path, value)(payload)
    encoded = json.dumps(payload)  # NaN and Infinity come out as their JSON-ish literals
    if depth:
        encoded = encoded.replace(
            '"inputs": {', '"inputs": {"d": ' + "[" * depth + "]" * depth + ", ", 1
        )
    if duplicate:
        encoded = encoded.replace("{", '{"tenant": "acme", ', 1)
    try:
        payload_bytes = encoded.encode()
    except UnicodeEncodeError:  # a lone surrogate: send it as a JSON escape instead
        payload_bytes = json.dumps(payload, ensure_ascii=True).encode()
    return _resign(raw, payload_bytes)


@pytest.fixture
def two_ledgers(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Ledger, Ledger]]:
    engines: list[Engine] = [make_engine(str(tmp_path / "fuzz.db")), make_engine(postgres_url)]
    ledgers = [
        Ledger.init(engine, tmp_path / f"ledger-{n}.key", TEST_ORIGIN)
        for n, engine in enumerate(engines)
    ]
    for ledger in ledgers:
        demo_envelopes(ledger.engine, 1, seed=47)  # registers the demo keys
    yield ledgers[0], ledgers[1]
    for ledger in ledgers:
        ledger.close()
        ledger.engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# The classes that once split the engines or poisoned reads, always tried.
@example(mutations=[("subject", "a\u0000b")], depth=0, duplicate=False, seed=1)
@example(mutations=[("model.name", "\ud800")], depth=0, duplicate=False, seed=2)
@example(mutations=[("usage.input_tokens", 2**64)], depth=0, duplicate=False, seed=3)
@example(mutations=[("occurred_at", "9999-12-31T23:59:59-05:00")], depth=0, duplicate=False, seed=4)
@example(mutations=[("inputs.x", "ok")], depth=2000, duplicate=False, seed=5)
@given(
    mutations=_mutations(),
    # Mostly flat and without duplicates, so that the mutations themselves are reached.
    depth=st.sampled_from([0] * 8 + [63, 64, 65, 2000]),
    duplicate=st.sampled_from([False] * 7 + [True]),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_fuzzed_payloads_get_a_receipt_or_a_problem_alike_on_both_engines(
    two_ledgers: tuple[Ledger, Ledger],
    mutations: list[tuple[str, Any]],
    depth: int,
    duplicate: bool,
    seed: int,
) -> None:
    sqlite_ledger, postgres_ledger = two_ledgers
    good, base = (
        _unique(raw, "fuzz-good") for raw in demo_envelopes(sqlite_ledger.engine, 2, seed=seed % 50)
    )
    hostile = _mutated(base, mutations, depth, duplicate)
    answers = []
    for ledger in (sqlite_ledger, postgres_ledger):
        outcomes = ledger.append([hostile, good])
        # The good record beside it always commits, whatever the hostile one holds.
        assert isinstance(outcomes[1], Receipt), outcomes[1]
        answers.append(
            "receipt"
            if isinstance(outcomes[0], Receipt)
            else (outcomes[0].kind, outcomes[0].pointer)
        )
    assert answers[0] == answers[1], (mutations, depth, duplicate)
    # Every refusal names a rule: "could not be checked" would mean a fault nobody foresaw.
    assert answers[0] == "receipt" or answers[0][0] != "record-unprocessable", answers
