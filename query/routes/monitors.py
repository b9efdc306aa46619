"""Routes that read monitors: the tenant's monitors with where each group stands
(`GET /v1/monitors`), one monitor with its versions and breaches
(`GET /v1/monitors/{monitor_id}`), and one breach record (`GET /v1/breaches/{record_id}`).

Each is scoped to the caller's tenant. `tenant` may be given, as the CLI's `--tenant` is,
but only as the key's own: another tenant answers 404, as a monitor that does not exist
does, so that a key cannot learn which tenants have monitors.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import get
from litestar.params import Parameter

from httpapi.problems import problem_spec
from ledger.errors import NotFound
from ledger.keys.apikeys import READERS, ApiKey
from ledger.ledger import Ledger
from query.audit.monitors import (
    DEFAULT_BREACHES,
    MAX_BREACHES,
    BreachDetail,
    BreachRow,
    MonitorSummary,
    MonitorVersion,
    breach_detail,
    breaches_of,
    get_monitor,
    list_monitors,
    monitor_versions,
)

MONITOR_READ = {"roles": READERS}
TenantParam = Annotated[
    str | None,
    Parameter(max_length=64, description="The tenant; only the key's own (the default)"),
]


class MonitorList(msgspec.Struct, kw_only=True):
    tenant: str
    monitors: list[MonitorSummary]


class MonitorAnswer(msgspec.Struct, kw_only=True):
    monitor: MonitorSummary
    versions: list[MonitorVersion]
    breaches: list[BreachRow]


def tenant_of(caller: ApiKey, tenant: str | None) -> str:
    """The tenant a read is about: the key's own. Another is answered as absent."""
    if tenant is not None and tenant != caller.tenant:
        raise NotFound(f"nothing of tenant {tenant!r} is readable with this key")
    return caller.tenant


@get(
    "/",
    opt=MONITOR_READ,
    summary="The tenant's monitors and where each group stands",
    tags=["monitors"],
    sync_to_thread=True,
    responses={404: problem_spec("Another tenant than the key's")},
)
def list_monitors_route(
    caller: ApiKey,
    ledger: Ledger,
    tenant: TenantParam = None,
    monitor: Annotated[
        str | None, Parameter(max_length=64, description="Only this monitor")
    ] = None,
) -> MonitorList:
    """Each monitor at its latest version: the definition its record signed, and each
    group's latest value, count and whether it stands over the limit."""
    scope = tenant_of(caller, tenant)
    with ledger.engine.connect() as connection:
        return MonitorList(tenant=scope, monitors=list_monitors(connection, scope, monitor))


@get(
    "/{monitor_id:str}",
    opt=MONITOR_READ,
    summary="One monitor: definition, versions, groups and breaches",
    tags=["monitors"],
    sync_to_thread=True,
    responses={404: problem_spec("No such monitor for this tenant")},
)
def monitor_route(
    monitor_id: str,
    caller: ApiKey,
    ledger: Ledger,
    tenant: TenantParam = None,
    limit: Annotated[
        int, Parameter(ge=1, le=MAX_BREACHES, description="At most this many breaches")
    ] = DEFAULT_BREACHES,
    before: Annotated[
        int | None, Parameter(ge=0, description="Breaches before this log index")
    ] = None,
) -> MonitorAnswer:
    """The monitor's latest version and its groups, every version applied, and its breach
    records, newest first (`before` the last index shown continues)."""
    scope = tenant_of(caller, tenant)
    with ledger.engine.connect() as connection:
        summary = get_monitor(connection, scope, monitor_id)
        return MonitorAnswer(
            monitor=summary,
            versions=monitor_versions(connection, scope, monitor_id),
            breaches=breaches_of(connection, scope, monitor_id, limit=limit, before=before),
        )


@get(
    "/{record_id:str}",
    opt=MONITOR_READ,
    summary="One breach record",
    tags=["monitors"],
    sync_to_thread=True,
    responses={404: problem_spec("No such breach for this tenant")},
)
def breach_route(
    record_id: str, caller: ApiKey, ledger: Ledger, tenant: TenantParam = None
) -> BreachDetail:
    """The breach record as its log entry holds it (the window, the decision that crossed,
    the value and the limit), its log index and leaf hash, and the signed envelope."""
    scope = tenant_of(caller, tenant)
    with ledger.engine.connect() as connection:
        return breach_detail(connection, scope, record_id)
