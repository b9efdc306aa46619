"""The monitor indexes rebuilt from the log alone (`prov reindex`).

The registry (`monitors`) comes from the monitor records, the breach index from the breach
records, and the history (`monitor_samples`) and the flagged decisions (`monitor_flags`) from
replaying every decision through fresh windows (`LiveMonitors.replay`), exactly as the
sequencer counted them: a breach record in the log is what the sequencer decided, so the
replay never makes one. A history row is written per run of entries sharing an integration
time (a sequencing batch, or two that shared a clock tick), so the history may differ from
the stored one in where rows fall, never in values; the check compares the registry, the
breaches and the flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from ledger.indexes.monitors import (
    BREACH_COLUMNS,
    FLAG_COLUMNS,
    MONITOR_COLUMNS,
    insert_monitor_rows,
    monitor_row,
)
from ledger.log.store import StoredEntry, read_head, stream_entries
from ledger.monitors.live import LiveMonitors
from ledger.records import dsse
from ledger.records.monitor import (
    BREACH_PAYLOAD_TYPE,
    MONITOR_PAYLOAD_TYPE,
    BreachRecord,
    decode_breach,
    decode_monitor,
)
from ledger.storage.schema import monitor_breaches, monitor_flags, monitor_samples, monitors

_TABLES = (monitors, monitor_breaches, monitor_samples, monitor_flags)
_CHECKED = (
    (monitors, MONITOR_COLUMNS),
    (monitor_breaches, BREACH_COLUMNS),
    (monitor_flags, FLAG_COLUMNS),
)


@dataclass
class MonitorsRebuilt:
    """What rebuilding the monitor indexes found: rows the index held that the log does not
    give (`unexpected`) and the reverse (`missing`), per table."""

    versions: int = 0
    breaches: int = 0
    flags: int = 0
    samples: int = 0
    missing: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    unexpected: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        return not any(self.missing.values()) and not any(self.unexpected.values())


def rebuild_monitors(connection: Connection) -> MonitorsRebuilt:
    """Empty the monitor tables and fill them again from the log, inside the caller's write
    transaction (roll it back to only check)."""
    before = {table.name: _rows(connection, table, columns) for table, columns in _CHECKED}
    for table in _TABLES:
        connection.execute(table.delete())
    live = LiveMonitors()
    registry: list[tuple[int, str, Any]] = []
    breaches: list[tuple[int, BreachRecord]] = []
    flags: list[tuple[Any, ...]] = []
    samples: list[tuple[Any, ...]] = []
    touched: dict[str, set[tuple[str, str]]] = {}
    run: tuple[int, int] | None = None  # (last index, integration time) of the current run

    def close_run() -> None:
        if run is None:
            return
        for tenant, pairs in touched.items():
            samples.extend(
                (*row[:4], run[0], run[1], *row[4:]) for row in live.samples(tenant, pairs)
            )
        touched.clear()

    for rows in stream_entries(connection, 0, read_head(connection).size):
        for index, tenant, envelope, integrated_us, leaf in rows:
            if run is not None and run[1] != integrated_us:
                close_run()
            run = (index, integrated_us)
            raw = bytes(envelope)
            opened = dsse.decode_envelope(raw)
            kind = opened.payloadType
            entry = StoredEntry(index, tenant, "", kind, raw, integrated_us, bytes(leaf))
            if kind == MONITOR_PAYLOAD_TYPE:
                record = decode_monitor(dsse.payload_bytes(opened))
                registry.append((index, tenant, monitor_row(record)))
            elif kind == BREACH_PAYLOAD_TYPE:
                breaches.append((index, decode_breach(dsse.payload_bytes(opened))))
            for monitor_id, group, flagged in live.replay(entry):
                touched.setdefault(tenant, set()).add((monitor_id, group))
                if flagged:
                    flags.append((index, tenant, monitor_id, group))
    close_run()
    insert_monitor_rows(connection, registry, breaches, samples, flags)
    after = {table.name: _rows(connection, table, columns) for table, columns in _CHECKED}
    rebuilt = MonitorsRebuilt(len(registry), len(breaches), len(flags), len(samples))
    for name, held in before.items():
        rebuilt.missing[name] = sorted(after[name] - held)
        rebuilt.unexpected[name] = sorted(held - after[name])
    return rebuilt


def _rows(connection: Connection, table: Any, columns: tuple[str, ...]) -> set[tuple[Any, ...]]:
    return {tuple(row) for row in connection.execute(select(*(table.c[c] for c in columns)))}
