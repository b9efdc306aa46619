"""Erasure requests, retention rules and holds as the API and the CLI show them (JSON)."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection, select

from ledger.erasure.rules import Hold, Retention, format_filter
from ledger.log.entry import rfc3339
from ledger.records.erasure import HoldFilter
from ledger.storage.schema import erasures


class ErasureView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An erasure request and where it stands: ``queued`` (refused for now, waiting for the
    floor's end or a hold's release), ``recorded`` (in the log, its blobs unreadable; its
    objects and key not yet destroyed) or ``done``."""

    request_id: str
    tenant: str
    kind: str
    subject: str | None = None
    state: str
    requested_by: str
    reason: str
    requested_at: str
    not_before: str | None = None  # queued: the floor's end (None while a hold blocks)
    waiting_for: str | None = None  # queued: why
    records: list[int] = []  # the log indexes of its erasure records
    digests: int = 0
    erased_at: str | None = None
    done_at: str | None = None
    erased: list[str] | None = None  # the digests, when one request is asked for


class RetentionView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The retention rule in force: `version` and `index` are absent for the default."""

    tenant: str
    floor_days: int
    expire_after_days: int | None = None
    version: int | None = None
    index: int | None = None
    set_at: str | None = None


class HoldView(msgspec.Struct, kw_only=True, omit_defaults=True):
    hold_id: str
    tenant: str
    subject: str | None = None
    filter: str | None = None
    reason: str
    placed_by: str
    placed_at: str
    index: int
    live: bool
    released_at: str | None = None
    released_by: str | None = None
    released_index: int | None = None


def _time(micros: int | None) -> str | None:
    return None if micros is None else rfc3339(micros)


def erasure_view(row: Any, erased: list[str] | None = None) -> ErasureView:
    first = row.first_idx
    return ErasureView(
        request_id=row.request_id,
        tenant=row.tenant,
        kind=row.kind,
        subject=row.subject,
        state=row.state,
        requested_by=row.requested_by,
        reason=row.reason,
        requested_at=rfc3339(row.requested_us),
        not_before=_time(row.not_before_us),
        waiting_for=row.waiting_for,
        records=[] if first is None else list(range(first, first + row.parts)),
        digests=row.digests or 0,
        erased_at=_time(row.erased_us),
        done_at=_time(row.done_us),
        erased=erased,
    )


def read_request(connection: Connection, tenant: str, request_id: str) -> Any:
    """The request's row, or None."""
    return connection.execute(
        select(erasures).where(erasures.c.tenant == tenant, erasures.c.request_id == request_id)
    ).first()


def list_requests(connection: Connection, tenant: str, limit: int = 1000) -> list[ErasureView]:
    """The tenant's requests, newest first."""
    rows = connection.execute(
        select(erasures)
        .where(erasures.c.tenant == tenant)
        .order_by(erasures.c.requested_us.desc(), erasures.c.request_id)
        .limit(limit)
    )
    return [erasure_view(row) for row in rows]


def retention_view(tenant: str, retention: Retention) -> RetentionView:
    return RetentionView(
        tenant=tenant,
        floor_days=retention.floor_days,
        expire_after_days=retention.expire_after_days,
        version=retention.version,
        index=retention.index,
        set_at=_time(retention.set_us),
    )


def hold_view(hold: Hold) -> HoldView:
    selected = (
        None
        if hold.subject is not None
        else format_filter(HoldFilter(service=hold.service, decision_type=hold.decision_type))
    )
    return HoldView(
        hold_id=hold.hold_id,
        tenant=hold.tenant,
        subject=hold.subject,
        filter=selected,
        reason=hold.reason,
        placed_by=hold.placed_by,
        placed_at=rfc3339(hold.placed_us),
        index=hold.index,
        live=hold.released_idx is None,
        released_at=_time(hold.released_us),
        released_by=hold.released_by,
        released_index=hold.released_idx,
    )
