"""Retention rules and legal holds, each a record the ledger signs (`Ledger.rules`).

Setting a tenant's rule appends its next version (`retention.v1`); placing or releasing a
hold appends a `legal-hold.v1` record. Both are decided under the log's lock (the next
version number, whether the hold exists and is live) and indexed in the same commit, so
that "which floor was in force" and "which hold covered this" are provable from the log as
a decision is.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from ledger.erasure.made import RecordLog, new_id, sign_made
from ledger.erasure.requests import HoldRequest, RetentionRequest, check_asker, parse
from ledger.erasure.rules import check_filter, find_hold, live_holds, retention_in_force
from ledger.erasure.views import HoldView, RetentionView, hold_view, retention_view
from ledger.errors import ErasureRequestInvalid, IdConflict, NotFound
from ledger.indexes.erasures import write_hold, write_retention
from ledger.log.entry import from_micros
from ledger.log.sequencer import Appended, MadeBatch
from ledger.records.erasure import (
    HoldFilter,
    LegalHoldRecord,
    RetentionRecord,
    hold_record_id,
    retention_record_id,
)
from ledger.records.replay import REPLAY_SERVICE
from ledger.storage.schema import retention_rules


class RuleBook:
    """The retention rules and legal holds of every tenant of one ledger."""

    def __init__(self, log: RecordLog) -> None:
        self._log = log

    # -- retention ---------------------------------------------------------------------------

    def set_retention(
        self,
        tenant: str,
        *,
        floor_days: int,
        expire_after_days: int | None,
        set_by: str,
        now_us: int,
        reason: str | None = None,
    ) -> RetentionView:
        """Record the tenant's next retention version; expiry may not come before the floor."""
        parse(
            RetentionRequest,
            {"floor_days": floor_days, "expire_after_days": expire_after_days, "reason": reason},
        )
        check_asker(set_by, reason)
        if expire_after_days is not None and expire_after_days < floor_days:
            raise ErasureRequestInvalid(
                f"content cannot expire after {expire_after_days} days while the floor keeps "
                f"it {floor_days} days",
                pointer="/expire_after_days",
            )

        def make(connection: Connection) -> MadeBatch:
            latest = connection.execute(
                select(func.max(retention_rules.c.version)).where(
                    retention_rules.c.tenant == tenant
                )
            ).scalar()
            version = (latest or 0) + 1
            record = RetentionRecord(
                id=retention_record_id(version),
                tenant=tenant,
                service=REPLAY_SERVICE,
                version=version,
                floor_days=floor_days,
                expire_after_days=expire_after_days,
                set_by=set_by,
                set_at=from_micros(now_us),
                reason=reason,
            )

            def then(connection: Connection, appended: list[Appended]) -> None:
                write_retention(connection, appended[0].index, record)

            return MadeBatch([sign_made(connection, self._log.record_signer(), record)], then)

        self._log.append_made(make)
        return self.retention(tenant)

    def retention(self, tenant: str) -> RetentionView:
        with self._log.engine.connect() as connection:
            return retention_view(tenant, retention_in_force(connection, tenant))

    # -- holds -------------------------------------------------------------------------------

    def add_hold(
        self,
        tenant: str,
        *,
        reason: str,
        placed_by: str,
        now_us: int,
        subject: str | None = None,
        selected: HoldFilter | None = None,
        hold_id: str | None = None,
    ) -> HoldView:
        """Place a hold on a subject or on the decisions `selected` matches (one of them).
        The same id placed again with the same subject, filter and reason is answered as
        it stands; otherwise it is an `IdConflict`."""
        parse(HoldRequest, {"subject": subject, "reason": reason, "hold_id": hold_id})
        check_asker(placed_by, reason)
        if (subject is None) == (selected is None):
            raise ErasureRequestInvalid("a hold names a subject or a filter", pointer="/subject")
        if selected is not None:
            check_filter(selected)
        hold_id = hold_id or new_id("hold")

        def make(connection: Connection) -> MadeBatch:
            found = find_hold(connection, tenant, hold_id)
            if found is not None:
                same = (found.subject, found.service, found.decision_type, found.reason) == (
                    subject,
                    None if selected is None else selected.service,
                    None if selected is None else selected.decision_type,
                    reason,
                )
                if not same:
                    raise IdConflict(
                        f"hold {hold_id!r} of tenant {tenant!r} was placed with another "
                        "subject, filter or reason",
                        pointer="/hold_id",
                    )
                return MadeBatch(())
            record = LegalHoldRecord(
                id=hold_record_id(hold_id, "add"),
                tenant=tenant,
                service=REPLAY_SERVICE,
                hold_id=hold_id,
                action="add",
                subject=subject,
                filter=selected,
                reason=reason,
                by=placed_by,
                at=from_micros(now_us),
            )
            return self._hold_batch(connection, record)

        self._log.append_made(make)
        return self.hold(tenant, hold_id)

    def release_hold(
        self, tenant: str, hold_id: str, *, released_by: str, now_us: int, reason: str | None
    ) -> HoldView:
        """Lift a live hold; releasing one released already answers it as it stands."""
        check_asker(released_by, reason)

        def make(connection: Connection) -> MadeBatch:
            found = find_hold(connection, tenant, hold_id)
            if found is None:
                raise NotFound(f"no hold {hold_id!r}")
            if found.released_idx is not None:
                return MadeBatch(())
            record = LegalHoldRecord(
                id=hold_record_id(hold_id, "release"),
                tenant=tenant,
                service=REPLAY_SERVICE,
                hold_id=hold_id,
                action="release",
                reason=reason or f"release of hold {hold_id}",
                by=released_by,
                at=from_micros(now_us),
            )
            return self._hold_batch(connection, record)

        self._log.append_made(make)
        return self.hold(tenant, hold_id)

    def _hold_batch(self, connection: Connection, record: LegalHoldRecord) -> MadeBatch:
        def then(connection: Connection, appended: list[Appended]) -> None:
            write_hold(connection, appended[0].index, record)

        return MadeBatch([sign_made(connection, self._log.record_signer(), record)], then)

    def hold(self, tenant: str, hold_id: str) -> HoldView:
        with self._log.engine.connect() as connection:
            found = find_hold(connection, tenant, hold_id)
        if found is None:
            raise NotFound(f"no hold {hold_id!r}")
        return hold_view(found)

    def holds(self, tenant: str, *, released: bool = False) -> list[HoldView]:
        with self._log.engine.connect() as connection:
            return [hold_view(hold) for hold in live_holds(connection, tenant, released=released)]
