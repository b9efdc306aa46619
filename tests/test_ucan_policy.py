"""The UCAN policy language: the spec's fixtures, selectors, malformed policies, and the laws
the operators obey, as properties (hypothesis)."""

from __future__ import annotations

import re
from typing import Any

import libipld
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ledger.delegation.policy import PolicyError, evaluate, ipld_equal, parse_policy
from ledger.delegation.policy_selector import MISSING, SelectorError, parse_selector

# ucan-wg/spec fixtures/1.0.0/policy.json: each args with the policies it passes and fails.
KATIE = {"name": "Katie", "age": 35, "nationalities": ["Canadian", "South African"]}
GLOB = "Alice\\*, Bob*, Carol."
VALID = [
    (
        {"a": [1, 2, {"b": 3}], "b": 1},
        [
            [["==", ".a", [1, 2, {"b": 3}]], ["==", ".b", 1], ["==", ".b", 1.0]],
            [["!=", ".b", "ddd"], ["!=", ".b", None], ["!=", ".b", 2], ["!=", ".b", {"b": 3}]],
            [["!=", ".b", True], ["!=", ".b", False], ["not", ["==", ".b", 2]]],
            [["<", ".b", 2], ["<", ".b", 2.0], [">", ".b", 0], [">", ".b", 0.0]],
            [["<=", ".b", 2], ["<=", ".b", 2.0], [">=", ".b", 0], [">=", ".b", 0.0]],
        ],
    ),
    (
        {
            "a": "Alice*, Bob, Carol.",
            "b": "Alice*, Bob, Dan, Erin, Carol.",
            "c": "Alice*, Bob  , Carol.",
            "d": "Alice*, Bob*, Carol.",
        },
        [[["like", f".{member}", GLOB] for member in "abcd"]],
    ),
    (
        KATIE,
        [
            [["and", []]],
            [["and", [["==", ".name", "Katie"], ["==", ".age", 35]]]],
            [["and", [["==", ".nationalities", ["Canadian", "South African"]]]]],
            [["or", []]],
            [["or", [["==", ".name", "Katie"], [">", ".age", 45]]]],
            [["not", ["and", [["==", ".name", "Katie"], ["==", ".nationalities", ["American"]]]]]],
        ],
    ),
    ({"a": [{"b": 1}, {"b": 2}, {"z": [7, 8, 9]}]}, [[["any", ".a", ["==", ".b", 2]]]]),
    (
        {"newsletters": {"xmas": {"recipients": [{"email": "bob@example.com"}, {"email": "a"}]}}},
        [[["all", ".newsletters", ["any", ".recipients", ["==", ".email", "bob@example.com"]]]]],
    ),
    (
        {"from": "alice@example.com", "to": ["bob@example.com", "carol@not.example.com"]},
        [[["==", ".from", "alice@example.com"], ["any", ".to", ["like", ".", "*@example.com"]]]],
    ),
]
INVALID = [
    (
        {
            "fail1": "Alice*, Bob, Carol",
            "fail2": "Alice*, Bob*, Carol!",
            "fail3": "Alice, Bob, Carol.",
            "fail4": "Alice Cooper, Bob, Carol.",
            "fail5": " Alice*, Bob, Carol. ",
        },
        [[["like", f".fail{number}", GLOB]] for number in range(1, 6)],
    ),
    (KATIE, [[["and", [["==", ".name", "Katie"], ["==", ".nationalities", "american"]]]]]),
    ({"a": [{"b": 1}, {"b": 2}, {"z": [7, 8, 9]}]}, [[["all", ".a", [">", ".b", 0]]]]),
    (
        {"from": "alice@example.com", "to": ["carol@elsewhere.example.com"]},
        [[["==", ".from", "alice@example.com"], ["any", ".to", ["like", ".", "*@example.com"]]]],
    ),
]


@pytest.mark.parametrize(("args", "policies"), VALID)
def test_spec_fixtures_that_pass(args: dict[str, Any], policies: list[Any]) -> None:
    for policy in policies:
        assert evaluate(policy, args), policy


