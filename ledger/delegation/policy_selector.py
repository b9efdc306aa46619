"""Selectors of the UCAN policy language: the jq-like paths a policy statement applies to.

Per ucan-wg/delegation ("Selectors"), a selector starts with a dot and is made of:

==========================  =================  =====================================
form                        example            selects
==========================  =================  =====================================
identity                    ``.``              the whole value
dotted field                ``.amount``        a map's member (null when absent)
quoted field                ``.["a.b"]``       a map's member by any key
index                       ``[0]``, ``[-1]``  a list's (or bytes') element
slice                       ``[1:3]``, ``[:2]``  a run of a list or of bytes
values                      ``[]``             a list, or a map's values; what follows
                                               applies to each of them
optional                    ``.a?``            null where the segment would fail
==========================  =================  =====================================

Segments resolve left to right and stop at the first that fails, even if a later one is
optional. A failed selection is `MISSING`, which makes its statement false, never an error.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from ledger.errors import ProvError

MISSING: Final = object()  # what a selector that does not resolve gives

_FIELD = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
# [0-9], not \d: an index is ASCII decimal, and \d matches any Unicode decimal digit.
_BRACKET = re.compile(
    r"""\.?\[(?:
        (?P<key>"(?:[^"\\]|\\.)*")
      | (?P<start>-?[0-9]+)?(?P<colon>:)(?P<stop>-?[0-9]+)?
      | (?P<index>-?[0-9]+)
      | (?P<values>)
    )\]""",
    re.VERBOSE,
)
_MAX_INDEX = 2**53 - 1  # the integers UCAN payloads hold exactly


class SelectorError(ProvError, ValueError):
    """Text that is not a selector."""

    kind = "bad-selector"
    title = "Malformed policy selector"


@dataclass(frozen=True, slots=True)
class _Segment:
    kind: str  # "field", "index", "slice" or "values"
    key: str | None = None
    index: int | None = None
    stop: int | None = None
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    segments: tuple[_Segment, ...]

    def select(self, value: Any) -> Any:
        """The selected value, or `MISSING` if the selection fails."""
        return _resolve(value, self.segments)


@functools.lru_cache(maxsize=1024)
def parse_selector(text: str) -> Selector:
    if text == ".":
        return Selector(text, ())
    if not text.startswith("."):
        raise SelectorError(f"a selector starts with '.': {text!r}")
    segments: list[_Segment] = []
    position = 0
    while position < len(text):
        if text.startswith("?", position):
            if not segments:
                raise SelectorError(f"'?' follows no segment in {text!r}")
            last = segments.pop()
            segments.append(_Segment(last.kind, last.key, last.index, last.stop, True))
            # Repeated optionals count as one.
            position = len(text) - len(text[position:].lstrip("?"))
            continue
        if (field := _FIELD.match(text, position)) is not None:
            segments.append(_Segment("field", key=field.group(1)))
            position = field.end()
        elif (bracket := _BRACKET.match(text, position)) is not None:
            segments.append(_bracket(bracket, text))
            position = bracket.end()
        else:
            raise SelectorError(f"cannot read {text[position:]!r} in selector {text!r}")
    return Selector(text, tuple(segments))


def _bracket(found: re.Match[str], text: str) -> _Segment:
    if found.group("key") is not None:
        try:
            key = json.loads(found.group("key"))
        except ValueError:
            raise SelectorError(f"a quoted key in {text!r} is not a JSON string") from None
        return _Segment("field", key=key)
    if found.group("colon") is not None:
        start, stop = found.group("start"), found.group("stop")
        return _Segment(
            "slice",
            index=None if start is None else _integer(start, text),
            stop=None if stop is None else _integer(stop, text),
        )
    if found.group("index") is not None:
        return _Segment("index", index=_integer(found.group("index"), text))
    return _Segment("values")


def _integer(digits: str, text: str) -> int:
    # Bounded before int(), which refuses thousands of digits with a bare ValueError.
    if len(digits.lstrip("-")) > len(str(_MAX_INDEX)) or abs(int(digits)) > _MAX_INDEX:
        raise SelectorError(f"an index in {text[:100]!r} is beyond 2**53 - 1")
    return int(digits)


def _resolve(value: Any, segments: tuple[_Segment, ...]) -> Any:
    for position, segment in enumerate(segments):
        if segment.kind == "values":
            children = _children(value)
            if children is None:
                if not segment.optional:
                    return MISSING
                value = None
                continue
            rest = segments[position + 1 :]
            selected = [_resolve(child, rest) for child in children]
            return MISSING if any(item is MISSING for item in selected) else selected
        step = _step(value, segment)
        if step is MISSING and not segment.optional:
            return MISSING
        value = None if step is MISSING else step
    return value


def _children(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return None


def _step(value: Any, segment: _Segment) -> Any:
    match segment.kind, value:
        case "field", dict():
            return value.get(segment.key)  # an absent member is null, per the spec
        case "index", list() | bytes():
            index = segment.index
            assert index is not None
            return value[index] if -len(value) <= index < len(value) else MISSING
        case "slice", list() | bytes():
            return value[segment.index : segment.stop]
    return MISSING
