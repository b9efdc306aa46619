"""Demo decisions and the UCAN delegations they carry: deterministic, complete, consistent,
and replayable: real blobs, the facts in the prompt, what each LLM call said and asked for,
and decisions that follow from what the model saw."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st
from msgspec import inspect

from ledger.blobs.salted import content_of, is_salted
from ledger.delegation import ucan
from ledger.records.decision import Decision, LlmCall, Message, ToolCall, encode_decision
from ledger.records.decision_text import decision_from_text
from replay.engine.requests import initial_messages, recorded_run
from service.demo.scenarios import (
    DEMO_MODELS,
    DEMO_SERVICES,
    FACT_APPLICATION,
    FACT_BUREAU,
    FACT_INCOME,
    FACT_ORDER,
    FACT_PAYMENT,
    FACT_RETRY_POLICY,
    LENDING_LIMITS,
    RETRY_WAIT_H,
    SCENARIOS,
    SYSTEM_PROMPTS,
    WAREHOUSES,
    DemoRecord,
    LendingLimits,
    advise_retry,
    assess_loan,
    choose_origin,
    choose_quote,
    content_by_reference,
    demo_decision,
    demo_decisions,
    demo_records,
    json_text,
    parcel_kg,
    read_facts,
    route_order,
)

BATCH = list(demo_decisions(30, seed=7))
RECORDS = list(demo_records(90, seed=11))
# The sizes demo payloads land in (bytes of encoded JSON); the delegation chain is ~1.5 KB.
SIZE_RANGE = (3_900, 5_900)


def test_same_seed_same_records_other_seed_other_records() -> None:
    again = [encode_decision(d) for d in demo_decisions(30, seed=7)]
    assert again == [encode_decision(d) for d in BATCH]
    assert again != [encode_decision(d) for d in demo_decisions(30, seed=8)]
    first = demo_decision(random.Random(1), 4, tenant="globex")
    assert encode_decision(first) == encode_decision(
        demo_decision(random.Random(1), 4, tenant="globex")
    )
    assert first.tenant == "globex"


def test_scenarios_cycle_with_their_services() -> None:
    for index, decision in enumerate(BATCH):
        assert decision.decision_type == SCENARIOS[index % len(SCENARIOS)]
        assert decision.service == DEMO_SERVICES[decision.decision_type]


def test_records_hand_over_the_same_decisions() -> None:
    decisions = [record.decision for record in demo_records(30, seed=7)]
    assert [encode_decision(d) for d in decisions] == [encode_decision(d) for d in BATCH]


def test_ids_are_unique() -> None:
    ids = [d.id for seed in range(3) for d in demo_decisions(300, seed=seed)]
    assert len(set(ids)) == len(ids)


def test_sizes() -> None:
    sizes = {len(encode_decision(d)) for d in demo_decisions(300, seed=1)}
    assert SIZE_RANGE[0] <= min(sizes) <= max(sizes) <= SIZE_RANGE[1]


# --- together the scenarios fill every member ----------------------------------------------


def _owner(cls: type[msgspec.Struct], name: str) -> type[msgspec.Struct]:
    """The most basic class that declares `name`, so inherited members count once."""
    structs = [c for c in reversed(cls.__mro__) if issubclass(c, msgspec.Struct)]
    return next(c for c in structs[1:] if name in c.__struct_fields__)


def _schema(t: inspect.Type) -> Iterator[inspect.StructType]:
    match t:
        case inspect.StructType():
            yield t
            for field in t.fields:
                yield from _schema(field.type)
        case inspect.ListType(item_type=item):
            yield from _schema(item)
        case inspect.UnionType(types=members):
            for member in members:
                yield from _schema(member)


def _instances(value: Any) -> Iterator[msgspec.Struct]:
    if isinstance(value, msgspec.Struct):
        yield value
        for name in value.__struct_fields__:
            yield from _instances(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            yield from _instances(item)


def _default(field: inspect.Field) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return field.default
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return msgspec.UNSET  # how inspect shows an UNSET default


def test_together_the_scenarios_fill_every_optional_member() -> None:
    structs = {s.cls: s for s in _schema(inspect.type_info(Decision))}
    optional = {
        (_owner(cls, field.name), field.name)
        for cls, info in structs.items()
        for field in info.fields
        if not field.required
    }
    filled = {
        (_owner(type(obj), field.name), field.name)
        for obj in _instances(BATCH)
        for field in structs[type(obj)].fields
        if not field.required and getattr(obj, field.name) != _default(field)
    }
    missing = {f"{cls.__name__}.{name}" for cls, name in optional - filled}
    # The current version is never overridden, and the invocation is attached when a
    # demo decision is authorized (`service.demo.scenarios.authorize`), after it is built.
    assert sorted(missing - {"Decision.schema_version", "Decision.invocation"}) == []
    assert {type(obj) for obj in _instances(BATCH)} == set(structs)  # every step kind too


# --- the values are consistent -------------------------------------------------------------


def test_timings_usage_and_costs_add_up() -> None:
    for decision in BATCH:
        assert decision.usage is not None
        steps = decision.steps
        assert steps[0].started_at > decision.occurred_at
        for before, after in itertools.pairwise(steps):
            assert before.ended_at <= after.started_at
        latency = (steps[-1].ended_at - decision.occurred_at) / timedelta(milliseconds=1)
        assert decision.usage.latency_ms == round(latency)
        usages = [s.usage for s in steps if s.usage is not None]
        assert decision.usage.input_tokens == sum(u.input_tokens for u in usages)
        assert decision.usage.output_tokens == sum(u.output_tokens for u in usages)
        assert decision.usage.cost is not None
        assert decision.usage.cost.amount == sum(u.cost.amount for u in usages if u.cost)


def test_inline_context_digests_match_and_some_snapshots_expire() -> None:
    expiring = 0
    for decision in BATCH:
        for snapshot in decision.context:
            if snapshot.value is not msgspec.UNSET:
                value_digest = hashlib.sha256(msgspec.json.encode(snapshot.value)).hexdigest()
                assert snapshot.digest == "sha256:" + value_digest
            if snapshot.valid_until is not None:
                assert snapshot.valid_until > snapshot.fetched_at
                expiring += 1
    assert 0 < expiring < sum(len(d.context) for d in BATCH)


# --- UCAN delegation chains ----------------------------------------------------------------


def _verify(delegation: ucan.Delegation) -> None:
    public_key = Ed25519PublicKey.from_public_bytes(ucan.public_key_from_did(delegation.iss))
    public_key.verify(delegation.signature, delegation.signed)  # raises if it does not verify


@pytest.mark.parametrize("decision", BATCH[:3], ids=SCENARIOS)
def test_each_record_carries_a_valid_chain_from_a_human_to_its_service(
    decision: Decision,
) -> None:
    chain = [ucan.decode_delegation(link.token) for link in decision.delegation]
    assert len(chain) == 2
    for link, token in zip(decision.delegation, chain, strict=True):
        _verify(token)
        assert (link.iss, link.aud, link.sub, link.cmd, link.exp) == (
            token.iss,
            token.aud,
            token.sub,
            token.cmd,
            token.exp,
        )
        assert token.nbf is not None
        assert token.exp is not None
        assert token.nbf <= decision.occurred_at.timestamp() < token.exp
    root, leaf = chain
    assert root.aud == leaf.iss
    assert root.iss == root.sub == leaf.sub
    assert leaf.cmd.startswith(root.cmd + "/")
    assert leaf.cmd == "/" + decision.decision_type.replace(".", "/")
    assert root.meta is not None
    assert root.meta["name"]


def test_chains_are_shared_by_one_service_and_distinct_across_services() -> None:
    leaves: dict[str, set[bytes]] = {}
    for decision in BATCH:
        leaves.setdefault(decision.service, set()).add(decision.delegation[-1].token)
    assert all(len(tokens) == 1 for tokens in leaves.values())
    assert len(set.union(*leaves.values())) == len(SCENARIOS)


# From ucan-wg/spec fixtures/1.0.0/delegation.json ("basic delegation bob > carol"), as
# published when 1.0.0 became final (tagged ucan/dlg@1.0.0).
SPEC_TOKEN = base64.b64decode(
    "glhAjm4YpBUWgEVmBWSotkY7bjWxj9AJLs9NfQykfoF2LhKZ76lQH0B720Qq0/YxNu+dKuQLEzlfJvmYRnZGgI7dA6Jh"
    "aEg0Ae0B7QETcW51Y2FuL2RsZ0AxLjAuMKdjYXVkeDhkaWQ6a2V5Ono2TWttSmNlVm9RU0hzNDVjUmVFWG9MdFdtMXdv"
    "c0NHOFJMeGZLd2h4b3F6b1RrQ2NjbWRoL2FjY291bnRjZXhwGmiCDLFjaXNzeDhkaWQ6a2V5Ono2TWttVDlqNmZWWnF6"
    "WFY4dTJ3VlZTdTQ5Z1lTUllHU1FuZHVXWEY2Zm9BSnJxemNwb2yAY3N1Yng4ZGlkOmtleTp6Nk1rbVQ5ajZmVlpxelhW"
    "OHUyd1ZWU3U0OWdZU1JZR1NRbmR1V1hGNmZvQUpycXplbm9uY2VMJ20r9pHkJ/yoNirD"
)
# Bob's key in that file: base64(varint 0x1300 || 32-byte Ed25519 private key).
SPEC_BOB = base64.b64decode("gCZfj9+RzU2U518TMBNK/fjdGQz34sB4iKE6z+9lQDpCIQ==")[2:]


def test_spec_fixture_decodes_verifies_and_is_reproduced_byte_for_byte() -> None:
    token = ucan.decode_delegation(SPEC_TOKEN)
    assert token.iss == token.sub == "did:key:z6MkmT9j6fVZqzXV8u2wVVSu49gYSRYGSQnduWXF6foAJrqz"
    assert token.aud == "did:key:z6MkmJceVoQSHs45cReEXoLtWm1wosCG8RLxfKwhxoqzoTkC"
    assert (token.cmd, token.pol, token.exp, token.nbf, token.meta) == (
        "/account",
        [],
        1753353393,
        None,
        None,
    )
    assert base64.b64encode(token.nonce) == b"J20r9pHkJ/yoNirD"
    _verify(token)
    bob = Ed25519PrivateKey.from_private_bytes(SPEC_BOB)
    assert ucan.did_key(bob.public_key().public_bytes_raw()) == token.iss
    made = ucan.delegate(bob, token.aud, token.sub, token.cmd, token.pol, token.exp, token.nonce)
    assert made == SPEC_TOKEN


def test_did_key_round_trips_keys_with_leading_zero_bytes() -> None:
    for public_key in (bytes(32), b"\0\0" + bytes(range(30)), bytes(range(224, 256))):
        did = ucan.did_key(public_key)
        assert did.startswith("did:key:z6Mk")
        assert ucan.public_key_from_did(did) == public_key
    with pytest.raises(ValueError, match="not a base58btc did:key"):
        ucan.public_key_from_did("did:web:example.com")
    with pytest.raises(ValueError, match="base58btc digit"):
        ucan.public_key_from_did("did:key:z6Mk0OIl")


# --- replayable: real blobs, the facts in the prompt, the calls, the rules -------------------


def _of(scenario: str) -> list[DemoRecord]:
    return [record for record in RECORDS if record.decision.decision_type == scenario]


def _referenced(decision: Decision) -> list[str]:
    digests = [snapshot.blob for snapshot in decision.context if snapshot.blob is not None]
    if decision.prompt is not None and decision.prompt.messages_blob is not None:
        digests.append(decision.prompt.messages_blob)
    return digests


def _messages(record: DemoRecord) -> list[Message]:
    return [
        Message(role=m.role, content=m.content)
        for m in initial_messages(record.decision, record.blobs.get)
    ]


def _facts(record: DemoRecord) -> dict[str, Any]:
    system, user = _messages(record)
    assert (system.role, user.role) == ("system", "user")
    assert system.content == SYSTEM_PROMPTS[record.decision.decision_type]
    return read_facts(user.content)


def test_every_referenced_blob_is_held_with_bytes_that_hash_to_it() -> None:
    for record in RECORDS:
        referenced = _referenced(record.decision)
        assert sorted(record.blobs) == sorted(referenced)
        for digest, content in record.blobs.items():
            assert digest == "sha256:" + hashlib.sha256(content).hexdigest()
            # Personal content is salted: the digest hides it (docs/log-format.md).
            assert is_salted(content)
            assert digest != "sha256:" + hashlib.sha256(content_of(content)).hexdigest()
    scenarios = {r.decision.decision_type: len(_referenced(r.decision)) for r in RECORDS}
    assert scenarios == {"order.route": 1, "loan.approve": 3, "payment.retry": 0}


def test_message_blobs_are_the_rendered_messages_as_a_json_array() -> None:
    for record in _of("order.route") + _of("loan.approve"):
        prompt = record.decision.prompt
        assert prompt is not None
        assert prompt.messages_blob is not None
        rendered = msgspec.json.decode(content_of(record.blobs[prompt.messages_blob]))
        assert [set(message) for message in rendered] == [{"role", "content"}] * 2
        assert [Message(**message) for message in rendered] == _messages(record)


def test_the_user_message_carries_the_facts_the_model_needs() -> None:
    for record in _of("order.route"):
        order = _facts(record)[FACT_ORDER]
        assert order == record.decision.inputs | {"unit_kg": order["unit_kg"]}
    for record in _of("loan.approve"):
        decision = record.decision
        facts = _facts(record)
        assert facts[FACT_APPLICATION] == decision.inputs
        bureau, income = decision.context
        assert bureau.blob is not None
        assert bureau.digest == bureau.blob  # the snapshot is the report's bytes
        assert facts[FACT_BUREAU] == msgspec.json.decode(content_of(record.blobs[bureau.blob]))
        assert facts[FACT_BUREAU]["version"] == bureau.version
        assert income.blob is not None
        assert facts[FACT_INCOME] == msgspec.json.decode(content_of(record.blobs[income.blob]))
    for record in _of("payment.retry"):
        facts = _facts(record)
        assert facts[FACT_PAYMENT] == record.decision.inputs | {
            "card_bin": facts[FACT_PAYMENT]["card_bin"]
        }
        assert facts[FACT_RETRY_POLICY] == record.decision.context[0].value


def test_the_decision_is_stated_as_json_in_the_final_text() -> None:
    for record in RECORDS:
        output = record.decision.output
        assert output.text is not None
        assert decision_from_text(output.text) == output.decision
    # Each scenario states it its own way: whole, inside an assessment, in a fence.
    order, loan, payment = (_of(s)[0].decision.output.text or "" for s in SCENARIOS)
    assert msgspec.json.decode(order) == _of("order.route")[0].decision.output.decision
    assert loan.startswith("<assessment>\n")
    assert "</assessment>" not in loan  # the recorded model stopped at its stop sequence
    assert "\n```json\n" in payment


def _calls(decision: Decision) -> list[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """Each recorded LLM call's text and the tool calls it asked for."""
    return [
        (call.text, [(tool.call.name, tool.call.arguments) for tool in call.tools])
        for call in recorded_run(decision).calls
    ]


