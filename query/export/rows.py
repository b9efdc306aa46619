"""The rows of every exported table, derived from one log entry's stored bytes alone.

The exporter and `prov export verify` both call `decode` and `append_rows`, so a verifier
rebuilds exactly what the exporter wrote from the exported envelopes and entry bytes, and
any row changed afterwards no longer matches. Nothing here reads the database; the state
of referenced blobs, which is not in the envelope, is handed in.

Payloads are decoded with a partial schema: only the members the tables flatten, and
without the strict checks of admission, which every stored record has already passed.
That keeps decoding to a few microseconds a record (see bench/export.py); a member the
partial schema does not know is simply not exported, never an error. A replay is one
`replays` row, a context change one `context_changes` row; any other record that is not a
decision is exported whole, as one `other_records` row (in a `prov.export/v1` export, a
context change was one too: `decode(..., fmt=FORMAT_V1)`).

A decision's `dependencies` rows and its `trace_id` and `conversation_id` follow the rules
of the ledger's freshness index (`ledger.indexes.freshness`: `decision_freshness` and
`threads_of`), applied here to the partial payload, so that a report over the export can
check the ledger's stale marks and inconsistencies independently.

Rows never fail on what the log holds, including records stored before admission bounded
their fields (docs/analytics.md, "Values a column cannot hold"): a time outside the years
1 to 9999 in UTC is clamped to that range in its timestamp column, and an integer outside a
column's signed range is null there. The `envelopes` table keeps every value exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from ledger.errors import ProvError
from ledger.indexes.freshness import CONVERSATION_ATTRIBUTES, MAX_THREAD
from ledger.log.entry import from_micros, to_micros
from ledger.records.context_change import CONTEXT_CHANGE_PAYLOAD_TYPE
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.dsse import b64decode
from ledger.records.replay import REPLAY_PAYLOAD_TYPE
from query.export.schema import FORMAT, FORMAT_V1, TABLES


class ExportError(ProvError):
    """A log entry that cannot be exported; the message names the entry."""

    kind = "export-error"
    title = "Log entry cannot be exported"


# --- the partial payload schema -----------------------------------------------------------


class _Envelope(msgspec.Struct, gc=False):
    payloadType: str  # noqa: N815 - the DSSE spec's name
    payload: str


class _Model(msgspec.Struct, gc=False):
    provider: str
    name: str
    version: str


class _Prompt(msgspec.Struct, gc=False):
    template_id: str
    version: str
    messages_blob: str | None = None


class _Cost(msgspec.Struct, gc=False):
    amount: Decimal
    currency: str


class _Usage(msgspec.Struct, gc=False):
    input_tokens: int
    output_tokens: int
    cost: _Cost | None = None
    latency_ms: int | None = None


class _Error(msgspec.Struct, gc=False):
    type: str
    message: str


class _Step(msgspec.Struct, gc=False):
    """Every step kind's members in one Struct; `kind` says which apply."""

    kind: str
    started_at: datetime
    ended_at: datetime
    usage: _Usage | None = None
    error: _Error | None = None
    finish_reason: str | None = None
    name: str | None = None
    call_id: str | None = None
    # An empty Raw marks a member the step left out.
    arguments: msgspec.Raw = msgspec.Raw(b"")
    result: msgspec.Raw = msgspec.Raw(b"")
    source: str | None = None
    approver: str | None = None


class _Output(msgspec.Struct, gc=False):
    decision: msgspec.Raw


class _Policy(msgspec.Struct, gc=False):
    policy_id: str
    version: str
    result: str


class _Delegation(msgspec.Struct, gc=False):
    iss: str


class _Dependency(msgspec.Struct, gc=False):
    key: str
    version: str


class _Freshness(msgspec.Struct, gc=False):
    valid_until: datetime | None = None
    depends_on: list[_Dependency] = []


class _Exposure(msgspec.Struct, gc=False):
    group: str
    amount: Decimal
    unit: str


class _Context(msgspec.Struct, gc=False):
    name: str
    version: str
    blob: str | None = None


class _Links(msgspec.Struct, gc=False):
    trace_id: str | None = None


class _Attributes(msgspec.Struct, gc=False):
    """Only the attributes that name a conversation (`CONVERSATION_ATTRIBUTES`), in the
    ledger's order of preference; any JSON value (a conversation id counts if a string)."""

    gen_ai_conversation_id: Any = msgspec.field(default=None, name="gen_ai.conversation.id")
    conversation_id: Any = None

    def candidates(self) -> tuple[Any, ...]:
        return (self.gen_ai_conversation_id, self.conversation_id)


