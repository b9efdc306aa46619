"""Admin route: apply monitor definitions over HTTP (`POST /v1/monitors`, docs/monitors.md).

The body is `{"monitor": [<definition>, ...]}`, the members of `monitors.toml` as JSON.
Every definition is checked first (`ledger.monitors.apply.parse_definitions`): one that does
not parse, or asks for what the ledger will not evaluate, refuses the whole request with
the `monitor-invalid` problem and the pointer of the member at fault (`/monitor/0/window`),
and nothing is applied. A key applies its own tenant's monitors only; a definition naming
another tenant refuses the request (`tenant-mismatch`, 403) before anything is appended.

Each definition that differs from its monitor's latest version is appended as the next
version, signed by the ledger's record key, with the key's name as `applied_by`; the
answer lists, per monitor, its version, digest and status (`applied` with the log index,
`unchanged`, or `refused` with the problem), in the order posted.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import post

from httpapi.problems import Problem, problem_for, problem_spec
from ledger.errors import RecordRejected, TenantMismatch
from ledger.keys.apikeys import ADMINS, ApiKey
from ledger.ledger import Ledger
from ledger.monitors.apply import parse_definitions
from ledger.records.monitor import MonitorDefinition


class AppliedMonitor(msgspec.Struct, omit_defaults=True):
    """What applying one definition did."""

    monitor: str
    tenant: str
    version: int
    digest: str
    status: str  # "applied", "unchanged" or "refused"
    index: int | None = None  # the log index of the new version's record
    problem: Problem | None = None  # why it was refused


class AppliedMonitors(msgspec.Struct):
    monitors: list[AppliedMonitor]


def applied_by(caller: ApiKey) -> str:
    """Who applied it, as the monitor record names them: the key's name, else its id (a
    key may be created without a name, and the record needs someone)."""
    return caller.name or f"api-key {caller.id}"


def check_tenant(caller: ApiKey, definitions: list[MonitorDefinition]) -> None:
    for position, definition in enumerate(definitions):
        if definition.tenant != caller.tenant:
            raise TenantMismatch(
                f"monitor {definition.id!r} is for tenant {definition.tenant!r}; "
                f"this key applies tenant {caller.tenant!r}'s monitors only",
                pointer=f"/monitor/{position}/tenant",
            )


@post(
    "/",
    opt={"roles": ADMINS},
    summary="Apply monitor definitions",
    tags=["monitors"],
    status_code=200,
    sync_to_thread=True,
    responses={
        400: problem_spec("The body is not a JSON object"),
        403: problem_spec("Only admin keys apply monitors, each of its own tenant"),
        422: problem_spec("A definition is refused; the pointer names the member at fault"),
    },
)
def apply_monitors(data: dict[str, Any], caller: ApiKey, ledger: Ledger) -> AppliedMonitors:
    """Append each definition that differs from its monitor's latest version as the next
    version; answer every monitor's version, digest and status."""
    definitions = parse_definitions(data)
    check_tenant(caller, definitions)
    answers = []
    for planned, result in ledger.apply_monitors(definitions, applied_by=applied_by(caller)):
        answer = AppliedMonitor(
            monitor=planned.definition.id,
            tenant=planned.definition.tenant,
            version=planned.version,
            digest=planned.digest,
            status="unchanged",
        )
        if isinstance(result, RecordRejected):
            answer.status = "refused"
            answer.problem = problem_for(result)
        elif result is not None:
            answer.status = "applied"
            answer.index = result.index
        answers.append(answer)
    return AppliedMonitors(answers)
