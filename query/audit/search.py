"""Decision search over the decision index, newest first, with cursor pagination.

Every search is within one tenant (the caller's). Filters combine with AND. Decisions are
listed by `occurred_at`, newest first, and by log index among equal times. A page is one
backward scan of an index that ends in `(occurred_us, idx)`, so its cost does not grow with
the page number: the cursor is the position of the last decision shown, not an offset.

An output match names a path into `output.decision` and a JSON value: `approved=true`,
`route.carrier="UPS"` or, for a string, simply `route.carrier=UPS`.

Every parameter is checked here, once, with the same limits whoever asks (the API, the
auditor pages, the CLI): text filters up to `MAX_TEXT` characters and an output match up
to `MAX_OUTPUT` with a value nested at most `MAX_OUTPUT_DEPTH` deep, none holding NUL or
a lone surrogate (PostgreSQL refuses both), and cursors whose positions fit a BIGINT. A
parameter out of range is a `BadRequest`, never a database error.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    not_,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB

from ledger.errors import BadRequest
from ledger.log.entry import rfc3339, to_micros
from ledger.records.signed import LEDGER_ATTESTED, PRODUCER_SIGNED
from ledger.storage.schema import (
    decision_freshness,
    decisions,
    invocations,
    principals,
    stale_marks,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_TEXT = 256
MAX_OUTPUT = 512
MAX_OUTPUT_DEPTH = 32
MAX_CURSOR = 64
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
_PATH_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def check_text(name: str, value: str, limit: int = MAX_TEXT) -> str:
    """`value` if the stores can compare it: at most `limit` characters, no NUL, and
    encodable as UTF-8 (a lone surrogate is not)."""
    if len(value) > limit:
        raise BadRequest(f"{name!r} is longer than {limit} characters", pointer=f"/{name}")
    if "\x00" in value:
        raise BadRequest(f"{name!r} holds a NUL character", pointer=f"/{name}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise BadRequest(f"{name!r} is not valid UTF-8 text", pointer=f"/{name}") from None
    return value


def _check_value(value: Any, depth: int = 0) -> None:
    """An output match's value is shallow and holds only text the stores can compare."""
    if depth > MAX_OUTPUT_DEPTH:
        raise BadRequest(
            f"an output match's value is nested more than {MAX_OUTPUT_DEPTH} deep",
            pointer="/output",
        )
    if isinstance(value, str):
        check_text("output", value, MAX_OUTPUT)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text("output", key, MAX_OUTPUT)
            _check_value(item, depth + 1)


@dataclass(frozen=True, slots=True)
class OutputMatch:
    path: tuple[str, ...]
    value: Any

    @classmethod
    def parse(cls, text: str) -> OutputMatch:
        check_text("output", text, MAX_OUTPUT)
        path_text, equals, value_text = text.partition("=")
        path = tuple(path_text.strip().split("."))
        if not equals or not all(_PATH_SEGMENT.fullmatch(segment) for segment in path):
            raise BadRequest(
                f"an output match is PATH=VALUE with a dotted path, not {text[:80]!r}",
                pointer="/output",
            )
        try:
            value = msgspec.json.decode(value_text)
        except RecursionError:
            raise BadRequest(
                f"an output match's value is nested more than {MAX_OUTPUT_DEPTH} deep",
                pointer="/output",
            ) from None
        except msgspec.ValidationError:  # a number past what JSON values here can hold
            raise BadRequest(
                f"the number in the output match {text[:80]!r} is out of range", pointer="/output"
            ) from None
        except msgspec.DecodeError:
            value = value_text  # a bare word is a string
        _check_value(value)
        return cls(path, value)


