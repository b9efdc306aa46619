"""What the auditor pages' templates need beyond the report itself: the Jinja environment,
the badge tone of each status word, JSON and time formatting, and the step timeline's
geometry.

The templates show the report's own status words; this module only decides their colour.
Only `valid` (a check that passed) and `present` (a blob whose bytes are held) are drawn
as a pass, so a check that was not made, or could not be, never looks like one. The two
attestation levels each have a tone of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from ledger.log.entry import rfc3339
from query.audit.freshness_format import describe_reason

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")

# The status words of a why-report, by how an auditor should read them (see query/audit/why.py
# and query/audit/checks.py); any word not listed is drawn as a failure.
_TONES = {
    "valid": "pass",
    "present": "pass",
    "none": "neutral",
    "recorded": "neutral",
    "no-expiry": "neutral",
    "not-checked": "warn",
    "not-yet-checkpointed": "warn",
    "not-yet-witnessed": "warn",
    "expired-since": "warn",
    "erased": "warn",
    "missing": "warn",
    "fresh": "pass",
    "unknown": "neutral",
    "stale": "warn",
    "registered": "pass",
    "registered-as-other": "warn",
    "unregistered": "warn",
    # How a decision is attested is a level, not a check: neither is drawn as a pass, and
    # each has its own look, so that a decision the ledger built from spans never passes
    # for one its producer signed (`query.audit.attestation`).
    "producer-signed": "signed",
    "ledger-attested": "attested",
}
MARKS = {"pass": "✔", "neutral": "·", "warn": "!", "fail": "✘", "signed": "✎", "attested": "◆"}
# The narrowest bar, in percent of the timeline, so that a 1 ms step stays visible next
# to a human approval that took minutes.
_MIN_BAR_PERCENT = 0.6


def tone(status: str) -> str:
    return _TONES.get(status, "fail")


def pretty_json(value: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def compact_json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def milliseconds(value: float) -> str:
    """4708.0 as `4,708`, 0.25 as `0.25`: whole milliseconds read best without decimals."""
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def unix_time(seconds: int) -> str:
    """A UCAN `exp` (seconds since the epoch) as the RFC 3339 time the ledger prints."""
    return rfc3339(seconds * 1_000_000)


def checkpoint_size(note: str) -> int:
    """The tree size a C2SP checkpoint note commits to: its second line."""
    return int(note.splitlines()[1])


def timeline_bars(timeline: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Where each step's bar starts and how wide it is, in percent of the span from the
    earliest start (the decision, or a step before it) to the last step's end."""
    start = min([0.0, *(step["offset_ms"] for step in timeline)])
    end = max([0.0, *(step["offset_ms"] + step["duration_ms"] for step in timeline)])
    span = (end - start) or 1.0
    bars = []
    for step in timeline:
        width = max(step["duration_ms"] / span * 100, _MIN_BAR_PERCENT)
        left = min((step["offset_ms"] - start) / span * 100, 100 - width)
        bars.append({"left": f"{left:.3f}%", "width": f"{width:.3f}%"})
    return bars


def environment() -> Environment:
    """Autoescaping on for every template, whatever its name: every value shown comes from
    a signed record or the database, and a record's fields are the service's free text.
    Undefined names fail loudly, so that a template never renders a missing field as
    empty and passes it off as absent."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters |= {
        "tone": tone,
        "pretty_json": pretty_json,
        "compact_json": compact_json,
        "ms": milliseconds,
        "unix_time": unix_time,
        "freshness_reason": describe_reason,
    }
    env.globals["marks"] = MARKS
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment()))
