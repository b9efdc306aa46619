"""`prov verify-breach`: a breach recomputed from the log's own entries, offline.

The steps, each of which fails with the reason and, where one entry is at fault, its index:

1. The checkpoint is signed by the ledger's verifier key.
2. The breach record's entry and the monitor record's entry are included in it.
3. The stretch of entries, re-hashed from the chain start, ends at the breach entry's leaf:
   so every entry in it, envelopes included, is the log's.
4. The breach names the monitor record by index, leaf and digest,
   and the monitor's definition has that digest.
5. Nothing of the window is left out: the entry before `first` is the monitor's record or
   older than the window's start, and every entry up to `last` is in the stretch.
6. The window, rebuilt from the decisions of the stretch with the same evaluation the
   sequencer runs (`ledger.monitors.window`), gives the recorded value, count and parts,
   and the recorded state agrees with the limit.

A breach record is made only by the sequencer and is never admitted from outside, so its
entry in a checkpoint the ledger signed is what makes it the ledger's. Pure Python: it needs
no database, so the client and auditors run it as they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ledger.log import merkle
from ledger.log.entry import entry_leaf_hash, to_micros
from ledger.log.note import NoteVerifier, open_checkpoint
from ledger.monitors.breach_bundle import BUNDLE_FORMAT
from ledger.monitors.compile import compile_monitor
from ledger.monitors.facts import facts_from_envelope
from ledger.monitors.window import MonitorWindow, decimal_text
from ledger.records import dsse
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.monitor import (
    BreachRecord,
    MonitorRecord,
    breach_in,
    definition_digest,
    monitor_in,
)


@dataclass
class BreachCheck:
    """The outcome; true when every step held."""

    breach: BreachRecord | None = None
    failures: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.failures and self.breach is not None


def verify_breach(bundle: dict[str, Any], verifier: NoteVerifier) -> BreachCheck:
    check = BreachCheck()
    try:
        _verify(bundle, verifier, check)
    except (KeyError, TypeError, ValueError) as error:
        check.failures.append(f"the bundle is malformed: {type(error).__name__}: {error}")
    return check


class _Stop(Exception):
    """A step failed: the message says which and why; later steps cannot run."""


@dataclass
class _Stretch:
    """The bundle's entries, chained: each index's leaf hash, envelope (when carried) and
    integration time."""

    leaves: dict[int, bytes] = field(default_factory=dict)
    envelopes: dict[int, bytes] = field(default_factory=dict)
    times: dict[int, int] = field(default_factory=dict)


def _verify(bundle: dict[str, Any], verifier: NoteVerifier, check: BreachCheck) -> None:
    """The numbered steps of the module docstring, in order; the first that fails stops."""
    if bundle.get("format") != BUNDLE_FORMAT:
        check.failures.append(f"not a {BUNDLE_FORMAT} bundle")
        return
    try:
        # 1.
        checkpoint = open_checkpoint(bundle["checkpoint"], verifier)
        check.steps.append(f"1. checkpoint of size {checkpoint.size} is signed by {verifier.name}")
        # 2-3.
        stretch = _chained(bundle, checkpoint, check)
        monitor_raw = _monitor_entry(bundle["monitor"], checkpoint)
        # 4.
        breach = breach_in(stretch.envelopes[bundle["breach_index"]])
        check.breach = breach
        monitor = monitor_in(monitor_raw)
        part = bundle["monitor"]
        _check_monitor(breach, monitor, part, part["inclusion"], check)
        if check.failures:
            return
        # 5.
        _window_complete(breach, stretch)
        check.steps.append(
            f"5. the window is entries {breach.window.first} to {breach.window.last}, complete"
        )
    except _Stop as stop:
        check.failures.append(str(stop))
        return
    # 6.
    _recompute(breach, monitor, stretch, check)


def _chained(bundle: dict[str, Any], checkpoint: Any, check: BreachCheck) -> _Stretch:
    """Step 3 (first: it yields the leaves step 2 proves), then step 2."""
    stretch = _Stretch()
    prev = bytes.fromhex(bundle["chain_start"])
    for item in bundle["entries"]:
        index = item["index"]
        if "envelope" in item:
            stretch.envelopes[index] = dsse.b64decode(item["envelope"])
            digest = hashlib.sha256(stretch.envelopes[index]).digest()
        else:
            digest = bytes.fromhex(item["envelope_sha256"])
        if stretch.leaves and index != max(stretch.leaves) + 1:
            raise _Stop(f"entry {index} does not follow entry {max(stretch.leaves)}")
        prev = entry_leaf_hash(index, item["integrated_us"], prev, digest, item["tenant"])
        stretch.leaves[index] = prev
        stretch.times[index] = item["integrated_us"]
    breach_index = bundle["breach_index"]
    leaves = stretch.leaves
    if breach_index not in leaves or not _included(
        leaves[breach_index], bundle["inclusion"], checkpoint
    ):
        raise _Stop(
            f"entry {breach_index} (the breach) is not the log's: the stretch of entries "
            f"{min(leaves, default=0)} to {breach_index} does not hash to a leaf the "
            "checkpoint includes; an entry in it was altered"
        )
    check.steps.append(
        f"2-3. entries {min(leaves)} to {breach_index} chain to the breach's leaf, included "
        "in the checkpoint"
    )
    return stretch


def _monitor_entry(part: dict[str, Any], checkpoint: Any) -> bytes:
    """The monitor record's envelope, once its entry is shown to be in the checkpoint."""
    raw = dsse.b64decode(part["envelope"])
    leaf = entry_leaf_hash(
        part["index"],
        part["integrated_us"],
        bytes.fromhex(part["prev_leaf"]),
        hashlib.sha256(raw).digest(),
        part["tenant"],
    )
    if not _included(leaf, part["inclusion"], checkpoint):
        raise _Stop(f"entry {part['index']} (the monitor) is not included")
    return raw


