"""The replay record: what re-running one recorded decision produced, and how it differs.

A replay is a JSON payload in a DSSE envelope whose payloadType is `REPLAY_PAYLOAD_TYPE`,
signed by the ledger's replay key (registered in the decision's tenant under the service
`REPLAY_SERVICE`) and logged like any record, so a replay is as tamper-evident as the
decision it re-ran. `replay_of` names the decision by id and `replay_of_leaf` by the leaf
hash of its entry, so a replay cannot be moved onto another record with the same id.

Three modes (see docs/replay.md):
- ``deterministic``: the recorded model outputs and tool results are fed back; the run
  must reproduce the record.
- ``pinned``: the recorded model version is called again; tool results come from the
  record (by call id), or from a live handler registered explicitly.
- ``counterfactual``: another model, provider or set of parameters is called.

The verdict compares the replayed run with the record:
- ``identical``: same decision fields, same text, same tool calls;
- ``equivalent``: same decision fields, different text;
- ``changed``: different decision fields (the run itself followed the record);
- ``diverged``: the run left the record (another tool, other arguments, or it ended
  earlier or later); `divergence` says where;
- ``failed``: the replay could not run to the end (a provider failed after its retries,
  a referenced blob is gone); `error` says why.

Paths in `FieldChange` are RFC 6901 JSON pointers into the decision output. Money is a
`Decimal`, written as a JSON string, as in decisions. Unknown members are ignored.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from ledger.records._pointer import decode_payload
from ledger.records.decision import (
    Count,
    Digest,
    Id,
    Label,
    Output,
    Slug,
    StepError,
    Timestamp,
    Usage,
)

REPLAY_PAYLOAD_TYPE = "application/vnd.prov.replay.v1+json"
# The service under which each tenant's replay records are signed by the ledger's replay key.
REPLAY_SERVICE: Final = "prov-replay"
# Every keyid of the ledger's record key starts so, and no other key's may (the registry
# refuses it), so that the keyid alone tells a ledger-made signature apart offline.
RECORD_KEYID_PREFIX: Final = REPLAY_SERVICE + ":"
SCHEMA_VERSION = 1

Mode = Literal["deterministic", "pinned", "counterfactual"]
MODES: tuple[Mode, ...] = ("deterministic", "pinned", "counterfactual")
Verdict = Literal["identical", "equivalent", "changed", "diverged", "failed"]
VERDICTS: tuple[Verdict, ...] = ("identical", "equivalent", "changed", "diverged", "failed")
DivergenceKind = Literal["other_tool", "other_arguments", "ended_early", "ended_late"]
# Where a replayed tool result came from: the record (by call id), or a live handler.
ToolSource = Literal["recorded", "live"]


class _Struct(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class ModelRef(_Struct, kw_only=True):
    """A model as the replay asked for it, with the parameters actually sent."""

    provider: Label
    name: Label
    version: Label | None = None
    # temperature, top_p, top_k, seed, max_tokens, stop_sequences: only those sent.
    parameters: dict[str, Any] = {}


class ReplayedToolCallRequest(_Struct, kw_only=True):
    """A tool call the replayed model asked for."""

    call_id: Label
    name: Label
    arguments: dict[str, Any] = {}


class ReplayedLlmCall(_Struct, tag="llm_call", tag_field="kind", kw_only=True):
    """One model call of the replayed run."""

    # The index in the decision's `steps` of the recorded LLM call this one replays; None
    # when the replayed run made more model calls than the record.
    recorded_step: Annotated[int, Meta(ge=0)] | None = None
    text: str = ""
    tool_calls: list[ReplayedToolCallRequest] = []
    finish_reason: str | None = None
    input_tokens: Count = 0
    output_tokens: Count = 0
    cost: Decimal | None = None
    latency_ms: Count = 0
    response_id: str | None = None
    # What the server said it ran (a dated snapshot, a system fingerprint).
    model_version: str | None = None
    fingerprint: str | None = None


class ReplayedToolCall(_Struct, tag="tool_call", tag_field="kind", kw_only=True):
    """One tool call of the replayed run and the result fed back to the model."""

    recorded_step: Annotated[int, Meta(ge=0)] | None = None
    call_id: Label
    name: Label
    arguments: dict[str, Any] = {}
    result: Any = None
    error: StepError | None = None
    source: ToolSource = "recorded"


ReplayedStep = ReplayedLlmCall | ReplayedToolCall


class Divergence(_Struct, kw_only=True):
    """The first point where the replayed run left the recorded one."""

    kind: DivergenceKind
    # The index in the decision's `steps` where the record and the replay part ways (for
    # `ended_late`, the number of recorded steps), and the index in the replay's `steps`.
    recorded_step: Annotated[int, Meta(ge=0)]
    replayed_step: Annotated[int, Meta(ge=0)]
    # What the record had there and what the replay did instead ({name, arguments}).
    expected: Any = None
    actual: Any = None
    detail: str


class FieldChange(_Struct, kw_only=True):
    """One decision field that differs: `before` is the record's, `after` the replay's."""

    path: str  # RFC 6901 pointer into the decision output, "" for the whole value
    change: Literal["added", "removed", "changed"]
    before: Any = None
    after: Any = None


class ToolCallChange(_Struct, kw_only=True):
    """A tool call that differs, by position in the run's sequence of tool calls."""

    position: Annotated[int, Meta(ge=0)]
    change: Literal["added", "removed", "name", "arguments"]
    before: ReplayedToolCallRequest | None = None
    after: ReplayedToolCallRequest | None = None


