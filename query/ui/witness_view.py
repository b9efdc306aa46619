"""The log page's witness table: each configured witness, the newest checkpoint it cosigned
for this log, how far that trails the log, and how long ago the witness cosigned it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from ledger.witness.cosigned import witness_progress


@dataclass(frozen=True, slots=True)
class WitnessRow:
    name: str
    cosigned_size: int | None
    behind: int | None
    age: str

    @property
    def current(self) -> bool:
        return self.behind == 0


def describe_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172_800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86_400} days ago"


def witness_rows(
    connection: Connection, configured: tuple[str, ...], log_size: int, now_s: float
) -> list[WitnessRow]:
    """One row per configured witness, then any other witness whose cosignatures this log
    holds (one configured earlier), so the page never hides a cosigner."""
    progress = {p.witness: p for p in witness_progress(connection)}
    names = list(configured) + sorted(set(progress) - set(configured))
    rows = []
    for name in names:
        found = progress.get(name)
        if found is None:
            rows.append(WitnessRow(name, None, None, "never"))
        else:
            rows.append(
                WitnessRow(
                    name,
                    found.tree_size,
                    log_size - found.tree_size,
                    describe_age(now_s - found.cosigned_s),
                )
            )
    return rows
