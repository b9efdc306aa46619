"""The UCAN policy language (ucan-wg/delegation, "Policy"): parsed once, evaluated per call.

A policy is a list of statements, every one of which must hold for an invocation's `args`:

================  =======================================  ====================================
operator          form                                     holds when
================  =======================================  ====================================
``==``, ``!=``    ``[op, selector, value]``                deep IPLD equality (numbers equal
                                                           across int and float), or not
``<`` … ``>=``    ``[op, selector, number]``               the selected value is a number in
                                                           that relation
``like``          ``["like", selector, pattern]``          a string matches the glob (``*`` is
                                                           any run, ``\\*`` a literal star)
``not``           ``["not", statement]``                   the statement does not hold
``and``, ``or``   ``[op, [statement, …]]``                 all hold, or one holds; an empty
                                                           list holds for both, per the spec
``all``, ``any``  ``[op, selector, statement]``            the statement holds for every
                                                           element (or a map's values), or
                                                           for one
================  =======================================  ====================================

A value of the wrong kind makes its statement false. A selector that does not resolve
(`ledger.delegation.policy_selector`) leaves its statement *unresolved*, which fails the
policy and which
``not`` does not turn into success: ``["!=", ".a.b", 1]`` and ``["not", ["==", ".a.b", 1]]``
both fail when ``.a.b`` cannot be selected, as the spec's "the associated statement MUST
return false" asks. The three outcomes are go-ucan's (pkg/policy/match.go): ``and``, ``or``,
``all`` and ``any`` give the first unresolved result they meet, in order, and only a resolved
true passes. Nothing raises while evaluating; malformed policies are refused when parsed.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from ledger.delegation.policy_selector import MISSING, Selector, SelectorError, parse_selector
from ledger.errors import ProvError

_MAX_DEPTH = 32  # policies are shallow; this bounds recursion on hostile input
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda left, right: left < right,
    "<=": lambda left, right: left <= right,
    ">": lambda left, right: left > right,
    ">=": lambda left, right: left >= right,
}


class PolicyError(ProvError, ValueError):
    """A value that is not a policy; the message names the statement at fault."""

    kind = "bad-policy"
    title = "Malformed UCAN policy"


class Outcome(Enum):
    """A statement's result: true, false, or unresolved (a selector found nothing)."""

    TRUE = "true"
    FALSE = "false"
    UNRESOLVED = "unresolved"


def _outcome(truth: bool) -> Outcome:
    return Outcome.TRUE if truth else Outcome.FALSE


class Statement(Protocol):
    def outcome(self, value: Any) -> Outcome: ...

    def holds(self, value: Any) -> bool: ...


