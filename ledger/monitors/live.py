"""The live monitors of a ledger, evaluated where the log is sequenced.

The sequencer is the single writer of the log, so a window kept here, inside its
transaction, is exact whatever the number of HTTP workers, processes or replicas: before
each batch, `sync` brings the windows to the head read under the log's lock, by reading
the entries another process appended since (`catch_up`), or, on start or after a batch
that failed, by rebuilding them from the log (`rebuild`: from the latest version of each
monitor in the registry, scanning only the entries its window can still hold, found by
binary search on integration time, which never runs backwards along the log). Nothing is
stored but the log and its indexes, and nothing re-scans the whole log per record.

For each batch: `expire` drops what the batch's integration time pushes out of each window
(and may clear breaches); `observe` counts each decision in the monitors of its tenant,
returns what the receipt answer says, and, when a group crosses its limit or returns
within it, a breach record signed by the ledger's record key, which the sequencer places in
the log right after the decision. A monitor record takes effect at its entry: the version
it replaces is dropped, and the new one starts with an empty window.
"""

from __future__ import annotations

import hashlib
import logging
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, case, or_, select

from ledger.indexes.monitors import latest_versions
from ledger.log.entry import from_micros
from ledger.log.store import Head, StoredEntry, first_index_at, read_entries, read_entry
from ledger.monitors.compile import CompiledMonitor, compile_monitor
from ledger.monitors.facts import DecisionFacts, facts_from_envelope
from ledger.monitors.window import MonitorWindow, Reading, Transition, decimal_text
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.monitor import (
    MONITOR_PAYLOAD_TYPE,
    BreachDecision,
    BreachRecord,
    BreachWindow,
    MonitorReading,
    MonitorRecord,
    MonitorRef,
    monitor_in,
)
from ledger.records.replay import REPLAY_SERVICE
from ledger.storage.schema import log_entries
from ledger.storage.schema import monitors as monitor_registry

_log = logging.getLogger(__name__)

# The most groups of one share monitor whose value a batch records in the history.
SHARE_SAMPLE_GROUPS = 64

# Signs a breach record for its tenant: returns the envelope and the keyid it names.
BreachSigner = Callable[[BreachRecord, Connection], tuple[bytes, str]]


@dataclass
class ActiveMonitor:
    """The version of a monitor in force, and its window."""

    record: MonitorRecord
    index: int
    leaf: bytes
    window: MonitorWindow

    @property
    def ref(self) -> MonitorRef:
        return MonitorRef(
            monitor_id=self.record.definition.id,
            version=self.record.version,
            digest=self.record.digest,
            index=self.index,
            leaf="sha256:" + self.leaf.hex(),
        )


@dataclass(frozen=True, slots=True)
class Made:
    """A breach record the sequencer must place next, with its payload."""

    record: BreachRecord
    raw: bytes
    keyid: str


@dataclass
class Observed:
    """What one decision did to the monitors: the receipt's readings, the breach records
    to place after it, and the (monitor, group) pairs it was flagged under."""

    readings: list[MonitorReading] = field(default_factory=list)
    made: list[Made] = field(default_factory=list)
    flagged: list[tuple[str, str]] = field(default_factory=list)


