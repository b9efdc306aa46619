"""Settings, read from `PROV_*` environment variables (documented in docs/configuration.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import msgspec

from ledger.admission import DEFAULT_MAX_RECORD_BYTES
from ledger.ledger import DEFAULT_ORIGIN

_PREFIX = "PROV_"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # Where the ledger lives: a SQLAlchemy URL, `postgresql://…`, or a SQLite file path.
    database_url: str = "prov.db"
    # The ledger's Ed25519 signing key (PKCS#8 PEM); created by `prov init`, never in the DB.
    ledger_key_file: Path = Path("prov-ledger.key")
    # The log's identity in checkpoints, fixed when the ledger is first initialized.
    origin: str = DEFAULT_ORIGIN
    max_record_bytes: Annotated[int, msgspec.Meta(gt=0)] = DEFAULT_MAX_RECORD_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        fields = {
            name.removeprefix(_PREFIX).lower(): value
            for name, value in environ.items()
            if name.startswith(_PREFIX)
            and name.removeprefix(_PREFIX).lower() in cls.__struct_fields__
        }
        try:
            return msgspec.convert(fields, cls, strict=False)
        except msgspec.ValidationError as error:
            raise ValueError(f"bad PROV_* setting: {error}") from None