# Frozen, so that one instance can be every Diff's default.
class IntDelta(msgspec.Struct, omit_defaults=True, frozen=True):
    before: int | None = None
    after: int | None = None


class MoneyDelta(msgspec.Struct, omit_defaults=True, frozen=True):
    before: Decimal | None = None
    after: Decimal | None = None
    currency: str | None = None


class Diff(_Struct):
    """The replay against the record: decision fields, text, tool calls, usage."""

    decision: list[FieldChange] = []
    # No decision could be derived from the replay's final text, so the decision was
    # compared on the text alone (`decision` is then empty).
    text_only: bool = False
    text_changed: bool = False
    text_before: str | None = None
    text_after: str | None = None
    tool_calls: list[ToolCallChange] = []
    input_tokens: IntDelta = IntDelta()
    output_tokens: IntDelta = IntDelta()
    cost: MoneyDelta = MoneyDelta()
    latency_ms: IntDelta = IntDelta()


class ReplayRecord(_Struct, omit_defaults=False, kw_only=True):
    """One replay of one decision, as the ledger signs and logs it."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id
    tenant: Slug
    service: Literal["prov-replay"]  # REPLAY_SERVICE
    occurred_at: Timestamp  # when the replay ran
    replay_of: Id  # the decision's id, in the same tenant
    replay_of_leaf: Digest  # "sha256:" + the hex leaf hash of the decision's entry
    batch: Id | None = None  # the batch (shadow evaluation) this replay belongs to
    mode: Mode
    recorded_model: ModelRef
    model: ModelRef  # what the replay called (for deterministic, the recorded model)
    verdict: Verdict
    divergence: Divergence | None = None
    error: StepError | None = None
    steps: list[ReplayedStep] = []
    output: Output | None = None
    usage: Usage | None = None
    diff: Diff = msgspec.field(default_factory=Diff)

    def __post_init__(self) -> None:
        if (self.verdict == "diverged") != (self.divergence is not None):
            raise ValueError("`divergence` is set exactly when the verdict is `diverged`")
        if (self.verdict == "failed") != (self.error is not None):
            raise ValueError("`error` is set exactly when the verdict is `failed`")


_decoder = msgspec.json.Decoder(ReplayRecord)
_encoder = msgspec.json.Encoder()


def decode_replay(data: bytes) -> ReplayRecord:
    """Decode and check a replay payload; `InvalidPayload` names the member at fault."""
    return decode_payload(_decoder, data)


def encode_replay(record: ReplayRecord) -> bytes:
    return _encoder.encode(record)


def leaf_reference(leaf: bytes) -> str:
    """How a replay names its decision's entry: `sha256:` and the leaf hash in hex."""
    return "sha256:" + leaf.hex()
