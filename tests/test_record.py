"""The decision payload schema: round trips, unknown members, strictness and error pointers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidPayload
from ledger.records.decision import Decision, decode_decision, encode_decision
from service.demo.scenarios import demo_decisions

Doc = dict[str, Any]

# One record per scenario: order.route, loan.approve, payment.retry.
DEMOS = list(demo_decisions(3, seed=3))
DOCS: list[Doc] = [msgspec.json.decode(encode_decision(d)) for d in DEMOS]
ORDER, LOAN, PAYMENT = range(3)
SHA = "sha256:" + "ab" * 32

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def doc(index: int) -> Doc:
    """A fresh copy of a demo document, free to mutate."""
    copied: Doc = msgspec.json.decode(msgspec.json.encode(DOCS[index]))
    return copied


def struct_objects(value: Any, member: Any) -> Iterator[Doc]:
    """The JSON objects in `member` that became Structs in `value`, depth first."""
    if isinstance(value, msgspec.Struct):
        yield member
        for field in msgspec.structs.fields(value):
            if field.encode_name in member:
                yield from struct_objects(getattr(value, field.name), member[field.encode_name])
    elif isinstance(value, list):
        for item, item_member in zip(value, member, strict=True):
            yield from struct_objects(item, item_member)


def paths(member: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every location in a JSON value, the root included."""
    yield prefix
    if isinstance(member, dict):
        for key, child in member.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(member, list):
        for index, child in enumerate(member):
            yield from paths(child, (*prefix, index))


def rejection(data: bytes) -> InvalidPayload:
    with pytest.raises(InvalidPayload) as caught:
        decode_decision(data)
    return caught.value


# --- round trips ---------------------------------------------------------------------------


def test_demo_records_round_trip() -> None:
    for decision in demo_decisions(30, seed=9):
        data = encode_decision(decision)
        again = decode_decision(data)
        assert again == decision
        assert encode_decision(again) == data
        assert decode_decision(data, keep_unknown=True) == decision


def test_top_level_always_names_every_member() -> None:
    written = msgspec.json.decode(encode_decision(DEMOS[PAYMENT]))
    assert list(written) == list(Decision.__struct_encode_fields__)
    assert written["schema_version"] == 1
    assert written["policy"] is None
    assert "top_k" not in written["model"]  # nested members omit their defaults


def test_older_records_without_optional_members_decode() -> None:
    minimal = {k: DOCS[ORDER][k] for k in ("id", "tenant", "service", "decision_type")}
    minimal |= {
        "occurred_at": "2025-06-02T09:00:00+02:00",
        "inputs": {},
        "model": {"provider": "openai", "name": "gpt-4.1-mini", "version": "2025-04-14"},
        "output": {"decision": {"ok": True}},
    }
    decision = decode_decision(msgspec.json.encode(minimal))
    assert decision.schema_version == 1
    assert decision.steps == []
    assert decision.subject is None
    assert decision.occurred_at.utcoffset() is not None


def test_money_is_decimal_never_float() -> None:
    loan = doc(LOAN)
    loan["exposures"] = [{"group": "g", "amount": 0.1, "unit": "USD"}]
    loan["usage"]["cost"]["amount"] = "0.000123"
    decision = decode_decision(msgspec.json.encode(loan))
    assert decision.exposures[0].amount == Decimal("0.1")
    assert decision.usage is not None
    assert decision.usage.cost is not None
    assert decision.usage.cost.amount == Decimal("0.000123")
    assert b'"amount":"0.1"' in encode_decision(decision)


# --- unknown members -----------------------------------------------------------------------