@pytest.mark.parametrize(("args", "policies"), INVALID)
def test_spec_fixtures_that_fail(args: dict[str, Any], policies: list[Any]) -> None:
    for policy in policies:
        assert not evaluate(policy, args), policy


EMAIL = {
    "from": "alice@example.com",
    "to": ["bob@example.com", "carol@not.example.com", "dan@example.com"],
    "meta": {"a.b": 1, "n": None},
    "raw": b"\xd6\xa9\xc1\x8c",
}


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        (".", EMAIL),
        (".from", "alice@example.com"),
        (".to[1]", "carol@not.example.com"),
        (".to[-1]", "dan@example.com"),
        (".to[99]?", None),
        (".to[99]", MISSING),
        (".to[0:2]", ["bob@example.com", "carol@not.example.com"]),
        (".to[1:]", ["carol@not.example.com", "dan@example.com"]),
        (".to[:-2]", ["bob@example.com"]),
        ('.meta["a.b"]', 1),
        (".meta[]", [1, None]),
        (".missing", None),  # an absent member is null…
        (".missing.deeper", MISSING),  # …and selecting into null fails
        (".missing.deeper?", None),
        (".missing?.deeper", MISSING),  # segments fail early, whatever follows
        (".from[0]", MISSING),
        (".raw[3]", 0x8C),  # bytes are selected into as bytes, not as base64 text
        (".[0]", MISSING),
        (".to???", EMAIL["to"]),
    ],
)
def test_selectors_select_what_the_spec_says(selector: str, selected: Any) -> None:
    assert parse_selector(selector).select(EMAIL) == selected


@pytest.mark.parametrize("text", ["", "from", "..", ".a..b", ".a.", ".[x]", ".a[", "?", ".?"])
def test_malformed_selectors_are_refused(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ({"==": 1}, "a list of statements"),
        ([["~", ".a", 1]], "statement [0]"),
        ([["==", ".a"]], "statement [0]"),
        ([["<", ".a", "1"]], "'<'"),
        ([["<", ".a", True]], "'<'"),
        ([["like", ".a", 1]], "'like'"),
        ([["and", ["==", ".a", 1]]], "statement [0][1][0]"),
        ([["not", ["==", "a", 1]]], "starts with '.'"),
        ([["all", ".a", "x"]], "statement [0][2]"),
        ([[]], "statement [0]"),
    ],
)
def test_malformed_policies_name_the_statement(policy: Any, says: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(says)):
        parse_policy(policy)


def test_a_policy_nested_too_deeply_is_refused() -> None:
    statement: Any = ["==", ".", 1]
    for _ in range(40):
        statement = ["not", statement]
    with pytest.raises(PolicyError, match="nested too deeply"):
        parse_policy([statement])


def test_the_first_failing_statement_is_named() -> None:
    policy = parse_policy([["==", ".a", 1], ["<=", ".b", 10], ["like", ".c", "x*"]])
    assert policy.first_failure({"a": 1, "b": 11, "c": "y"}) == (1, ["<=", ".b", 10])
    assert policy.first_failure({"a": 1, "b": 1, "c": "xy"}) is None


# --- Properties ----------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=10,
)
NUMBERS = st.integers(min_value=-(2**53), max_value=2**53) | st.floats(
    allow_nan=False, allow_infinity=False
)
# Statements over `.v`, with known truth values for the laws below.
STATEMENTS = st.sampled_from(
    [
        ["==", ".v", 1],
        ["!=", ".v", "x"],
        ["<", ".v", 0],
        [">=", ".v", 2.5],
        ["like", ".v", "a*"],
        ["any", ".v", ["==", ".", 1]],
        ["all", ".v", [">", ".", 0]],
    ]
)


