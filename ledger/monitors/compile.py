"""A monitor definition turned into the predicates and numbers evaluation uses.

`compile_monitor` checks everything the record's shape cannot: that the aggregate has the
unit it sums, that `share` groups by exposure group, that the window is `<n>s|m|h|d` or
`calendar:day`, that conditions parse, and that a regular expression cannot backtrack. A
definition that fails any of these is refused as `MonitorInvalid`, naming the member.

Patterns are globs (`*` any run of characters, `?` one) matched in linear time, or, in
`group_regex`, a regular expression of a safe subset: no backreferences, no lookaround, no
repeat inside a repeat, no repeated alternation and at most two unbounded repeats, so the
worst match of a bounded group name stays quadratic at most.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

# The stdlib's own parse tree of a pattern, to see what it would do before compiling it.
from re import _constants, _parser  # type: ignore[attr-defined]
from typing import Any, Final

import msgspec

from ledger.errors import MonitorInvalid
from ledger.records.monitor import MonitorDefinition

_WINDOW = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_WINDOW_SECONDS: Final = 366 * 86_400
CALENDAR_DAY: Final = "calendar:day"
DAY_US: Final = 86_400 * 1_000_000
_CONDITION = re.compile(
    r"^\s*(output(?:\.[A-Za-z0-9_-]{1,64}){1,8})\s*(==|!=|<=|>=|<|>)\s*(.{1,256}?)\s*$"
)
_ORDERING: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
MAX_UNBOUNDED_REPEATS: Final = 2
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Window:
    """A sliding window of `seconds`, or a calendar day (`seconds` is None)."""

    text: str
    seconds: int | None

    def start_us(self, now_us: int) -> int:
        """The earliest integration time the window ending at `now_us` holds."""
        if self.seconds is None:
            return now_us - now_us % DAY_US
        return now_us - self.seconds * 1_000_000 + 1


@dataclass(frozen=True, slots=True)
class CompiledMonitor:
    definition: MonitorDefinition
    window: Window
    limit: Decimal
    service: Callable[[str], bool]
    decision_type: Callable[[str], bool]
    group: Callable[[str], bool] | None
    conditions: tuple[Callable[[Mapping[str, Any]], bool], ...]

    @property
    def filters_groups(self) -> bool:
        return self.group is not None


def compile_monitor(definition: MonitorDefinition) -> CompiledMonitor:
    """Check `definition` beyond its shape and build its predicates; `MonitorInvalid` names
    the member at fault."""
    aggregate = definition.aggregate
    select = definition.select
    if aggregate in ("sum_exposure", "share", "sum_cost") and definition.unit is None:
        raise MonitorInvalid(f"aggregate {aggregate!r} needs the `unit` it sums", pointer="/unit")
    if aggregate == "share" and definition.group_by != "group":
        raise MonitorInvalid(
            "a `share` is a group's part of the total: `group_by` must be `group`",
            pointer="/group_by",
        )
    if definition.group_by == "group" and select.group is None and select.group_regex is None:
        raise MonitorInvalid(
            "grouping by exposure group needs `select.group` or `select.group_regex`",
            pointer="/select/group",
        )
    if select.group is not None and select.group_regex is not None:
        raise MonitorInvalid(
            "give `select.group` or `select.group_regex`, not both", pointer="/select/group_regex"
        )
    group: Callable[[str], bool] | None = None
    if select.group is not None:
        group = glob_matcher(select.group)
    elif select.group_regex is not None:
        group = safe_regex(select.group_regex, "/select/group_regex")
    return CompiledMonitor(
        definition=definition,
        window=parse_window(definition.window),
        limit=Decimal(definition.limit),
        service=_optional_glob(select.service),
        decision_type=_optional_glob(select.decision_type),
        group=group,
        conditions=tuple(
            parse_condition(text, f"/select/where/{position}")
            for position, text in enumerate(select.where)
        ),
    )


def parse_window(text: str) -> Window:
    if text == CALENDAR_DAY:
        return Window(text, None)
    match = _WINDOW.match(text)
    if match is None:
        raise MonitorInvalid(
            f"window {text!r} is neither `<n>s`, `<n>m`, `<n>h`, `<n>d` (n > 0) nor "
            f"{CALENDAR_DAY!r}",
            pointer="/window",
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_WINDOW_SECONDS:
        raise MonitorInvalid(f"window {text!r} is longer than 366 days", pointer="/window")
    return Window(text, seconds)


def parse_condition(text: str, pointer: str) -> Callable[[Mapping[str, Any]], bool]:
    """`output.a.b <op> <JSON value>` as a predicate over the decision's `output`."""
    match = _CONDITION.match(text)
    if match is None:
        raise MonitorInvalid(
            f"condition {text!r} is not `output.<field>[.<field>…] <op> <JSON value>` with "
            "<op> one of == != < <= > >=",
            pointer=pointer,
        )
    path = match.group(1).split(".")[1:]
    operator = match.group(2)
    try:
        expected = msgspec.json.decode(match.group(3).encode())
    except msgspec.DecodeError:
        raise MonitorInvalid(
            f"the value in condition {text!r} is not JSON (strings need double quotes)",
            pointer=pointer,
        ) from None
    if isinstance(expected, dict | list):
        raise MonitorInvalid(
            f"condition {text!r} compares with an object or a list", pointer=pointer
        )
    ordering = _ORDERING.get(operator)
    if ordering is not None and not _is_number(expected):
        raise MonitorInvalid(f"condition {text!r} orders against a non-number", pointer=pointer)

    def holds(output: Mapping[str, Any]) -> bool:
        value: Any = output
        for name in path:
            if not isinstance(value, dict):
                value = _MISSING
                break
            value = value.get(name, _MISSING)
        if ordering is not None:
            return _is_number(value) and ordering(value, expected)
        # `true == 1` must not hold: JSON booleans are not numbers.
        same = value is not _MISSING and type(value) is type(expected) and value == expected
        if not same and _is_number(value) and _is_number(expected):
            same = value == expected
        return same if operator == "==" else not same

    return holds


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional_glob(pattern: str | None) -> Callable[[str], bool]:
    return (lambda _text: True) if pattern is None else glob_matcher(pattern)


