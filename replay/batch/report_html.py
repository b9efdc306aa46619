"""The shadow-evaluation report as one self-contained HTML page.

The page carries its own stylesheet and no JavaScript, so it can be mailed, attached to a
ticket or opened from disk years later. It shows the verdict bar and tables of the report
(`replay.batch.shadow_report`), a list of every replay, and a section per replay with its diff
that the list links to by anchor.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from replay.batch.shadow_report import ReplayLine, ShadowReport

TEMPLATES_DIR = Path(__file__).with_name("templates")
TEMPLATE = "shadow_report.html"
# How many changed fields the replay list names before "and N more".
_LISTED_FIELDS = 3


def percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def number(value: int | float | Decimal | None) -> str:
    """Counts with thousands separators, other floats to two places, money as it is."""
    if value is None:
        return "—"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def signed(value: int | float | Decimal | None) -> str:
    """A delta with its sign: `+12`, `-3.50`, `0`."""
    if value is None:
        return "—"
    text = number(value)
    return text if text.startswith("-") or value == 0 else "+" + text


def pair(delta: Any) -> str:
    """An `IntDelta` or `MoneyDelta` as `record → replay`."""
    return f"{number(delta.before)} → {number(delta.after)}"


def compact_json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def summary(line: ReplayLine) -> str:
    """What changed in one replay, in a few words, for the list."""
    if line.error is not None:
        return f"{line.error.type}: {line.error.message}"
    parts = []
    if line.divergence is not None:
        parts.append(f"{line.divergence.kind} at step {line.divergence.recorded_step}")
    if line.changes:
        paths = [change.path or "(whole decision)" for change in line.changes]
        more = len(paths) - _LISTED_FIELDS
        parts.append(", ".join(paths[:_LISTED_FIELDS]) + (f" and {more} more" if more > 0 else ""))
    elif line.text_only:
        parts.append("no decision in the replayed text")
    elif line.text_changed:
        parts.append("text only")
    return "; ".join(parts) or "—"


def environment() -> Environment:
    """Autoescaping is on: decision fields and model text are free text from records."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters |= {
        "percent": percent,
        "number": number,
        "signed": signed,
        "pair": pair,
        "compact_json": compact_json,
        "summary": summary,
    }
    return env


_environment = environment()


def render_report(report: ShadowReport) -> str:
    return _environment.get_template(TEMPLATE).render(report=report)


def write_report(report: ShadowReport, path: Path) -> Path:
    path.write_text(render_report(report), encoding="utf-8")
    return path
