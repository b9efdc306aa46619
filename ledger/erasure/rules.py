"""The rules an erasure must pass: the tenant's retention floor and its live legal holds.

- **The floor**: a subject's content may not be erased while any of its decisions was
  logged (integrated) fewer than `floor_days` days ago; the floor ends `floor_days` after
  its latest decision. The rule in force is the tenant's latest retention record, or
  `DEFAULT_FLOOR_DAYS` when it has none.
- **Holds**: a live hold (placed, not released) by subject covers the subject's decisions
  and blobs; a hold by filter covers the decisions whose service and decision type match
  (each exact, or a glob with ``*``) and the blobs they reference. A hold blocks every
  erasure of what it covers, including an administrator's `DELETE /v1/blobs/…` and expiry.

Every function takes the clock (`now_us`) from its caller and reads on the caller's
connection, so that a check made under the log's lock is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, exists, func, select

from ledger.errors import ErasureRequestInvalid
from ledger.log.entry import rfc3339
from ledger.records.erasure import DEFAULT_FLOOR_DAYS, HoldFilter, RetentionRef
from ledger.storage.schema import (
    blob_refs,
    blobs,
    decisions,
    legal_holds,
    log_entries,
    retention_rules,
)

DAY_US = 86_400 * 1_000_000
_FILTER_KEYS = ("service", "decision_type")


@dataclass(frozen=True, slots=True)
class Retention:
    """The retention rule in force for a tenant: its record's index and version, or None for
    the default."""

    floor_days: int
    expire_after_days: int | None = None
    index: int | None = None
    version: int | None = None
    set_us: int | None = None

    @property
    def ref(self) -> RetentionRef:
        return RetentionRef(index=self.index, floor_days=self.floor_days)


@dataclass(frozen=True, slots=True)
class Hold:
    tenant: str
    hold_id: str
    index: int
    subject: str | None
    service: str | None
    decision_type: str | None
    reason: str
    placed_by: str
    placed_us: int
    released_idx: int | None = None
    released_us: int | None = None
    released_by: str | None = None

    @property
    def what(self) -> str:
        if self.subject is not None:
            return f"subject {self.subject!r}"
        return "decisions with " + format_filter(
            HoldFilter(service=self.service, decision_type=self.decision_type)
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an erasure may not run now, and when it may at the earliest (None: when a hold
    is released)."""

    detail: str
    not_before_us: int | None


def retention_in_force(connection: Connection, tenant: str) -> Retention:
    row = connection.execute(
        select(retention_rules)
        .where(retention_rules.c.tenant == tenant)
        .order_by(retention_rules.c.idx.desc())
        .limit(1)
    ).first()
    if row is None:
        return Retention(DEFAULT_FLOOR_DAYS)
    return Retention(row.floor_days, row.expire_after_days, row.idx, row.version, row.set_us)


def expiring_tenants(connection: Connection) -> list[tuple[str, Retention]]:
    """Each tenant whose rule in force expires content, with that rule."""
    latest = (
        select(retention_rules.c.tenant, func.max(retention_rules.c.idx).label("idx"))
        .group_by(retention_rules.c.tenant)
        .subquery()
    )
    rows = connection.execute(
        select(retention_rules)
        .join(latest, latest.c.idx == retention_rules.c.idx)
        .where(retention_rules.c.expire_after_days.is_not(None))
        .order_by(retention_rules.c.tenant)
    )
    return [
        (row.tenant, Retention(row.floor_days, row.expire_after_days, row.idx, row.version))
        for row in rows
    ]


def last_logged_us(connection: Connection, tenant: str, subject: str) -> int | None:
    """When the subject's latest decision was integrated into the log, if it has one."""
    latest = connection.execute(
        select(func.max(decisions.c.idx)).where(
            decisions.c.tenant == tenant, decisions.c.subject == subject
        )
    ).scalar()
    if latest is None:
        return None
    integrated: int = connection.execute(
        select(log_entries.c.integrated_us).where(log_entries.c.idx == latest)
    ).scalar_one()
    return integrated


def live_holds(connection: Connection, tenant: str, *, released: bool = False) -> list[Hold]:
    query = select(legal_holds).where(legal_holds.c.tenant == tenant)
    if not released:
        query = query.where(legal_holds.c.released_idx.is_(None))
    return [Hold(*row) for row in connection.execute(query.order_by(legal_holds.c.idx))]


def find_hold(connection: Connection, tenant: str, hold_id: str) -> Hold | None:
    row = connection.execute(
        select(legal_holds).where(legal_holds.c.tenant == tenant, legal_holds.c.hold_id == hold_id)
    ).first()
    return None if row is None else Hold(*row)


