"""An append's answer in the SDK: the verified receipt with the monitors the record counted
toward, and `MonitorBreached` for a `flag` monitor over its limit (`ingest.client.monitors`).

A leaf module: the receipt checks (`_receipts`) decode answers into `AppendResult`, and the
flows import those checks.
"""

from __future__ import annotations

import msgspec

from ledger.errors import MonitorBreached
from ledger.log.receipt import Receipt
from ledger.records.monitor import MonitorReading


class AppendResult(Receipt, omit_defaults=True):
    """A verified receipt with the monitors the record counted toward (an empty list when
    it counted toward none, as a context change or an unwatched decision does)."""

    monitors: list[MonitorReading] = msgspec.field(default_factory=list)

    @property
    def flagged(self) -> list[MonitorReading]:
        """The readings of `flag` monitors over their limit."""
        return flagged(self)

    @property
    def stop(self) -> bool:
        """True when a `flag` monitor this record counted toward is over its limit."""
        return bool(flagged(self))


def flagged(result: Receipt) -> list[MonitorReading]:
    return [m for m in result.monitors or () if m.action == "flag" and m.breached]


def monitor_breached(result: Receipt) -> MonitorBreached:
    """The error for a result whose `flag` monitors are over: it names them and carries
    the result, whose record is in the log."""
    names = ", ".join(
        f"{m.monitor}" + (f" [{m.group}]" if m.group else "") + f" = {m.value} > {m.limit}"
        for m in flagged(result)
    )
    error = MonitorBreached(
        f"record {result.id!r} (log index {result.index}) is stored; over the limit: {names}"
    )
    error.result = result
    return error


def raise_if_flagged(result: Receipt, raise_on_flag: bool) -> None:
    if raise_on_flag and flagged(result):
        raise monitor_breached(result)
