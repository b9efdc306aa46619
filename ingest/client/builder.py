"""Typed helpers for building a decision record on the service side.

`new_decision` fills what a service should not have to think about (a fresh time-ordered
`id`, `occurred_at` now in UTC) and takes every other member as the
`ledger.records.decision` Structs themselves, so the schema lives in one place.
`DecisionParts` names the members a caller passes; it is a TypedDict so that type checkers
see each one with its real type.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Required, TypedDict, Unpack

import msgspec

from ledger.records.decision import (
    ContextSnapshot,
    Decision,
    DelegationLink,
    Exposure,
    Freshness,
    Links,
    Model,
    Output,
    PolicyEvaluation,
    Prompt,
    RetrievedDocument,
    Step,
    Usage,
)

__all__ = ["DecisionParts", "digest_of", "new_decision", "new_id", "utc_now"]


class DecisionParts(TypedDict, total=False):
    """The members of a `Decision` a service supplies besides its identity and time;
    see `ledger.records.decision.Decision` for each one."""

    inputs: Required[dict[str, Any]]
    model: Required[Model]
    output: Required[Output]
    subject: str | None
    context: list[ContextSnapshot]
    retrieval: list[RetrievedDocument]
    prompt: Prompt | None
    steps: list[Step]
    usage: Usage | None
    policy: PolicyEvaluation | None
    delegation: list[DelegationLink]
    freshness: Freshness | None
    exposures: list[Exposure]
    links: Links | None
    attributes: dict[str, Any]


def new_id() -> str:
    """A fresh UUIDv7 (RFC 9562) as a string.

    Time-ordered ids keep a tenant's records close together in the ledger's id index, and
    74 random bits make a collision between two services' ids negligible.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def utc_now() -> datetime:
    """The current time with its UTC offset; the schema refuses naive timestamps."""
    return datetime.now(UTC)


def digest_of(content: bytes | Any) -> str:
    """The schema's ``sha256:<hex>`` digest of `content`: bytes as they are, any other value
    as its compact JSON (for a prompt template, a context snapshot or a policy bundle)."""
    data = content if isinstance(content, bytes) else msgspec.json.encode(content)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def new_decision(
    *,
    tenant: str,
    service: str,
    decision_type: str,
    id: str | None = None,
    occurred_at: datetime | None = None,
    **parts: Unpack[DecisionParts],
) -> Decision:
    """A `Decision` for `tenant` and `service`, with a new `id` and `occurred_at` unless given.

    Constructing a Struct does not check its constraints; signing through the client does,
    so a bad member is reported with its JSON pointer before anything is sent.
    """
    return Decision(
        id=id or new_id(),
        tenant=tenant,
        service=service,
        decision_type=decision_type,
        occurred_at=occurred_at or utc_now(),
        **parts,
    )
