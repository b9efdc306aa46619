"""Deriving a structured decision from a model's text (shared by replay and the mappers
that build decisions from recorded calls).

A model that decides writes its decision as JSON somewhere in its answer. The first of
these that holds a JSON object is the decision:

1. the whole text (surrounding whitespace aside) is a JSON object;
2. a fenced block marked ``json`` (```` ```json ... ``` ````) holds one, the first
   that does;
3. the first balanced ``{...}`` in the text that parses as a JSON object.

None is returned when there is none: the replay then compares the decision on the text
alone. Model text is untrusted input, so the search in step 3 tries a bounded number of
opening braces; text with more brace soup than that before its JSON is a text-only answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

# How many opening braces step 3 tries before giving up; each try may scan to the end.
MAX_CANDIDATES = 64

_FENCE = re.compile(r"```json[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)
_OBJECT = msgspec.json.Decoder()


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; a decision holding them would not encode again.
    raise ValueError(f"{name} is not JSON")


_SCANNER = json.JSONDecoder(parse_constant=_reject_constant)


def _whole_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = _OBJECT.decode(stripped)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def _first_balanced_object(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    tries = 0
    while start != -1 and tries < MAX_CANDIDATES:
        tries += 1
        try:
            value, _ = _SCANNER.raw_decode(text, start)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def decision_from_text(text: str) -> dict[str, Any] | None:
    """The decision a model's answer states, or None when it states none."""
    if "{" not in text:
        return None
    found = _whole_object(text)
    if found is not None:
        return found
    for fenced in _FENCE.finditer(text):
        found = _whole_object(fenced.group(1))
        if found is not None:
            return found
    return _first_balanced_object(text)
