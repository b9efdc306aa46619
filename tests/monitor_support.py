"""Helpers for the monitor tests: small signed loan decisions with exposures, costs, subjects
and traces; monitor definitions; and a brute-force oracle that recomputes a monitor's value
from the log alone, entry by entry, without any of the incremental code."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, localcontext
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import Engine

from ingest.client._records import sign_record
from ledger.keys.signing import SigningKey
from ledger.log.store import read_entries, read_head
from ledger.records import dsse
from ledger.records.decision import (
    DECISION_PAYLOAD_TYPE,
    Cost,
    Decision,
    Exposure,
    Links,
    LlmCall,
    Model,
    Output,
    Usage,
    decode_decision,
)
from ledger.records.monitor import MonitorDefinition, Selector
from tests.support import register

SERVICE = "loans"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def key_for(tenant: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(b"monitor:" + tenant.encode()).digest())


def register_tenant(engine: Engine, tenant: str) -> None:
    register(engine, key_for(tenant), tenant=tenant, service=SERVICE)


def loan(
    tenant: str,
    record_id: str,
    *,
    sector: str = "retail",
    amount: str = "100",
    approved: bool = True,
    cost: str | None = None,
    currency: str = "USD",
    subject: str | None = None,
    trace: str | None = None,
    calls: int = 0,
    decision_type: str = "loan.approve",
    extra: Sequence[tuple[str, str, str]] = (),
) -> bytes:
    """A signed loan decision exposing `amount` USD to `sector:<sector>` (and `extra`
    (group, amount, unit) exposures)."""
    steps: list[Any] = [LlmCall(started_at=T0, ended_at=T0) for _ in range(calls)]
    made = Decision(
        id=record_id,
        tenant=tenant,
        service=SERVICE,
        decision_type=decision_type,
        occurred_at=T0,
        subject=subject,
        inputs={"amount": amount},
        model=Model(provider="openai", name="gpt-test", version="2026-01-01"),
        steps=steps,
        output=Output(decision={"approved": approved, "amount": float(amount)}),
        usage=None
        if cost is None
        else Usage(
            input_tokens=1, output_tokens=1, cost=Cost(amount=Decimal(cost), currency=currency)
        ),
        exposures=[Exposure(group=f"sector:{sector}", amount=Decimal(amount), unit="USD")]
        + [Exposure(group=g, amount=Decimal(a), unit=u) for g, a, u in extra],
        links=None if trace is None else Links(trace_id=trace),
    )
    return sign_record(made, key_for(tenant)).envelope


def definition(tenant: str, monitor_id: str = "m", **members: Any) -> MonitorDefinition:
    select = members.pop("select", {})
    return MonitorDefinition(id=monitor_id, tenant=tenant, select=Selector(**select), **members)


@dataclass(frozen=True)
class LoggedDecision:
    index: int
    integrated_us: int
    decision: Decision


def logged_decisions(engine: Engine, tenant: str) -> list[LoggedDecision]:
    with engine.connect() as connection:
        head = read_head(connection)
        entries = read_entries(connection, 0, head.size)
    out = []
    for entry in entries:
        if entry.payload_type != DECISION_PAYLOAD_TYPE or entry.tenant != tenant:
            continue
        payload = dsse.payload_bytes(dsse.decode_envelope(entry.envelope))
        out.append(LoggedDecision(entry.index, entry.integrated_us, decode_decision(payload)))
    return out


def oracle_value(  # noqa: PLR0912 - a brute-force oracle, flat on purpose
    definition: MonitorDefinition,
    decisions: Iterable[LoggedDecision],
    *,
    after: int,
    upto: int,
    now_us: int,
    group: str,
) -> tuple[Decimal, int]:
    """The monitor's value for `group` and the number of decisions counted, over the
    decisions after index `after` up to index `upto` in the window ending at `now_us`,
    recomputed from scratch with fnmatch and plain loops."""
    window = definition.window
    if window == "calendar:day":
        start = now_us - now_us % (86_400 * 1_000_000)
    else:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[window[-1]]
        start = now_us - int(window[:-1]) * unit * 1_000_000 + 1
    sel = definition.select
    counted = 0
    per_group: dict[str, Decimal] = {}
    per_group_subjects: dict[str, set[str]] = {}
    per_group_n: dict[str, int] = {}
    total = Decimal(0)
    for item in decisions:
        d = item.decision
        if not (after < item.index <= upto and item.integrated_us >= start):
            continue
        if sel.service and not fnmatchcase(d.service, sel.service):
            continue
        if sel.decision_type and not fnmatchcase(d.decision_type, sel.decision_type):
            continue
        if any(not _holds(c, {"decision": d.output.decision}) for c in sel.where):
            continue
        exposures = [e for e in d.exposures if _in_group(sel, e.group)]
        if (sel.group or sel.group_regex) and not exposures:
            continue
        if definition.aggregate in ("sum_exposure", "share"):
            exposures = [e for e in exposures if e.unit == definition.unit]
            if not exposures:
                continue
        if definition.aggregate == "distinct_subjects" and d.subject is None:
            continue
        if definition.aggregate == "sum_cost":
            if d.usage is None or d.usage.cost is None or d.usage.cost.currency != definition.unit:
                continue
            amount = d.usage.cost.amount
        elif definition.aggregate == "model_calls":
            amount = Decimal(sum(1 for s in d.steps if isinstance(s, LlmCall)))
        elif definition.aggregate in ("sum_exposure", "share"):
            amount = sum((e.amount for e in exposures), Decimal(0))
        else:
            amount = Decimal(1)
        keys: dict[str, Decimal]
        if definition.group_by == "group":
            keys = {}
            for e in exposures:
                add = e.amount if definition.aggregate in ("sum_exposure", "share") else amount
                keys[e.group] = (
                    keys.get(e.group, Decimal(0)) + add
                    if definition.aggregate in ("sum_exposure", "share")
                    else add
                )
        else:
            key = {
                "none": "",
                "subject": d.subject,
                "service": d.service,
                "trace": None if d.links is None else d.links.trace_id,
            }[definition.group_by]
            if key is None:
                continue
            keys = {key: amount}
        counted += 1
        for k, a in keys.items():
            per_group[k] = per_group.get(k, Decimal(0)) + a
            per_group_n[k] = per_group_n.get(k, 0) + 1
            total += a
            if d.subject is not None:
                per_group_subjects.setdefault(k, set()).add(d.subject)
    if definition.aggregate == "count":
        return Decimal(per_group_n.get(group, 0)), counted
    if definition.aggregate == "distinct_subjects":
        return Decimal(len(per_group_subjects.get(group, set()))), counted
    if definition.aggregate == "share":
        if total <= 0:
            return Decimal(0), counted
        with localcontext() as context:
            context.prec = 60
            share = (per_group.get(group, Decimal(0)) / total).quantize(
                Decimal(1).scaleb(-18), rounding=ROUND_DOWN
            )
        return share, counted
    return per_group.get(group, Decimal(0)), counted


def _in_group(sel: Selector, group: str) -> bool:
    if sel.group is not None:
        return fnmatchcase(group, sel.group)
    if sel.group_regex is not None:
        return re.fullmatch(sel.group_regex, group) is not None
    return True


def _holds(condition: str, output: dict[str, Any]) -> bool:
    for op in ("==", "!=", "<=", ">=", "<", ">"):
        if f" {op} " in condition:
            path, value = condition.split(f" {op} ", 1)
            break
    else:
        raise AssertionError(condition)
    expected = json.loads(value)
    current: Any = output
    for name in path.strip().split(".")[1:]:
        current = current.get(name) if isinstance(current, dict) else None
    same = bool(current == expected) and type(current) is type(expected)
    if op == "==":
        return same
    if op == "!=":
        return not same
    if not isinstance(current, int | float) or isinstance(current, bool):
        return False
    return bool(
        {
            "<": current < expected,
            "<=": current <= expected,
            ">": current > expected,
            ">=": current >= expected,
        }[op]
    )
