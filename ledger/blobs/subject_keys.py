"""Per-subject data keys, kept outside the ledger's database and wrapped by the KEK.

Every blob is sealed under the data key of its subject (a tenant's blobs without a subject
share the tenant's own key). Erasing a subject deletes its key: every copy of its blobs,
in the object store, a replica or a backup of the database taken before, is then
ciphertext that nothing can open. The ledger's database never holds a data key, wrapped or
not, so restoring an old backup of it brings no key back.

The keys live in a store of their own:

- by default a small SQLite file (`prov-subject-keys.db` beside the ledger key,
  `PROV_SUBJECT_KEYS_FILE`), opened with `secure_delete` so that a destroyed key's bytes
  are overwritten in the file, and a rollback journal (not WAL) so that no copy outlives
  the transaction that deleted it;
- or, for servers on several hosts, a PostgreSQL database of its own
  (`PROV_SUBJECT_KEYS_URL`), never the ledger's: a destroyed key's row is deleted and the
  table vacuumed, and its bytes linger in the keys database's files only until reused.

Back the key store up, if at all, on its own short schedule, never with the ledger's
database; a KMS can replace it later. A key's id is random, so a subject erased and later
seen again gets a new key, and blobs sealed under the old one stay unreadable.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    select,
    text,
    update,
)

from ledger.blobs.kek import unwrap, wrap
from ledger.blobs.sealing import KEY_BYTES
from ledger.storage.db import conflict_insert, normalize_url

SUBJECT_KEYS_NAME: Final = "prov-subject-keys.db"
#: The subject of a tenant's blobs that name none.
NO_SUBJECT: Final = ""
_CHUNK: Final = 500

_metadata = MetaData()
# A subject has at most one live key (`retired_us` NULL): the one new uploads are sealed
# under. An erasure retires it before it commits and destroys it after; a retired key
# still opens what it sealed until then.
data_keys = Table(
    "data_keys",
    _metadata,
    Column("tenant", String(64), primary_key=True),
    Column("subject", String(256), primary_key=True),
    Column("key_id", String(32), primary_key=True),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("retired_us", BigInteger, nullable=True),
    Index(
        "ux_data_keys_live",
        "tenant",
        "subject",
        unique=True,
        sqlite_where=text("retired_us IS NULL"),
        postgresql_where=text("retired_us IS NULL"),
    ),
)


@dataclass(frozen=True, slots=True)
class DataKey:
    key_id: str
    key: bytes


def default_subject_keys_path(ledger_key_path: Path) -> Path:
    """Where the data keys live unless configured: next to the ledger key."""
    return ledger_key_path.with_name(SUBJECT_KEYS_NAME)


def _label(tenant: str, subject: str, key_id: str) -> bytes:
    return f"prov data key\n{tenant}\n{subject}\n{key_id}".encode()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 60000")
    cursor.execute("PRAGMA secure_delete = ON")
    cursor.execute("PRAGMA journal_mode = DELETE")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.close()


def open_key_store(location: Path | str) -> Engine:
    """The key store at `location`: a SQLite file path, or a PostgreSQL URL."""
    if isinstance(location, Path) or "://" not in location:
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(normalize_url(str(path)), connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_on_connect)
    else:
        engine = create_engine(normalize_url(location), pool_pre_ping=True)
    _metadata.create_all(engine)
    return engine


def key_store_holds_keys(location: Path | str) -> bool:
    """Whether the key store at `location` exists and holds any data key."""
    if (isinstance(location, Path) or "://" not in location) and not Path(location).exists():
        return False
    engine = open_key_store(location)
    try:
        with engine.connect() as connection:
            return connection.execute(select(data_keys.c.key_id).limit(1)).first() is not None
    finally:
        engine.dispose()


class SubjectKeys:
    """The data keys of every subject of every tenant, in one key store."""

    def __init__(self, location: Path | str, kek: bytes) -> None:
        self.location = location
        self.engine = open_key_store(location)
        self._kek = kek

    def _unwrap(self, tenant: str, subject: str, key_id: str, wrapped: bytes) -> DataKey:
        return DataKey(key_id, unwrap(self._kek, bytes(wrapped), _label(tenant, subject, key_id)))

    def current(self, tenant: str, subject: str) -> DataKey | None:
        """The subject's live key, or None when it has none (never had, or erased)."""
        return self._current_many(tenant, [subject]).get(subject)

    def key(self, tenant: str, subject: str, key_id: str) -> bytes | None:
        """The data key `key_id` of the subject (live or retired), or None once destroyed."""
        c = data_keys.c
        with self.engine.connect() as connection:
            row = connection.execute(
                select(c.wrapped).where(
                    c.tenant == tenant, c.subject == subject, c.key_id == key_id
                )
            ).first()
        return None if row is None else self._unwrap(tenant, subject, key_id, row.wrapped).key

    def is_live(self, tenant: str, subject: str, key_id: str) -> bool:
        """Whether `key_id` is still the key new uploads of the subject are sealed under."""
        found = self.current(tenant, subject)
        return found is not None and found.key_id == key_id

    def retire(self, tenant: str, subject: str) -> None:
        """Stop handing out the subject's live key (an erasure is about to commit); what it
        sealed stays readable until `destroy`."""
        with self.engine.begin() as connection:
            connection.execute(
                update(data_keys)
                .where(
                    data_keys.c.tenant == tenant,
                    data_keys.c.subject == subject,
                    data_keys.c.retired_us.is_(None),
                )
                .values(retired_us=time.time_ns() // 1000)
            )

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
                label = _label(tenant, subject, key_id)
                wrapped = wrap(self._kek, secrets.token_bytes(KEY_BYTES), label)
                rows.append(
                    {
                        "tenant": tenant,
                        "subject": subject,
                        "key_id": key_id,
                        "wrapped": wrapped,
                        "created_us": now_us,
                    }
                )
            with self.engine.begin() as connection:
                # Another process may have created some meanwhile: theirs stand.
                insert = conflict_insert(connection, data_keys).on_conflict_do_nothing()
                connection.execute(insert, rows)
            found.update(self._current_many(tenant, missing))
        return found

    def _current_many(self, tenant: str, subjects: list[str]) -> dict[str, DataKey]:
        found: dict[str, DataKey] = {}
        c = data_keys.c
        with self.engine.connect() as connection:
            for start in range(0, len(subjects), _CHUNK):
                rows = connection.execute(
                    select(c.subject, c.key_id, c.wrapped).where(
                        c.tenant == tenant,
                        c.subject.in_(subjects[start : start + _CHUNK]),
                        c.retired_us.is_(None),
                    )
                )
                for subject, key_id, wrapped in rows:
                    found[subject] = self._unwrap(tenant, subject, key_id, wrapped)
        return found

    def destroy(self, tenant: str, subject: str) -> bool:
        """Retire the subject's live key and delete every key of the subject for good;
        whether there was one."""
        self.retire(tenant, subject)
        return self.destroy_retired(tenant, subject)

    def destroy_retired(self, tenant: str, subject: str) -> bool:
        """Delete the subject's retired keys for good, and not a live one made since the
        last `retire` (an upload after the erasure committed, whose content stays);
        whether any was deleted."""
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(data_keys).where(
                    data_keys.c.tenant == tenant,
                    data_keys.c.subject == subject,
                    data_keys.c.retired_us.is_not(None),
                )
            )
        if result.rowcount and self.engine.dialect.name == "postgresql":
            # Free the dead rows' space for reuse now rather than at autovacuum's leisure.
            with self.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            ) as connection:
                connection.execute(text("VACUUM data_keys"))
        return bool(result.rowcount)

    def close(self) -> None:
        self.engine.dispose()