# How many answers a pattern's matcher remembers: group names, services and decision types
# repeat across decisions, so the sequencer rarely matches the same text twice.
MATCH_MEMO = 4096


def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """`*` matches any run of characters, `?` any one, the rest itself; linear per star."""
    if "*" not in pattern and "?" not in pattern:
        return lambda text: text == pattern
    return _memoized(lambda text: glob_match(pattern, text))


def _memoized(match: Callable[[str], bool]) -> Callable[[str], bool]:
    answers: dict[str, bool] = {}

    def remembered(text: str) -> bool:
        answer = answers.get(text)
        if answer is None:
            if len(answers) >= MATCH_MEMO:
                answers.clear()  # a bounded memo: hostile variety costs time, not memory
            answer = answers[text] = match(text)
        return answer

    return remembered


def glob_match(pattern: str, text: str) -> bool:
    # The classic two-pointer match: on a mismatch, only the last star is retried, so the
    # cost is at most len(pattern) * len(text), with no recursion.
    p = t = 0
    star = -1
    resume = 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            resume += 1
            t = resume
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def safe_regex(pattern: str, pointer: str) -> Callable[[str], bool]:
    """The pattern as a full-match predicate, if it cannot backtrack badly."""
    try:
        tree = _parser.parse(pattern)
    except re.error as error:
        raise MonitorInvalid(f"regular expression {pattern!r}: {error}", pointer=pointer) from None
    unbounded = _check_tree(tree, pattern, pointer, inside_repeat=False)
    if unbounded > MAX_UNBOUNDED_REPEATS:
        raise MonitorInvalid(
            f"regular expression {pattern!r} has {unbounded} unbounded repeats; at most "
            f"{MAX_UNBOUNDED_REPEATS} are allowed, since their combinations backtrack",
            pointer=pointer,
        )
    compiled = re.compile(pattern)
    return _memoized(lambda text: compiled.fullmatch(text) is not None)


_REFUSED_NODES: Final = {
    "GROUPREF": "a backreference",
    "GROUPREF_EXISTS": "a conditional group",
    "ASSERT": "a lookaround",
    "ASSERT_NOT": "a lookaround",
    "ATOMIC_GROUP": "an atomic group",
    "POSSESSIVE_REPEAT": "a possessive repeat",
}


def _check_tree(tree: Any, pattern: str, pointer: str, *, inside_repeat: bool) -> int:
    """Refuse the constructs that backtrack; returns how many unbounded repeats it holds."""
    unbounded = 0
    for opcode, argument in tree:
        name = str(opcode)
        if name in _REFUSED_NODES:
            raise MonitorInvalid(
                f"regular expression {pattern!r} uses {_REFUSED_NODES[name]}, which can "
                "backtrack without bound",
                pointer=pointer,
            )
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            _low, high, body = argument
            if inside_repeat:
                raise MonitorInvalid(
                    f"regular expression {pattern!r} nests a repeat inside a repeat, which "
                    "backtracks exponentially",
                    pointer=pointer,
                )
            if any(str(op) == "BRANCH" for op, _ in body) or _has_branch(body):
                raise MonitorInvalid(
                    f"regular expression {pattern!r} repeats an alternation, which can "
                    "backtrack exponentially",
                    pointer=pointer,
                )
            if high == _constants.MAXREPEAT:
                unbounded += 1
            unbounded += _check_tree(body, pattern, pointer, inside_repeat=True)
        elif name == "SUBPATTERN":
            unbounded += _check_tree(argument[-1], pattern, pointer, inside_repeat=inside_repeat)
        elif name == "BRANCH":
            for alternative in argument[1]:
                unbounded += _check_tree(alternative, pattern, pointer, inside_repeat=inside_repeat)
    return unbounded


def _has_branch(tree: Any) -> bool:
    for opcode, argument in tree:
        name = str(opcode)
        if name == "BRANCH":
            return True
        if name == "SUBPATTERN" and _has_branch(argument[-1]):
            return True
    return False