def test_unknown_members_survive_at_every_level() -> None:
    order = doc(ORDER)
    order["x-top"] = {"nested": [1, 2]}
    order["model"]["x-routing"] = "canary"
    order["steps"][1]["usage"]["cost"]["x-fx"] = "1.08"
    order["steps"][2]["x-retries"] = 0
    order["context"][0]["x-etag"] = None
    order["delegation"][1]["x-cid"] = "bafy"
    data = msgspec.json.encode(order)

    plain = decode_decision(data)
    assert plain.unrecognized_fields == {}
    assert msgspec.json.decode(encode_decision(plain)) == DOCS[ORDER]

    kept = decode_decision(data, keep_unknown=True)
    assert kept.unrecognized_fields == {"x-top": {"nested": [1, 2]}}
    assert kept.model.unrecognized_fields == {"x-routing": "canary"}
    assert kept.steps[2].unrecognized_fields == {"x-retries": 0}
    assert kept.steps[1].unrecognized_fields == {}
    assert kept == plain  # unknown members are not part of the value
    written = encode_decision(kept)
    assert msgspec.json.decode(written) == order
    assert (
        msgspec.json.decode(encode_decision(decode_decision(written, keep_unknown=True))) == order
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_unknown_members_round_trip(data: st.DataObject) -> None:
    index = data.draw(st.sampled_from([ORDER, LOAN, PAYMENT]))
    original = doc(index)
    objects = list(struct_objects(DEMOS[index], original))
    injections = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, len(objects) - 1),
                st.text(max_size=10).map(lambda s: "x-" + s),  # no schema member starts so
                json_values,
            ),
            min_size=1,
            max_size=6,
        )
    )
    for position, key, value in injections:
        objects[position][key] = value
    once = encode_decision(decode_decision(msgspec.json.encode(original), keep_unknown=True))
    assert msgspec.json.decode(once) == original
    assert encode_decision(decode_decision(once, keep_unknown=True)) == once


# --- strictness and pointers ---------------------------------------------------------------


def _locate(target: Any, where: Sequence[str | int]) -> tuple[Any, str | int]:
    """The container of the member at `where`, and the member's key or index."""
    for segment in where[:-1]:
        target = target[segment]
    return target, where[-1]


def _segments(pointer: str) -> list[str | int]:
    return [int(s) if s.isdigit() else s for s in pointer.strip("/").split("/")]


def _set(pointer: str, value: Any) -> Callable[[Doc], None]:
    def mutate(target: Doc) -> None:
        parent, key = _locate(target, _segments(pointer))
        parent[key] = value

    return mutate


def _delete(pointer: str) -> Callable[[Doc], None]:
    def mutate(target: Doc) -> None:
        parent, key = _locate(target, _segments(pointer))
        del parent[key]

    return mutate


BAD_INPUTS = [
    # (record, mutation, pointer, words of the detail)
    (ORDER, _set("/steps/1/usage/input_tokens", "1286"), "/steps/1/usage/input_tokens", "`int`"),
    (ORDER, _set("/steps/2/name", 7), "/steps/2/name", "got `int`"),
    (ORDER, _set("/steps/4/arguments", []), "/steps/4/arguments", "`object`"),
    (ORDER, _delete("/steps/2/call_id"), "/steps/2/call_id", "missing required field"),
    (ORDER, _delete("/steps/0/kind"), "/steps/0/kind", "missing required field"),
    (ORDER, _set("/steps/0/kind", "telepathy"), "/steps/0/kind", "Invalid value"),
    (ORDER, _delete("/tenant"), "/tenant", "missing required field"),
    (ORDER, _delete("/model/version"), "/model/version", "missing required field"),
    (ORDER, _delete("/output"), "/output", "missing required field"),
    (ORDER, _set("/context/0/digest", "sha256:ABC"), "/context/0/digest", "regex"),
    (ORDER, _set("/prompt/digest", "md5:" + "ab" * 16), "/prompt/digest", "regex"),
    (ORDER, _set("/retrieval/0/digest", "ab" * 32), "/retrieval/0/digest", "regex"),
    (LOAN, _set("/context/0/blob", "sha256:" + "g" * 64), "/context/0/blob", "regex"),
    (ORDER, _set("/context/0/blob", SHA), "/context/0/blob", "together with `value`"),
    (ORDER, _delete("/context/0/value"), "/context/0", "one of `value` or `blob`"),
    (PAYMENT, _set("/prompt/messages_blob", SHA), "/prompt/messages_blob", "together"),
    (PAYMENT, _set("/prompt/messages/1/role", "robot"), "/prompt/messages/1/role", "Invalid"),
    (ORDER, _set("/occurred_at", "2025-06-02T09:00:06"), "/occurred_at", "timezone"),
    (ORDER, _set("/steps/1/started_at", "2025-06-02T09:00:06"), "/steps/1/started_at", "timezone"),
    (LOAN, _set("/context/1/fetched_at", "yesterday"), "/context/1/fetched_at", "datetime"),
    (ORDER, _set("/steps/0/ended_at", "2000-01-01T00:00:00Z"), "/steps/0/ended_at", "before"),
    (ORDER, _set("/id", ""), "/id", "regex"),
    (ORDER, _set("/id", "has space"), "/id", "regex"),
    (ORDER, _set("/id", "x" * 257), "/id", "length <= 256"),
    (ORDER, _set("/id", 42), "/id", "`str`"),
    (ORDER, _set("/tenant", "Acme Corp"), "/tenant", "regex"),
    (ORDER, _set("/decision_type", "route"), "/decision_type", "regex"),
    (ORDER, _set("/schema_version", 2), "/schema_version", "<= 1"),
    (LOAN, _set("/exposures/0/amount", "NaN"), "/exposures/0/amount", "finite"),
    (LOAN, _set("/exposures/0/amount", "12,50"), "/exposures/0/amount", "decimal"),
    (LOAN, _set("/usage/cost/amount", True), "/usage/cost/amount", "decimal"),
    (LOAN, _set("/usage/cost/currency", "usd"), "/usage/cost/currency", "regex"),
    (LOAN, _set("/usage/input_tokens", -1), "/usage/input_tokens", ">= 0"),
    (LOAN, _set("/model/top_p", 1.5), "/model/top_p", "<= 1"),
    (LOAN, _set("/delegation/0/token", "not base64!"), "/delegation/0/token", "base64"),
    (LOAN, _delete("/delegation/1/exp"), "/delegation/1/exp", "missing required field"),
    (LOAN, _set("/links/trace_id", "XYZ"), "/links/trace_id", "regex"),
    (LOAN, _set("/freshness/depends_on/0", "key"), "/freshness/depends_on/0", "`object`"),
    (LOAN, _set("/inputs", []), "/inputs", "`object`"),
]


