"""Reading members of JSON whose shape someone else decides (a provider's answer, a span's
attributes): each reader answers the value when it has the type asked for, else None, so a
member of the wrong type is ignored rather than trusted or raised on."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def integer(value: Any) -> int | None:
    # A bool is an int to isinstance, and never a count.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
