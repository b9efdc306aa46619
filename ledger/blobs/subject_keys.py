"""Per-subject data keys, kept outside the ledger's database and wrapped by the KEK.

Every blob is sealed under the data key of its subject (a tenant's blobs without a subject
share the tenant's own key). Erasing a subject deletes its key: every copy of its blobs,
in the object store, a replica or a backup of the database taken before, is then
ciphertext that nothing can open. The ledger's database never holds a data key, wrapped or
not, so restoring an old backup of it brings no key back.

The keys live in a small SQLite file of their own (`prov-subject-keys.db` beside the ledger
key), opened with `secure_delete` so that a destroyed key's bytes are overwritten in the
file, and a rollback journal (not WAL) so that no copy outlives the transaction that
deleted it. Back it up, if at all, on its own short schedule, never with the database; a
KMS can replace it later. A key's id is random, so a subject erased and later seen again
gets a new key, and blobs sealed under the old one stay unreadable.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ledger.blobs.kek import unwrap, wrap
from ledger.blobs.sealing import KEY_BYTES

SUBJECT_KEYS_NAME: Final = "prov-subject-keys.db"
#: The subject of a tenant's blobs that name none.
NO_SUBJECT: Final = ""
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS data_keys (
    tenant TEXT NOT NULL,
    subject TEXT NOT NULL,
    key_id TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    created_us INTEGER NOT NULL,
    PRIMARY KEY (tenant, subject)
)
"""


@dataclass(frozen=True, slots=True)
class DataKey:
    key_id: str
    key: bytes


def default_subject_keys_path(ledger_key_path: Path) -> Path:
    """Where the data keys live unless configured: next to the ledger key."""
    return ledger_key_path.with_name(SUBJECT_KEYS_NAME)


def _label(tenant: str, subject: str, key_id: str) -> bytes:
    return f"prov data key\n{tenant}\n{subject}\n{key_id}".encode()


class SubjectKeys:
    """The data keys of every subject of every tenant, in one file."""

    def __init__(self, path: Path, kek: bytes) -> None:
        self.path = path
        self._kek = kek
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA secure_delete = ON")
            db.execute("PRAGMA journal_mode = DELETE")
            db.execute("PRAGMA synchronous = FULL")
            db.execute(_SCHEMA)
            self._local.db = db
        return db

    def _unwrap(self, tenant: str, subject: str, key_id: str, wrapped: bytes) -> DataKey:
        return DataKey(key_id, unwrap(self._kek, wrapped, _label(tenant, subject, key_id)))

    def current(self, tenant: str, subject: str) -> DataKey | None:
        """The subject's live key, or None when it has none (never had, or erased)."""
        row = (
            self._db()
            .execute(
                "SELECT key_id, wrapped FROM data_keys WHERE tenant = ? AND subject = ?",
                (tenant, subject),
            )
            .fetchone()
        )
        return None if row is None else self._unwrap(tenant, subject, row[0], row[1])

    def key(self, tenant: str, subject: str, key_id: str) -> bytes | None:
        """The data key `key_id` of the subject, or None when it was destroyed."""
        found = self.current(tenant, subject)
        return found.key if found is not None and found.key_id == key_id else None

    def ensure(self, tenant: str, subject: str) -> DataKey:
        """The subject's live key, created on first use."""
        return self.ensure_many(tenant, [subject])[subject]

    def ensure_many(self, tenant: str, subjects: Iterable[str]) -> dict[str, DataKey]:
        """The live keys of `subjects`, those missing created in one transaction."""
        wanted = sorted(set(subjects))
        found = self._current_many(tenant, wanted)
        missing = [subject for subject in wanted if subject not in found]
        if missing:
            now_us = time.time_ns() // 1000
            rows = []
            for subject in missing:
                key_id = secrets.token_hex(16)
                wrapped = wrap(
                    self._kek, secrets.token_bytes(KEY_BYTES), _label(tenant, subject, key_id)
                )
                rows.append((tenant, subject, key_id, wrapped, now_us))
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have created some meanwhile: theirs stand.
                db.executemany("INSERT OR IGNORE INTO data_keys VALUES (?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            found.update(self._current_many(tenant, missing))
        return found

    def _current_many(self, tenant: str, subjects: list[str]) -> dict[str, DataKey]:
        found: dict[str, DataKey] = {}
        db = self._db()
        for start in range(0, len(subjects), 500):
            chunk = subjects[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for subject, key_id, wrapped in db.execute(
                "SELECT subject, key_id, wrapped FROM data_keys "
                f"WHERE tenant = ? AND subject IN ({marks})",
                (tenant, *chunk),
            ):
                found[subject] = self._unwrap(tenant, subject, key_id, wrapped)
        return found

    def destroy(self, tenant: str, subject: str) -> bool:
        """Delete the subject's key for good (its bytes overwritten); whether there was one."""
        cursor = self._db().execute(
            "DELETE FROM data_keys WHERE tenant = ? AND subject = ?", (tenant, subject)
        )
        return cursor.rowcount > 0
