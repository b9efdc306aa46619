"""`prov verify --blobs`: every blob the ledger indexes is present, erased, or unreadable.

The log's own verification (`ledger.log.verify`) covers the digests, which the records
carry; this pass covers the bytes the digests name, which live beside the log:

- **present**: the row is live, its subject's data key exists, and the sealed object opens
  under it (AES-GCM authenticates it against the tenant and digest) to bytes that hash to
  the digest;
- **erased**: the row is marked erased by an erasure record, and that record, at the row's
  `erasure_idx`, is an erasure record of the same tenant that lists the digest. An erased
  blob is never reported as tampered: its absence is what the record says. A row erased
  before erasure records existed (no index) is reported as such;
- **unreadable**: a live row whose object is missing or does not open (altered, truncated,
  another blob's), or whose key is gone: named with the reason, and the check fails.

An erased row whose index names no erasure record listing its digest also fails: the
index claims an erasure the log does not show. Erasures recorded but not yet completed
(objects or key still to destroy) are listed as notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, select

from ledger.blobs.digest import digest_of
from ledger.blobs.vault import BlobRow, BlobVault
from ledger.errors import BlobErased, ProvError, RecordRejected
from ledger.log.store import read_entry
from ledger.records.erasure import ERASURE_PAYLOAD_TYPE, ErasureRecord, erasure_in
from ledger.storage.schema import erasures

_PAGE = 1000


@dataclass
class BlobsReport:
    """The outcome; true when no blob is unreadable and every erasure is in the log."""

    present: int = 0
    # (tenant, digest, log index of its erasure record or None, erased_at in micros)
    erased: list[tuple[str, str, int | None, int]] = field(default_factory=list)
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.unreadable and not self.faults


def check_blobs(engine: Engine, vault: BlobVault) -> BlobsReport:
    report = BlobsReport()
    records: dict[int, ErasureRecord | None] = {}
    after = ("", "")
    while True:
        with engine.connect() as connection:
            page = BlobVault.page(connection, after, _PAGE)
            for tenant, row in page:
                if row.erased_us is not None:
                    _erased(connection, report, records, tenant, row)
        if not page:
            break
        for tenant, row in page:
            if row.erased_us is None:
                _live(vault, report, tenant, row)
        after = (page[-1][0], page[-1][1].digest)
    with engine.connect() as connection:
        for tenant, request_id, first in connection.execute(
            select(erasures.c.tenant, erasures.c.request_id, erasures.c.first_idx).where(
                erasures.c.state == "recorded"
            )
        ):
            report.notes.append(
                f"erasure {request_id!r} of tenant {tenant!r} (entry {first}) is recorded and its "
                "blobs unreadable, but its objects or key are not yet destroyed: run it again "
                "(`prov erase --request-id`) or start the server"
            )
    return report


def _erased(
    connection: Connection,
    report: BlobsReport,
    records: dict[int, ErasureRecord | None],
    tenant: str,
    row: BlobRow,
) -> None:
    assert row.erased_us is not None
    index = row.erasure_idx
    report.erased.append((tenant, row.digest, index, row.erased_us))
    if index is None:
        return  # erased before erasure records existed: the index's word alone
    if index not in records:
        entry = read_entry(connection, index)
        record = None
        if entry is not None and entry.payload_type == ERASURE_PAYLOAD_TYPE:
            try:
                record = erasure_in(entry.envelope)
            except RecordRejected:
                record = None
        records[index] = record
    record = records[index]
    if record is None:
        report.faults.append(
            f"blob {row.digest} of tenant {tenant!r} is marked erased by entry {index}, "
            "which is not an erasure record"
        )
    elif record.tenant != tenant or row.digest not in record.digests:
        report.faults.append(
            f"blob {row.digest} of tenant {tenant!r} is marked erased by entry {index}, "
            "whose erasure record does not list it"
        )


def _live(vault: BlobVault, report: BlobsReport, tenant: str, row: BlobRow) -> None:
    try:
        data = vault.get(tenant, row.digest)
    except BlobErased:
        report.unreadable.append(
            (tenant, row.digest, "its subject's data key is destroyed, but no erasure says so")
        )
        return
    except ProvError as error:
        report.unreadable.append((tenant, row.digest, error.detail))
        return
    if digest_of(data) != row.digest:
        report.unreadable.append((tenant, row.digest, "its bytes do not hash to its digest"))
        return
    report.present += 1