def test_each_llm_call_asks_only_for_what_it_can_know() -> None:
    for record in _of("order.route"):
        decision = record.decision
        order = _facts(record)[FACT_ORDER]
        inventory, quote = (step for step in decision.steps if isinstance(step, ToolCall))
        origin = choose_origin(inventory.result, order["qty"])
        assert origin is not None
        assert _calls(decision) == [
            ("", [("check_inventory", {"sku": order["sku"]})]),
            (
                f"{origin} has {inventory.result[origin]} on hand; asking for carrier quotes.",
                [
                    (
                        "quote_carriers",
                        {"from": origin, "to": order["postcode"], "kg": quote.arguments["kg"]},
                    )
                ],
            ),
            (decision.output.text, []),
        ]
        assert quote.arguments["kg"] == parcel_kg(order)
    for record in _of("loan.approve"):
        assert _calls(record.decision) == [(record.decision.output.text, [])]
    for record in _of("payment.retry"):
        card_bin = _facts(record)[FACT_PAYMENT]["card_bin"]
        assert _calls(record.decision) == [
            ("", [("issuer_status", {"bin": card_bin})]),
            (record.decision.output.text, []),
        ]


def test_llm_steps_say_what_the_model_answered() -> None:
    for record in RECORDS:
        llm_calls = [step for step in record.decision.steps if isinstance(step, LlmCall)]
        *earlier, final = llm_calls
        assert final.outputs is None  # its text is the output's
        for step in earlier:
            assert step.finish_reason == "tool_calls"
            assert step.outputs is None or set(step.outputs) == {"text"}
        assert final.finish_reason == record.decision.output.finish_reason


