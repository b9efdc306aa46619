"""`prov monitor status`: each monitor's latest value per group, in the terminal.

A table, one row per group of each monitor's latest version: the value as the last batch
that moved the group left it, the limit, the decisions counted, whether the group stands
over the limit, and the time of that batch (`as of`). A monitor that has counted nothing
since its latest version is one row without a group or value. `--json` prints the same
rows, one JSON line each.
"""

from __future__ import annotations

from typing import Any

import click

from query.audit.monitors import list_monitors, status_rows
from service.cli.common import emit, ledger_options, open_ledger
from service.settings import Settings

_COLUMNS = ("monitor", "version", "group", "value", "limit", "count", "breached", "as of")


@click.command("status")
@click.option("--tenant", required=True)
@click.option("--monitor", "monitor_id", help="Only this monitor")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per group")
@ledger_options
def status(settings: Settings, tenant: str, monitor_id: str | None, as_json: bool) -> None:
    """Each monitor's latest value per group: value, limit, count, breached, as of when."""
    with open_ledger(settings).engine.connect() as connection:
        rows = status_rows(list_monitors(connection, tenant, monitor_id))
    if as_json:
        for row in rows:
            emit(row)
        return
    if not rows:
        which = "" if monitor_id is None else f" {monitor_id!r}"
        click.echo(f"tenant {tenant!r} has no monitor{which}", err=True)
        return
    _table([_cells(row) for row in rows])


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    return (
        row["monitor"],
        f"v{row['version']}",
        "-" if row["group"] is None else row["group"],
        "-" if row["value"] is None else _short(row["value"]),
        row["limit"],
        str(row["count"]),
        "BREACHED" if row["breached"] else "no",
        row["as_of"] or "-",
    )


def _short(value: str) -> str:
    """A share's 18 places are more than a terminal needs: 0.666666666666666666 reads
    0.666667 (the JSON keeps every digit)."""
    whole, dot, places = value.partition(".")
    if not dot or len(places) <= 6:
        return value
    return f"{whole}.{places[:6]}"


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
