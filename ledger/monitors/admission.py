"""Admission's step 8 for a monitor record: the definition compiles and has its digest.

The record's shape is checked by its decoder (steps 1 to 4) and its signer by steps 5 to 7,
which accept only the ledger's record key for the service `prov-replay`. What remains is
what the shape cannot say: that the definition is one the ledger will evaluate
(`ledger.monitors.compile`) and that `digest` is its content address.
"""

from __future__ import annotations

from ledger.errors import MonitorInvalid
from ledger.indexes.monitors import MonitorRow, monitor_row
from ledger.monitors.compile import compile_monitor
from ledger.records.monitor import MonitorRecord, definition_digest, monitor_record_id


def checked_monitor_row(record: MonitorRecord) -> MonitorRow:
    """The registry row of a monitor record whose definition compiles and matches its
    digest and id; `MonitorInvalid` (with a pointer under `/payload/definition`) if not."""
    try:
        compile_monitor(record.definition)
    except MonitorInvalid as error:
        raise MonitorInvalid(
            error.detail, pointer=f"/payload/definition{error.pointer or ''}"
        ) from None
    if definition_digest(record.definition) != record.digest:
        raise MonitorInvalid(
            "`digest` is not the SHA-256 of the definition's canonical JSON",
            pointer="/payload/digest",
        )
    if record.tenant != record.definition.tenant:
        raise MonitorInvalid(
            "the definition names another tenant than the record", pointer="/payload/tenant"
        )
    expected = monitor_record_id(record.definition.id, record.version)
    if record.id != expected:
        raise MonitorInvalid(f"a monitor record's id is {expected!r}", pointer="/payload/id")
    return monitor_row(record)
