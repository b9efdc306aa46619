"""The plain-language explanation of a decision: every value of the request and the outcome
is shown, in words, and no JSON is; the model's account keeps its words and drops its
markup; human reviews, erasures and the contest text are said; the same inputs always give
the same text (the offline check of a subject bundle depends on it)."""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from query.subjects.explain import (
    MAX_ITEMS,
    Explanation,
    explain,
    explanation_text,
    stated,
    when,
)

CONTEST = "Write to us at appeals@example.com."
LEAF_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-.", min_size=1, max_size=12)
KEY = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=8)
LEAF = st.one_of(LEAF_TEXT, st.integers(-(10**6), 10**6), st.booleans(), st.none())
JSON = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY, inner, max_size=4),
    max_leaves=20,
)


def decision(**members: Any) -> dict[str, Any]:
    """A signed payload's members, as a bundle or a why-report holds it."""
    return {
        "id": "loan-1",
        "service": "loan-underwriter",
        "decision_type": "loan.approve",
        "occurred_at": "2025-06-02T11:00:03.250000+02:00",
        "subject": "applicant_1",
        "model": {"provider": "anthropic", "name": "claude-sonnet-4", "version": "2025-05-14"},
        "inputs": {"amount": "12000"},
        "output": {"decision": {"approved": True}},
        "steps": [],
    } | members


