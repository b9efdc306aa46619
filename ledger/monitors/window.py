"""One monitor version's window, kept incrementally: what each decision adds, what expires.

The window holds the contributions of the decisions it counts, in log order: a decision adds
to one group or several (one per exposure group it matches, when grouping by group), and
leaves when its integration time falls before the window's start. Integration times never
run backwards along the log, so expiry pops from the front and nothing is ever re-scanned.
Every sum is a `Decimal`, exact; a share is compared as `amount > limit * total`, so no
division decides a breach.

A group is *over* when the window counts at least `min_count` decisions and the group's
value is above the limit. `observe` and `expire` return the groups whose over-ness changed:
the sequencer records each as a breach (``breached``) or a return (``cleared``).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Context, Decimal
from typing import Any

from ledger.monitors.compile import CompiledMonitor
from ledger.monitors.facts import DecisionFacts
from ledger.records.monitor import MonitorDefinition

_SHARE_PLACES = Decimal(1).scaleb(-18)
_ZERO = Decimal(0)
_SHARE_CONTEXT = Context(prec=60)
EXPOSURE_AGGREGATES = ("sum_exposure", "share")


@dataclass(frozen=True, slots=True)
class Reading:
    """A group's value as the window stands; `amount` and `total` are a share's parts."""

    group: str
    value: Decimal
    count: int
    over: bool
    amount: Decimal | None = None
    total: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    state: str  # "breached" or "cleared"
    reading: Reading


def contributions(monitor: CompiledMonitor, facts: DecisionFacts) -> dict[str, Decimal] | None:
    """What the decision adds to each group, or None when the monitor does not count it.
    The group of an ungrouped monitor is ``""``."""
    if not _selected(monitor, facts):
        return None
    definition = monitor.definition
    exposures = _exposures(monitor, facts)
    amount = None if exposures is None else _amount(definition, facts, exposures)
    if exposures is None or amount is None:
        return None
    if definition.group_by == "group":
        if definition.aggregate in EXPOSURE_AGGREGATES:
            per_group: dict[str, Decimal] = {}
            for exposure in exposures:
                per_group[exposure.group] = per_group.get(exposure.group, _ZERO) + exposure.amount
            return per_group
        return dict.fromkeys((e.group for e in exposures), amount)
    key = {
        "none": "",
        "subject": facts.subject,
        "service": facts.service,
        "trace": facts.trace_id,
    }[definition.group_by]
    return None if key is None else {key: amount}


def _selected(monitor: CompiledMonitor, facts: DecisionFacts) -> bool:
    if not monitor.service(facts.service) or not monitor.decision_type(facts.decision_type):
        return False
    if not monitor.conditions:
        return True
    output = {"decision": facts.decision}  # conditions name `output.decision.<field>`
    return all(condition(output) for condition in monitor.conditions)


def _exposures(monitor: CompiledMonitor, facts: DecisionFacts) -> list[Any] | None:
    """The exposures the monitor looks at; None when it needs some and the decision has
    none (none in its group pattern, or none in its unit for an exposure aggregate)."""
    exposures = facts.exposures
    if monitor.group is not None:
        exposures = [e for e in exposures if monitor.group(e.group)]
        if not exposures:
            return None
    if monitor.definition.aggregate in EXPOSURE_AGGREGATES:
        exposures = [e for e in exposures if e.unit == monitor.definition.unit]
        if not exposures:
            return None
    return exposures


def _amount(
    definition: MonitorDefinition, facts: DecisionFacts, exposures: list[Any]
) -> Decimal | None:
    """What one decision adds: None when it has nothing to add (no cost in the unit, no
    subject to count)."""
    aggregate = definition.aggregate
    if aggregate == "sum_cost":
        return facts.cost_in(definition.unit or "")
    if aggregate == "model_calls":
        return Decimal(facts.model_calls())
    if aggregate in EXPOSURE_AGGREGATES:
        return sum((e.amount for e in exposures), _ZERO)
    if aggregate == "distinct_subjects" and facts.subject is None:
        return None
    return Decimal(1)


@dataclass
class MonitorWindow:
    """The live state of one monitor version, from the entry after its record on."""

    monitor: CompiledMonitor
    # The log index of the monitor's record: the window never reaches before it.
    record_index: int
    # (index, integration time, group, amount, subject) per group a decision added to.
    held: deque[tuple[int, int, str, Decimal, str | None]] = field(default_factory=deque)
    # (index, integration time) of each decision counted.
    decisions: deque[tuple[int, int]] = field(default_factory=deque)
    sums: dict[str, Decimal] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, Counter[str]] = field(default_factory=dict)
    total: Decimal = _ZERO
    breached: set[str] = field(default_factory=set)
    # The last index known to lie before the window: the window's entries start after it.
    expired_through: int = -1

    def __post_init__(self) -> None:
        self.expired_through = max(self.expired_through, self.record_index)

    @property
    def first_index(self) -> int:
        return self.expired_through + 1

    def observe(
        self, index: int, integrated_us: int, facts: DecisionFacts
    ) -> tuple[list[Reading], list[Transition]] | None:
        """Count one decision sequenced at `index`; None when the monitor does not count it.
        Returns the readings of the groups it touched and the transitions it caused."""
        added = contributions(self.monitor, facts)
        if added is None:
            return None
        threshold = self.monitor.definition.min_count
        was_counting = len(self.decisions) >= threshold
        self.decisions.append((index, integrated_us))
        for group, amount in added.items():
            self.held.append((index, integrated_us, group, amount, facts.subject))
            self._add(group, amount, facts.subject, 1)
        # Which groups could have changed over-ness: those touched; for a share, every
        # breached one (the total rose); every group once `min_count` is first reached.
        candidates = set(added)
        if self.monitor.definition.aggregate == "share":
            candidates |= self.breached
        if not was_counting and len(self.decisions) >= threshold:
            candidates |= set(self.counts)
        readings: dict[str, Reading] = {}
        transitions = self._transitions(candidates, readings)
        return [readings[group] for group in added], transitions

    def expire(self, now_us: int) -> list[Transition]:
        """Drop what the window ending at `now_us` no longer holds."""
        start = self.monitor.window.start_us(now_us)
        touched: set[str] = set()
        while self.held and self.held[0][1] < start:
            index, _us, group, amount, subject = self.held.popleft()
            self._add(group, -amount, subject, -1)
            touched.add(group)
            self.expired_through = max(self.expired_through, index)
        while self.decisions and self.decisions[0][1] < start:
            index, _us = self.decisions.popleft()
            self.expired_through = max(self.expired_through, index)
        if not touched:
            return []
        candidates = set(self.breached)
        if self.monitor.definition.aggregate == "share":
            candidates |= set(self.counts)  # the total fell: any share may have risen
        return self._transitions(candidates)

    def reading(self, group: str) -> Reading:
        definition = self.monitor.definition
        count = len(self.decisions)
        counting = count >= definition.min_count
        aggregate = definition.aggregate
        limit = self.monitor.limit
        if aggregate == "share":
            amount = self.sums.get(group, _ZERO)
            total = self.total
            value = _share(amount, total)
            over = counting and total > 0 and amount > limit * total
            return Reading(group, value, count, over, amount, total)
        if aggregate == "count":
            value = Decimal(self.counts.get(group, 0))
        elif aggregate == "distinct_subjects":
            value = Decimal(len(self.subjects.get(group, ())))
        else:
            value = self.sums.get(group, _ZERO)
        return Reading(group, value, count, counting and value > limit)

    def _add(self, group: str, amount: Decimal, subject: str | None, step: int) -> None:
        count = self.counts.get(group, 0) + step
        if count:
            self.counts[group] = count
            self.sums[group] = self.sums.get(group, _ZERO) + amount
        else:  # the group left the window: forget it, so state stays the window's size
            self.counts.pop(group, None)
            self.sums.pop(group, None)
        self.total += amount
        if subject is not None and self.monitor.definition.aggregate == "distinct_subjects":
            seen = self.subjects.setdefault(group, Counter())
            seen[subject] += step
            if seen[subject] <= 0:
                del seen[subject]
            if not seen:
                del self.subjects[group]

    def _transitions(
        self, candidates: set[str], readings: dict[str, Reading] | None = None
    ) -> list[Transition]:
        """The groups among `candidates` whose over-ness changed, in name order; each
        candidate's reading is left in `readings`."""
        transitions = []
        for group in sorted(candidates) if len(candidates) > 1 else candidates:
            reading = self.reading(group)
            if readings is not None:
                readings[group] = reading
            if reading.over and group not in self.breached:
                self.breached.add(group)
                transitions.append(Transition("breached", reading))
            elif not reading.over and group in self.breached:
                self.breached.discard(group)
                transitions.append(Transition("cleared", reading))
        return transitions


def _share(amount: Decimal, total: Decimal) -> Decimal:
    if total <= 0:
        return _ZERO
    # One context for every share, rather than a local context per call (which cost more
    # than the division): 60 digits, then cut to 18 places.
    return _SHARE_CONTEXT.divide(amount, total).quantize(
        _SHARE_PLACES, rounding=ROUND_DOWN, context=_SHARE_CONTEXT
    )


def decimal_text(value: Decimal) -> str:
    """A Decimal as plain digits, never in exponent form, without trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