if tuple(f.encode_name for f in msgspec.structs.fields(_Attributes)) != CONVERSATION_ATTRIBUTES:
    raise RuntimeError("_Attributes must name ledger.indexes.freshness.CONVERSATION_ATTRIBUTES")
# `threads_of` names a conversation `conversation:<id>` in a column of MAX_THREAD characters.
_MAX_CONVERSATION = MAX_THREAD - len("conversation:")


class DecisionPayload(msgspec.Struct, gc=False):
    """The members of a decision payload that the tables flatten."""

    id: str
    tenant: str
    service: str
    decision_type: str
    occurred_at: datetime
    model: _Model
    output: _Output
    subject: str | None = None
    prompt: _Prompt | None = None
    usage: _Usage | None = None
    policy: _Policy | None = None
    delegation: list[_Delegation] = []
    freshness: _Freshness | None = None
    steps: list[_Step] = []
    exposures: list[_Exposure] = []
    context: list[_Context] = []
    links: _Links | None = None
    attributes: _Attributes = msgspec.field(default_factory=_Attributes)


class _ReplayModel(msgspec.Struct, gc=False):
    provider: str
    name: str
    version: str | None = None


class _Divergence(msgspec.Struct, gc=False):
    kind: str
    recorded_step: int


class _FieldChange(msgspec.Struct, gc=False):
    path: str


class _IntDelta(msgspec.Struct, gc=False):
    before: int | None = None
    after: int | None = None


class _MoneyDelta(msgspec.Struct, gc=False):
    before: Decimal | None = None
    after: Decimal | None = None
    currency: str | None = None


class _Diff(msgspec.Struct, gc=False):
    decision: list[_FieldChange] = []
    text_changed: bool = False
    tool_calls: list[msgspec.Raw] = []
    input_tokens: _IntDelta = msgspec.field(default_factory=_IntDelta)
    output_tokens: _IntDelta = msgspec.field(default_factory=_IntDelta)
    cost: _MoneyDelta = msgspec.field(default_factory=_MoneyDelta)
    latency_ms: _IntDelta = msgspec.field(default_factory=_IntDelta)


class ReplayPayload(msgspec.Struct, gc=False):
    """The members of a replay payload that the `replays` table flattens."""

    id: str
    tenant: str
    occurred_at: datetime
    replay_of: str
    replay_of_leaf: str
    mode: str
    verdict: str
    recorded_model: _ReplayModel
    model: _ReplayModel
    batch: str | None = None
    divergence: _Divergence | None = None
    error: _Error | None = None
    output: _Output | None = None
    diff: _Diff = msgspec.field(default_factory=_Diff)


class ContextChangePayload(msgspec.Struct, gc=False):
    """The members of a context-change payload (`ledger.records.context_change`)."""

    id: str
    tenant: str
    service: str
    key: str
    version: str
    changed_at: datetime
    reason: str | None = None


class _Common(msgspec.Struct, gc=False):
    """What every record kind has (principals, revocations, and kinds yet to come)."""

    id: str
    tenant: str
    service: str | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OtherPayload:
    """A record that is neither a decision nor a replay: exported whole, as one
    `other_records` row."""

    payload_type: str
    payload: bytes
    common: _Common


Payload = DecisionPayload | ReplayPayload | ContextChangePayload | OtherPayload

_envelope_decoder = msgspec.json.Decoder(_Envelope)
_decision_decoder = msgspec.json.Decoder(DecisionPayload)
_replay_decoder = msgspec.json.Decoder(ReplayPayload)
_change_decoder = msgspec.json.Decoder(ContextChangePayload)
_common_decoder = msgspec.json.Decoder(_Common)


