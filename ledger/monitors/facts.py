"""What a monitor reads of a decision, decoded straight from the payload bytes.

Monitors run in the sequencing transaction, so they must not pay for a full strict decode:
this view takes only the members they select on and add up, and msgspec skips the rest
without building it. Admission has already checked the payload against the full schema, so
the view never meets a shape the schema refuses. The offline breach check reads decisions
through the same view, so both compute the same numbers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from ledger.records import dsse


class _Exposure(msgspec.Struct):
    group: str
    amount: Decimal
    unit: str


class _Cost(msgspec.Struct):
    amount: Decimal
    currency: str


class _Usage(msgspec.Struct):
    cost: _Cost | None = None


class _Step(msgspec.Struct):
    kind: str = ""


class _Output(msgspec.Struct):
    decision: dict[str, Any] = {}


class _Links(msgspec.Struct):
    trace_id: str | None = None


class DecisionFacts(msgspec.Struct):
    """The members of a decision monitors use."""

    id: str
    service: str
    decision_type: str
    subject: str | None = None
    exposures: list[_Exposure] = []
    usage: _Usage | None = None
    steps: list[_Step] = []
    output: _Output | None = None
    links: _Links | None = None

    @property
    def trace_id(self) -> str | None:
        return None if self.links is None else self.links.trace_id

    @property
    def decision(self) -> dict[str, Any]:
        return {} if self.output is None else self.output.decision

    def cost_in(self, currency: str) -> Decimal | None:
        cost = None if self.usage is None else self.usage.cost
        return cost.amount if cost is not None and cost.currency == currency else None

    def model_calls(self) -> int:
        return sum(1 for step in self.steps if step.kind == "llm_call")


_decoder = msgspec.json.Decoder(DecisionFacts)


def facts_from_envelope(raw: bytes) -> DecisionFacts:
    """The facts of the decision in a stored DSSE envelope."""
    return _decoder.decode(dsse.payload_bytes(dsse.decode_envelope(raw)))
