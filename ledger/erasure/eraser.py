"""Erasure as a record: find, check, record and mark in one commit; drop and shred after.

An erasure runs in two steps (docs/erasure.md):

1. **Record** (`append_made`, under the log's write lock): the request id must be new for
   the tenant (a known id is answered from its row: completed if `recorded`, as it stands
   otherwise; the same id for another subject or kind is an `IdConflict`); the subject must
   be known (`SubjectUnknown`); the retention floor and the live holds must allow it
   (`ErasureRefused`, or with `queue` a `queued` row and nothing else). Then the erasure
   records (`ledger.records.erasure`, signed by the record key, `PART_DIGESTS` digests
   each) are placed, and in the same transaction the request's row is written `recorded`,
   every listed digest is marked erased with the index of the record that lists it (reads
   answer `BlobErased` from this commit on) and, in the database store, the objects are
   deleted.
2. **Complete**: the subject's data key is destroyed (a subject erasure retires the key
   before step 1, so that an upload racing it is re-sealed under a new key instead of
   being lost with the old one; a `blobs` or `expiry` erasure destroys no key, since the
   subject's other content still needs it), the objects are deleted from the store, and
   the row becomes `done`. Both are idempotent.

A crash before step 1 commits leaves nothing and every blob readable; after it, the record
and every mark, and a re-run of the request, `complete_recorded` (at the server's start-up)
or `run_due` finishes step 2. Every method takes the clock (`now_us`) from its caller.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ledger.blobs.digest import check_digest
from ledger.erasure.made import RecordLog, new_id, sign_made
from ledger.erasure.requests import EraseRequest, check_asker, parse
from ledger.erasure.rules import (
    DAY_US,
    Refusal,
    Retention,
    expiring_tenants,
    held_digests,
    live_holds,
    retention_in_force,
    subject_refusal,
)
from ledger.erasure.targets import expired_digests, subject_digests, subject_known
from ledger.erasure.views import ErasureView, erasure_view, list_requests, read_request
from ledger.errors import ErasureRefused, IdConflict, NotFound, ProvError, SubjectUnknown
from ledger.indexes.erasures import write_erasure
from ledger.log.entry import from_micros, rfc3339
from ledger.log.sequencer import Appended, MadeBatch
from ledger.records.erasure import (
    PART_DIGESTS,
    ErasureKind,
    ErasureRecord,
    erasure_record_id,
)
from ledger.records.replay import REPLAY_SERVICE
from ledger.storage.db import side_write_transaction
from ledger.storage.schema import erasures

#: Who asks for the erasures the expiry job makes.
EXPIRY_JOB = "expiry-job"

_log = logging.getLogger(__name__)


class _Known(Exception):
    """The request id was recorded meanwhile: answer from its row."""


class Erasures:
    """Erasure requests of every tenant of one ledger (`Ledger.erasures`)."""

    def __init__(self, log: RecordLog) -> None:
        self._log = log

    # -- asking --------------------------------------------------------------------------

    def erase_subject(
        self,
        tenant: str,
        subject: str,
        *,
        reason: str,
        requested_by: str,
        now_us: int,
        request_id: str | None = None,
        queue: bool = False,
    ) -> ErasureView:
        """Erase every blob of the subject: refused (or, with `queue`, queued) inside the
        retention floor or under a live hold."""
        asked = {"subject": subject, "reason": reason, "request_id": request_id, "queue": queue}
        parse(EraseRequest, asked)
        check_asker(requested_by, reason)
        request_id = request_id or new_id("erase")
        known = self._known(tenant, request_id, "subject", subject, now_us)
        if known is not None:
            return known

        def make(connection: Connection) -> MadeBatch:
            if read_request(connection, tenant, request_id) is not None:
                raise _Known
            if not subject_known(connection, tenant, subject):
                raise SubjectUnknown(
                    f"tenant {tenant!r} holds no decision and no blob about subject {subject!r}",
                    pointer="/subject",
                )
            retention = retention_in_force(connection, tenant)
            digests = subject_digests(connection, tenant, subject)
            refusal = _refusal(connection, tenant, subject, digests, retention, now_us)
            if refusal is not None:
                if not queue:
                    raise ErasureRefused(refusal.detail, pointer="/subject")
                connection.execute(
                    insert(erasures).values(
                        tenant=tenant,
                        request_id=request_id,
                        kind="subject",
                        subject=subject,
                        state="queued",
                        requested_by=requested_by,
                        reason=reason,
                        requested_us=now_us,
                        not_before_us=refusal.not_before_us,
                        waiting_for=refusal.detail,
                    )
                )
                return MadeBatch(())
            return self._batch(
                connection,
                _Request(tenant, request_id, "subject", subject, requested_by, reason, now_us),
                digests,
                retention,
                now_us,
            )

        # Retired before the erasure commits, so that no upload still sealing under the
        # subject's key can slip in after it unseen (`BlobVault` re-seals such a blob).
        self._log.blobs.keys.retire(tenant, subject)
        return self._run(make, tenant, request_id, "subject", subject, now_us)

    def erase_blobs(
        self, tenant: str, digests: Sequence[str], *, reason: str, requested_by: str, now_us: int
    ) -> ErasureView | None:
        """Erase the named blobs (an administrator's `DELETE /v1/blobs/…`): `NotFound` for
        one the tenant never held, refused under a live hold; None when every one is erased
        already (nothing new is recorded). The retention floor does not apply: a blob
        erased by name is a correction, recorded with who asked and why."""
        check_asker(requested_by, reason)
        wanted = sorted({check_digest(digest) for digest in digests})
        request_id = new_id("erase")

        def make(connection: Connection) -> MadeBatch:
            held = self._log.blobs.rows(connection, tenant, wanted)
            if missing := [digest for digest in wanted if digest not in held]:
                raise NotFound(f"no blob {missing[0]}")
            live = [digest for digest in wanted if held[digest].erased_us is None]
            if not live:
                return MadeBatch(())
            covered = held_digests(connection, tenant, live, live_holds(connection, tenant))
            if covered:
                digest, hold = next(iter(covered.items()))
                raise ErasureRefused(
                    f"legal hold {hold.hold_id!r} on {hold.what} covers blob {digest} "
                    f"({hold.reason})",
                    pointer="/digest",
                )
            return self._batch(
                connection,
                _Request(tenant, request_id, "blobs", None, requested_by, reason, now_us),
                live,
                retention_in_force(connection, tenant),
                now_us,
            )

        if not self._log.append_made(make):
            return None
        return self.complete(tenant, request_id, now_us)

    # -- the job -------------------------------------------------------------------------

    def run_due(self, now_us: int) -> list[ErasureView]:
        """What the scheduled job does: complete recorded erasures, run the queued ones the
        rules now allow, and expire content past each tenant's expiry."""
        done: list[ErasureView] = []
        # One step failing (the object store down, say) must not stop the others.
        for step in (self.complete_recorded, self.run_queued, self.expire):
            try:
                done += step(now_us)
            except ProvError as error:
                _log.warning("erasure job: %s failed: %s", step.__name__, error)
        return done

    def complete_recorded(self, now_us: int) -> list[ErasureView]:
        """Complete every erasure recorded but not yet done (a crash, a restart)."""
        with self._log.engine.connect() as connection:
            pending = connection.execute(
                select(erasures.c.tenant, erasures.c.request_id).where(
                    erasures.c.state == "recorded"
                )
            ).all()
        return [self.complete(tenant, request_id, now_us) for tenant, request_id in pending]

    def run_queued(self, now_us: int) -> list[ErasureView]:
        """Run each queued erasure whose floor has passed or whose hold may have been
        released; one still refused stays queued, with the new reason."""
        with self._log.engine.connect() as connection:
            due = connection.execute(
                select(erasures).where(
                    erasures.c.state == "queued",
                    erasures.c.not_before_us.is_(None) | (erasures.c.not_before_us <= now_us),
                )
            ).all()
        return [view for row in due if (view := self._run_queued(row, now_us)) is not None]

    def _run_queued(self, row: Any, now_us: int) -> ErasureView | None:
        tenant, request_id, subject = row.tenant, row.request_id, row.subject

        def make(connection: Connection) -> MadeBatch:
            current = read_request(connection, tenant, request_id)
            if current is None or current.state != "queued":
                raise _Known
            retention = retention_in_force(connection, tenant)
            digests = subject_digests(connection, tenant, subject)
            refusal = _refusal(connection, tenant, subject, digests, retention, now_us)
            if refusal is not None:
                connection.execute(
                    update(erasures)
                    .where(erasures.c.tenant == tenant, erasures.c.request_id == request_id)
                    .values(not_before_us=refusal.not_before_us, waiting_for=refusal.detail)
                )
                return MadeBatch(())
            request = _Request(
                tenant, request_id, "subject", subject, row.requested_by, row.reason,
                row.requested_us,
            )  # fmt: skip
            return self._batch(connection, request, digests, retention, now_us)

        self._log.blobs.keys.retire(tenant, subject)  # as in `erase_subject`
        try:
            if not self._log.append_made(make):
                return None
        except _Known:
            return None
        return self.complete(tenant, request_id, now_us)

    def expire(self, now_us: int) -> list[ErasureView]:
        """For each tenant whose rule expires content: erase the blobs whose latest use is
        older than its expiry, those a live hold covers aside (kind ``expiry``)."""
        with self._log.engine.connect() as connection:
            tenants = [tenant for tenant, _ in expiring_tenants(connection)]
        done = []
        for tenant in tenants:
            request_id = new_id("expiry")
            if self._log.append_made(partial(self._expiry, tenant, request_id, now_us)):
                done.append(self.complete(tenant, request_id, now_us))
        return done

    def _expiry(
        self, tenant: str, request_id: str, now_us: int, connection: Connection
    ) -> MadeBatch:
        retention = retention_in_force(connection, tenant)
        if retention.expire_after_days is None:
            return MadeBatch(())
        cutoff = now_us - retention.expire_after_days * DAY_US
        digests = expired_digests(connection, tenant, cutoff)
        held = held_digests(connection, tenant, digests, live_holds(connection, tenant))
        digests = [digest for digest in digests if digest not in held]
        if not digests:
            return MadeBatch(())
        reason = (
            f"content unused for {retention.expire_after_days} days expires "
            f"(retention rule v{retention.version})"
        )
        request = _Request(tenant, request_id, "expiry", None, EXPIRY_JOB, reason, now_us)
        return self._batch(connection, request, digests, retention, now_us)

    # -- completing and reading ----------------------------------------------------------

    def complete(self, tenant: str, request_id: str, now_us: int) -> ErasureView:
        """Drop the objects of a recorded erasure and destroy the keys it frees; then it is
        done. Idempotent, and a request in any other state is answered as it stands."""
        vault = self._log.blobs
        with self._log.engine.connect() as connection:
            row = read_request(connection, tenant, request_id)
            if row is None:
                raise NotFound(f"no erasure request {request_id!r}")
            if row.state != "recorded":
                return erasure_view(row)
            last = row.first_idx + row.parts - 1
            erased = vault.erased_by(connection, tenant, row.first_idx, last)
        # The key first: while the object store is down, the content is already
        # unreadable everywhere. Only a subject erasure destroys a key (the one it retired
        # before it committed); erasing some blobs by name or by expiry deletes their
        # objects and leaves the key, which the subject's other content still needs.
        if row.kind == "subject":
            vault.keys.destroy_retired(tenant, row.subject)
        vault.drop(tenant, erased)
        with side_write_transaction(self._log.engine) as connection:
            connection.execute(
                update(erasures)
                .where(
                    erasures.c.tenant == tenant,
                    erasures.c.request_id == request_id,
                    erasures.c.state == "recorded",
                )
                .values(state="done", done_us=now_us)
            )
            return erasure_view(read_request(connection, tenant, request_id))

    def get(self, tenant: str, request_id: str) -> ErasureView:
        """One request, with the digests it erased."""
        with self._log.engine.connect() as connection:
            row = read_request(connection, tenant, request_id)
            if row is None:
                raise NotFound(f"no erasure request {request_id!r}")
            erased = (
                []
                if row.first_idx is None
                else [
                    item.digest
                    for item in self._log.blobs.erased_by(
                        connection, tenant, row.first_idx, row.first_idx + row.parts - 1
                    )
                ]
            )
        return erasure_view(row, erased)

    def of_tenant(self, tenant: str) -> list[ErasureView]:
        with self._log.engine.connect() as connection:
            return list_requests(connection, tenant)

    # -- inside -----------------------------------------------------------------------------

    def _known(
        self, tenant: str, request_id: str, kind: str, subject: str | None, now_us: int
    ) -> ErasureView | None:
        """The answer to a request id already known: completed when recorded."""
        with self._log.engine.connect() as connection:
            row = read_request(connection, tenant, request_id)
        if row is None:
            return None
        if (row.kind, row.subject) != (kind, subject):
            what = row.kind if row.subject is None else f"subject {row.subject!r}"
            raise IdConflict(
                f"erasure request {request_id!r} of tenant {tenant!r} was made for {what}",
                pointer="/request_id",
            )
        return self.complete(tenant, request_id, now_us)

    def _run(
        self,
        make: Callable[[Connection], MadeBatch],
        tenant: str,
        request_id: str,
        kind: str,
        subject: str | None,
        now_us: int,
    ) -> ErasureView:
        with contextlib.suppress(_Known):
            self._log.append_made(make)
        known = self._known(tenant, request_id, kind, subject, now_us)
        assert known is not None, "the request has its row once append_made returns"
        return known

    def _batch(
        self,
        connection: Connection,
        request: _Request,
        digests: list[str],
        retention: Retention,
        now_us: int,
    ) -> MadeBatch:
        """The request's erasure records, signed, and what their places make follow."""
        signer = self._log.record_signer()
        vault = self._log.blobs
        chunks = [digests[at : at + PART_DIGESTS] for at in range(0, len(digests), PART_DIGESTS)]
        chunks = chunks or [[]]
        records = [
            ErasureRecord(
                id=erasure_record_id(request.request_id, part),
                tenant=request.tenant,
                service=REPLAY_SERVICE,
                request_id=request.request_id,
                kind=request.kind,
                subject=request.subject,
                digests=chunk,
                part=part,
                parts=len(chunks),
                requested_by=request.requested_by,
                reason=request.reason,
                requested_at=from_micros(request.requested_us),
                erased_at=from_micros(now_us),
                retention=retention.ref,
            )
            for part, chunk in enumerate(chunks, start=1)
        ]
        admitted = [sign_made(connection, signer, record) for record in records]
        held = vault.rows(connection, request.tenant, digests)

        def then(connection: Connection, appended: list[Appended]) -> None:
            placed = [(item.index, record) for item, record in zip(appended, records, strict=True)]
            write_erasure(connection, placed, state="recorded", held=held)
            vault.drop_in(
                connection, request.tenant, [row for row in held.values() if row.erased_us is None]
            )

        return MadeBatch(admitted, then)


@dataclass(frozen=True, slots=True)
class _Request:
    """Who asked to erase what, and why."""

    tenant: str
    request_id: str
    kind: ErasureKind
    subject: str | None
    requested_by: str
    reason: str
    requested_us: int


def _refusal(
    connection: Connection,
    tenant: str,
    subject: str,
    digests: Sequence[str],
    retention: Retention,
    now_us: int,
) -> Refusal | None:
    """Why the subject may not be erased now: a hold on the subject or the floor
    (`subject_refusal`), or a hold on any blob its erasure would take, such as content
    of another held subject that its decisions reference."""
    refusal = subject_refusal(connection, tenant, subject, retention, now_us)
    if refusal is not None:
        return refusal
    covered = held_digests(connection, tenant, digests, live_holds(connection, tenant))
    if not covered:
        return None
    digest, hold = next(iter(sorted(covered.items())))
    return Refusal(
        f"legal hold {hold.hold_id!r} on {hold.what} covers blob {digest} of subject "
        f"{subject!r} (placed {rfc3339(hold.placed_us)}: {hold.reason})",
        None,
    )