@given(VALUES)
def test_equality_is_reflexive_and_survives_dag_cbor(value: Any) -> None:
    assert evaluate([["==", ".v", value]], {"v": value})
    assert not evaluate([["!=", ".v", value]], {"v": value})
    decoded = libipld.decode_dag_cbor(libipld.encode_dag_cbor({"v": value}))
    assert evaluate([["==", ".v", value]], decoded)


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_numbers_are_equal_across_int_and_float(number: int) -> None:
    assert evaluate([["==", ".v", float(number)]], {"v": number})
    assert not evaluate([["==", ".v", number != 0]], {"v": number})  # true is not 1


@given(VALUES, VALUES)
def test_not_equal_is_the_negation_of_equal(left: Any, right: Any) -> None:
    args = {"v": left}
    assert evaluate([["!=", ".v", right]], args) == (not evaluate([["==", ".v", right]], args))
    assert ipld_equal(left, right) == ipld_equal(right, left)


@given(VALUES, NUMBERS)
def test_inequalities_compare_numbers_and_nothing_else(value: Any, bound: float) -> None:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    for operator, holds in (
        ("<", lambda: value < bound),
        ("<=", lambda: value <= bound),
        (">", lambda: value > bound),
        (">=", lambda: value >= bound),
    ):
        assert evaluate([[operator, ".v", bound]], {"v": value}) == (numeric and holds())


@given(st.text(max_size=12), st.text(max_size=12))
def test_like_matches_literals_exactly_and_stars_as_any_run(text: str, prefix: str) -> None:
    literal = text.replace("\\", "").replace("*", "\\*")
    plain = literal.replace("\\*", "*")
    assert evaluate([["like", ".v", literal]], {"v": plain})
    assert evaluate([["like", ".v", "*"]], {"v": text})
    escaped = prefix.replace("\\", "").replace("*", "\\*")
    assert evaluate([["like", ".v", escaped + "*"]], {"v": text}) == text.startswith(
        escaped.replace("\\*", "*")
    )
    assert not evaluate([["like", ".v", "*"]], {"v": [text]})  # only strings match


@given(st.lists(STATEMENTS, max_size=4), VALUES)
def test_connectives_follow_their_laws(statements: list[Any], value: Any) -> None:
    args = {"v": value}
    truths = [evaluate([statement], args) for statement in statements]
    assert evaluate([["and", statements]], args) == all(truths)
    # The spec makes an empty "or" true.
    assert evaluate([["or", statements]], args) == (any(truths) or not statements)
    assert evaluate(statements, args) == all(truths)  # the top level is an "and"
    for statement, truth in zip(statements, truths, strict=True):
        assert evaluate([["not", statement]], args) == (not truth)
        assert evaluate([["not", ["not", statement]]], args) == truth


@given(st.lists(VALUES, max_size=5) | st.dictionaries(st.text(max_size=3), VALUES, max_size=5))
def test_quantifiers_extend_and_and_or_over_collections(collection: Any) -> None:
    items = list(collection.values()) if isinstance(collection, dict) else collection
    truths = [evaluate([[">", ".", 0]], item) for item in items]
    args = {"v": collection}
    assert evaluate([["all", ".v", [">", ".", 0]]], args) == all(truths)
    assert evaluate([["any", ".v", [">", ".", 0]]], args) == any(truths)


@given(SCALARS)
def test_quantifying_over_a_non_collection_is_false(value: Any) -> None:
    assume(not isinstance(value, list | dict))
    assert not evaluate([["all", ".v", ["==", ".", 1]]], {"v": value})
    assert not evaluate([["any", ".v", ["==", ".", 1]]], {"v": value})


@given(st.lists(VALUES, min_size=1, max_size=6), st.integers(-8, 8), st.integers(-8, 8))
def test_indexes_and_slices_are_pythons(items: list[Any], index: int, stop: int) -> None:
    selected = parse_selector(f".v[{index}]").select({"v": items})
    if -len(items) <= index < len(items):
        assert selected is items[index]
    else:
        assert selected is MISSING
    assert parse_selector(f".v[{index}:{stop}]").select({"v": items}) == items[index:stop]