def test_decisions_follow_the_rules_from_what_the_model_saw() -> None:
    for record in _of("order.route"):
        facts = _facts(record)
        _, quote = (s for s in record.decision.steps if isinstance(s, ToolCall))
        chosen = choose_quote(quote.result, facts[FACT_ORDER]["promise_days"])
        assert route_order(quote.arguments["from"], chosen) == (
            record.decision.output.decision,
            record.decision.output.text,
        )
    for record in _of("loan.approve"):
        facts = _facts(record)
        decided = assess_loan(facts[FACT_APPLICATION], facts[FACT_BUREAU], facts[FACT_INCOME])
        assert decided == (record.decision.output.decision, record.decision.output.text)
    for record in _of("payment.retry"):
        facts = _facts(record)
        [lookup] = (s for s in record.decision.steps if isinstance(s, ToolCall))
        status = None if lookup.error is not None else lookup.result["status"]
        decided = advise_retry(facts[FACT_PAYMENT], facts[FACT_RETRY_POLICY], status)
        assert decided == (record.decision.output.decision, record.decision.output.text)


def test_the_scenarios_decide_both_ways() -> None:
    decisions = {s: [r.decision.output.decision for r in _of(s)] for s in SCENARIOS}
    assert {d["carrier"] for d in decisions["order.route"]} == {"UPS", "FedEx"}
    assert {d["approved"] for d in decisions["loan.approve"]} == {True, False}
    assert {d["retry"] for d in decisions["payment.retry"]} == {True, False}
    lookups = [s for r in _of("payment.retry") for s in r.decision.steps if isinstance(s, ToolCall)]
    assert {lookup.error is None for lookup in lookups} == {True, False}


