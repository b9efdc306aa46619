"""The replay against the record: decision fields, text, tool calls, usage, and the verdict.

Decision fields are compared as JSON values, field by field, and each difference is a
`FieldChange` at an RFC 6901 pointer: an object member the replay lacks is ``removed``,
one only the replay has is ``added``, and a leaf that differs (or a value whose JSON type
differs) is ``changed`` with both values. Arrays are compared by index; extra elements are
``added`` in ascending order and missing ones ``removed`` in descending order, so applying
the changes in order to the record's decision yields the replay's. Numbers compare by
value (``1`` equals ``1.0``), but ``true`` is not ``1``.

Tool calls are compared by position in each run's sequence of tool calls (call ids always
differ between runs and are not compared). A run that stopped before its end (diverged or
failed) is compared only as far as it got.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from ledger.records.decision import Cost, StepError, Usage
from ledger.records.replay import (
    Diff,
    Divergence,
    FieldChange,
    IntDelta,
    MoneyDelta,
    ReplayedToolCallRequest,
    ToolCallChange,
    Verdict,
)


def escape(token: str) -> str:
    """One reference token of an RFC 6901 pointer (``~`` and ``/`` escaped)."""
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(tokens: Sequence[str | int]) -> str:
    return "".join(f"/{escape(str(token))}" for token in tokens)


def same(before: Any, after: Any) -> bool:
    """Whether two JSON values are equal: numbers by value, booleans only to booleans."""
    if before is after:
        return True
    if isinstance(before, bool) or isinstance(after, bool):
        return type(before) is type(after) and before == after
    if isinstance(before, int | float) and isinstance(after, int | float):
        return before == after
    if isinstance(before, dict):
        return (
            isinstance(after, dict)
            and before.keys() == after.keys()
            and all(same(value, after[key]) for key, value in before.items())
        )
    if isinstance(before, list):
        return (
            isinstance(after, list)
            and len(before) == len(after)
            and all(same(a, b) for a, b in zip(before, after, strict=True))
        )
    return type(before) is type(after) and bool(before == after)


def field_changes(before: Any, after: Any) -> list[FieldChange]:
    """Every difference between two JSON values, as pointers into them (see the module)."""
    return list(_changes(before, after, []))


def _changes(before: Any, after: Any, path: list[str | int]) -> Iterator[FieldChange]:
    if isinstance(before, dict) and isinstance(after, dict):
        for key, value in before.items():
            path.append(key)
            if key in after:
                yield from _changes(value, after[key], path)
            else:
                yield FieldChange(path=_pointer(path), change="removed", before=value)
            path.pop()
        for key, value in after.items():
            if key not in before:
                path.append(key)
                yield FieldChange(path=_pointer(path), change="added", after=value)
                path.pop()
    elif isinstance(before, list) and isinstance(after, list):
        common = min(len(before), len(after))
        for index in range(common):
            path.append(index)
            yield from _changes(before[index], after[index], path)
            path.pop()
        for index in range(common, len(after)):
            path.append(index)
            yield FieldChange(path=_pointer(path), change="added", after=after[index])
            path.pop()
        for index in reversed(range(common, len(before))):
            path.append(index)
            yield FieldChange(path=_pointer(path), change="removed", before=before[index])
            path.pop()
    elif not same(before, after):
        yield FieldChange(path=_pointer(path), change="changed", before=before, after=after)


def tool_call_changes(
    recorded: Sequence[ReplayedToolCallRequest],
    replayed: Sequence[ReplayedToolCallRequest],
    *,
    finished: bool,
) -> list[ToolCallChange]:
    """The tool calls that differ by position; recorded calls the replay never reached
    count as ``removed`` only when it ran to its end."""
    changes: list[ToolCallChange] = []
    for position, (old, new) in enumerate(zip(recorded, replayed, strict=False)):
        if old.name != new.name:
            changes.append(ToolCallChange(position=position, change="name", before=old, after=new))
        elif not same(old.arguments, new.arguments):
            changes.append(
                ToolCallChange(position=position, change="arguments", before=old, after=new)
            )
    common = min(len(recorded), len(replayed))
    changes += [
        ToolCallChange(position=position, change="added", after=replayed[position])
        for position in range(common, len(replayed))
    ]
    if finished:
        changes += [
            ToolCallChange(position=position, change="removed", before=recorded[position])
            for position in range(common, len(recorded))
        ]
    return changes


def compare(
    *,
    recorded_decision: dict[str, Any],
    recorded_text: str | None,
    recorded_usage: Usage | None,
    recorded_model_ms: int | None,
    recorded_calls: Sequence[ReplayedToolCallRequest],
    replayed_calls: Sequence[ReplayedToolCallRequest],
    usage: Usage | None,
    finished: bool,
    decision: dict[str, Any] | None,
    text: str | None,
) -> Diff:
    """The diff of a replayed run against its record.

    `finished` says the run reached its end (the model stopped asking for tools); only then
    are `decision` (None when none could be derived) and `text` its final answer, compared
    with the record's. A run that ended without a decision is compared on its text alone,
    and `Diff.text_only` says so.
    """
    decision_changes: list[FieldChange] = []
    text_only = False
    text_changed = False
    if finished:
        if decision is None:
            text_only = True
        else:
            decision_changes = field_changes(recorded_decision, decision)
        text_changed = (recorded_text or "") != (text or "")
    recorded_cost = recorded_usage.cost if recorded_usage else None
    replayed_cost = usage.cost if usage else None
    currency = recorded_cost.currency if recorded_cost else None
    if replayed_cost is not None and currency is None:
        currency = replayed_cost.currency
    return Diff(
        decision=decision_changes,
        text_only=text_only,
        text_changed=text_changed,
        text_before=recorded_text if text_changed else None,
        text_after=text if text_changed else None,
        tool_calls=tool_call_changes(recorded_calls, replayed_calls, finished=finished),
        input_tokens=IntDelta(
            recorded_usage.input_tokens if recorded_usage else None,
            usage.input_tokens if usage else None,
        ),
        output_tokens=IntDelta(
            recorded_usage.output_tokens if recorded_usage else None,
            usage.output_tokens if usage else None,
        ),
        # Amounts in two currencies do not subtract: the replay's own usage keeps its cost.
        cost=MoneyDelta(
            recorded_cost.amount if recorded_cost else None,
            _amount_in(replayed_cost, currency),
            currency,
        ),
        # Model time against model time: the record's `usage.latency_ms` spans the whole
        # decision, tools and human approvals included, which a replay never waits for.
        latency_ms=IntDelta(recorded_model_ms, usage.latency_ms if usage else None),
    )


def _amount_in(cost: Cost | None, currency: str | None) -> Decimal | None:
    if cost is None or cost.currency != currency:
        return None
    return cost.amount


def verdict_of(diff: Diff, *, divergence: Divergence | None, error: StepError | None) -> Verdict:
    """The verdict (see ledger/records/replay.py): a failure or a divergence first, then
    the decision fields (or the text, when it is all there is to compare), then the text."""
    if error is not None:
        return "failed"
    if divergence is not None:
        return "diverged"
    if diff.decision or (diff.text_only and diff.text_changed):
        return "changed"
    if diff.text_changed:
        return "equivalent"
    return "identical"