def _window_complete(breach: BreachRecord, stretch: _Stretch) -> None:
    """Step 5: the window leaves no entry out at its start, and the bundle holds it all."""
    window = breach.window
    before = window.first - 1
    start_us = to_micros(window.start)
    if before != breach.monitor.index and not (
        before in stretch.times and stretch.times[before] < start_us
    ):
        raise _Stop(
            f"entry {before}, before the window's first entry, is neither the monitor's record "
            "nor older than the window's start: the window may leave entries out"
        )
    if any(i not in stretch.leaves for i in range(window.first, window.last + 1)):
        raise _Stop("the bundle does not hold every entry of the window")


def _recompute(
    breach: BreachRecord, monitor: MonitorRecord, stretch: _Stretch, check: BreachCheck
) -> None:
    """Step 6: the window's decisions, counted again, give the breach's figures."""
    window = breach.window
    start_us, end_us = to_micros(window.start), to_micros(window.end)
    state = MonitorWindow(compile_monitor(monitor.definition), record_index=breach.monitor.index)
    state.expired_through = max(state.expired_through, window.first - 1)
    for index in range(window.first, window.last + 1):
        raw = stretch.envelopes.get(index)
        if raw is None or stretch.times[index] < start_us:
            continue
        if dsse.decode_envelope(raw).payloadType != DECISION_PAYLOAD_TYPE:
            continue
        state.observe(index, stretch.times[index], facts_from_envelope(raw))
    state.expire(end_us)
    reading = state.reading(breach.group or "")
    recomputed = {
        "value": decimal_text(reading.value),
        "count": reading.count,
        "amount": None if reading.amount is None else decimal_text(reading.amount),
        "total": None if reading.total is None else decimal_text(reading.total),
    }
    recorded = {
        "value": breach.value,
        "count": breach.count,
        "amount": breach.amount,
        "total": breach.total,
    }
    for name, value in recorded.items():
        if value is not None and Decimal(str(value)) != Decimal(str(recomputed[name])):
            check.failures.append(
                f"the breach records {name} {value}, the window's decisions give {recomputed[name]}"
            )
    if reading.over != (breach.state == "breached"):
        check.failures.append(
            f"the breach says {breach.state}, but the recomputed value is "
            f"{'over' if reading.over else 'within'} the limit {breach.limit}"
        )
    if not check.failures:
        check.steps.append(
            f"6. recomputed from the window's decisions: {breach.aggregate} = "
            f"{recomputed['value']} over {reading.count} decisions, {breach.state} "
            f"(limit {breach.limit})"
        )


def _included(leaf: bytes, proof: dict[str, Any], checkpoint: Any) -> bool:
    return proof["tree_size"] == checkpoint.size and merkle.verify_inclusion(
        leaf,
        proof["index"],
        checkpoint.size,
        [bytes.fromhex(node) for node in proof["proof"]],
        checkpoint.root_hash,
    )


def _check_monitor(
    breach: BreachRecord,
    monitor: MonitorRecord,
    part: dict[str, Any],
    proof: dict[str, Any],
    check: BreachCheck,
) -> None:
    ref = breach.monitor
    if ref.index != part["index"] or ref.leaf != "sha256:" + proof["leaf_hash"]:
        check.failures.append(
            f"the breach names monitor entry {ref.index}, not the bundle's {part['index']}"
        )
    if ref.digest != monitor.digest or definition_digest(monitor.definition) != monitor.digest:
        check.failures.append("the monitor's definition does not have the digest the breach names")
    if (ref.monitor_id, ref.version, monitor.tenant) != (
        monitor.definition.id,
        monitor.version,
        breach.tenant,
    ):
        check.failures.append("the breach names another monitor version or tenant")
    if not check.failures:
        check.steps.append(
            f"4. the breach names monitor {ref.monitor_id} v{ref.version} ({ref.digest[:19]}…)"
        )