def test_models_name_their_recorded_snapshots() -> None:
    for record in RECORDS:
        model = record.decision.model
        recorded = DEMO_MODELS[record.decision.decision_type]
        assert (model.provider, model.name, model.version) == (
            recorded.provider,
            recorded.name,
            recorded.version,
        )
        assert model.tools == recorded.tools
        assert all(tool.parameters and tool.description for tool in model.tools)


def test_content_by_reference_keeps_the_messages_digest_of_their_json() -> None:
    for record in _of("payment.retry"):
        moved = content_by_reference(record.decision)
        assert moved.prompt is not None
        messages = record.decision.prompt.messages if record.decision.prompt else None
        expected = "sha256:" + hashlib.sha256(msgspec.json.encode(messages)).hexdigest()
        assert moved.prompt.messages_blob == expected


# --- the rules, as properties ---------------------------------------------------------------

_labels = st.from_regex(r"[A-Z][A-Za-z ]{0,20}[a-z]", fullmatch=True)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    facts=st.dictionaries(
        _labels, st.dictionaries(st.text(max_size=8), _json_values, max_size=4), max_size=4
    ),
    prose=st.lists(st.from_regex(r"[a-z][a-z .,]{0,30}", fullmatch=True), max_size=3),
)
def test_fact_lines_read_back_as_written(facts: dict[str, Any], prose: list[str]) -> None:
    lines = [*prose, *(f"{label}: {json_text(value)}" for label, value in facts.items())]
    assert read_facts("\n".join(lines)) == facts


