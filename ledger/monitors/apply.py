"""Applying monitor definitions: each changed one becomes the next version's record.

A definition's content address is the digest of its canonical JSON, so applying the same
file twice changes nothing: `plan` answers ``unchanged`` for a definition whose digest is
the latest version's, and gives every other one the next version number. The ledger signs
the records with its record key; the sequencer refuses a version applied concurrently with
another definition (`MonitorVersionConflict`), so two administrators never both win.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, func, select

from ledger.errors import MonitorInvalid
from ledger.monitors.compile import compile_monitor
from ledger.records._pointer import explain
from ledger.records.monitor import (
    MonitorDefinition,
    MonitorRecord,
    definition_digest,
    monitor_record_id,
)
from ledger.records.replay import REPLAY_SERVICE
from ledger.storage.schema import monitors

MAX_MONITORS_PER_APPLY = 256


@dataclass(frozen=True, slots=True)
class Planned:
    """What applying one definition does: `record` is None when it is unchanged."""

    definition: MonitorDefinition
    digest: str
    version: int
    record: MonitorRecord | None


def parse_definitions(data: Any, *, where: str = "") -> list[MonitorDefinition]:
    """Definitions from decoded TOML or JSON: `{"monitor": [...]}` or a list; each is
    checked beyond its shape (`compile_monitor`). `MonitorInvalid` names the member at
    fault as `/monitor/<n>/<member>`."""
    items = data.get("monitor") if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) - {"monitor"}:
        unknown = sorted(set(data) - {"monitor"})[0]
        raise MonitorInvalid(f"unknown top-level member {unknown!r}{where}", pointer=f"/{unknown}")
    if not isinstance(items, list) or not items:
        raise MonitorInvalid(f"no `[[monitor]]` tables{where}", pointer="/monitor")
    if len(items) > MAX_MONITORS_PER_APPLY:
        raise MonitorInvalid(
            f"more than {MAX_MONITORS_PER_APPLY} monitors in one apply", pointer="/monitor"
        )
    definitions = []
    seen: set[tuple[str, str]] = set()
    for position, item in enumerate(items):
        base = f"/monitor/{position}"
        members = item
        if isinstance(item, dict) and isinstance(item.get("limit"), int | float):
            # TOML writes numbers bare; the record keeps the limit as exact decimal text.
            members = {**item, "limit": _number_text(item["limit"])}
        try:
            definition = msgspec.convert(members, MonitorDefinition)
        except msgspec.ValidationError as error:
            detail, pointer = explain(error)
            raise MonitorInvalid(f"{detail}{where}", pointer=base + pointer) from None
        try:
            compile_monitor(definition)
        except MonitorInvalid as error:
            raise MonitorInvalid(
                f"{error.detail}{where}", pointer=base + (error.pointer or "")
            ) from None
        key = (definition.tenant, definition.id)
        if key in seen:
            raise MonitorInvalid(
                f"monitor {definition.id!r} is defined twice", pointer=base + "/id"
            )
        seen.add(key)
        definitions.append(definition)
    return definitions


def parse_toml(text: str) -> list[MonitorDefinition]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise MonitorInvalid(f"not TOML: {error}") from None
    return parse_definitions(data)


def _number_text(value: float) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(value, ".18f").rstrip("0").rstrip(".")
    return text


def plan(
    connection: Connection,
    definitions: Sequence[MonitorDefinition],
    *,
    applied_by: str,
    applied_at: datetime,
) -> list[Planned]:
    """The record each definition needs, against the latest applied versions."""
    planned = []
    for definition in definitions:
        digest = definition_digest(definition)
        latest = connection.execute(
            select(monitors.c.version, monitors.c.digest)
            .where(monitors.c.tenant == definition.tenant, monitors.c.monitor_id == definition.id)
            .order_by(monitors.c.version.desc())
            .limit(1)
        ).first()
        if latest is not None and latest.digest == digest:
            planned.append(Planned(definition, digest, latest.version, None))
            continue
        version = 1 if latest is None else latest.version + 1
        record = MonitorRecord(
            id=monitor_record_id(definition.id, version),
            tenant=definition.tenant,
            service=REPLAY_SERVICE,
            applied_at=applied_at,
            applied_by=applied_by,
            version=version,
            digest=digest,
            definition=definition,
        )
        planned.append(Planned(definition, digest, version, record))
    return planned


def version_count(connection: Connection, tenant: str) -> int:
    return int(
        connection.execute(
            select(func.count()).select_from(monitors).where(monitors.c.tenant == tenant)
        ).scalar_one()
    )