class LiveMonitors:
    """Every tenant's monitors in force, with windows in step with one log head."""

    def __init__(self, sign: BreachSigner | None = None) -> None:
        self._sign = sign
        self._tenants: dict[str, dict[str, ActiveMonitor]] = {}
        # The head (size, last leaf) the windows are in step with; None: rebuild first.
        self._known: tuple[int, bytes] | None = None
        # (first index, integration time) of each batch the widest window may still hold.
        self._batches: deque[tuple[int, int]] = deque()

    # -- keeping in step with the log ------------------------------------------------

    def sync(self, connection: Connection, head: Head) -> None:
        """Bring the windows to `head`, the head read under the log's lock."""
        known = self._known
        if known is not None and known == (head.size, head.last_leaf):
            return
        if known is None or known[0] > head.size:
            self.rebuild(connection, head)
            return
        if not self._tenants:
            # Nothing is watched: the entries another process appended need no reading,
            # unless one of them applied a monitor.
            if _applied_since(connection, known[0]):
                self.rebuild(connection, head)
            else:
                self._known = (head.size, head.last_leaf)
            return
        self.catch_up(connection, known[0], head.size)

    def remember(self, size: int, last_leaf: bytes) -> None:
        """Called once a batch has committed: the windows are in step with that head."""
        self._known = (size, last_leaf)

    def forget(self) -> None:
        """Called when a batch failed: its changes to the windows never happened."""
        self._known = None

    def rebuild(self, connection: Connection, head: Head) -> None:
        self._tenants = {}
        self._batches = deque()
        self._known = None
        for index, _tenant in latest_versions(connection, below=head.size):
            entry = read_entry(connection, index)
            if entry is None:
                continue
            record = monitor_in(entry.envelope)
            self._activate(index, entry.leaf_hash, record)
        if not self._tenants or head.size == 0:
            self._known = (head.size, head.last_leaf)
            return
        # Only entries at or after the start of the widest window, as of the head's time,
        # can still count; the next batch's time is no earlier.
        start_us = min(
            active.window.monitor.window.start_us(head.last_integrated_us)
            for active in self._active()
        )
        first = max(
            min(active.index + 1 for active in self._active()),
            first_index_at(connection, start_us, head.size),
        )
        for active in self._active():
            active.window.expired_through = max(active.window.expired_through, first - 1)
        self.catch_up(connection, first, head.size)

    def catch_up(self, connection: Connection, start: int, end: int) -> None:
        """Apply entries [start, end) that this process did not sequence."""
        step = 2_000
        for chunk_start in range(start, end, step):
            for entry in self._gap(connection, chunk_start, min(end, chunk_start + step)):
                self.replay(entry)
        last = read_entry(connection, end - 1) if end > 0 else None
        self._known = (end, last.leaf_hash) if last is not None else None

    def _gap(self, connection: Connection, start: int, end: int) -> list[StoredEntry]:
        """Entries [start, end), with the envelopes of only those a window reads (monitor
        records, decisions of watched tenants): the others matter only for their index and
        time, which mark where batches start. A monitor applied in the range may watch a
        new tenant from there on: then every envelope is read."""
        if _applied_since(connection, start, end):
            return read_entries(connection, start, end)
        wanted = or_(
            log_entries.c.payload_type == MONITOR_PAYLOAD_TYPE,
            and_(
                log_entries.c.payload_type == DECISION_PAYLOAD_TYPE,
                log_entries.c.tenant.in_(sorted(self._tenants)),
            ),
        )
        rows = connection.execute(
            select(
                log_entries.c.idx,
                log_entries.c.tenant,
                log_entries.c.payload_type,
                case((wanted, log_entries.c.envelope), else_=None),
                log_entries.c.integrated_us,
                log_entries.c.leaf_hash,
            )
            .where(log_entries.c.idx >= start, log_entries.c.idx < end)
            .order_by(log_entries.c.idx)
        )
        return [
            StoredEntry(
                row[0],
                row[1],
                "",
                row[2],
                b"" if row[3] is None else bytes(row[3]),
                row[4],
                bytes(row[5]),
            )
            for row in rows
        ]

    def replay(self, entry: StoredEntry) -> list[tuple[str, str, bool]]:
        """Apply one logged entry as its sequencing did, without making breach records
        (those in the log are the ones it made). Returns, for a decision, the (monitor,
        group, flagged) pairs it counted toward."""
        self.start_batch_if_new(entry.index, entry.integrated_us, None)
        if entry.payload_type == MONITOR_PAYLOAD_TYPE:
            record = monitor_in(entry.envelope)
            self._activate(entry.index, entry.leaf_hash, record)
            return []
        if entry.payload_type != DECISION_PAYLOAD_TYPE or entry.tenant not in self._tenants:
            return []
        facts = facts_from_envelope(entry.envelope)
        counted: list[tuple[str, str, bool]] = []
        for active in self._tenants[entry.tenant].values():
            if entry.index <= active.window.expired_through:
                continue
            outcome = active.window.observe(entry.index, entry.integrated_us, facts)
            if outcome is None:
                continue
            flags = active.record.definition.action == "flag"
            counted.extend(
                (
                    active.record.definition.id,
                    reading.group,
                    flags and reading.group in active.window.breached,
                )
                for reading in outcome[0]
            )
        return counted

    # -- sequencing ----------------------------------------------------------------

    def watches(self, tenant: str) -> bool:
        return tenant in self._tenants

    def start_batch_if_new(
        self, index: int, integrated_us: int, connection: Connection | None
    ) -> list[Made]:
        """Note a batch starting at `index`; expire every window to its time. Breach
        records are made (and returned) only when sequencing, i.e. with a `connection`."""
        if self._batches and self._batches[-1][1] == integrated_us:
            return []
        self._batches.append((index, integrated_us))
        self._trim_batches(integrated_us)
        made: list[Made] = []
        for active in self._active():
            transitions = active.window.expire(integrated_us)
            if connection is not None:
                made.extend(
                    self._breach(connection, active, t, integrated_us, index - 1, None)
                    for t in transitions
                )
        return made

    def activate(self, index: int, leaf: bytes, record: MonitorRecord) -> None:
        """A monitor record sequenced now takes effect from the next entry."""
        self._activate(index, leaf, record)

    def observe(
        self,
        connection: Connection,
        index: int,
        leaf: bytes,
        integrated_us: int,
        tenant: str,
        raw: bytes,
    ) -> Observed | None:
        """Count the decision sequenced at `index` in its tenant's monitors."""
        monitors = self._tenants.get(tenant)
        if not monitors:
            return None
        facts = facts_from_envelope(raw)
        observed = Observed()
        for active in monitors.values():
            outcome = active.window.observe(index, integrated_us, facts)
            if outcome is None:
                continue
            readings, transitions = outcome
            crossed: dict[str, int] = {}
            for transition in transitions:
                made = self._breach(
                    connection,
                    active,
                    transition,
                    integrated_us,
                    index,
                    (
                        facts,
                        leaf,
                    ),
                )
                # Its index is fixed by the sequencer; the reading names it by position.
                crossed[transition.reading.group] = len(observed.made)
                observed.made.append(made)
            definition = active.record.definition
            counted = {reading.group for reading in readings}
            # A group this decision did not count toward can change too (its share fell as
            # the total rose): the answer names it, with the breach record it caused.
            changed = (
                [t.reading for t in transitions if t.reading.group not in counted]
                if transitions
                else []
            )
            for reading in [*readings, *changed]:
                position = crossed.get(reading.group)
                observed.readings.append(
                    MonitorReading(
                        monitor=definition.id,
                        version=active.record.version,
                        group=None if definition.group_by == "none" else reading.group,
                        aggregate=definition.aggregate,
                        value=decimal_text(reading.value),
                        limit=definition.limit,
                        count=reading.count,
                        breached=reading.group in active.window.breached,
                        action=definition.action,
                        breach=None if position is None else -1 - position,
                    )
                )
                flagged = definition.action == "flag" and reading.group in active.window.breached
                if flagged and reading.group in counted:
                    observed.flagged.append((definition.id, reading.group))
        return observed

    def samples(self, tenant: str, touched: Iterable[tuple[str, str]]) -> list[tuple[Any, ...]]:
        """The current value of each (monitor, group) touched, as history rows (without
        the index and time, which the sequencer adds). A decision moves every group's share,
        not only its own: a share monitor touched gets a row for each of its groups (up to
        `SHARE_SAMPLE_GROUPS`), so the history never shows a share that has since fallen."""
        rows = []
        monitors = self._tenants.get(tenant, {})
        pairs = set(touched)
        for monitor_id in {monitor_id for monitor_id, _ in pairs}:
            active = monitors.get(monitor_id)
            if active is not None and active.record.definition.aggregate == "share":
                groups = sorted(active.window.counts)[:SHARE_SAMPLE_GROUPS]
                pairs.update((monitor_id, group) for group in groups)
        for monitor_id, group in sorted(pairs):
            active = monitors.get(monitor_id)
            if active is None:
                continue
            reading = active.window.reading(group)
            rows.append(
                (
                    tenant,
                    monitor_id,
                    active.record.version,
                    group,
                    decimal_text(reading.value),
                    reading.count,
                    group in active.window.breached,
                )
            )
        return rows

    # -- internals ---------------------------------------------------------------------

    def _active(self) -> Iterable[ActiveMonitor]:
        for monitors in self._tenants.values():
            yield from monitors.values()

    def _activate(self, index: int, leaf: bytes, record: MonitorRecord) -> None:
        definition = record.definition
        monitors = self._tenants.setdefault(record.tenant, {})
        if not definition.enabled:
            monitors.pop(definition.id, None)
            if not monitors:
                del self._tenants[record.tenant]
            return
        compiled: CompiledMonitor = compile_monitor(definition)
        monitors[definition.id] = ActiveMonitor(
            record, index, leaf, MonitorWindow(compiled, record_index=index)
        )

    def _trim_batches(self, now_us: int) -> None:
        widest = max(
            (
                (active.window.monitor.window.seconds or 86_400) * 1_000_000
                for active in self._active()
            ),
            default=0,
        )
        horizon = now_us - widest
        while len(self._batches) > 1 and self._batches[1][1] < horizon:
            self._batches.popleft()

    def _first_in_window(self, active: ActiveMonitor, start_us: int, last: int) -> int:
        """The first index after the monitor's record whose time is at or after `start_us`
        (`last` + 1 if none): the batches this process saw tell, without a query."""
        times = [us for _, us in self._batches]
        position = bisect_left(times, start_us)
        first = self._batches[position][0] if position < len(self._batches) else last + 1
        return max(first, active.index + 1)

    def _breach(
        self,
        connection: Connection,
        active: ActiveMonitor,
        transition: Transition,
        integrated_us: int,
        last: int,
        decision: tuple[DecisionFacts, bytes] | None,
    ) -> Made:
        if self._sign is None:
            raise RuntimeError("monitors are in force but the ledger's record key is missing")
        definition = active.record.definition
        reading: Reading = transition.reading
        start_us = active.window.monitor.window.start_us(integrated_us)
        first = min(self._first_in_window(active, start_us, last), last + 1)
        group_tag = hashlib.sha256(reading.group.encode()).hexdigest()[:12]
        record = BreachRecord(
            id=(
                f"breach:{definition.id}:v{active.record.version}:{last}:"
                f"{'d' if decision else 'x'}:{group_tag}:{transition.state}"
            ),
            tenant=active.record.tenant,
            service=REPLAY_SERVICE,
            occurred_at=from_micros(integrated_us),
            state=transition.state,  # type: ignore[arg-type]
            monitor=active.ref,
            action=definition.action,
            aggregate=definition.aggregate,
            unit=definition.unit,
            group=None if definition.group_by == "none" else reading.group,
            value=decimal_text(reading.value),
            limit=definition.limit,
            count=reading.count,
            amount=None if reading.amount is None else decimal_text(reading.amount),
            total=None if reading.total is None else decimal_text(reading.total),
            window=BreachWindow(
                spec=definition.window,
                start=from_micros(start_us),
                end=from_micros(integrated_us),
                first=first,
                last=last,
            ),
            decision=None
            if decision is None
            else BreachDecision(id=decision[0].id, index=last, leaf="sha256:" + decision[1].hex()),
        )
        raw, keyid = self._sign(record, connection)
        return Made(record, raw, keyid)


def _applied_since(connection: Connection, index: int, end: int | None = None) -> bool:
    """Whether a monitor record sits at `index` or after it (and before `end`)."""
    query = select(monitor_registry.c.idx).where(monitor_registry.c.idx >= index)
    if end is not None:
        query = query.where(monitor_registry.c.idx < end)
    return connection.execute(query.limit(1)).first() is not None
