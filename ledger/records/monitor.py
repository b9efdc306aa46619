"""Monitor records: a versioned limit on what decisions add up to, and a breach of one.

Two record kinds, both signed by the ledger's record key (the key that signs replays and
policy checks, registered under `REPLAY_SERVICE`), since a tenant's services are what
monitors watch and must not be able to move their own limits:

- `MONITOR_PAYLOAD_TYPE`, one version of one monitor as an administrator applied it: the
  definition (`MonitorDefinition`: selector, aggregate, window, grouping, limit, action),
  its content address (`digest`, the SHA-256 of the definition's canonical JSON) and its
  version number. The version in force at any log index is the latest one before it, so
  which limits held at any moment is provable like a decision. (tenant, monitor id,
  version) is registered once: the same definition again is a retry, another is refused
  (`MonitorVersionConflict`).
- `BREACH_PAYLOAD_TYPE`, a monitor's value crossing its limit (``breached``) or returning
  to it (``cleared``), made by the sequencer in the transaction that sequenced the decision
  that crossed, and placed in the log right after it. It names the monitor version (by
  digest and by the leaf of its record), the window, the aggregate's value and the range of
  log entries the window covers, so an auditor recomputes the value from those entries
  offline (`prov verify-breach`). Breach records are never admitted from outside.

The definition's grammar (patterns, conditions, windows) is checked by
`ledger.monitors.compile`; this module holds only the shapes, so the client can read them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from ledger.records import dsse
from ledger.records._pointer import decode_payload
from ledger.records.decision import Digest, Id, Label, Slug, Timestamp

MONITOR_PAYLOAD_TYPE = "application/vnd.prov.monitor.v1+json"
BREACH_PAYLOAD_TYPE = "application/vnd.prov.monitor-breach.v1+json"
SCHEMA_VERSION = 1

Aggregate = Literal[
    "count", "sum_exposure", "sum_cost", "share", "distinct_subjects", "model_calls"
]
AGGREGATES: Final[tuple[str, ...]] = (
    "count",
    "sum_exposure",
    "sum_cost",
    "share",
    "distinct_subjects",
    "model_calls",
)
GroupBy = Literal["none", "group", "subject", "service", "trace"]
Action = Literal["warn", "flag"]
BreachState = Literal["breached", "cleared"]
# A decimal number as a string, so that limits and values stay exact.
DecimalText = Annotated[str, Meta(pattern=r"^-?[0-9]{1,30}(\.[0-9]{1,30})?$")]
# A limit: not negative.
LimitText = Annotated[str, Meta(pattern=r"^[0-9]{1,30}(\.[0-9]{1,18})?$")]
MonitorId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
Pattern = Annotated[str, Meta(min_length=1, max_length=256)]
Condition = Annotated[str, Meta(min_length=1, max_length=512)]
# `300s`, `15m`, `24h`, `7d` (sliding), or `calendar:day` (a UTC day).
WindowText = Annotated[str, Meta(min_length=2, max_length=32)]


class Selector(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Which decisions of the tenant a monitor counts; every member given must hold."""

    service: Pattern | None = None  # a service name, or a glob (`loans-*`)
    decision_type: Pattern | None = None  # a decision type, or a glob (`loan.*`)
    group: Pattern | None = None  # an exposure group glob (`sector:*`)
    group_regex: Pattern | None = None  # or a regular expression without nested repeats
    # Conditions on the decision, each `<path> <op> <JSON value>`, all of which must hold:
    # `output.decision.approved == true`, `output.decision.amount > 100`.
    where: Annotated[list[Condition], Meta(max_length=16)] = []


