"""What a replay request names, checked before anything runs: the plan and the decisions.

`prov replay` and `POST /v1/replays` share these. A plan is refused here, with the member
at fault, when its mode needs a model and no registry is configured, when the engine would
refuse it (`replay.engine.engine.check_plan`: nothing to change, an unknown or out-of-range
sampling parameter), or when a model it would call for the chosen decisions has no route
in the registry. A batch's decisions are chosen with the filter `GET /v1/decisions` takes,
as its query string (``decision_type=order.route&model=gpt-4.1-mini``), newest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from sqlalchemy import Connection

from ledger.errors import BadRequest
from ledger.records.replay import Mode
from query.audit.search import MAX_LIMIT, DecisionFilter, DecisionSummary, search
from replay.engine.engine import ReplayPlan, ReplayPlanError
from replay.engine.engine import check_plan as engine_check_plan
from replay.providers import ProviderError, ProviderPool

DEFAULT_BATCH_LIMIT = 1_000
MAX_BATCH = 100_000


def parse_parameter(text: str) -> tuple[str, Any]:
    """``key=value`` from a command line: the value as JSON when it parses (``0.2``,
    ``["END"]``), else as the string it is."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise BadRequest(f"a parameter is KEY=VALUE, not {text!r}", pointer="/parameters")
    try:
        return name.strip(), msgspec.json.decode(value)
    except msgspec.DecodeError:
        return name.strip(), value


def parse_model(text: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME@VERSION``."""
    name, at, version = text.partition("@")
    if not name or (at and not version):
        raise BadRequest(f"a model is NAME or NAME@VERSION, not {text!r}", pointer="/model")
    return name, version or None


def resolve_mode(
    mode: Mode | None, *, model: str | None, version: str | None, parameters: dict[str, Any]
) -> Mode:
    """The mode asked for; without one, naming a model, a version or parameters to change
    means counterfactual, and naming none of them pinned."""
    if mode is not None:
        return mode
    return "counterfactual" if model or version or parameters else "pinned"


def check_plan(
    plan: ReplayPlan,
    pool: ProviderPool | None,
    recorded_models: Iterable[tuple[str, str]],
) -> None:
    """Refuse `plan` before it runs: what the engine refuses for any decision, and a model
    it would call for these decisions that the registry does not route.

    `recorded_models` are the (name, version) of the decisions to replay: a pinned replay
    calls each of them, and a counterfactual one without a model name calls each name at
    the plan's version, or the recorded one."""
    if plan.mode != "deterministic" and pool is None:
        raise BadRequest(
            f"a {plan.mode} replay calls a model, and no model registry is configured "
            "(PROV_REPLAY_REGISTRY, or --registry); only deterministic replays can run",
            pointer="/mode",
        )
    try:
        engine_check_plan(plan, pool)
    except ReplayPlanError as error:
        raise BadRequest(str(error), pointer=_plan_pointer(plan, str(error))) from None
    if pool is None:
        return
    wanted: set[tuple[str, str | None]] = set()
    for name, version in recorded_models:
        if plan.mode == "pinned":
            wanted.add((name, version))
        elif plan.model is not None:
            wanted.add((plan.model, plan.version))
        else:
            wanted.add((name, plan.version or version))
    for model, wanted_version in sorted(wanted, key=lambda pair: (pair[0], pair[1] or "")):
        try:
            pool.registry.resolve(model, wanted_version).target_for(wanted_version)
        except ProviderError as error:
            raise BadRequest(error.detail, pointer=_plan_pointer(plan, "")) from None


def _plan_pointer(plan: ReplayPlan, problem: str) -> str:
    if problem.startswith("parameters"):
        return "/parameters"
    return "/model" if plan.mode == "counterfactual" else "/mode"


def parse_where(tenant: str, where: str) -> DecisionFilter:
    """The tenant's filter from a query string; `BadRequest` at ``/where`` names the fault."""
    try:
        pairs = parse_qsl(where, strict_parsing=True)
    except ValueError:
        raise BadRequest(
            f"`where` is a query string such as decision_type=order.route&model=NAME, "
            f"not {where[:80]!r}",
            pointer="/where",
        ) from None
    names = [name for name, _ in pairs]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise BadRequest(f"filter {repeated[0]!r} is given twice", pointer="/where")
    try:
        return DecisionFilter.from_query(tenant, dict(pairs))
    except BadRequest as error:
        raise BadRequest(error.detail, pointer="/where") from None


def select_decisions(
    connection: Connection, where: DecisionFilter, limit: int
) -> list[DecisionSummary]:
    """Up to `limit` of the decisions `where` matches, newest first."""
    selected: list[DecisionSummary] = []
    cursor: str | None = None
    while len(selected) < limit:
        page = search(connection, where, cursor=cursor, limit=min(MAX_LIMIT, limit - len(selected)))
        selected += page.decisions
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return selected
