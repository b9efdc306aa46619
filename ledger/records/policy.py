"""Policy records: a versioned policy document, and a re-evaluation of one decision against one.

A decision records the policy that judged it (`Decision.policy`: engine, policy id,
version, digest, result and reasons). Two record kinds make that reference act:

- `POLICY_PAYLOAD_TYPE`, a policy version as its owner registers it: the engine (``cedar``
  or ``python``), the policy id and version, the document inline (`document`) or by blob
  reference (`document_blob`), the SHA-256 of the document's bytes (`digest`), the schema of
  the inputs (for Cedar a Cedar schema in its JSON form, for Python an optional JSON
  Schema) and the entry point (for Python ``module:function``; for Cedar the action the
  request asks for, needed only when the schema declares several). A decision's
  `policy.digest` resolves to the document through these records. (tenant, policy id,
  version) is registered once: the same document again is an idempotent retry, another
  document is refused (`PolicyVersionConflict`, at ``/payload/version``).
- `POLICY_CHECK_PAYLOAD_TYPE`, what re-running the recorded policy inputs of one decision
  gave, signed by the ledger's replay key as replays are (`REPLAY_SERVICE`): the decision by
  id and by the leaf hash of its entry, the policy version evaluated, the mode (``pinned``:
  the version that judged the decision, which must reproduce the recorded result; or
  ``against`` another version), the recorded and the new result and reasons, and a verdict.

Admission refuses a policy record whose engine is unknown (`UnknownPolicyEngine`), whose
digest is not its document's (`PolicyDigestMismatch`) or whose document, schema or entry
point does not parse for its engine (`PolicyUnparsable`); each has its own problem kind.
The checks that need no engine are here (`check_policy`); parsing a Cedar document loads
`cedarpy` on first use only, so the client never imports it. Unknown members are ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from ledger.errors import PolicyDigestMismatch, PolicyUnparsable, UnknownPolicyEngine
from ledger.records._pointer import decode_payload
from ledger.records.decision import (
    Digest,
    Id,
    Label,
    Slug,
    StepError,
    Timestamp,
    _check_one_of,
)

POLICY_PAYLOAD_TYPE = "application/vnd.prov.policy.v1+json"
POLICY_CHECK_PAYLOAD_TYPE = "application/vnd.prov.policy-check.v1+json"
SCHEMA_VERSION = 1

ENGINES: Final = ("cedar", "python")
Mode = Literal["pinned", "against"]
MODES: tuple[Mode, ...] = ("pinned", "against")
Verdict = Literal["reproduced", "mismatch", "same", "changed", "error"]
VERDICTS: tuple[Verdict, ...] = ("reproduced", "mismatch", "same", "changed", "error")
# The verdicts each mode can give besides `error`: the first when the outcome is the same.
MODE_VERDICTS: Final[dict[str, tuple[Verdict, Verdict]]] = {
    "pinned": ("reproduced", "mismatch"),
    "against": ("same", "changed"),
}
# A Python entry point: a dotted module, a colon, a dotted attribute.
ENTRY_POINT = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class PolicyRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One version of one policy, as its owner registered it."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id
    tenant: Slug
    service: Slug
    # When this version was registered, by the producer's clock; also the time the signing
    # key must have been valid at, as `occurred_at` is for a decision.
    registered_at: Timestamp
    engine: Label  # one of ENGINES; checked by `check_policy`, with its own error kind
    policy_id: Label
    version: Label
    document: str | None = None  # the document, inline
    document_blob: Digest | None = None  # or the digest of the blob holding it
    digest: Digest  # "sha256:" + hex SHA-256 of the document's UTF-8 bytes
    # The inputs' schema: Cedar's JSON schema for `cedar`, an optional JSON Schema for
    # `python`.
    schema: dict[str, Any] | None = None
    # `module:function` for `python`; for `cedar`, the action a request asks for
    # (`Ns::Action::"name"`), needed only when the schema declares more than one.
    entry_point: Label | None = None
    description: Annotated[str, Meta(max_length=1024)] | None = None

    def __post_init__(self) -> None:
        _check_one_of(
            {"document": self.document is not None, "document_blob": self.document_blob is not None}
        )

    @property
    def occurred_at(self) -> datetime:
        """The time the signing key must have been valid at (admission's step 6)."""
        return self.registered_at


class PolicyRef(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A registered policy version, as a check names the one it evaluated."""

    engine: Label
    policy_id: Label
    version: Label
    digest: Digest


class PolicyOutcome(msgspec.Struct, kw_only=True):
    """What a policy answered: its result (``allow``, ``deny``, …) and its reasons."""

    result: Label
    reasons: list[str] = []


class PolicyCheckRecord(msgspec.Struct, kw_only=True):
    """One re-evaluation of one decision's recorded policy inputs, as the ledger signs it."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    id: Id
    tenant: Slug
    service: Literal["prov-replay"]  # REPLAY_SERVICE: the ledger's replay key signs checks
    occurred_at: Timestamp  # when the check ran
    decision_id: Id  # the decision, in the same tenant
    decision_leaf: Digest  # "sha256:" + the hex leaf hash of the decision's entry
    batch: Id | None = None  # the batch this check belongs to
    mode: Mode
    policy: PolicyRef  # the version evaluated
    recorded: PolicyOutcome  # the result and reasons the decision recorded
    outcome: PolicyOutcome | None = None  # what the evaluation gave; None on `error`
    verdict: Verdict
    error: StepError | None = None

    def __post_init__(self) -> None:
        if (self.verdict == "error") != (self.error is not None):
            raise ValueError("`error` is set exactly when the verdict is `error`")
        if (self.verdict == "error") != (self.outcome is None):
            raise ValueError("`outcome` is set exactly when the verdict is not `error`")
        if self.verdict != "error" and self.verdict not in MODE_VERDICTS[self.mode]:
            raise ValueError(f"`verdict` {self.verdict!r} is not one of a {self.mode} check's")


_policy_decoder = msgspec.json.Decoder(PolicyRecord)
_check_decoder = msgspec.json.Decoder(PolicyCheckRecord)
_encoder = msgspec.json.Encoder()


def decode_policy(data: bytes) -> PolicyRecord:
    """Decode and check a policy payload; `InvalidPayload` names the member at fault."""
    return decode_payload(_policy_decoder, data)


def decode_policy_check(data: bytes) -> PolicyCheckRecord:
    """Decode and check a policy-check payload; `InvalidPayload` names the member at fault."""
    return decode_payload(_check_decoder, data)


def encode_policy(record: PolicyRecord) -> bytes:
    return _encoder.encode(record)


def encode_policy_check(record: PolicyCheckRecord) -> bytes:
    return _encoder.encode(record)


def document_digest(document: str | bytes) -> str:
    """`sha256:` and the hex SHA-256 of the document's bytes (UTF-8 for text)."""
    data = document.encode() if isinstance(document, str) else document
    return "sha256:" + hashlib.sha256(data).hexdigest()


def policy_record_id(policy_id: str, version: str) -> str:
    """The record id the CLI and the demo give a registration: readable when the policy id
    and version allow it (``policy:lending:personal_loan@v2``), else a digest of both."""
    readable = f"policy:{policy_id.replace('/', ':')}@{version}"
    if len(readable) <= 256 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:@-]*", readable):
        return readable
    return "policy-" + hashlib.sha256(f"{policy_id}\n{version}".encode()).hexdigest()[:40]


def check_policy(record: PolicyRecord, document: bytes | None = None) -> None:
    """Admission's checks of a policy record: its engine is known, `digest` is the SHA-256
    of the document (inline, or `document` read from its blob) and the document, schema
    and entry point parse for the engine. Raises the refusal."""
    if record.engine not in ENGINES:
        raise UnknownPolicyEngine(
            f"engine {record.engine!r} is not one of {', '.join(ENGINES)}",
            pointer="/payload/engine",
        )
    data = record.document.encode() if record.document is not None else document
    if data is None:  # the caller reads the blob first
        raise ValueError("a blob-referenced document is checked with its bytes")
    if record.document_blob is not None and record.document_blob != record.digest:
        raise PolicyDigestMismatch(
            f"digest {record.digest} is not the document blob's {record.document_blob}",
            pointer="/payload/digest",
        )
    if document_digest(data) != record.digest:
        raise PolicyDigestMismatch(
            f"the document hashes to {document_digest(data)}, not {record.digest}",
            pointer="/payload/digest",
        )
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise PolicyUnparsable(
            "the document is not UTF-8 text", pointer="/payload/document"
        ) from None
    if record.engine == "cedar":
        _check_cedar(text, record.schema, record.entry_point)
    else:
        _check_python(text, record.schema, record.entry_point)


def _check_cedar(text: str, schema: dict[str, Any] | None, entry_point: str | None) -> None:
    import cedarpy  # noqa: PLC0415 - the engine loads on the server, on first use only

    if schema is None:
        raise PolicyUnparsable(
            "a cedar policy needs its Cedar schema (JSON form)", pointer="/payload/schema"
        )
    try:
        cedarpy.PolicySet.from_str(text)
    except ValueError as error:
        raise PolicyUnparsable(
            f"the Cedar document does not parse: {error}", pointer="/payload/document"
        ) from None
    try:
        parsed = cedarpy.Schema.from_json_str(json.dumps(schema))
    except ValueError as error:
        raise PolicyUnparsable(
            f"the Cedar schema does not parse: {error}", pointer="/payload/schema"
        ) from None
    validation = cedarpy.validate_policies(text, parsed)
    if not validation.validation_passed:
        raise PolicyUnparsable(
            "the Cedar document does not validate against its schema: "
            + "; ".join(str(error) for error in validation.errors[:3]),
            pointer="/payload/document",
        )
    actions = cedar_actions(schema)
    if not actions:
        raise PolicyUnparsable("the Cedar schema declares no action", pointer="/payload/schema")
    if entry_point is None and len(actions) > 1:
        raise PolicyUnparsable(
            f"the schema declares {len(actions)} actions; `entry_point` names the one asked",
            pointer="/payload/entry_point",
        )
    if entry_point is not None and entry_point not in actions:
        raise PolicyUnparsable(
            f"entry point {entry_point!r} is none of the schema's actions "
            f"({', '.join(sorted(actions))})",
            pointer="/payload/entry_point",
        )


def cedar_actions(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The actions a Cedar JSON schema declares, by their full name
    (``Ns::Action::"name"``), each with its `appliesTo`."""
    found: dict[str, dict[str, Any]] = {}
    for namespace, body in schema.items():
        if not isinstance(body, dict):
            continue
        prefix = f"{namespace}::" if namespace else ""
        for name, action in (body.get("actions") or {}).items():
            applies = action.get("appliesTo") if isinstance(action, dict) else None
            found[f'{prefix}Action::"{name}"'] = applies if isinstance(applies, dict) else {}
    return found


def _check_python(text: str, schema: dict[str, Any] | None, entry_point: str | None) -> None:
    if entry_point is None or not ENTRY_POINT.match(entry_point):
        raise PolicyUnparsable(
            "a python policy names its function as `module:function`",
            pointer="/payload/entry_point",
        )
    try:
        compile(text, entry_point.partition(":")[0], "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise PolicyUnparsable(
            f"the Python document does not compile: {error}", pointer="/payload/document"
        ) from None
    if schema is not None:
        from jsonschema import exceptions, validators  # noqa: PLC0415 - server-only, on use

        try:
            validators.validator_for(schema).check_schema(schema)
        except exceptions.SchemaError as error:
            raise PolicyUnparsable(
                f"the inputs schema is not a JSON Schema: {error.message}",
                pointer="/payload/schema",
            ) from None