def is_number(value: Any) -> bool:
    """IPLD integers and floats; a bool is neither."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def ipld_equal(left: Any, right: Any) -> bool:
    """Deep equality of IPLD values, with 1 == 1.0 as the spec asks and true != 1."""
    if is_number(left) and is_number(right):
        return bool(left == right)
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(ipld_equal, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(ipld_equal(left[k], right[k]) for k in left)
    return bool(left == right)


class _Holds(ABC):
    """`holds` for every statement: only a resolved true holds."""

    __slots__ = ()

    @abstractmethod
    def outcome(self, value: Any) -> Outcome: ...

    def holds(self, value: Any) -> bool:
        return self.outcome(value) is Outcome.TRUE


@dataclass(frozen=True, slots=True)
class _Equal(_Holds):
    selector: Selector
    value: Any
    negated: bool

    def outcome(self, value: Any) -> Outcome:
        # "!=" is ["not", ["==", …]]: over nothing selected it stays unresolved, never true.
        selected = self.selector.select(value)
        if selected is MISSING:
            return Outcome.UNRESOLVED
        return _outcome(ipld_equal(selected, self.value) != self.negated)


@dataclass(frozen=True, slots=True)
class _Compare(_Holds):
    selector: Selector
    relation: Callable[[Any, Any], bool]
    bound: int | float

    def outcome(self, value: Any) -> Outcome:
        selected = self.selector.select(value)
        if selected is MISSING:
            return Outcome.UNRESOLVED
        return _outcome(is_number(selected) and self.relation(selected, self.bound))


@dataclass(frozen=True, slots=True)
class _Like(_Holds):
    selector: Selector
    pattern: re.Pattern[str]

    def outcome(self, value: Any) -> Outcome:
        selected = self.selector.select(value)
        if selected is MISSING:
            return Outcome.UNRESOLVED
        return _outcome(isinstance(selected, str) and self.pattern.fullmatch(selected) is not None)


@dataclass(frozen=True, slots=True)
class _Not(_Holds):
    statement: Statement

    def outcome(self, value: Any) -> Outcome:
        inner = self.statement.outcome(value)
        if inner is Outcome.UNRESOLVED:
            return inner  # "nothing to compare" does not become success
        return _outcome(inner is Outcome.FALSE)


def _every(outcomes: Iterable[Outcome]) -> Outcome:
    # In order, as go-ucan: the first false or unresolved result decides.
    for outcome in outcomes:
        if outcome is not Outcome.TRUE:
            return outcome
    return Outcome.TRUE


def _some(outcomes: Iterable[Outcome]) -> Outcome:
    # In order, as go-ucan: the first true or unresolved result decides.
    for outcome in outcomes:
        if outcome is not Outcome.FALSE:
            return outcome
    return Outcome.FALSE


@dataclass(frozen=True, slots=True)
class _Connective(_Holds):
    every: bool  # "and" when true, "or" otherwise
    statements: tuple[Statement, ...]

    def outcome(self, value: Any) -> Outcome:
        if not self.statements:
            return Outcome.TRUE  # the spec makes an empty "or" true as well
        outcomes = (statement.outcome(value) for statement in self.statements)
        return _every(outcomes) if self.every else _some(outcomes)


@dataclass(frozen=True, slots=True)
class _Quantifier(_Holds):
    every: bool  # "all" when true, "any" otherwise
    selector: Selector
    statement: Statement

    def outcome(self, value: Any) -> Outcome:
        selected = self.selector.select(value)
        if selected is MISSING:
            return Outcome.UNRESOLVED
        if isinstance(selected, dict):
            selected = list(selected.values())
        if not isinstance(selected, list):
            return Outcome.FALSE  # the spec: quantifying over a non-collection is false
        outcomes = (self.statement.outcome(item) for item in selected)
        return _every(outcomes) if self.every else _some(outcomes)


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy: its statements and, for messages, their source form."""

    statements: tuple[Statement, ...]
    source: tuple[Any, ...]

    def holds(self, args: Any) -> bool:
        return all(statement.holds(args) for statement in self.statements)

    def first_failure(self, args: Any) -> tuple[int, Any] | None:
        """The position and source of the first statement `args` fail, else None."""
        for position, statement in enumerate(self.statements):
            if not statement.holds(args):
                return position, self.source[position]
        return None


def parse_policy(policy: Any) -> Policy:
    """Parse a policy (a list of statements); `PolicyError` names what is malformed."""
    if not isinstance(policy, list):
        raise PolicyError("a policy is a list of statements")
    return Policy(
        tuple(_statement(item, f"[{position}]", 0) for position, item in enumerate(policy)),
        tuple(policy),
    )


def evaluate(policy: Any, args: Any) -> bool:
    """Whether `args` satisfy `policy` (parsed first; `PolicyError` if it is malformed)."""
    return parse_policy(policy).holds(args)


def _statement(raw: Any, where: str, depth: int) -> Statement:
    if depth > _MAX_DEPTH:
        raise PolicyError(f"statement {where} is nested too deeply")
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], str):
        raise PolicyError(f"statement {where} is not [operator, …]")
    operator, operands = raw[0], raw[1:]
    match operator, operands:
        case "==" | "!=", [str() as selector, value]:
            return _Equal(_selector(selector, where), value, operator == "!=")
        case "<" | "<=" | ">" | ">=", [str() as selector, bound] if is_number(bound):
            return _Compare(_selector(selector, where), _COMPARISONS[operator], bound)
        case "like", [str() as selector, str() as pattern]:
            return _Like(_selector(selector, where), _glob(pattern))
        case "not", [inner]:
            return _Not(_statement(inner, f"{where}[1]", depth + 1))
        case "and" | "or", [list() as inner]:
            return _Connective(
                operator == "and",
                tuple(
                    _statement(item, f"{where}[1][{position}]", depth + 1)
                    for position, item in enumerate(inner)
                ),
            )
        case "all" | "any", [str() as selector, inner]:
            return _Quantifier(
                operator == "all",
                _selector(selector, where),
                _statement(inner, f"{where}[2]", depth + 1),
            )
    raise PolicyError(f"statement {where} is not a well-formed {operator!r} statement")


def _selector(text: str, where: str) -> Selector:
    try:
        return parse_selector(text)
    except SelectorError as error:
        raise PolicyError(f"statement {where}: {error}") from None


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """The glob as a regular expression: ``*`` is any run of characters, ``\\*`` a star."""
    parts = re.split(r"(\\\*|\*)", pattern)
    regex = "".join(
        ".*" if part == "*" else re.escape("*") if part == "\\*" else re.escape(part)
        for part in parts
    )
    return re.compile(regex, re.DOTALL)
