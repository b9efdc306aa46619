"""The report of a batch of replays (a shadow evaluation): what share changed, and how.

A batch replays many recorded decisions against one plan (say, a candidate model). Its
report answers the questions asked before an upgrade:

- how many replays ended in each verdict, and what share of the batch that is (the shares
  of the five verdicts add up to 1);
- which decision fields changed most, by RFC 6901 path, with array positions folded into
  ``*`` so that ``/reasons/0`` and ``/reasons/2`` count as one field, ``/reasons/*``, and
  how many replays gave a text with no decision in it (compared on their text alone);
- how tokens, cost and latency moved: sums and means of the per-replay deltas (replay
  minus record) over the replays that have both figures, cost per currency, and the p50
  and p95 of latency before, after and of the delta;
- the kinds of divergence, and a line for every replay (its verdict, log index, changed
  fields, divergence or error) that links to its own diff.

`ReportBuilder` takes replays one at a time as a batch completes them, keeping only what
the report needs, so a batch of any size is summarized in bounded memory per replay.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import msgspec

from ledger.records.decision import StepError
from ledger.records.replay import (
    VERDICTS,
    Divergence,
    DivergenceKind,
    FieldChange,
    IntDelta,
    Mode,
    ModelRef,
    MoneyDelta,
    ReplayRecord,
    Verdict,
)

REPORT_FORMAT: Final = "prov.shadow/v1"
# How much of the recorded and replayed text each replay line keeps: enough to read.
TEXT_EXCERPT = 400


class VerdictShare(msgspec.Struct, kw_only=True):
    verdict: Verdict
    count: int
    share: float


class FieldChurn(msgspec.Struct, kw_only=True):
    """A decision field (path, array positions as ``*``) and the replays that changed it."""

    path: str
    count: int
    share: float


class IntSummary(msgspec.Struct, kw_only=True):
    """A count (tokens, milliseconds) before and after, over `replays` that have both."""

    replays: int
    before: int
    after: int
    delta_sum: int
    delta_mean: float | None


class MoneySummary(msgspec.Struct, kw_only=True):
    """Cost before and after, over the replays priced in `currency` on both sides."""

    currency: str | None
    replays: int
    before: Decimal
    after: Decimal
    delta_sum: Decimal
    delta_mean: Decimal | None


class LatencySummary(msgspec.Struct, kw_only=True):
    """Latency in milliseconds: percentiles of the record, the replay and the delta."""

    replays: int
    before_p50: float | None
    before_p95: float | None
    after_p50: float | None
    after_p95: float | None
    delta_p50: float | None
    delta_p95: float | None


class KindCount(msgspec.Struct, kw_only=True):
    kind: DivergenceKind
    count: int


class ReplayLine(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One replay of the batch, with its diff in brief and where to read all of it.

    `anchor` names its section in the HTML report; `index` is its log entry (None when the
    ledger did not store it, and then `append_error` says why)."""

    position: int
    anchor: str
    record_id: str
    replay_of: str
    verdict: Verdict
    index: int | None = None
    append_error: str | None = None
    divergence: Divergence | None = None
    error: StepError | None = None
    changes: list[FieldChange] = []
    text_only: bool = False  # no decision could be derived from the replayed text
    text_changed: bool = False
    text_before: str | None = None
    text_after: str | None = None
    tool_call_changes: int = 0
    input_tokens: IntDelta = IntDelta()
    output_tokens: IntDelta = IntDelta()
    cost: MoneyDelta = MoneyDelta()
    latency_ms: IntDelta = IntDelta()


class ShadowReport(msgspec.Struct, kw_only=True):
    format: str = REPORT_FORMAT
    batch: str
    tenant: str
    generated_at: datetime
    mode: Mode
    # The models the replays called (each once; for a pinned batch, the recorded ones) and
    # the sampling parameters the plan overrode.
    models: list[ModelRef]
    parameters: dict[str, Any]
    total: int
    stored: int  # replays the ledger appended
    verdicts: list[VerdictShare]
    changed_fields: list[FieldChurn]
    # Replays whose text held no decision to compare, so only their text was compared.
    text_only: int
    divergences: list[KindCount]
    input_tokens: IntSummary
    output_tokens: IntSummary
    cost: list[MoneySummary]
    latency_ms: LatencySummary
    replays: list[ReplayLine]


def field_path(pointer: str) -> str:
    """The pointer with every array position replaced by ``*``."""
    return "/".join("*" if part.isdigit() else part for part in pointer.split("/"))