# --- entries and their rows ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log entry as the export sees it: the envelope, the fields of the entry that
    commits to it, the entry bytes, and the leaf `SHA-256(0x00 || entry_bytes)`."""

    index: int
    integrated_us: int
    tenant: str
    envelope: bytes
    envelope_sha256: bytes
    entry_bytes: bytes
    leaf: bytes


# (tenant, UTC date of occurred_at, or of integration for a record without one)
Partition = tuple[str, date]
Row = tuple[Any, ...]
# Rows per table name, each in the column order of `query.export.schema.TABLES`.
Rows = dict[str, list[Row]]
# The ledger's word on a blob: (status, size, erased_at).
BlobState = tuple[str, int | None, datetime | None]
MISSING: BlobState = ("missing", None, None)


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)
_EARLIEST_US = to_micros(_EARLIEST)
_LATEST_US = to_micros(_LATEST)
_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)


def utc_time(moment: datetime) -> datetime:
    """`moment` in UTC, clamped to the years 1 to 9999 that a timestamp column and Python
    both hold (an offset can carry a stored time a few hours past either end)."""
    micros = to_micros(moment)
    if micros < _EARLIEST_US:
        return _EARLIEST
    if micros > _LATEST_US:
        return _LATEST
    return moment.astimezone(UTC)


def _time(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc_time(moment)


def _int(value: int | None, bounds: tuple[int, int] = _INT64) -> int | None:
    """The value if its integer column holds it, else null."""
    return value if value is not None and bounds[0] <= value <= bounds[1] else None


def new_rows() -> Rows:
    return {name: [] for name in TABLES}


def decode(entry: LogEntry, fmt: str = FORMAT) -> Payload:
    """The record in the entry's envelope, as export format `fmt` flattens it (a context
    change is an `other_records` row in `prov.export/v1`); ExportError if it does not
    decode."""
    try:
        envelope = _envelope_decoder.decode(entry.envelope)
        payload = b64decode(envelope.payload)
        record: Payload
        if envelope.payloadType == DECISION_PAYLOAD_TYPE:
            record = _decision_decoder.decode(payload)
        elif envelope.payloadType == REPLAY_PAYLOAD_TYPE:
            record = _replay_decoder.decode(payload)
        elif envelope.payloadType == CONTEXT_CHANGE_PAYLOAD_TYPE and fmt != FORMAT_V1:
            record = _change_decoder.decode(payload)
        else:
            record = OtherPayload(envelope.payloadType, payload, _common_decoder.decode(payload))
    except (msgspec.DecodeError, ValueError) as error:
        raise ExportError(f"entry {entry.index}: the record does not decode: {error}") from None
    tenant = record.common.tenant if isinstance(record, OtherPayload) else record.tenant
    if tenant != entry.tenant:
        raise ExportError(f"entry {entry.index}: the payload names another tenant than the entry")
    return record


def partition_of(entry: LogEntry, record: Payload) -> Partition:
    if isinstance(record, OtherPayload):
        moment = record.common.occurred_at or from_micros(entry.integrated_us)
    elif isinstance(record, ContextChangePayload):
        moment = record.changed_at
    else:
        moment = record.occurred_at
    return entry.tenant, utc_time(moment).date()


def blob_digests(record: Payload) -> list[str]:
    """The digest of every blob a decision references, in payload order."""
    if not isinstance(record, DecisionPayload):
        return []
    return [pointer_digest[1] for pointer_digest in _blob_refs(record)]


def _blob_refs(decision: DecisionPayload) -> list[tuple[str, str]]:
    refs = [
        (f"/context/{position}/blob", snapshot.blob)
        for position, snapshot in enumerate(decision.context)
        if snapshot.blob
    ]
    if decision.prompt is not None and decision.prompt.messages_blob:
        refs.append(("/prompt/messages_blob", decision.prompt.messages_blob))
    return refs


def append_rows(
    entry: LogEntry, record: Payload, rows: Rows, blob_states: Mapping[str, BlobState]
) -> None:
    """Append the entry's rows to `rows`; a blob absent from `blob_states` is `missing`."""
    rows["envelopes"].append((entry.index, entry.envelope))
    if isinstance(record, OtherPayload):
        common = record.common
        rows["other_records"].append(
            (
                entry.index,
                common.id,
                record.payload_type,
                common.service,
                _time(common.occurred_at),
                from_micros(entry.integrated_us),
                record.payload,
                entry.leaf,
                entry.envelope_sha256,
                entry.entry_bytes,
            )
        )
        return
    if isinstance(record, ReplayPayload):
        _append_replay(entry, record, rows)
        return
    if isinstance(record, ContextChangePayload):
        rows["context_changes"].append(
            (
                entry.index,
                record.id,
                record.service,
                record.key,
                record.version,
                utc_time(record.changed_at),
                from_micros(entry.integrated_us),
                record.reason,
                entry.leaf,
                entry.envelope_sha256,
                entry.entry_bytes,
            )
        )
        return
    _append_decision(entry, record, rows, blob_states)


def dependencies(decision: DecisionPayload) -> list[tuple[str, str, str]]:
    """(key, version, source) of each (key, version) the decision relied on, each once, as
    `ledger.indexes.freshness.decision_freshness` counts them: `depends_on` first, then the
    context snapshots; `source` is `depends_on` or `context`, whichever named it first."""
    found: dict[tuple[str, str], str] = {}
    if decision.freshness is not None:
        for dependency in decision.freshness.depends_on:
            found.setdefault((dependency.key, dependency.version), "depends_on")
    for snapshot in decision.context:
        found.setdefault((snapshot.name, snapshot.version), "context")
    return [(key, version, source) for (key, version), source in found.items()]