_quotes = st.lists(
    st.fixed_dictionaries(
        {
            "carrier": st.sampled_from(["UPS", "FedEx", "USPS"]),
            "usd": st.decimals(min_value=1, max_value=99, places=2).map(str),
            "days": st.integers(min_value=1, max_value=6),
        }
    ),
    min_size=1,
    max_size=5,
)


@given(quotes=_quotes, promise=st.integers(min_value=1, max_value=6))
def test_the_chosen_quote_is_the_cheapest_that_keeps_the_promise(
    quotes: list[dict[str, Any]], promise: int
) -> None:
    chosen = choose_quote(quotes, promise)
    assert chosen in quotes
    within = [q for q in quotes if q["days"] <= promise]
    if within:
        assert chosen["days"] <= promise
        assert Decimal(chosen["usd"]) == min(Decimal(q["usd"]) for q in within)
    else:
        assert chosen["days"] == min(q["days"] for q in quotes)
    cheapest = choose_quote(quotes, None)
    assert Decimal(cheapest["usd"]) == min(Decimal(q["usd"]) for q in quotes)


@given(
    stock=st.fixed_dictionaries({w: st.integers(min_value=0, max_value=9) for w in WAREHOUSES}),
    qty=st.integers(min_value=1, max_value=9),
)
def test_the_origin_is_the_first_warehouse_with_every_unit(stock: dict[str, int], qty: int) -> None:
    origin = choose_origin(stock, qty)
    stocked = [w for w in WAREHOUSES if stock[w] >= qty]
    assert origin == (stocked[0] if stocked else None)


