"""A plain-language explanation of one decision, for the person it is about.

EU AI Act Art. 86 and GDPR Art. 22 give a person affected by an automated decision the right
to a clear explanation, to human review and to contest it. The explanation says what was
decided and when, what the decision was based on (the request, the information the service
looked up, the rules applied and their reasons, the model's own account in words), whether a
person reviewed it (each human approval step: who, when, with what outcome), what of its
content was erased since, and how to contest it.

It is built from the signed payload, the state of each blob the payload references and the
operator's contest text alone, and from nothing else (no clock, no locale), so the same
inputs always give the same words: `prov verify-subject` rebuilds every explanation of a
subject bundle offline and checks that it says what the signed record says. The page, `prov
subject explain` and the bundle all show one `Explanation`; no JSON is shown: values are
written out as `label: value` lines, and the structured part of the model's answer is left
out of its account (it is the outcome, shown first).

Pure: the client and the offline check import it without the server's dependencies.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

DEFAULT_CONTEST_CONTACT: Final = (
    "Contact the organisation that made this decision and quote its reference. You may ask "
    "for a person to review it, give your point of view and contest it."
)
# A section lists at most this many lines, and a value shows at most this many characters:
# an explanation is for reading, and a record's inputs can be large.
MAX_ITEMS: Final = 60
MAX_VALUE_CHARS: Final = 300
MAX_ACCOUNT_LINES: Final = 40
WIDTH: Final = 88

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
# Reason codes (`amount_above_auto_limit`, `dti_above_0.35`) are read as words where a
# value is a reason (a policy's, a referral's); elsewhere such a value may be an id.
_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9.]+)+")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})")
# The model's account: fenced blocks and tags (`<assessment>`) are markup, not words.
_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][\w.-]{0,40}>")
_CONSTANTS = {True: "yes", False: "no", None: "none"}
_BLOB_WORDS = {
    "present": "held by the ledger",
    "missing": "never stored with the ledger",
    "unreadable": "held, but could not be read",
}


class Item(msgspec.Struct, frozen=True):
    """One line: a label (None for a sentence of its own) and its text."""

    label: str | None
    text: str


class Section(msgspec.Struct, frozen=True):
    key: str  # stable, for pages and tests: outcome, inputs, context, rules, ...
    heading: str
    intro: str | None
    items: list[Item]


class Explanation(msgspec.Struct, frozen=True):
    record_id: str
    title: str
    summary: str
    sections: list[Section]


def explain(
    record_id: str,
    decision: Mapping[str, Any],
    blobs: Sequence[Mapping[str, Any]],
    contest: str,
) -> Explanation:
    """The explanation of decision `record_id` (its signed payload `decision`), given the
    state of each blob it references (`pointer`, `status`: present, erased, missing or
    unreadable; `erased_at` and `erasure_index` when erased) and the contest text."""
    model = decision.get("model") or {}
    summary = (
        f"On {when(decision['occurred_at'])}, the service “{decision['service']}” made a "
        f"decision of the kind “{decision['decision_type']}” with an automated system (the "
        f"model {model.get('name', '?')} of {model.get('provider', '?')}, version "
        f"{model.get('version', '?')})."
    )
    return Explanation(
        record_id=record_id,
        title=f"About decision {record_id}",
        summary=summary,
        sections=[
            _outcome(decision),
            _inputs(decision),
            _context(decision),
            _rules(decision),
            _account(decision),
            _review(decision),
            _data(decision, blobs),
            Section(
                "contest",
                "How to contest this decision",
                contest,
                [Item("Reference to quote", record_id)],
            ),
        ],
    )


def explanation_text(explanation: Explanation) -> str:
    """The explanation as plain text, for a terminal, a letter or the subject bundle."""
    wrap = textwrap.TextWrapper(width=WIDTH, break_long_words=True, break_on_hyphens=False)
    lines = [explanation.title, "=" * len(explanation.title), ""]
    lines += wrap.wrap(explanation.summary)
    for section in explanation.sections:
        lines += ["", section.heading, "-" * len(section.heading)]
        if section.intro:
            lines += wrap.wrap(section.intro)
        for item in section.items:
            text = item.text if item.label is None else f"{item.label}: {item.text}"
            lines += textwrap.wrap(
                text, WIDTH, initial_indent="  - ", subsequent_indent="    ",
                break_on_hyphens=False,
            ) or ["  -"]  # fmt: skip
    return "\n".join(lines) + "\n"


def when(text: str) -> str:
    """An RFC 3339 time as people write it, in UTC: `2 June 2025 at 09:00:03 UTC`."""
    moment = datetime.fromisoformat(text).astimezone(UTC)
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year} at {moment:%H:%M:%S} UTC"


def words(text: str) -> str:
    """A key or a code as words: `term_months` as `term months`."""
    return text.replace("_", " ").strip() or text


def _outcome(decision: Mapping[str, Any]) -> Section:
    items = _capped(_lines((decision.get("output") or {}).get("decision"), ""))
    intro = None if items else "The record states no outcome."
    return Section("outcome", "What was decided", intro, items)


def _inputs(decision: Mapping[str, Any]) -> Section:
    items = _capped(_lines(decision.get("inputs"), ""))
    intro = None if items else "The record holds no request."
    return Section("inputs", "What was asked", intro, items)


def _context(decision: Mapping[str, Any]) -> Section:
    snapshots = decision.get("context") or []
    items = [
        Item(
            str(snapshot.get("name")),
            f"version {snapshot.get('version')}, looked up on {when(snapshot['fetched_at'])}"
            + ("" if snapshot.get("blob") is None else " (kept apart from the record)"),
        )
        for snapshot in snapshots
    ]
    intro = (
        "The decision relied on this information, as it stood when the service looked it up:"
        if items
        else "The record names no other information the service looked up."
    )
    return Section("context", "Information the decision relied on", intro, _capped(items))


def _rules(decision: Mapping[str, Any]) -> Section:
    policy = decision.get("policy")
    if not policy:
        return Section("rules", "Rules applied", "The record names no rules that were applied.", [])
    intro = (
        f"The rules “{policy['policy_id']}” (version {policy['version']}) gave the result "
        f"“{_scalar(policy['result'])}”."
    )
    reasons = [Item(None, _scalar(reason, codes=True)) for reason in policy.get("reasons") or []]
    if reasons:
        intro += " Their reasons:"
    return Section("rules", "Rules applied", intro, _capped(reasons))


def _account(decision: Mapping[str, Any]) -> Section:
    text = (decision.get("output") or {}).get("text")
    said = stated(text) if isinstance(text, str) else []
    if said:
        intro = "What the model said about this case, in its own words:"
    elif text:
        intro = "The model's answer held only the decision shown above."
    else:
        intro = "The record holds no account in words from the model."
    return Section("reasoning", "What the model said", intro, [Item(None, line) for line in said])


def stated(text: str) -> list[str]:
    """The model's words in `text`: its lines without markup, fenced blocks, or the JSON
    it ended with (a line is cut at its first `{`, and one that starts with `[` is left
    out); at most `MAX_ACCOUNT_LINES` lines."""
    found = []
    for line in _FENCED.sub("\n", text).splitlines():
        kept = _TAG.sub("", line).split("{", 1)[0].strip()
        if kept and not kept.startswith("["):
            found.append(_clip(kept))
    return found[:MAX_ACCOUNT_LINES]


def _review(decision: Mapping[str, Any]) -> Section:
    reviews = [step for step in decision.get("steps") or [] if step.get("kind") == "human_approval"]
    if not reviews:
        return Section(
            "review",
            "Whether a person reviewed it",
            "The record shows no review by a person: the decision was made by automated "
            "means alone.",
            [],
        )
    items: list[Item] = []
    for number, step in enumerate(reviews, start=1):
        label = "Reviewer" if len(reviews) == 1 else f"Reviewer {number}"
        items.append(Item(label, _scalar(step.get("approver"))))
        items.append(
            Item("Reviewed", f"from {when(step['started_at'])} to {when(step['ended_at'])}")
        )
        items += _lines(step.get("inputs"), "Asked to review", codes=True)
        items += _lines(step.get("outputs"), "Outcome of the review", codes=True)
        if step.get("error"):
            error = step["error"]
            items.append(
                Item("The review ended in an error", f"{error['type']}: {error['message']}")
            )
    intro = (
        "A person reviewed this decision before it took effect:"
        if len(reviews) == 1
        else f"{len(reviews)} people reviewed this decision before it took effect:"
    )
    return Section("review", "Whether a person reviewed it", intro, _capped(items))


def _data(decision: Mapping[str, Any], blobs: Sequence[Mapping[str, Any]]) -> Section:
    heading = "Your data in this record"
    if not blobs:
        return Section(
            "data",
            heading,
            "All the information this decision used is written in its signed record; none "
            "of it is kept apart.",
            [],
        )
    items = [Item(_blob_name(decision, blob["pointer"]), _blob_state(blob)) for blob in blobs]
    erased = sum(blob["status"] == "erased" for blob in blobs)
    intro = (
        "Some content this decision used is kept apart from its record, so that it can be "
        "erased; the record keeps only a fingerprint of it."
    )
    if erased:
        intro += (
            f" {erased} of {len(blobs)} such items have been erased since; the record of the "
            "decision remains and can still be checked."
        )
    return Section("data", heading, intro, _capped(items))


def _blob_name(decision: Mapping[str, Any], pointer: str) -> str:
    parts = pointer.strip("/").split("/")
    if parts[0] == "context" and len(parts) == 3 and parts[1].isdigit():
        context = decision.get("context") or []
        if int(parts[1]) < len(context):
            return f"The information “{context[int(parts[1])].get('name')}”"
    if parts[0] == "prompt":
        return "The messages sent to the model"
    return f"The content at {pointer}"


def _blob_state(blob: Mapping[str, Any]) -> str:
    if blob["status"] != "erased":
        return _BLOB_WORDS.get(blob["status"], str(blob["status"]))
    erased_at = blob.get("erased_at")
    text = "erased" if erased_at is None else f"erased on {when(erased_at)}"
    index = blob.get("erasure_index")
    return text if index is None else f"{text} (erasure record {index} in the ledger)"


def _lines(value: Any, label: str, *, codes: bool = False) -> list[Item]:
    """`value` as `label / key: text` lines, nested objects and lists flattened; with
    `codes`, its codes read as words."""
    return list(_flatten(value, label, codes))


def _flatten(value: Any, label: str, codes: bool) -> Iterator[Item]:
    if isinstance(value, dict):
        if not value and label:
            yield Item(label, "none")
        for key, item in value.items():
            yield from _flatten(item, _join(label, words(str(key))), codes)
    elif isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        for number, item in enumerate(value, start=1):
            yield from _flatten(item, _join(label, str(number)), codes)
    elif isinstance(value, list):
        text = ", ".join(_scalar(item, codes=codes) for item in value)
        yield Item(label or "value", text or "none")
    elif value is not None or label:
        yield Item(label or "value", _scalar(value, codes=codes))


def _join(label: str, key: str) -> str:
    return f"{label} / {key}" if label else key


def _scalar(value: Any, *, codes: bool = False) -> str:
    if value is None or isinstance(value, bool):
        return _CONSTANTS[value]
    if not isinstance(value, str):
        return _clip(str(value))
    if codes and _CODE.fullmatch(value):
        return words(value)
    if _TIME.fullmatch(value):
        try:
            return when(value)
        except ValueError:  # a date that does not exist (2025-02-30)
            pass
    return _clip(value)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _capped(items: list[Item]) -> list[Item]:
    if len(items) <= MAX_ITEMS:
        return items
    return [*items[: MAX_ITEMS - 1], Item(None, f"… and {len(items) - MAX_ITEMS + 1} more")]