class MonitorDefinition(
    msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """A monitor as it is written in `monitors.toml` or posted to `/v1/monitors`."""

    id: MonitorId
    tenant: Slug
    description: Annotated[str, Meta(max_length=1024)] | None = None
    select: Selector = msgspec.field(default_factory=Selector)
    aggregate: Aggregate
    # The exposure unit (`sum_exposure`, `share`) or the currency (`sum_cost`) summed.
    unit: Label | None = None
    window: WindowText
    group_by: GroupBy = "none"
    limit: LimitText
    # The limit applies only once the window holds this many decisions (so that the first
    # decision of a window is not 100% of it).
    min_count: Annotated[int, Meta(ge=0, le=1_000_000_000)] = 0
    action: Action = "warn"
    enabled: bool = True


class MonitorRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One version of one monitor, as the ledger recorded it when it was applied."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id  # the record id: `monitor:<monitor id>:v<version>`
    tenant: Slug
    service: Literal["prov-replay"]  # REPLAY_SERVICE: only the ledger's record key signs
    applied_at: Timestamp
    applied_by: Label  # who applied it: an API key's name, or `cli`
    version: Annotated[int, Meta(ge=1)]
    digest: Digest  # "sha256:" + hex SHA-256 of `canonical_definition(definition)`
    definition: MonitorDefinition

    @property
    def occurred_at(self) -> datetime:
        """The time the signing key must have been valid at (admission's step 6)."""
        return self.applied_at


class MonitorRef(msgspec.Struct, kw_only=True):
    """A monitor version as a breach names it."""

    monitor_id: MonitorId
    version: int
    digest: Digest
    index: int  # the log index of its monitor record
    leaf: Digest  # "sha256:" + the hex leaf hash of that entry


class BreachWindow(msgspec.Struct, kw_only=True):
    """The stretch of the log a value was computed over.

    Entries `first` to `last` (inclusive) are those of the log whose integration time is in
    [`start`, `end`] and that follow the monitor's record; `end` is the integration time of
    entry `last`. An empty window has `first` = `last` + 1.
    """

    spec: WindowText  # as the definition wrote it
    start: Timestamp
    end: Timestamp
    first: int
    last: int


class BreachDecision(msgspec.Struct, kw_only=True):
    """The decision whose sequencing changed the state: the one that crossed."""

    id: Id
    index: int
    leaf: Digest


class BreachRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A monitor's value for one group crossing its limit, or returning within it."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id
    tenant: Slug
    service: Literal["prov-replay"]
    occurred_at: Timestamp  # the integration time of the entry that changed the state
    state: BreachState
    monitor: MonitorRef
    action: Action
    aggregate: Aggregate
    unit: Label | None = None
    group: str | None = None  # the group's key; None when the monitor is not grouped
    value: DecimalText  # the aggregate (for `share`, `amount` / `total`, to 18 places)
    limit: DecimalText
    count: int  # decisions counted in the window (across groups)
    amount: DecimalText | None = None  # `share`: the group's sum
    total: DecimalText | None = None  # `share`: the sum over every group
    window: BreachWindow
    decision: BreachDecision | None = None  # None when the window's expiry cleared it


class MonitorReading(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A monitor's state for one group a decision counted toward, as the receipt answer
    carries it: the value with this decision in the window, the limit, and whether the group
    is over it. `breach` is the log index of the breach record this decision caused."""

    monitor: MonitorId
    version: int
    group: str | None = None
    aggregate: Aggregate
    value: DecimalText
    limit: DecimalText
    count: int
    breached: bool
    action: Action
    breach: int | None = None


_definition_decoder = msgspec.json.Decoder(MonitorDefinition)
_monitor_decoder = msgspec.json.Decoder(MonitorRecord)
_breach_decoder = msgspec.json.Decoder(BreachRecord)
_encoder = msgspec.json.Encoder(order="sorted")


def canonical_definition(definition: MonitorDefinition) -> bytes:
    """The definition as JSON with sorted members and no defaults: what `digest` hashes, so
    the same limits written in another order or style have the same address."""
    return _encoder.encode(definition)


def definition_digest(definition: MonitorDefinition) -> str:
    return "sha256:" + hashlib.sha256(canonical_definition(definition)).hexdigest()


def monitor_record_id(monitor_id: str, version: int) -> str:
    return f"monitor:{monitor_id}:v{version}"


def decode_definition(data: bytes) -> MonitorDefinition:
    return decode_payload(_definition_decoder, data)


def decode_monitor(data: bytes) -> MonitorRecord:
    """Decode a monitor payload; `InvalidPayload` names the member at fault."""
    return decode_payload(_monitor_decoder, data)


def decode_breach(data: bytes) -> BreachRecord:
    return decode_payload(_breach_decoder, data)


def monitor_in(envelope: bytes) -> MonitorRecord:
    """The monitor record a stored DSSE envelope carries (its signature is not checked)."""
    return decode_monitor(dsse.payload_bytes(dsse.decode_envelope(envelope)))


def breach_in(envelope: bytes) -> BreachRecord:
    """The breach record a stored DSSE envelope carries (its signature is not checked)."""
    return decode_breach(dsse.payload_bytes(dsse.decode_envelope(envelope)))


def encode_record(record: MonitorRecord | BreachRecord) -> bytes:
    return _encoder.encode(record)