def percentile(ordered: list[int], fraction: float) -> float | None:
    """The nearest-rank percentile of an ascending list (None when it is empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def excerpt(text: str | None, limit: int = TEXT_EXCERPT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


@dataclass
class _Ints:
    before: list[int] = field(default_factory=list)
    after: list[int] = field(default_factory=list)

    def add(self, delta: IntDelta) -> None:
        if delta.before is not None and delta.after is not None:
            self.before.append(delta.before)
            self.after.append(delta.after)

    def summary(self) -> IntSummary:
        before, after = sum(self.before), sum(self.after)
        count = len(self.before)
        return IntSummary(
            replays=count,
            before=before,
            after=after,
            delta_sum=after - before,
            delta_mean=(after - before) / count if count else None,
        )

    def latency(self) -> LatencySummary:
        deltas = sorted(a - b for a, b in zip(self.after, self.before, strict=True))
        before, after = sorted(self.before), sorted(self.after)
        return LatencySummary(
            replays=len(deltas),
            before_p50=percentile(before, 0.5),
            before_p95=percentile(before, 0.95),
            after_p50=percentile(after, 0.5),
            after_p95=percentile(after, 0.95),
            delta_p50=percentile(deltas, 0.5),
            delta_p95=percentile(deltas, 0.95),
        )


@dataclass
class _Money:
    replays: int = 0
    before: Decimal = Decimal(0)
    after: Decimal = Decimal(0)

    def summary(self, currency: str | None) -> MoneySummary:
        delta = self.after - self.before
        return MoneySummary(
            currency=currency,
            replays=self.replays,
            before=self.before,
            after=self.after,
            delta_sum=delta,
            delta_mean=delta / self.replays if self.replays else None,
        )


class ReportBuilder:
    """Collects a batch's replays as they complete; `report` summarizes them."""

    def __init__(
        self, *, batch: str, tenant: str, mode: Mode, parameters: dict[str, Any] | None = None
    ) -> None:
        self.batch = batch
        self.tenant = tenant
        self.mode = mode
        self.parameters = parameters or {}
        self._models: set[tuple[str, str, str | None]] = set()
        self.lines: list[ReplayLine] = []
        self.verdicts: Counter[Verdict] = Counter()
        self._fields: Counter[str] = Counter()
        self._kinds: Counter[DivergenceKind] = Counter()
        self._input = _Ints()
        self._output = _Ints()
        self._latency = _Ints()
        self._cost: dict[str | None, _Money] = {}

    def add(
        self,
        record: ReplayRecord,
        position: int,
        index: int | None,
        append_error: str | None = None,
    ) -> None:
        """Count the replay of the `position`-th decision of the batch; `index` is its log
        entry, or None with the reason it is not stored."""
        diff = record.diff
        model = record.model
        self._models.add((model.provider, model.name, model.version))
        self.verdicts[record.verdict] += 1
        self._fields.update({field_path(change.path) for change in diff.decision})
        if record.divergence is not None:
            self._kinds[record.divergence.kind] += 1
        self._input.add(diff.input_tokens)
        self._output.add(diff.output_tokens)
        self._latency.add(diff.latency_ms)
        cost = diff.cost
        if cost.before is not None and cost.after is not None:
            money = self._cost.setdefault(cost.currency, _Money())
            money.replays += 1
            money.before += cost.before
            money.after += cost.after
        self.lines.append(
            ReplayLine(
                position=position,
                anchor=f"replay-{position}",
                record_id=record.id,
                replay_of=record.replay_of,
                verdict=record.verdict,
                index=index,
                append_error=append_error,
                divergence=record.divergence,
                error=record.error,
                changes=diff.decision,
                text_only=diff.text_only,
                text_changed=diff.text_changed,
                text_before=excerpt(diff.text_before) if diff.text_changed else None,
                text_after=excerpt(diff.text_after) if diff.text_changed else None,
                tool_call_changes=len(diff.tool_calls),
                input_tokens=diff.input_tokens,
                output_tokens=diff.output_tokens,
                cost=cost,
                latency_ms=diff.latency_ms,
            )
        )

    def report(self, generated_at: datetime) -> ShadowReport:
        total = len(self.lines)

        def share(count: int) -> float:
            return count / total if total else 0.0

        return ShadowReport(
            batch=self.batch,
            tenant=self.tenant,
            generated_at=generated_at,
            mode=self.mode,
            models=[
                ModelRef(provider=provider, name=name, version=version)
                for provider, name, version in sorted(
                    self._models, key=lambda m: (m[0], m[1], m[2] or "")
                )
            ],
            parameters=self.parameters,
            total=total,
            stored=sum(1 for line in self.lines if line.index is not None),
            verdicts=[
                VerdictShare(verdict=v, count=self.verdicts[v], share=share(self.verdicts[v]))
                for v in VERDICTS
            ],
            changed_fields=[
                FieldChurn(path=path, count=count, share=share(count))
                # Most changed first; equal counts by path, so the order is stable.
                for path, count in sorted(self._fields.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            text_only=sum(1 for line in self.lines if line.text_only),
            divergences=[
                KindCount(kind=kind, count=count)
                for kind, count in sorted(self._kinds.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            input_tokens=self._input.summary(),
            output_tokens=self._output.summary(),
            cost=[
                money.summary(currency)
                for currency, money in sorted(self._cost.items(), key=lambda kv: kv[0] or "")
            ],
            latency_ms=self._latency.latency(),
            replays=sorted(self.lines, key=lambda line: line.position),
        )


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(ShadowReport)


def encode_report(report: ShadowReport) -> bytes:
    return _encoder.encode(report)


def decode_report(data: bytes) -> ShadowReport:
    return _decoder.decode(data)