@dataclass(frozen=True, slots=True)
class DecisionFilter:
    tenant: str
    service: str | None = None
    decision_type: str | None = None
    model: str | None = None
    model_version: str | None = None
    occurred_from: datetime | None = None  # inclusive
    occurred_to: datetime | None = None  # exclusive
    subject: str | None = None
    delegator: str | None = None
    # The name of the enrolled principal (say, alice@example.com) at the root of a chain
    # that verified at ingest: the decisions that person authorized.
    root_principal: str | None = None
    output: OutputMatch | None = None
    # `stale`, `fresh` or `unknown` now (docs/freshness.md); with `stale_since`, only the
    # decisions that went stale at or after that time.
    freshness: str | None = None
    stale_since: datetime | None = None
    # `producer-signed` or `ledger-attested` (built by the ledger from OpenTelemetry spans),
    # as the decision index recorded it from the key that verified the decision at admission.
    attestation: str | None = None

    def __post_init__(self) -> None:
        # Checked wherever a filter is made, so the API, the pages and the CLI share limits.
        # (Times need no check: any datetime is well within a BIGINT of microseconds.)
        for name, field in QUERY_FIELDS.items():
            value = getattr(self, field)
            if isinstance(value, str):
                check_text(name, value)
        if self.freshness is not None and self.freshness not in FRESHNESS_STATES:
            raise BadRequest(
                f"freshness is one of {', '.join(FRESHNESS_STATES)}, not {self.freshness[:40]!r}",
                pointer="/freshness",
            )
        if self.stale_since is not None and self.freshness != "stale":
            raise BadRequest("since applies to freshness=stale only", pointer="/since")
        if self.attestation is not None and self.attestation not in ATTESTATIONS:
            raise BadRequest(
                f"attestation is one of {', '.join(ATTESTATIONS)}, not {self.attestation[:40]!r}",
                pointer="/attestation",
            )

    @classmethod
    def from_query(cls, tenant: str, query: Mapping[str, str | None]) -> DecisionFilter:
        """A filter from query-string names and text values (`GET /v1/decisions`' names:
        `from`, `to`, `output`, ...), as a form or a command line gives them; empty values
        are no filter."""
        fields: dict[str, Any] = {}
        for name, value in query.items():
            if not value:
                continue
            field = QUERY_FIELDS.get(name)
            if field is None:
                raise BadRequest(f"{name!r} is not a decision filter", pointer=f"/{name}")
            if field in ("occurred_from", "occurred_to", "stale_since"):
                fields[field] = _parse_time(name, value)
            elif field == "output":
                fields[field] = OutputMatch.parse(value)
            else:
                fields[field] = value
        return cls(tenant, **fields)


# The query-string name of each filter field.
QUERY_FIELDS = {
    "service": "service",
    "decision_type": "decision_type",
    "model": "model",
    "model_version": "model_version",
    "from": "occurred_from",
    "to": "occurred_to",
    "subject": "subject",
    "delegator": "delegator",
    "root_principal": "root_principal",
    "output": "output",
    "freshness": "freshness",
    "since": "stale_since",
    "attestation": "attestation",
}
FRESHNESS_STATES = ("stale", "fresh", "unknown")
ATTESTATIONS = (PRODUCER_SIGNED, LEDGER_ATTESTED)


def _parse_time(name: str, text: str) -> datetime:
    try:
        return datetime.fromisoformat(check_text(name, text))
    except ValueError:
        raise BadRequest(
            f"{name!r} is not an RFC 3339 time: {text[:40]!r}", pointer=f"/{name}"
        ) from None


class DecisionSummary(msgspec.Struct):
    index: int
    id: str
    service: str
    decision_type: str
    occurred_at: str
    model: str
    model_version: str
    subject: str | None
    delegator: str | None
    output: Any
    # Who vouches for the content: `producer-signed` or `ledger-attested`.
    attestation: str = PRODUCER_SIGNED


class SearchPage(msgspec.Struct):
    decisions: list[DecisionSummary]
    next_cursor: str | None


# JSON text holding the escape \u0000 (preceded by an even number of backslashes).
_NUL_ESCAPE = r"(^|[^\\])(\\\\)*\\u0000"
_CURSOR = re.compile(r"before:(-?[0-9]{1,20}):([0-9]{1,20})")


def encode_cursor(occurred_us: int, index: int) -> str:
    """An opaque token for "the decisions listed after this one"."""
    text = f"before:{occurred_us}:{index}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError
        padded = cursor + "=" * (-len(cursor) % 4)
        found = _CURSOR.fullmatch(base64.urlsafe_b64decode(padded).decode())
        if found is None:
            raise ValueError
        occurred_us, index = int(found[1]), int(found[2])
        # Both are BIGINT columns: a larger number would fail in the database, not here.
        if not (BIGINT_MIN <= occurred_us <= BIGINT_MAX and 0 <= index <= BIGINT_MAX):
            raise ValueError
        return occurred_us, index
    except (ValueError, binascii.Error, UnicodeDecodeError, UnicodeEncodeError):
        raise BadRequest("the cursor is not one this service issued", pointer="/cursor") from None


