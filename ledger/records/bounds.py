"""The admission contract: bounds every payload meets before the ledger stores it.

The log is append-only, so a value that a reader, an index or an export cannot handle
would poison it forever. These checks run once, at admission, on every payload type and
on both engines alike; readers stay permissive, so records stored before a bound existed
still read. The limits are documented in docs/log-format.md ("Admission limits").

`check_json` works on the payload bytes, before the schema decoder sees them:

1. JSON nesting is at most `MAX_DEPTH` arrays and objects deep (the schema decoders and
   every reader recurse, so depth is what turns one record into a crash).
2. No object names the same member twice: readers disagree on which one wins.
3. Member names are at most `MAX_MEMBER_NAME` characters.
4. No string or member name holds U+0000 (PostgreSQL text cannot store it) or a lone
   surrogate (it has no UTF-8 form).
5. Every integer fits a signed 64-bit column; every number is finite.

`check_record` works on the decoded record, where the schema says what a value means:

6. Every timestamp, normalized to UTC, falls in years `MIN_YEAR` to `MAX_YEAR`.
7. Every money amount is below `MAX_MONEY` in magnitude (what the export's decimal holds).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ledger.errors import InvalidPayload
from ledger.records.context_change import ContextChange
from ledger.records.decision import Decision
from ledger.records.policy import PolicyRecord

MAX_DEPTH = 64
MAX_MEMBER_NAME = 1024
INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1
MIN_YEAR = 1970
MAX_YEAR = 9999
MAX_MONEY = Decimal(10) ** 26
# The earliest and latest instants a timestamp may name, as UTC datetimes.
_EARLIEST = datetime(MIN_YEAR, 1, 1, tzinfo=UTC)
_LATEST = datetime(MAX_YEAR, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


class _Fault(Exception):
    """A bound broken somewhere below; `path` grows as the walk unwinds."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.path: list[str] = []


def check_json(data: bytes) -> None:
    """Steps 1 to 5 on a payload's bytes. Raises `InvalidPayload` naming the member at
    fault; bytes that are not JSON at all are left for the schema decoder to refuse.

    The common case is one parse with cheap hooks and one pass over the containers; a
    fault only raises a flag there, and a second, exact walk names the member at fault.
    """
    names: set[str] = set()

    def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        members = dict(pairs)
        if len(members) != len(pairs):
            raise _Fault("duplicate member")
        names.update(members)
        return members

    try:
        document = json.loads(
            data,
            object_pairs_hook=unique_members,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_refuse,
        )
    except RecursionError:  # far beyond the limit: find where without recursing
        raise _too_deep(_deep_path(data)) from None
    except _Fault:
        _exact_check(data)
        return
    except ValueError:
        return  # not JSON: the strict decoder that runs next names the fault
    if names and max(map(len, names)) > MAX_MEMBER_NAME:
        _exact_check(data)
    if type(document) in (dict, list) and _too_deep_within(document, 0):
        raise _too_deep(_deep_path(data))
    # U+0000 and lone surrogates can only arrive escaped, or (surrogates) as the UTF-8
    # lead byte 0xED that `json` lets through.
    if b"\\u0000" in data or b"\\ud" in data or b"\\uD" in data or b"\xed" in data:
        _exact_check(data)


def _bounded_int(text: str) -> int:
    # 18 digits always fit in 64 bits; only longer ones need the exact comparison.
    number = int(text)
    if len(text) > 18 and not INT_MIN <= number <= INT_MAX:
        raise _Fault("integer out of range")
    return number


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Fault("number out of range")
    return number


def _refuse(constant: str) -> Any:
    raise _Fault(f"{constant} is not a JSON number")


def _too_deep_within(node: Any, depth: int) -> bool:
    """True when some container below `node` is nested deeper than `MAX_DEPTH`."""
    if depth == MAX_DEPTH:
        return True
    for value in node.values() if type(node) is dict else node:
        kind = type(value)
        if (kind is dict or kind is list) and _too_deep_within(value, depth + 1):
            return True
    return False


def _too_deep(path: list[str]) -> InvalidPayload:
    return InvalidPayload(
        f"nested more than {MAX_DEPTH} levels deep; the limit is {MAX_DEPTH}",
        pointer=_pointer(path),
    )


def _exact_check(data: bytes) -> None:
    """Steps 1 to 5 value by value, naming the member at fault."""
    try:
        document = json.loads(data, object_pairs_hook=tuple, parse_constant=float)
    except RecursionError:
        raise _too_deep(_deep_path(data)) from None
    try:
        _walk(document, 0)
    except _Fault as fault:
        raise InvalidPayload(fault.detail, pointer=_pointer(reversed(fault.path))) from None


