"""Enrolled principals: the named humans and services a tenant's chains may start from.

The `principals` table is derived from principal records (`ledger.delegation.records`) and
written with their log entries, so it never holds an enrollment the log does not. Admission
reads it for rule 3, the why-report for the root's name, and search for "decisions
authorized by this person".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from ledger.delegation.chain import Principal
from ledger.storage.schema import principals

_COLUMNS = (
    principals.c.idx,
    principals.c.tenant,
    principals.c.did,
    principals.c.name,
    principals.c.display_name,
    principals.c.kind,
)


def _principal(row: Any) -> Principal:
    return Principal(row.did, row.name, row.display_name, row.kind)


def load_principals(
    connection: Connection, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Principal]:
    """The latest enrollment of each (tenant, did) in `wanted`, in one query."""
    pairs = set(wanted)
    if not pairs:
        return {}
    rows = connection.execute(
        select(*_COLUMNS)
        .where(
            principals.c.tenant.in_({tenant for tenant, _ in pairs}),
            principals.c.did.in_({did for _, did in pairs}),
        )
        .order_by(principals.c.idx)
    )
    # Later rows replace earlier ones: the latest enrollment is the one in force.
    return {
        (row.tenant, row.did): _principal(row) for row in rows if (row.tenant, row.did) in pairs
    }


def principal_before(
    connection: Connection, tenant: str, did: str, index: int
) -> tuple[int, Principal] | None:
    """The log index and content of the latest enrollment of `did` before entry `index`."""
    row = connection.execute(
        select(*_COLUMNS)
        .where(principals.c.tenant == tenant, principals.c.did == did, principals.c.idx < index)
        .order_by(principals.c.idx.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.idx, _principal(row))


def list_principals(connection: Connection, tenant: str) -> list[tuple[int, Principal]]:
    """Every enrollment of a tenant, oldest first, with its log index."""
    rows = connection.execute(
        select(*_COLUMNS).where(principals.c.tenant == tenant).order_by(principals.c.idx)
    )
    return [(row.idx, _principal(row)) for row in rows]