@pytest.mark.parametrize(("record", "mutate", "pointer", "words"), BAD_INPUTS)
def test_bad_input_names_the_member_at_fault(
    record: int, mutate: Callable[[Doc], None], pointer: str, words: str
) -> None:
    target = doc(record)
    mutate(target)
    error = rejection(msgspec.json.encode(target))
    assert error.pointer == pointer
    assert words in error.detail
    assert "\n" not in error.detail
    assert " - at " not in error.detail


@pytest.mark.parametrize("data", [b"", b"{", b'{"id": "a",}', b"\xff\xfe", b'{"id": "a"'])
def test_malformed_json_has_no_pointer(data: bytes) -> None:
    error = rejection(data)
    assert error.pointer is None
    assert error.detail.startswith("not valid JSON")


@pytest.mark.parametrize("data", [b"[]", b'"decision"', b"null", b"42", b"true"])
def test_non_object_top_level_points_at_the_document(data: bytes) -> None:
    error = rejection(data)
    assert error.pointer == ""
    assert "Expected `object`" in error.detail


def outcome(data: bytes) -> InvalidPayload | None:
    """The rejection of `data`, or None if it decodes; any other exception escapes."""
    try:
        decode_decision(data)
    except InvalidPayload as error:
        return error
    return None


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_random_json_is_rejected_only_as_invalid_payload(value: Any) -> None:
    error = outcome(msgspec.json.encode(value))
    assert error is None or error.pointer is not None


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64))
def test_random_bytes_are_rejected_only_as_invalid_payload(data: bytes) -> None:
    outcome(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_corruption_is_invalid_payload_pointing_near_it(data: st.DataObject) -> None:
    index = data.draw(st.sampled_from([ORDER, LOAN, PAYMENT]))
    target = doc(index)
    where = data.draw(st.sampled_from([p for p in paths(target) if p]))
    parent, key = _locate(target, where)
    parent[key] = data.draw(json_values)
    error = outcome(msgspec.json.encode(target))
    if error is not None:
        assert error.pointer is not None
        at = error.pointer.split("/")[1:]
        changed = [str(segment) for segment in where]
        # The fault is the changed member, inside it, above it, or (a cross-check) beside it.
        assert changed[: len(at)] == at or at[: len(changed)] == changed or at[:-1] == changed[:-1]
