"""The decision payload: what a service records about one AI decision.

A decision is the JSON payload of a DSSE envelope whose payloadType is
`DECISION_PAYLOAD_TYPE`. The Structs below are its schema; `decode_decision` checks bytes
against it and `encode_decision` writes it. Decoding is strict: wrong types, missing required
members and values outside their constraints are `InvalidPayload` errors that carry an
RFC 6901 pointer to the member at fault. Members the schema does not know are ignored, or,
with ``keep_unknown=True``, kept and written back by `encode_decision`, so a record passes
unchanged through code older than its producer (as python-tuf does with its metadata).

Versioning: new optional members are added with defaults and do not change
`schema_version`, so older records still decode. `schema_version` is raised only when the
meaning of an existing member changes; a reader refuses versions newer than it knows, and
the payloadType's ``v1`` changes only for a break of the whole format.

Constraints chosen here:
- `id`: 1 to 256 characters, ASCII letters, digits and ``._:@-``, starting with a letter
  or digit, so that it can stand in a URL path segment or a command line unquoted.
- `tenant`, `service`: ``^[a-z0-9][a-z0-9._-]{0,62}$``, a DNS-label-like slug.
- `decision_type`: dotted lowercase segments, at least two (``order.route``).
- Every timestamp is RFC 3339 with an offset; a naive time is an error.
- Digests and blob references are ``sha256:`` and 64 lowercase hex digits.
- Money (`Cost.amount`, `Exposure.amount`) is a finite `Decimal`, never a float. It is
  written as a JSON string; a JSON number is read exactly from its text.

Names follow the OpenTelemetry GenAI semantic conventions where they exist:

==========================================  ===============================================
this schema                                 OpenTelemetry GenAI
==========================================  ===============================================
``model.provider``                          ``gen_ai.provider.name``
``model.name``                              ``gen_ai.request.model``
``model.version``                           ``gen_ai.response.model``
``model.temperature`` … ``stop_sequences``  ``gen_ai.request.{temperature, top_p, top_k,
                                            seed, max_tokens, stop_sequences}``
``model.tools``                             tool definitions offered (``gen_ai.tool.*``)
``prompt.messages``                         ``gen_ai.input.messages`` (system role =
                                            ``gen_ai.system_instructions``)
``output.text``, ``output.finish_reason``   ``gen_ai.output.messages``,
                                            ``gen_ai.response.finish_reasons``
``usage.input_tokens``, ``output_tokens``   ``gen_ai.usage.input_tokens``, ``output_tokens``
``usage.cache_read_input_tokens``           ``gen_ai.usage.cache_read.input_tokens``
``usage.reasoning_output_tokens``           ``gen_ai.usage.reasoning.output_tokens``
``LlmCall`` step, ``response_id``           ``gen_ai.operation.name=chat``,
                                            ``gen_ai.response.id``
``ToolCall`` step: ``name``, ``call_id``,   ``gen_ai.operation.name=execute_tool``,
``arguments``, ``result``                   ``gen_ai.tool.{name, call.id, call.arguments,
                                            call.result}``
``Retrieval`` step ``source``,              ``gen_ai.operation.name=retrieval``,
``retrieval`` documents                     ``gen_ai.data_source.id``,
                                            ``gen_ai.retrieval.documents``
``StepError.type``                          ``error.type``
``links.trace_id``, ``links.span_id``       the W3C trace context of the decision's span
==========================================  ===============================================
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ledger.records import _unknown
from ledger.records._pointer import decode_payload

DECISION_PAYLOAD_TYPE = "application/vnd.prov.decision.v1+json"
SCHEMA_VERSION = 1
# The attribute that marks a recorded run replay cannot rebuild (a decision built from spans
# that carried no message content), with the reason; replay refuses such a decision with it.
NOT_REPLAYABLE_ATTRIBUTE = "prov.not_replayable"

Id = Annotated[str, Meta(max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")]
Slug = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
DecisionType = Annotated[
    str, Meta(max_length=128, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
]
Label = Annotated[str, Meta(min_length=1, max_length=256)]
Timestamp = Annotated[datetime, Meta(tz=True)]
# A blob reference is the digest of the blob's bytes, so both share one form.
Digest = Annotated[str, Meta(pattern=r"^sha256:[0-9a-f]{64}$")]
Count = Annotated[int, Meta(ge=0)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]  # ISO 4217
TraceId = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
SpanId = Annotated[str, Meta(pattern=r"^[0-9a-f]{16}$")]


def _fault(member: str, why: str) -> ValueError:
    # Messages from our own checks start with the member in backticks, as msgspec's
    # "missing required field" does, so that the pointer can name the member.
    return ValueError(f"`{member}` {why}")


def _check_finite(member: str, amount: Decimal) -> None:
    if not amount.is_finite():
        raise _fault(member, "must be a finite decimal")


def _check_one_of(members: dict[str, bool]) -> None:
    """Require exactly one of `members` (name -> is set) to be set."""
    chosen = [name for name, is_set in members.items() if is_set]
    if len(chosen) > 1:
        raise _fault(chosen[-1], f"cannot be set together with `{chosen[0]}`")
    if not chosen:
        raise ValueError("one of " + " or ".join(f"`{name}`" for name in members) + " is required")


class _Struct(msgspec.Struct, omit_defaults=True, dict=True):
    """Base of every payload Struct; ``dict=True`` gives room for unrecognized members."""

    @property
    def unrecognized_fields(self) -> dict[str, Any]:
        """Members of this object the schema does not know (kept with ``keep_unknown``)."""
        return _unknown.unrecognized(self)


class ContextSnapshot(_Struct):
    """State the decision saw, inline (`value`) or by blob reference (`blob`)."""

    name: Label
    version: Label
    digest: Digest
    fetched_at: Timestamp
    valid_until: Timestamp | None = None
    # UNSET, not None: a snapshot whose value is JSON null is still inline.
    value: Any = msgspec.UNSET
    blob: Digest | None = None

    def __post_init__(self) -> None:
        _check_one_of({"value": self.value is not msgspec.UNSET, "blob": self.blob is not None})


class RetrievedDocument(_Struct):
    source: Label
    doc_id: Label
    version: Label
    score: float
    digest: Digest


class Message(_Struct):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Prompt(_Struct):
    """The template, its variables, and the rendered messages inline or as a blob."""

    template_id: Label
    version: Label
    digest: Digest
    variables: dict[str, Any] = {}
    messages: list[Message] | None = None
    messages_blob: Digest | None = None

    def __post_init__(self) -> None:
        _check_one_of(
            {"messages": self.messages is not None, "messages_blob": self.messages_blob is not None}
        )


class ToolDefinition(_Struct):
    """A tool offered to the model; `parameters` is its JSON Schema."""

    name: Label
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Model(_Struct):
    """The model and every sampling parameter it was called with."""

    provider: Label
    name: Label
    version: Label
    fingerprint: str | None = None  # e.g. OpenAI's system_fingerprint
    temperature: Annotated[float, Meta(ge=0)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=1)] | None = None
    seed: int | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    stop_sequences: list[str] = []
    tools: list[ToolDefinition] = []


class Cost(_Struct):
    amount: Decimal
    currency: Currency

    def __post_init__(self) -> None:
        _check_finite("amount", self.amount)


class Usage(_Struct):
    input_tokens: Count
    output_tokens: Count
    cache_read_input_tokens: Count | None = None
    reasoning_output_tokens: Count | None = None
    cost: Cost | None = None
    latency_ms: Count | None = None


class StepError(_Struct):
    type: Label
    message: str


class _Step(_Struct, tag_field="kind"):
    """Fields every step has. Steps are ordered; a step is named by its index."""

    started_at: Timestamp
    ended_at: Timestamp
    inputs: Any = None
    outputs: Any = None
    usage: Usage | None = None
    error: StepError | None = None

    def __post_init__(self) -> None:
        if self.ended_at < self.started_at:
            raise _fault("ended_at", "is before `started_at`")


class LlmCall(_Step, tag="llm_call"):
    response_id: str | None = None
    finish_reason: str | None = None


class ToolCall(_Step, tag="tool_call", kw_only=True):
    name: Label
    call_id: Label
    arguments: dict[str, Any] = {}
    result: Any = None


class Retrieval(_Step, tag="retrieval", kw_only=True):
    source: Label


class PolicyCheck(_Step, tag="policy_check"):
    """A policy evaluation as a step; the verdict itself is `Decision.policy`."""


class HumanApproval(_Step, tag="human_approval", kw_only=True):
    approver: Label


Step = LlmCall | ToolCall | Retrieval | PolicyCheck | HumanApproval


class Output(_Struct):
    decision: dict[str, Any]
    text: str | None = None
    finish_reason: str | None = None


class PolicyEvaluation(_Struct):
    engine: Label
    policy_id: Label
    version: Label
    digest: Digest
    result: Label
    reasons: list[str] = []


class DelegationLink(_Struct):
    """One UCAN 1.0 delegation: the token, and its fields decoded for display and search.

    The decoded fields are the producer's claim; verifying a chain decodes `token` itself
    and refuses a record whose claim differs from it.
    """

    token: bytes  # base64 in JSON
    iss: Label
    aud: Label
    sub: Label | None
    cmd: Label
    exp: int | None


class Dependency(_Struct):
    key: Label
    version: Label


class Freshness(_Struct):
    valid_until: Timestamp | None = None
    depends_on: list[Dependency] = []


class Exposure(_Struct):
    group: Label
    amount: Decimal
    unit: Label

    def __post_init__(self) -> None:
        _check_finite("amount", self.amount)


class Links(_Struct):
    trace_id: TraceId | None = None
    span_id: SpanId | None = None
    parent_decision: Id | None = None
    replay_of: Id | None = None


# The top level always writes every member, so a payload names its schema_version and shows
# each section even when empty; nested objects omit defaults to keep records small.
# (kw_only lets required members follow defaulted ones, here and in the step kinds.)
class Decision(_Struct, omit_defaults=False, kw_only=True):
    """One AI decision, as recorded by the service that made it."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id
    tenant: Slug
    service: Slug
    decision_type: DecisionType
    occurred_at: Timestamp
    subject: Label | None = None  # e.g. a customer id; what erasure requests name
    inputs: dict[str, Any]
    context: list[ContextSnapshot] = []
    retrieval: list[RetrievedDocument] = []
    prompt: Prompt | None = None
    model: Model
    steps: list[Step] = []
    output: Output
    usage: Usage | None = None
    policy: PolicyEvaluation | None = None
    delegation: list[DelegationLink] = []  # root first
    # The UCAN invocation (token bytes, base64 in JSON) whose `prf` names the delegations
    # above: what the chain authorized. See docs/delegation.md.
    invocation: bytes | None = None
    freshness: Freshness | None = None
    exposures: list[Exposure] = []
    links: Links | None = None
    attributes: dict[str, Any] = {}


_decoder = msgspec.json.Decoder(Decision)
_generic_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def decode_decision(data: bytes, *, keep_unknown: bool = False) -> Decision:
    """Decode and check a decision payload.

    With `keep_unknown`, members the schema does not know are kept on each object (see
    `unrecognized_fields`) and written back by `encode_decision`; that costs a second,
    generic decode, so the admission path leaves it off.

    Raises `InvalidPayload` whose pointer names the member at fault: ``""`` for the whole
    document, None when the bytes are not JSON at all.
    """
    decision = decode_payload(_decoder, data)
    if keep_unknown:
        _unknown.capture(decision, _generic_decoder.decode(data))
    return decision


def encode_decision(decision: Decision) -> bytes:
    """Encode a decision as JSON, with any members kept by ``keep_unknown`` put back."""
    if _unknown.has_unrecognized(decision):
        return _encoder.encode(_unknown.to_builtins(decision))
    return _encoder.encode(decision)
