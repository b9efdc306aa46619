"""The ledger as the settings describe it: its database, keys and blob storage, opened (or
created) the same way by the CLI, `prov serve` and each server worker."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from ledger.blobs.stores.base import ObjectStore
from ledger.blobs.stores.open import open_store
from ledger.ledger import Ledger
from ledger.storage.db import make_engine
from service.settings import Settings


def blob_store(settings: Settings, engine: Engine) -> ObjectStore:
    """The object store `PROV_BLOB_STORE` names (the database by default)."""
    return open_store(settings.blob_store, engine=engine, s3=settings.s3_options())


def _options(settings: Settings, engine: Engine) -> dict[str, Any]:
    return {
        "replay_key_path": settings.replay_key_file,
        "max_record_bytes": settings.max_record_bytes,
        "blob_store": blob_store(settings, engine),
        "kek_path": settings.kek_file,
        "subject_keys_file": settings.subject_keys_url or settings.subject_keys_file,
    }


def open_ledger(settings: Settings) -> Ledger:
    """The initialized ledger of `settings`."""
    engine = make_engine(settings.database_url)
    return Ledger.open(engine, settings.ledger_key_file, **_options(settings, engine))


def init_ledger(settings: Settings, origin: str | None = None) -> Ledger:
    """Create or migrate the ledger of `settings` and its keys (`prov init`, `prov serve`)."""
    engine = make_engine(settings.database_url)
    return Ledger.init(
        engine, settings.ledger_key_file, origin or settings.origin, **_options(settings, engine)
    )