def conversation_of(decision: DecisionPayload) -> str | None:
    """The conversation id `ledger.indexes.freshness.threads_of` takes: the first of
    `CONVERSATION_ATTRIBUTES` that is a non-empty string short enough for a thread."""
    for value in decision.attributes.candidates():
        if isinstance(value, str) and value and len(value) <= _MAX_CONVERSATION:
            return value
    return None


def _append_decision(
    entry: LogEntry, d: DecisionPayload, rows: Rows, blob_states: Mapping[str, BlobState]
) -> None:
    index, record_id = entry.index, d.id
    usage, prompt, policy, cost = d.usage, d.prompt, d.policy, _cost(d.usage)
    occurred = utc_time(d.occurred_at)
    rows["decisions"].append(
        (
            index,
            record_id,
            d.service,
            d.decision_type,
            occurred,
            from_micros(entry.integrated_us),
            d.model.provider,
            d.model.name,
            d.model.version,
            prompt and prompt.template_id,
            prompt and prompt.version,
            None if usage is None else _int(usage.input_tokens),
            None if usage is None else _int(usage.output_tokens),
            cost and cost.amount,
            cost and cost.currency,
            None if usage is None else _int(usage.latency_ms),
            bytes(d.output.decision),
            d.subject,
            d.delegation[0].iss if d.delegation else None,
            policy and policy.policy_id,
            policy and policy.version,
            policy and policy.result,
            None if d.freshness is None else _time(d.freshness.valid_until),
            None if d.links is None else d.links.trace_id,
            conversation_of(d),
            entry.leaf,
            entry.envelope_sha256,
            entry.entry_bytes,
        )
    )
    rows["dependencies"].extend(
        (index, record_id, key, version, source, occurred)
        for key, version, source in dependencies(d)
    )
    steps, tool_calls = rows["steps"], rows["tool_calls"]
    for position, step in enumerate(d.steps):
        step_usage, step_cost, error = step.usage, _cost(step.usage), step.error
        started, ended = utc_time(step.started_at), utc_time(step.ended_at)
        steps.append(
            (
                index,
                record_id,
                position,
                step.kind,
                step.name or step.source or step.approver or step.kind,
                started,
                ended,
                None if step_usage is None else _int(step_usage.input_tokens),
                None if step_usage is None else _int(step_usage.output_tokens),
                step_cost and step_cost.amount,
                step_cost and step_cost.currency,
                error and error.type,
                step.finish_reason,
            )
        )
        if step.kind == "tool_call":
            tool_calls.append(
                (
                    index,
                    record_id,
                    position,
                    step.name,
                    step.call_id,
                    started,
                    ended,
                    bytes(step.arguments) or b"{}",
                    bytes(step.result) or None,
                    error and error.type,
                    error and error.message,
                )
            )
    exposures = rows["exposures"]
    for position, exposure in enumerate(d.exposures):
        exposures.append(
            (
                index,
                record_id,
                position,
                occurred,
                exposure.group,
                exposure.amount,
                exposure.unit,
            )
        )
    for pointer, digest in _blob_refs(d):
        rows["blobs"].append((index, record_id, pointer, digest, *blob_states.get(digest, MISSING)))


def _append_replay(entry: LogEntry, r: ReplayPayload, rows: Rows) -> None:
    diff, divergence = r.diff, r.divergence
    rows["replays"].append(
        (
            entry.index,
            r.id,
            r.replay_of,
            bytes.fromhex(r.replay_of_leaf.removeprefix("sha256:")),
            r.batch,
            r.mode,
            r.verdict,
            utc_time(r.occurred_at),
            from_micros(entry.integrated_us),
            r.recorded_model.provider,
            r.recorded_model.name,
            r.recorded_model.version,
            r.model.provider,
            r.model.name,
            r.model.version,
            divergence and divergence.kind,
            None if divergence is None else _int(divergence.recorded_step, _INT32),
            r.error and r.error.type,
            [change.path for change in diff.decision],
            diff.text_changed,
            len(diff.tool_calls),
            _int(diff.input_tokens.before),
            _int(diff.input_tokens.after),
            _int(diff.output_tokens.before),
            _int(diff.output_tokens.after),
            diff.cost.before,
            diff.cost.after,
            diff.cost.currency,
            _int(diff.latency_ms.before),
            _int(diff.latency_ms.after),
            None if r.output is None else bytes(r.output.decision),
            entry.leaf,
            entry.envelope_sha256,
            entry.entry_bytes,
        )
    )


def _cost(usage: _Usage | None) -> _Cost | None:
    return None if usage is None else usage.cost
