"""The report of a batch of policy checks: what another version would have decided.

Checking last month's decisions against policy v2 answers the questions asked before a
policy change ships:

- how many checks ended in each verdict, and what share of the batch that is (the shares
  of the verdicts add up to 1);
- how results moved (``allow → deny``: 41), and which reasons appeared or went away most;
- a line for every check (the decision, the recorded and the new result and reasons, the
  check's log index) that links to its own section, and the decisions the batch could not
  check (no policy, or a policy that names no registered version), each with why.

`ReportBuilder` takes checks one at a time, so a batch is summed up as it goes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Final

import msgspec

from ledger.errors import ProvError
from ledger.records.decision import Decision, StepError
from ledger.records.policy import (
    VERDICTS,
    Mode,
    PolicyCheckRecord,
    PolicyOutcome,
    PolicyRef,
    Verdict,
)

REPORT_FORMAT: Final = "prov.policy-check/v1"


class VerdictShare(msgspec.Struct, kw_only=True):
    verdict: Verdict
    count: int
    share: float


class Transition(msgspec.Struct, kw_only=True):
    """Checks whose result went from `before` (recorded) to `after` (evaluated)."""

    before: str
    after: str
    count: int


class ReasonChurn(msgspec.Struct, kw_only=True):
    """A reason and the checks that gave it where the record did not, and the reverse."""

    reason: str
    added: int
    removed: int


class CheckLine(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One check of the batch; `index` is its log entry (None when the ledger did not
    store it, and then `append_error` says why)."""

    position: int
    anchor: str
    check_id: str
    decision_id: str
    verdict: Verdict
    policy: PolicyRef
    recorded: PolicyOutcome
    outcome: PolicyOutcome | None = None
    reasons_added: list[str] = []
    reasons_removed: list[str] = []
    error: StepError | None = None
    index: int | None = None
    append_error: str | None = None


class Unchecked(msgspec.Struct, kw_only=True):
    """A decision the batch selected but could not check, and why (a problem kind)."""

    position: int
    decision_id: str
    kind: str
    detail: str


class PolicyReport(msgspec.Struct, kw_only=True):
    format: str = REPORT_FORMAT
    batch: str
    tenant: str
    generated_at: datetime
    mode: Mode
    against: str | None  # the version evaluated in `against` mode
    policies: list[PolicyRef]  # each version the batch evaluated
    total: int  # decisions selected
    checked: int
    stored: int  # checks the ledger appended
    verdicts: list[VerdictShare]  # shares of `checked`
    transitions: list[Transition]
    reasons: list[ReasonChurn]
    unchecked: list[Unchecked]
    checks: list[CheckLine]


class ReportBuilder:
    """Collects a batch's checks as they complete; `report` sums them up."""

    def __init__(self, *, batch: str, tenant: str, mode: Mode, against: str | None) -> None:
        self.batch = batch
        self.tenant = tenant
        self.mode = mode
        self.against = against
        self.lines: list[CheckLine] = []
        self.unchecked: list[Unchecked] = []
        self._policies: dict[tuple[str, str, str], PolicyRef] = {}
        self._verdicts: Counter[Verdict] = Counter()
        self._transitions: Counter[tuple[str, str]] = Counter()
        self._added: Counter[str] = Counter()
        self._removed: Counter[str] = Counter()

    def add(
        self,
        position: int,
        record: PolicyCheckRecord,
        index: int | None,
        append_error: str | None = None,
    ) -> None:
        """Count the check of the `position`-th decision of the batch; `index` is its log
        entry, or None with the reason it is not stored."""
        ref = record.policy
        self._policies[(ref.policy_id, ref.version, ref.digest)] = ref
        self._verdicts[record.verdict] += 1
        added: list[str] = []
        removed: list[str] = []
        if record.outcome is not None:
            before, after = record.recorded, record.outcome
            if before.result != after.result:
                self._transitions[(before.result, after.result)] += 1
            added = sorted(set(after.reasons) - set(before.reasons))
            removed = sorted(set(before.reasons) - set(after.reasons))
            self._added.update(added)
            self._removed.update(removed)
        self.lines.append(
            CheckLine(
                position=position,
                anchor=f"check-{position}",
                check_id=record.id,
                decision_id=record.decision_id,
                verdict=record.verdict,
                policy=ref,
                recorded=record.recorded,
                outcome=record.outcome,
                reasons_added=added,
                reasons_removed=removed,
                error=record.error,
                index=index,
                append_error=append_error,
            )
        )

    def extend(
        self, appended: Iterable[tuple[int, PolicyCheckRecord, int | None, str | None]]
    ) -> None:
        """`add` for each (position, record, log index, why not stored) of a chunk."""
        for position, record, index, append_error in appended:
            self.add(position, record, index, append_error)

    def refused(self, position: int, decision: Decision, error: ProvError) -> None:
        """A decision the batch could not check."""
        self.unchecked.append(
            Unchecked(
                position=position, decision_id=decision.id, kind=error.kind, detail=str(error)
            )
        )

    def report(self, generated_at: datetime) -> PolicyReport:
        checked = len(self.lines)

        def share(count: int) -> float:
            return count / checked if checked else 0.0

        reasons = sorted(self._added.keys() | self._removed.keys())
        return PolicyReport(
            batch=self.batch,
            tenant=self.tenant,
            generated_at=generated_at,
            mode=self.mode,
            against=self.against,
            policies=sorted(self._policies.values(), key=lambda p: (p.policy_id, p.version)),
            total=checked + len(self.unchecked),
            checked=checked,
            stored=sum(1 for line in self.lines if line.index is not None),
            verdicts=[
                VerdictShare(verdict=v, count=self._verdicts[v], share=share(self._verdicts[v]))
                for v in VERDICTS
            ],
            transitions=[
                Transition(before=before, after=after, count=count)
                # Most frequent first; equal counts by name, so the order is stable.
                for (before, after), count in sorted(
                    self._transitions.items(), key=lambda kv: (-kv[1], kv[0])
                )
            ],
            reasons=sorted(
                (
                    ReasonChurn(reason=r, added=self._added[r], removed=self._removed[r])
                    for r in reasons
                ),
                key=lambda churn: (-(churn.added + churn.removed), churn.reason),
            ),
            unchecked=sorted(self.unchecked, key=lambda item: item.position),
            checks=sorted(self.lines, key=lambda line: line.position),
        )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(PolicyReport)


def encode_report(report: PolicyReport) -> bytes:
    return _encoder.encode(report)


def decode_report(data: bytes) -> PolicyReport:
    return _decoder.decode(data)
