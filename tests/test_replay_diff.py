"""The decision diff and decision extraction, as properties over arbitrary JSON values.

The oracles here (pointer resolution and applying changes) are written from RFC 6901 and
the documented meaning of each change, independently of replay/engine/diff.py.
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.records.decision import Cost, StepError, Usage
from ledger.records.decision_text import decision_from_text
from ledger.records.replay import (
    Diff,
    Divergence,
    FieldChange,
    ReplayedToolCallRequest,
    ToolCallChange,
)
from replay.engine.diff import compare, escape, field_changes, same, tool_call_changes, verdict_of

# Keys that need escaping in a pointer, or look like indexes, turn up often.
KEYS = st.sampled_from(["a", "b", "a/b", "~", "~1", "0", "", "approved"]) | st.text(max_size=6)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=15,
)
OBJECTS = st.dictionaries(KEYS, JSON, max_size=4)


def tokens(pointer: str) -> list[str]:
    assert pointer == "" or pointer.startswith("/"), pointer
    if pointer == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def resolve(document: Any, pointer: str) -> Any:
    """RFC 6901 section 4: evaluate `pointer` against `document`."""
    for part in tokens(pointer):
        if isinstance(document, list):
            assert re.fullmatch(r"0|[1-9][0-9]*", part), part  # an array index, no sign or 0s
            document = document[int(part)]
        else:
            document = document[part]
    return document


def apply(document: Any, changes: list[FieldChange]) -> Any:
    """Apply the changes in order: ``added`` inserts, ``removed`` deletes, ``changed``
    replaces."""
    result = copy.deepcopy(document)
    for change in changes:
        path = tokens(change.path)
        if not path:
            assert change.change == "changed"
            result = copy.deepcopy(change.after)
            continue
        parent = resolve(result, "".join(f"/{escape(t)}" for t in path[:-1]))
        last: Any = int(path[-1]) if isinstance(parent, list) else path[-1]
        if change.change == "added":
            if isinstance(parent, list):
                assert last == len(parent)  # arrays grow at their end, in ascending order
                parent.append(copy.deepcopy(change.after))
            else:
                assert last not in parent
                parent[last] = copy.deepcopy(change.after)
        elif change.change == "removed":
            if isinstance(parent, list):
                assert last == len(parent) - 1  # arrays shrink from their end
            del parent[last]
        else:
            parent[last] = copy.deepcopy(change.after)
    return result


@given(JSON)
def test_a_value_has_no_diff_with_itself_or_its_copy(value: Any) -> None:
    assert field_changes(value, value) == []
    assert field_changes(value, copy.deepcopy(value)) == []
    assert same(value, copy.deepcopy(value))


@given(JSON, JSON)
@settings(max_examples=300)
def test_applying_the_changes_to_before_yields_after(before: Any, after: Any) -> None:
    changes = field_changes(before, after)
    applied = apply(before, changes)
    assert same(applied, after)
    assert field_changes(applied, after) == []
    assert (changes == []) is same(before, after)


@given(OBJECTS, OBJECTS)
def test_every_path_is_a_pointer_that_resolves(before: Any, after: Any) -> None:
    for change in field_changes(before, after):
        if change.change == "added":
            assert same(resolve(after, change.path), change.after)
        elif change.change == "removed":
            assert same(resolve(before, change.path), change.before)
        else:
            assert same(resolve(before, change.path), change.before)
            assert same(resolve(after, change.path), change.after)


@given(JSON, JSON)
def test_the_diff_the_other_way_swaps_added_and_removed(before: Any, after: Any) -> None:
    swap = {"added": "removed", "removed": "added", "changed": "changed"}
    forward = {(c.path, swap[c.change]) for c in field_changes(before, after)}
    backward = {(c.path, c.change) for c in field_changes(after, before)}
    assert forward == backward


def test_json_equality_is_by_value_but_booleans_are_not_numbers() -> None:
    assert same(1, 1.0)
    assert not same(True, 1)
    assert not same(0, False)
    assert not same("1", 1)
    assert not same([1, 2], [2, 1])
    assert same({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert field_changes({"ok": True}, {"ok": 1}) == [
        FieldChange(path="/ok", change="changed", before=True, after=1)
    ]


def test_pointers_escape_tilde_and_slash() -> None:
    assert field_changes({"a/b": 1, "m~n": [0]}, {"a/b": 2, "m~n": []}) == [
        FieldChange(path="/a~1b", change="changed", before=1, after=2),
        FieldChange(path="/m~0n/0", change="removed", before=0),
    ]


def test_a_value_of_another_type_is_changed_whole() -> None:
    assert field_changes({"reasons": ["late"]}, {"reasons": "late"}) == [
        FieldChange(path="/reasons", change="changed", before=["late"], after="late")
    ]
    assert field_changes([1], {"a": 1}) == [
        FieldChange(path="", change="changed", before=[1], after={"a": 1})
    ]


# Deriving the decision from model text ---------------------------------------------------

PROSE = st.text(
    alphabet=st.characters(blacklist_characters="{}`", blacklist_categories=["Cs"]), max_size=40
)


@given(OBJECTS)
def test_a_whole_text_object_is_the_decision(decision: dict[str, Any]) -> None:
    text = msgspec.json.encode(decision).decode()
    found = decision_from_text(f"  {text}\n")
    assert found is not None
    assert same(found, decision)


@given(PROSE, OBJECTS, PROSE)
def test_the_first_object_in_prose_is_the_decision(
    before: str, decision: dict[str, Any], after: str
) -> None:
    stated = msgspec.json.encode(decision).decode()
    found = decision_from_text(f"{before}{stated}{after} {{not json}}")
    assert found is not None
    assert same(found, decision)


@given(PROSE, OBJECTS)
def test_a_json_fence_is_read_before_braces_in_prose(before: str, decision: dict[str, Any]) -> None:
    pretty = msgspec.json.format(msgspec.json.encode(decision), indent=2).decode()
    text = f'{before} {{"draft": true}}\n```json\n{pretty}\n```\nDone.'
    found = decision_from_text(text)
    assert found is not None
    assert same(found, decision)


@given(PROSE)
def test_text_without_an_object_has_no_decision(text: str) -> None:
    assert decision_from_text(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Approve {because} the file says {"approved": true}.', {"approved": True}),
        ('{"a": {"b": [1, "}"]}} trailing', {"a": {"b": [1, "}"]}}),
        ("```json\n[1, 2]\n```", None),
        ('risk {"score": NaN}', None),
        ("<assessment>Score 700: approve.</assessment>", None),
        ('```JSON\n{"retry": false}\n```', {"retry": False}),
    ],
)
def test_decision_extraction_cases(text: str, expected: dict[str, Any] | None) -> None:
    assert decision_from_text(text) == expected


# Tool calls, usage and the verdict ----------------------------------------------------------


def call(name: str, **arguments: Any) -> ReplayedToolCallRequest:
    return ReplayedToolCallRequest(call_id=f"c-{name}", name=name, arguments=arguments)


def test_tool_calls_are_compared_by_position() -> None:
    recorded = [call("lookup", id=1), call("quote", kg=2), call("book")]
    replayed = [call("lookup", id=1), call("quote", kg=3)]

    assert tool_call_changes(recorded, replayed, finished=False) == [
        ToolCallChange(position=1, change="arguments", before=recorded[1], after=replayed[1])
    ]
    assert tool_call_changes(recorded, replayed, finished=True)[1:] == [
        ToolCallChange(position=2, change="removed", before=recorded[2])
    ]
    assert tool_call_changes(recorded[:1], [call("quote"), call("book")], finished=True) == [
        ToolCallChange(position=0, change="name", before=recorded[0], after=call("quote")),
        ToolCallChange(position=1, change="added", after=call("book")),
    ]
    # Call ids differ from run to run and are not compared.
    renamed = [msgspec.structs.replace(c, call_id="other") for c in recorded]
    assert tool_call_changes(recorded, renamed, finished=True) == []


def diff_of(decision: dict[str, Any] | None, text: str | None, **extra: Any) -> Diff:
    arguments: dict[str, Any] = {
        "recorded_decision": {"approved": True},
        "recorded_text": '{"approved": true}',
        "recorded_usage": None,
        "recorded_model_ms": None,
        "recorded_calls": [],
        "replayed_calls": [],
        "usage": None,
        "finished": True,
        "decision": decision,
        "text": text,
    }
    return compare(**(arguments | extra))


def test_verdicts() -> None:
    same_text = '{"approved": true}'
    divergence = Divergence(kind="ended_late", recorded_step=1, replayed_step=0, detail="late")
    error = StepError(type="server_error", message="oa: HTTP 500")

    def verdict(diff: Diff, **more: Any) -> str:
        return verdict_of(diff, divergence=more.get("divergence"), error=more.get("error"))

    assert verdict(diff_of({"approved": True}, same_text)) == "identical"
    assert verdict(diff_of({"approved": True}, '{"approved":true}')) == "equivalent"
    assert verdict(diff_of({"approved": False}, '{"approved": false}')) == "changed"
    assert verdict(diff_of(None, same_text)) == "identical"  # text-only, same text
    assert verdict(diff_of(None, "Approve.")) == "changed"  # text-only, other text
    assert verdict(diff_of({"approved": True}, same_text), divergence=divergence) == "diverged"
    assert verdict(diff_of(None, None, finished=False), error=error) == "failed"


def test_a_text_only_comparison_is_marked_and_a_missing_text_is_empty() -> None:
    diff = diff_of(None, "Approve.")
    assert diff.text_only
    assert diff.decision == []
    assert (diff.text_before, diff.text_after) == ('{"approved": true}', "Approve.")

    unchanged = diff_of({"approved": True}, "", recorded_text=None)
    assert not unchanged.text_changed
    assert unchanged.text_before is None

    unfinished = diff_of(None, None, finished=False)
    assert not unfinished.text_only
    assert not unfinished.text_changed


def test_usage_deltas_and_currencies() -> None:
    recorded = Usage(
        input_tokens=100,
        output_tokens=20,
        cost=Cost(amount=Decimal("0.010"), currency="USD"),
        latency_ms=4_000,  # the whole decision; 900 ms of it in model calls
    )
    replayed = Usage(
        input_tokens=90,
        output_tokens=25,
        cost=Cost(amount=Decimal("0.004"), currency="USD"),
        latency_ms=400,
    )
    diff = diff_of(
        {"approved": True}, None, recorded_usage=recorded, recorded_model_ms=900, usage=replayed
    )
    assert (diff.input_tokens.before, diff.input_tokens.after) == (100, 90)
    assert (diff.output_tokens.before, diff.output_tokens.after) == (20, 25)
    assert (diff.cost.before, diff.cost.after, diff.cost.currency) == (
        Decimal("0.010"),
        Decimal("0.004"),
        "USD",
    )
    assert (diff.latency_ms.before, diff.latency_ms.after) == (900, 400)

    in_euros = msgspec.structs.replace(replayed, cost=Cost(amount=Decimal(1), currency="EUR"))
    diff = diff_of({"approved": True}, None, recorded_usage=recorded, usage=in_euros)
    assert (diff.cost.after, diff.cost.currency) == (None, "USD")

    unrecorded = diff_of({"approved": True}, None, usage=in_euros)
    assert (unrecorded.cost.before, unrecorded.cost.after, unrecorded.cost.currency) == (
        None,
        Decimal(1),
        "EUR",
    )