def search(
    connection: Connection,
    where: DecisionFilter,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> SearchPage:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be 1 to {MAX_LIMIT}", pointer="/limit")
    query = _query(connection, where)
    position = tuple_(decisions.c.occurred_us, decisions.c.idx)
    if cursor is not None:
        query = query.where(position < tuple_(*map(literal, decode_cursor(cursor))))
    newest_first = (decisions.c.occurred_us.desc(), decisions.c.idx.desc())
    rows = connection.execute(query.order_by(*newest_first).limit(limit + 1)).all()
    page = [
        DecisionSummary(
            row.idx,
            row.record_id,
            row.service,
            row.decision_type,
            rfc3339(row.occurred_us),
            row.model_name,
            row.model_version,
            row.subject,
            row.delegator,
            msgspec.json.decode(row.output),
            row.attestation,
        )
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return SearchPage(page, None if last is None else encode_cursor(last.occurred_us, last.idx))


def _query(connection: Connection, where: DecisionFilter) -> Select[Any]:
    columns = decisions.c
    conditions: list[ColumnElement[bool]] = [columns.tenant == where.tenant]
    equal = {
        columns.service: where.service,
        columns.decision_type: where.decision_type,
        columns.model_name: where.model,
        columns.model_version: where.model_version,
        columns.subject: where.subject,
        columns.delegator: where.delegator,
        columns.attestation: where.attestation,
    }
    conditions += [column == value for column, value in equal.items() if value is not None]
    if where.occurred_from is not None:
        conditions.append(columns.occurred_us >= to_micros(_utc(where.occurred_from)))
    if where.occurred_to is not None:
        conditions.append(columns.occurred_us < to_micros(_utc(where.occurred_to)))
    if where.output is not None:
        conditions.append(_output_matches(connection, where.output))
    if where.root_principal is not None:
        conditions.append(_authorized_by(where.tenant, where.root_principal))
    if where.freshness is not None:
        since = None if where.stale_since is None else to_micros(_utc(where.stale_since))
        conditions.append(freshness_condition(where.freshness, time.time_ns() // 1000, since))
    return select(
        columns.idx,
        columns.record_id,
        columns.service,
        columns.decision_type,
        columns.occurred_us,
        columns.model_name,
        columns.model_version,
        columns.subject,
        columns.delegator,
        columns.output,
        columns.attestation,
    ).where(*conditions)


def freshness_condition(state: str, now_us: int, since_us: int | None) -> ColumnElement[bool]:
    """Decisions in `state` at `now_us` (`ledger.indexes.freshness` holds the rule): stale
    when a change superseded a dependency or an expiry has passed; `since_us` keeps those
    that went stale at or after it."""
    marked = select(stale_marks.c.idx).where(stale_marks.c.idx == decisions.c.idx)
    expired_at = decision_freshness.c.valid_until_us
    expired = select(decision_freshness.c.idx).where(
        decision_freshness.c.idx == decisions.c.idx, expired_at <= now_us
    )
    if since_us is not None:
        marked = marked.where(stale_marks.c.stale_us >= since_us)
        expired = expired.where(expired_at >= since_us)
    stale = or_(marked.exists(), expired.exists())
    if state == "stale":
        return stale
    declared = select(decision_freshness.c.idx).where(decision_freshness.c.idx == decisions.c.idx)
    if state == "fresh":
        return and_(declared.exists(), not_(stale))
    return not_(declared.exists())


def _authorized_by(tenant: str, name: str) -> ColumnElement[bool]:
    """Decisions whose chain verified at ingest and starts at a DID enrolled as `name`."""
    enrolled = select(principals.c.did).where(
        principals.c.tenant == tenant, principals.c.name == name
    )
    authorized = select(invocations.c.idx).where(
        invocations.c.tenant == tenant, invocations.c.root.in_(enrolled)
    )
    return decisions.c.idx.in_(authorized)


def _utc(moment: datetime) -> datetime:
    """A time without an offset is taken as UTC, as the rest of the ledger writes times."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _output_matches(connection: Connection, match: OutputMatch) -> ColumnElement[bool]:
    value = msgspec.json.encode(match.value).decode()
    if connection.dialect.name == "postgresql":
        # jsonb equality compares values, not their spelling (1.0 = 1, key order). jsonb
        # refuses the escape \u0000, which a record stored before admission refused NUL may
        # hold: such a row matches nothing rather than failing the whole search.
        output = decisions.c.output
        convertible = case((output.regexp_match(_NUL_ESCAPE), None), else_=output)
        return cast(convertible, JSONB)[match.path] == cast(literal(value), JSONB)
    # SQLite's -> gives the JSON text of the member, and json() minifies the wanted value.
    path = "$" + "".join(f'."{segment}"' for segment in match.path)
    return decisions.c.output.op("->")(path) == func.json(value)
