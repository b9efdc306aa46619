"""Each tenant's delegation mode: how strictly ingest checks decision records' chains.

- ``required``: every decision must carry an invocation and its delegation chain, and the
  chain must verify.
- ``optional`` (the default): a decision that carries an invocation must verify; one without
  is stored as it is. Delegations without an invocation (the form records had before
  invocations) are kept as the service's claim and reported as not checked.
- ``off``: chains are stored unchecked; the why-report still verifies them.

The mode is configuration, not evidence, so it lives in a table rather than in the log.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Connection, insert, select, update

from ledger.storage.schema import delegation_modes


class DelegationMode(StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    OFF = "off"


DEFAULT_MODE = DelegationMode.OPTIONAL


def load_modes(connection: Connection) -> dict[str, DelegationMode]:
    """Every tenant's mode that was set, in one query (one row per tenant that set one);
    tenants missing from it have `DEFAULT_MODE`."""
    rows = connection.execute(select(delegation_modes.c.tenant, delegation_modes.c.mode))
    return {row.tenant: DelegationMode(row.mode) for row in rows}


def set_mode(connection: Connection, tenant: str, mode: DelegationMode, *, now_us: int) -> None:
    values = {"mode": mode.value, "updated_us": now_us}
    changed = connection.execute(
        update(delegation_modes).where(delegation_modes.c.tenant == tenant).values(**values)
    )
    if changed.rowcount == 0:
        connection.execute(insert(delegation_modes).values(tenant=tenant, **values))
