"""What erasure and its rules need of the ledger, and how they sign the records they make.

The records are signed with the ledger's record key on the connection that holds the log's
lock (`ReplaySigner.sign_in`), and handed to the sequencer as `Admitted` directly: they
never pass admission, which refuses them from outside (`LedgerMadeRecord`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Connection, Engine

from ledger.admission import Admitted
from ledger.blobs.vault import BlobVault
from ledger.keys.replay_signing import ReplaySigner
from ledger.log.sequencer import Appended, MadeBatch
from ledger.records.erasure import (
    ErasureRecord,
    LegalHoldRecord,
    RetentionRecord,
    encode_made,
    payload_type_of,
)


class RecordLog(Protocol):
    """The ledger, as erasure and its rules use it (`ledger.ledger.Ledger`)."""

    engine: Engine

    @property
    def blobs(self) -> BlobVault: ...

    def record_signer(self) -> ReplaySigner: ...

    def append_made(self, make: Callable[[Connection], MadeBatch]) -> list[Appended]: ...


def sign_made(
    connection: Connection,
    signer: ReplaySigner,
    record: ErasureRecord | RetentionRecord | LegalHoldRecord,
) -> Admitted:
    """The record signed with the record key, ready for the sequencer to place."""
    payload_type = payload_type_of(record)
    raw, keyid = signer.sign_in(payload_type, encode_made(record), record.tenant, connection)
    return Admitted(raw, payload_type, record.tenant, record.id, keyid, None)


def new_id(prefix: str) -> str:
    """A generated request or hold id: the prefix and 96 random bits."""
    return f"{prefix}-{secrets.token_hex(12)}"