_bureaus = st.fixed_dictionaries(
    {
        "score": st.integers(min_value=550, max_value=850),
        "dti": st.floats(min_value=0.05, max_value=0.6).map(lambda x: round(x, 2)),
        "delinquencies_24m": st.integers(min_value=0, max_value=4),
    }
)
_applications = st.fixed_dictionaries(
    {
        "amount": st.integers(min_value=1000, max_value=60000).map(str),
        "term_months": st.sampled_from([12, 24, 36, 48, 60]),
    }
)
_incomes = st.fixed_dictionaries(
    {"monthly_net": st.integers(min_value=1500, max_value=15000).map(lambda n: f"{n}.00")}
)


@given(application=_applications, bureau=_bureaus, income=_incomes)
def test_stricter_limits_never_approve_what_the_recorded_ones_decline(
    application: dict[str, Any], bureau: dict[str, Any], income: dict[str, Any]
) -> None:
    decision, text = assess_loan(application, bureau, income)
    assert decision_from_text(text) == decision
    assert ("apr" in decision) is decision["approved"]
    stricter = LendingLimits(min_score=LENDING_LIMITS.min_score + 30, max_dti=0.38)
    strict_decision, _ = assess_loan(application, bureau, income, stricter)
    if not decision["approved"]:
        assert strict_decision == decision
    elif strict_decision["approved"]:
        assert strict_decision == decision  # the same price when both approve


@given(
    code=st.sampled_from(["insufficient_funds", "do_not_honor", "issuer_unavailable", "fraud"]),
    attempt=st.integers(min_value=1, max_value=5),
    status=st.sampled_from([None, "operational", "degraded", "outage"]),
    declined_at=st.datetimes(timezones=st.just(UTC)),
)
def test_retries_wait_by_cause_and_never_follow_a_hard_decline(
    code: str, attempt: int, status: str | None, declined_at: datetime
) -> None:
    payment = {"decline_code": code, "attempt": attempt, "declined_at": declined_at.isoformat()}
    decision, text = advise_retry(payment, {"max_attempts": 4}, status)
    assert decision_from_text(text) == decision
    retryable = code in ("insufficient_funds", "issuer_unavailable") and attempt < 3
    assert decision["retry"] is retryable
    if retryable:
        wait = RETRY_WAIT_H[code if code == "insufficient_funds" else status or "unknown"]
        assert datetime.fromisoformat(decision["at"]) == declined_at + timedelta(hours=wait)