def subject_refusal(
    connection: Connection, tenant: str, subject: str, retention: Retention, now_us: int
) -> Refusal | None:
    """Why the subject may not be erased now (a hold first, then the floor), or None."""
    for hold in live_holds(connection, tenant):
        if _covers_subject(connection, hold, subject):
            return Refusal(
                f"legal hold {hold.hold_id!r} on {hold.what} covers subject {subject!r} "
                f"(placed {rfc3339(hold.placed_us)}: {hold.reason})",
                None,
            )
    last = last_logged_us(connection, tenant, subject)
    if last is not None and last + retention.floor_days * DAY_US > now_us:
        ends = last + retention.floor_days * DAY_US
        return Refusal(
            f"the retention floor of {retention.floor_days} days keeps subject {subject!r} "
            f"until {rfc3339(ends)} (its latest decision was logged {rfc3339(last)})",
            ends,
        )
    return None


def _covers_subject(connection: Connection, hold: Hold, subject: str) -> bool:
    if hold.subject is not None:
        return hold.subject == subject
    return bool(
        connection.execute(
            select(
                exists().where(
                    decisions.c.tenant == hold.tenant,
                    decisions.c.subject == subject,
                    *_filter_conditions(hold),
                )
            )
        ).scalar()
    )


def held_digests(
    connection: Connection, tenant: str, digests: Iterable[str], holds: list[Hold]
) -> dict[str, Hold]:
    """Those of `digests` a live hold covers, with the first hold that does: a blob of a
    held subject, or one a held decision references."""
    wanted = sorted(set(digests))
    held: dict[str, Hold] = {}
    for hold in holds:
        for start in range(0, len(wanted), 500):
            chunk = [digest for digest in wanted[start : start + 500] if digest not in held]
            if not chunk:
                continue
            for digest in _covered(connection, tenant, chunk, hold):
                held.setdefault(digest, hold)
    return held


def _covered(connection: Connection, tenant: str, digests: list[str], hold: Hold) -> list[str]:
    by_decision: list[ColumnElement[bool]] = (
        [decisions.c.subject == hold.subject]
        if hold.subject is not None
        else _filter_conditions(hold)
    )
    referenced = select(blob_refs.c.digest).join(decisions, decisions.c.idx == blob_refs.c.idx)
    referenced = referenced.where(
        blob_refs.c.tenant == tenant, blob_refs.c.digest.in_(digests), *by_decision
    )
    found = set(connection.execute(referenced).scalars())
    if hold.subject is not None:
        found.update(
            connection.execute(
                select(blobs.c.digest).where(
                    blobs.c.tenant == tenant,
                    blobs.c.digest.in_(digests),
                    blobs.c.subject == hold.subject,
                )
            ).scalars()
        )
    return sorted(found)


def _filter_conditions(hold: Hold) -> list[ColumnElement[bool]]:
    conditions = []
    for column, pattern in (
        (decisions.c.service, hold.service),
        (decisions.c.decision_type, hold.decision_type),
    ):
        if pattern is not None:
            conditions.append(_matches(column, pattern))
    return conditions


def _matches(column: Any, pattern: str) -> ColumnElement[bool]:
    """`column` equals `pattern`, or matches it as a glob whose only wildcard is `*`."""
    if "*" not in pattern:
        return column == pattern  # type: ignore[no-any-return]
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped.replace("*", "%"), escape="\\")  # type: ignore[no-any-return]


def parse_filter(text: str) -> HoldFilter:
    """``service=loans,decision_type=loan.*``: comma-separated `key=pattern` pairs, keys
    `service` and `decision_type`, each at most once, patterns exact or globs with ``*``."""
    found: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        key, equals, pattern = item.partition("=")
        key, pattern = key.strip(), pattern.strip()
        if not equals or key not in _FILTER_KEYS or not pattern:
            raise ErasureRequestInvalid(
                f"a hold filter is `key=pattern` pairs separated by commas, keys "
                f"{' and '.join(_FILTER_KEYS)}; not {item!r}",
                pointer="/filter",
            )
        if key in found:
            raise ErasureRequestInvalid(f"the filter names {key} twice", pointer="/filter")
        found[key] = pattern
    return check_filter(HoldFilter(**found))


def check_filter(selected: HoldFilter) -> HoldFilter:
    if selected.service is None and selected.decision_type is None:
        raise ErasureRequestInvalid(
            "a hold filter names a service, a decision type or both", pointer="/filter"
        )
    for key in _FILTER_KEYS:
        pattern = getattr(selected, key)
        if pattern is not None and (
            len(pattern) > 128
            or not all(ch.isalnum() or ch in "._:*-" for ch in pattern)
            or not pattern.isascii()
        ):
            raise ErasureRequestInvalid(
                f"{key} pattern {pattern[:40]!r}: letters, digits, `._:-` and `*` only",
                pointer=f"/filter/{key}",
            )
    return selected


def format_filter(selected: HoldFilter) -> str:
    return ",".join(
        f"{key}={getattr(selected, key)}"
        for key in _FILTER_KEYS
        if getattr(selected, key) is not None
    )