def leaves(value: Any) -> Iterator[Any]:
    """The brute-force oracle: every scalar in a JSON value."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)
    else:
        yield value


def section(explanation: Explanation, key: str) -> str:
    [found] = [s for s in explanation.sections if s.key == key]
    lines = [found.intro or ""] + [
        item.text if item.label is None else f"{item.label}: {item.text}" for item in found.items
    ]
    return "\n".join(lines)


@settings(max_examples=200, deadline=None)
@given(
    inputs=st.dictionaries(KEY, JSON, max_size=5), outcome=st.dictionaries(KEY, JSON, max_size=5)
)
def test_every_value_is_shown_in_words_and_no_json_is(
    inputs: dict[str, Any], outcome: dict[str, Any]
) -> None:
    made = explain(
        "loan-1",
        decision(inputs=inputs, output={"decision": outcome, "text": f"fine {outcome}"}),
        [],
        CONTEST,
    )
    text = explanation_text(made)
    for mark in ("{", "}", "[", "]", '"'):
        assert mark not in text
    for members, key in ((inputs, "inputs"), (outcome, "outcome")):
        shown = section(made, key)
        assert len(next(s for s in made.sections if s.key == key).items) <= MAX_ITEMS
        for leaf in leaves(members):
            if isinstance(leaf, bool):
                assert ("yes" if leaf else "no") in shown
            elif isinstance(leaf, str | int):
                assert str(leaf) in shown
                assert str(leaf) in text  # never split by the wrapping
    # The same inputs, the same words: what the offline check relies on.
    assert explanation_text(explain("loan-1", decision(inputs=inputs), [], CONTEST)) == (
        explanation_text(explain("loan-1", decision(inputs=inputs), [], CONTEST))
    )


def test_the_models_account_keeps_its_words_and_drops_its_markup() -> None:
    loan = '<assessment>\nScore 675, DTI 0.21: approve.\n{"approved":true,"apr":"14.16"}\n'
    assert stated(loan) == ["Score 675, DTI 0.21: approve."]
    retry = 'insufficient_funds, retry in 24 h.\n```json\n{"retry":true}\n```'
    assert stated(retry) == ["insufficient_funds, retry in 24 h."]
    assert stated('{"warehouse":"RNO-1"}') == []
    assert stated('Routed by rule 4 {"carrier": "UPS"}\n["a", "b"]') == ["Routed by rule 4"]
    assert stated("x" * 400) == ["x" * 299 + "…"]
    made = explain("o-1", decision(output={"decision": {"x": 1}, "text": '{"x":1}'}), [], CONTEST)
    assert "held only the decision shown above" in section(made, "reasoning")
    made = explain("o-1", decision(), [], CONTEST)
    assert "no account in words" in section(made, "reasoning")


def test_times_are_written_in_words_in_utc() -> None:
    assert when("2025-06-02T11:00:03.250000+02:00") == "2 June 2025 at 09:00:03 UTC"
    assert when("2025-12-31T23:59:59Z") == "31 December 2025 at 23:59:59 UTC"
    made = explain("loan-1", decision(inputs={"due": "2026-01-05T08:00:00+00:00"}), [], CONTEST)
    assert "due: 5 January 2026 at 08:00:00 UTC" in section(made, "inputs")
    assert made.summary.startswith("On 2 June 2025 at 09:00:03 UTC, the service “loan-underwriter”")


def test_reviews_rules_erasures_and_contest_are_said() -> None:
    approval = {
        "kind": "human_approval",
        "approver": "underwriter:k.osei",
        "started_at": "2025-06-02T09:01:00+00:00",
        "ended_at": "2025-06-02T09:10:30+00:00",
        "inputs": {"referred_for": ["amount_above_auto_limit", "score_below_660"]},
        "outputs": {"approved": False},
        "error": {"type": "timeout", "message": "the reviewer's session ended"},
    }
    payload = decision(
        steps=[{"kind": "llm_call", "started_at": "2025-06-02T09:00:04+00:00"}, approval],
        policy={"policy_id": "lending", "version": "v2", "result": "deny",
                "reasons": ["dti_above_0.36", "amount_above_half_income"]},
        context=[{"name": "credit.bureau_report", "version": "exp-1",
                  "fetched_at": "2025-06-01T09:00:00+00:00", "blob": "sha256:" + "a" * 64}],
        prompt={"messages_blob": "sha256:" + "b" * 64},
    )  # fmt: skip
    blobs: list[dict[str, Any]] = [
        {"pointer": "/context/0/blob", "digest": "sha256:" + "a" * 64, "status": "erased",
         "erased_at": "2026-01-10T12:00:00.000000Z", "erasure_index": 412},
        {"pointer": "/prompt/messages_blob", "digest": "sha256:" + "b" * 64, "status": "missing"},
    ]  # fmt: skip
    made = explain("loan-9", payload, blobs, CONTEST)

    review = section(made, "review")
    assert "A person reviewed this decision" in review
    assert "Reviewer: underwriter:k.osei" in review
    assert "Reviewed: from 2 June 2025 at 09:01:00 UTC to 2 June 2025 at 09:10:30 UTC" in review
    assert "Asked to review / referred for: amount above auto limit, score below 660" in review
    assert "Outcome of the review / approved: no" in review
    assert "ended in an error: timeout: the reviewer's session ended" in review
    rules = section(made, "rules")
    assert "“lending” (version v2) gave the result “deny”" in rules
    assert "dti above 0.36" in rules
    assert "amount above half income" in rules
    data = section(made, "data")
    assert (
        "The information “credit.bureau_report”: erased on 10 January 2026 at 12:00:00 UTC "
        "(erasure record 412 in the ledger)"
    ) in data
    assert "The messages sent to the model: never stored with the ledger" in data
    assert "1 of 2 such items have been erased since" in data
    contest = section(made, "contest")
    assert contest.startswith(CONTEST)
    assert "Reference to quote: loan-9" in contest

    unreviewed = explain("loan-9", decision(), [], CONTEST)
    assert "no review by a person" in section(unreviewed, "review")
    assert "none of it is kept apart" in section(unreviewed, "data")
    assert "names no rules" in section(unreviewed, "rules")
    # A request of a thousand values is cut short with a count, not shown whole.
    large = explain("x", decision(inputs={f"k{n}": n for n in range(1000)}), [], CONTEST)
    [inputs] = [s for s in large.sections if s.key == "inputs"]
    assert len(inputs.items) == MAX_ITEMS
    assert inputs.items[-1].text == f"… and {1000 - MAX_ITEMS + 1} more"