def _walk(node: Any, depth: int) -> None:
    """Steps 1 to 5 over a document whose objects are tuples of (name, value) pairs."""
    kind = type(node)
    if (kind is tuple or kind is list) and depth == MAX_DEPTH:
        raise _Fault(f"nested more than {MAX_DEPTH} levels deep; the limit is {MAX_DEPTH}")
    if kind is str:
        _check_text(node, "string")
    elif kind is tuple:
        _walk_members(node, depth)
    elif kind is list:
        for position, value in enumerate(node):
            try:
                _walk(value, depth + 1)
            except _Fault as fault:
                fault.path.append(str(position))
                raise
    elif kind is int:
        if not INT_MIN <= node <= INT_MAX:
            raise _Fault(f"integer {_short(node)} is outside the signed 64-bit range")
    elif kind is float and not math.isfinite(node):
        raise _Fault("number is not finite (too large for a double, or NaN/Infinity)")


def _walk_members(members: tuple[tuple[str, Any], ...], depth: int) -> None:
    seen: set[str] = set()
    for name, value in members:
        if name in seen:
            fault = _Fault(f"member {name!r} appears more than once")
            fault.path.append(name)
            raise fault
        seen.add(name)
        try:
            if len(name) > MAX_MEMBER_NAME:
                raise _Fault(
                    f"member name is {len(name)} characters; the limit is {MAX_MEMBER_NAME}"
                )
            _check_text(name, "member name")
            _walk(value, depth + 1)
        except _Fault as fault:
            fault.path.append(name)
            raise


def _check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise _Fault(f"{what} holds U+0000, which the ledger's stores cannot keep")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _Fault(f"{what} holds a lone surrogate, which has no UTF-8 form") from None


def _short(number: int) -> str:
    return str(number) if abs(number) < 10**40 else f"with {len(str(abs(number)))} digits"


def _pointer(path: Iterator[str] | list[str]) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


# Token scanner for the (rare) too-deep case: where the first too-deep bracket sits.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.DOTALL)


def _deep_path(data: bytes) -> list[str]:
    """The member path down to the first container nested deeper than `MAX_DEPTH`."""
    # Each level: [is_object, current member or position, last string seen].
    stack: list[list[Any]] = []
    last_string = ""
    for match in _TOKEN.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            if len(stack) == MAX_DEPTH:
                break
            stack.append([token == b"{", "" if token == b"{" else 0])
        elif token in (b"]", b"}"):
            if stack:
                stack.pop()
        elif token == b":":
            if stack and stack[-1][0]:
                stack[-1][1] = last_string
        elif token == b",":
            if stack and not stack[-1][0]:
                stack[-1][1] += 1
        else:
            try:
                last_string = json.loads(token)
            except ValueError:
                last_string = ""
    return [str(level[1]) for level in stack]


def check_record(record: object) -> None:
    """Steps 6 and 7 on a decoded record of any payload type."""
    for pointer, instant in _timestamps(record):
        try:
            normalized = instant.astimezone(UTC)
        except OverflowError:
            normalized = None
        if normalized is None or not _EARLIEST <= normalized <= _LATEST:
            raise InvalidPayload(
                f"timestamp {instant.isoformat()} is outside {MIN_YEAR}-01-01 to "
                f"{MAX_YEAR}-12-31 in UTC",
                pointer=pointer,
            )
    for pointer, amount in _amounts(record):
        if abs(amount) >= MAX_MONEY:
            raise InvalidPayload(
                f"amount {amount} is too large; its magnitude must be below 10^26",
                pointer=pointer,
            )


def _timestamps(record: object) -> Iterator[tuple[str, datetime]]:
    if isinstance(record, ContextChange):
        yield "/changed_at", record.changed_at
        return
    if isinstance(record, PolicyRecord):
        yield "/registered_at", record.registered_at
        return
    yield "/occurred_at", record.occurred_at  # type: ignore[attr-defined]
    if not isinstance(record, Decision):
        return
    for position, snapshot in enumerate(record.context):
        yield f"/context/{position}/fetched_at", snapshot.fetched_at
        if snapshot.valid_until is not None:
            yield f"/context/{position}/valid_until", snapshot.valid_until
    for position, step in enumerate(record.steps):
        yield f"/steps/{position}/started_at", step.started_at
        yield f"/steps/{position}/ended_at", step.ended_at
    if record.freshness is not None and record.freshness.valid_until is not None:
        yield "/freshness/valid_until", record.freshness.valid_until


def _amounts(record: object) -> Iterator[tuple[str, Decimal]]:
    if not isinstance(record, Decision):
        return
    if record.usage is not None and record.usage.cost is not None:
        yield "/usage/cost/amount", record.usage.cost.amount
    for position, step in enumerate(record.steps):
        if step.usage is not None and step.usage.cost is not None:
            yield f"/steps/{position}/usage/cost/amount", step.usage.cost.amount
    for position, exposure in enumerate(record.exposures):
        yield f"/exposures/{position}/amount", exposure.amount
