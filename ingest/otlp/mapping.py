"""A trace's spans to the decisions they record (docs/otlp.md, "Mapping").

A decision is headed by a span that carries ``prov.decision_type``, or, in a trace with no
such span, by the trace's root. Its steps are the head's descendants (not those under
another head), read by `ingest.otlp.conventions` and put in order by
`ingest.calls.assemble_decision`. A trace whose root never came is closed after the grace
period as one decision headed by its earliest span whose parent is missing, marked
incomplete.

Attributes the mapping reads from the head: ``prov.decision_type``, ``prov.decision_id``,
``prov.subject`` (else ``enduser.id``), ``prov.inputs`` and ``prov.output`` (JSON objects;
else OpenInference's ``input.value`` / ``output.value`` when they are JSON objects). Its
other attributes, and every span that is not a model call, tool run or retrieval, are kept
under ``attributes["otlp"]``, so nothing the producer said is lost.

The mapping is a pure function of the spans: the same spans give the same bytes, so a
trace assembled twice (after a crash, or by two workers) is one record, not two.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from ingest.calls import assemble_decision
from ingest.calls.observed import ModelCall, RetrievalRun, ToolRun
from ingest.otlp.conventions import (
    at,
    decoded,
    kind_of,
    model_call,
    retrieval_run,
    tool_run,
)
from ingest.otlp.spans import Span, SpanEvent
from ledger.records.decision import NOT_REPLAYABLE_ATTRIBUTE, Decision, Links, Output

DECISION_TYPE_ATTRIBUTE = "prov.decision_type"
_DECISION_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,255}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# Read into the decision's own members, so not repeated under attributes.
_READ = {
    DECISION_TYPE_ATTRIBUTE,
    "prov.decision_id",
    "prov.subject",
    "prov.inputs",
    "prov.output",
}
_SERVICE_FALLBACK = "otlp"
CONVERSATION = "gen_ai.conversation.id"


def decision_id(span: Span) -> str:
    """The id of the decision `span` heads: ``prov.decision_id`` when it is a valid id,
    else ``otlp-<trace id>-<span id>``."""
    claimed = span.attributes.get("prov.decision_id")
    if isinstance(claimed, str) and _ID.match(claimed):
        return claimed
    return f"otlp-{span.trace_id}-{span.span_id}"


def service_slug(name: str | None) -> str:
    """A resource's ``service.name`` as the record's service slug."""
    if not name:
        return _SERVICE_FALLBACK
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")[:63]
    return slug if _SLUG.match(slug) else _SERVICE_FALLBACK


def decision_type(head: Span) -> str:
    """``prov.decision_type`` if valid, the head's name if it is one, else
    ``otlp.<operation or name>``."""
    for claimed in (head.attributes.get(DECISION_TYPE_ATTRIBUTE), head.name):
        if isinstance(claimed, str) and _DECISION_TYPE.match(claimed):
            return claimed
    operation = head.attributes.get("gen_ai.operation.name")
    word = operation if isinstance(operation, str) else head.name
    segment = re.sub(r"[^a-z0-9_]+", "_", word.lower()).strip("_")[:100]
    if not segment or not segment[0].isalpha():
        segment = "span_" + segment if segment else "span"
    return f"otlp.{segment}"


def heads(spans: Sequence[Span], *, closing: bool) -> tuple[list[Span], bool]:
    """The spans that head decisions, and whether they stand in for a root that never
    came: when `closing` such a trace, its earliest span whose parent is missing."""
    marked = [span for span in spans if DECISION_TYPE_ATTRIBUTE in span.attributes]
    if marked:
        return marked, False
    roots = [span for span in spans if span.parent_span_id is None]
    if roots or not closing:
        return roots, False
    present = {span.span_id for span in spans}
    orphans = [span for span in spans if span.parent_span_id not in present]
    return [min(orphans, key=lambda span: (span.start_ns, span.span_id))], True


def _members(
    tops: Sequence[Span], children: Mapping[str | None, Sequence[Span]], others: set[str]
) -> list[Span]:
    """`tops` and their descendants, stopping at the heads in `others`."""
    found: list[Span] = []
    queue = list(tops)
    while queue:
        span = queue.pop()
        found.append(span)
        queue += [child for child in children.get(span.span_id, []) if child.span_id not in others]
    return sorted(found, key=lambda span: (span.start_ns, span.span_id))


def _kept(span: Span) -> dict[str, Any]:
    return {
        "name": span.name,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "start": at(span.start_ns).isoformat(),
        "end": at(span.end_ns).isoformat(),
        "attributes": span.attributes,
        **({"events": [msgspec.to_builtins(e) for e in span.events]} if span.events else {}),
    }


def _object(value: Any) -> dict[str, Any] | None:
    value = decoded(value)
    return value if isinstance(value, dict) else None


def build_decision(
    tenant: str,
    head: Span,
    members: Sequence[Span],
    events: Mapping[str, Sequence[SpanEvent]],
    *,
    incomplete: bool = False,
    service: str | None = None,
) -> Decision:
    """The decision `head` records, from its `members` (head included) and the events
    logged for them; `service` overrides the one the spans' resource names (a collector
    signs for its own service only)."""
    calls: list[ModelCall] = []
    tools: list[ToolRun] = []
    retrievals: list[RetrievalRun] = []
    other: list[dict[str, Any]] = []
    for span in members:
        kind = kind_of(span)
        if kind == "model":
            calls.append(model_call(span, [*span.events, *events.get(span.span_id, ())]))
        elif kind == "tool":
            tools.append(tool_run(span))
        elif kind == "retrieval":
            retrievals.append(retrieval_run(span))
        elif span is not head:
            other.append(_kept(span))
    type_name = decision_type(head)
    assembled = assemble_decision(calls, tools, retrievals, template_id=type_name)
    attrs = head.attributes
    kept = {key: value for key, value in attrs.items() if key not in _READ}
    source: dict[str, Any] = {
        "trace_id": head.trace_id,
        "span_id": head.span_id,
        "name": head.name,
        "service": head.service,
        "scope": head.scope,
        "attributes": kept,
    }
    if other:
        source["spans"] = other
    conversation = next(
        (
            span.attributes[CONVERSATION]
            for span in (head, *members)
            if isinstance(span.attributes.get(CONVERSATION), str)
        ),
        None,
    )
    if conversation is not None:
        # The thread the decision belongs to, even when only a model span names it.
        source["conversation_id"] = conversation
    if incomplete:
        source["incomplete"] = True
    attributes: dict[str, Any] = {"otlp": source}
    if assembled.not_replayable is not None:
        attributes[NOT_REPLAYABLE_ATTRIBUTE] = assembled.not_replayable
    subject = attrs.get("prov.subject", attrs.get("enduser.id"))
    if not isinstance(subject, str) or not 0 < len(subject) <= 256:
        subject = None
    return Decision(
        id=decision_id(head),
        tenant=tenant,
        service=service or service_slug(head.service),
        decision_type=type_name,
        occurred_at=at(head.end_ns),
        subject=subject,
        inputs=_object(attrs.get("prov.inputs")) or _object(attrs.get("input.value")) or {},
        prompt=assembled.prompt,
        model=assembled.model,
        steps=assembled.steps,
        output=Output(
            decision=_object(attrs.get("prov.output"))
            or _object(attrs.get("output.value"))
            or assembled.decision,
            text=assembled.text,
            finish_reason=assembled.finish_reason,
        ),
        usage=assembled.usage,
        links=Links(trace_id=head.trace_id, span_id=head.span_id),
        attributes=attributes,
    )


def decisions_of(
    tenant: str,
    spans: Iterable[Span],
    events: Mapping[str, Sequence[SpanEvent]],
    *,
    closing: bool = False,
    service: str | None = None,
) -> list[Decision]:
    """Every decision one trace's spans record; `closing` closes a trace whose root never
    came (its decision is marked incomplete); `service` as for `build_decision`."""
    ordered = sorted(spans, key=lambda span: (span.start_ns, span.span_id))
    found, rootless = heads(ordered, closing=closing)
    ids = {head.span_id for head in found}
    children: dict[str | None, list[Span]] = {}
    for span in ordered:
        children.setdefault(span.parent_span_id, []).append(span)
    # When the root never came, its decision holds every span whose parent is missing.
    present = {span.span_id for span in ordered}
    orphans = [span for span in ordered if span.parent_span_id not in present]
    decisions = []
    for head in found:
        tops = orphans if rootless else [head]
        members = _members(tops, children, ids - {head.span_id})
        decisions.append(
            build_decision(tenant, head, members, events, incomplete=rootless, service=service)
        )
    return decisions
