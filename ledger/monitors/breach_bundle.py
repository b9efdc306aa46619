"""A breach with everything needed to check it offline: the bundle `prov verify-breach` reads.

The bundle holds a signed checkpoint, inclusion proofs of the breach record's entry and of
the monitor record's entry into it, and the stretch of the log from the entry before the
breach's window to the breach record itself. Entries of the breach's tenant carry their
envelopes (the checker re-reads every decision in the window from them); other tenants'
entries carry only their envelope digest, which is all the hash chain needs, so one tenant's
bundle reveals nothing of another's records. The chain links each entry to the one before
(`ledger.log.entry`), so the inclusion proof of the breach's entry vouches for every entry
of the stretch.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection, select

from ledger.errors import NotFound
from ledger.log.entry import GENESIS_PREV
from ledger.log.proofs import inclusion_proof
from ledger.log.store import latest_checkpoint, read_entries, read_entry
from ledger.records import dsse
from ledger.records.monitor import BREACH_PAYLOAD_TYPE, breach_in
from ledger.storage.schema import log_entries

BUNDLE_FORMAT = "prov.breach-bundle/v1"


def breach_bundle(connection: Connection, tenant: str, record_id: str) -> dict[str, Any]:
    """The bundle for the breach record `record_id` of `tenant`, or the one at that log
    index when `record_id` is a number (breach ids never are); `NotFound` if there is none."""
    named = (
        log_entries.c.idx == int(record_id)
        if record_id.isdigit()
        else log_entries.c.record_id == record_id
    )
    row = connection.execute(
        select(log_entries.c.idx).where(
            log_entries.c.tenant == tenant,
            named,
            log_entries.c.payload_type == BREACH_PAYLOAD_TYPE,
        )
    ).first()
    if row is None:
        raise NotFound(f"no breach {record_id!r} in tenant {tenant!r}")
    breach_entry = read_entry(connection, row.idx)
    checkpoint = latest_checkpoint(connection)
    assert breach_entry is not None
    assert checkpoint is not None
    breach = breach_in(breach_entry.envelope)
    start = max(0, breach.window.first - 1)
    stretch = []
    for entry in read_entries(connection, start, breach_entry.index + 1):
        item: dict[str, Any] = {
            "index": entry.index,
            "integrated_us": entry.integrated_us,
            "tenant": entry.tenant,
        }
        if entry.tenant == tenant:
            item["envelope"] = dsse.b64encode(entry.envelope)
        else:
            item["envelope_sha256"] = hashlib.sha256(entry.envelope).hexdigest()
        stretch.append(item)
    monitor_entry = read_entry(connection, breach.monitor.index)
    assert monitor_entry is not None
    size = checkpoint.tree_size
    return {
        "format": BUNDLE_FORMAT,
        "checkpoint": checkpoint.note,
        "breach_index": breach_entry.index,
        "monitor": {
            "index": monitor_entry.index,
            "integrated_us": monitor_entry.integrated_us,
            "tenant": monitor_entry.tenant,
            "prev_leaf": _prev_leaf(connection, monitor_entry.index).hex(),
            "envelope": dsse.b64encode(monitor_entry.envelope),
            "inclusion": inclusion_proof(
                connection, monitor_entry.index, size, checkpointed=True
            ).to_json(),
        },
        "chain_start": _prev_leaf(connection, start).hex(),
        "entries": stretch,
        "inclusion": inclusion_proof(
            connection, breach_entry.index, size, checkpointed=True
        ).to_json(),
    }


def _prev_leaf(connection: Connection, index: int) -> bytes:
    previous = read_entry(connection, index - 1) if index > 0 else None
    return GENESIS_PREV if previous is None else previous.leaf_hash
