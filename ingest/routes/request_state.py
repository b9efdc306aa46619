"""What the service attaches to a request, for the write routes to read directly.

The append routes are the hot path, and resolving several injected dependencies makes the
framework start a task group per request; reading the caller (set by the API key guard)
and the `WriteServices` (built once per worker at startup) from the request costs nothing,
and `write_services` checks their type instead of trusting loose state attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.datastructures import State

from ingest.commit.groupcommit import GroupCommitter
from ledger.errors import LedgerNotInitialized
from ledger.keys.apikeys import ApiKey

if TYPE_CHECKING:  # bodies reads its budgets through this module
    from ingest.routes.bodies import BodyBudget

WRITE_SERVICES = "write_services"


@dataclass(frozen=True, slots=True)
class WriteServices:
    committer: GroupCommitter
    # Most records one batch request may carry.
    batch_limit: int
    # Request bodies held in memory, and blob uploads spooled to disk, per worker.
    body_budget: BodyBudget
    spool_budget: BodyBudget


def write_services(state: State) -> WriteServices:
    """The worker's write services; refused until the application has started."""
    services = state.get(WRITE_SERVICES)
    if not isinstance(services, WriteServices):
        raise LedgerNotInitialized("the service has not started: no write services yet")
    return services


def caller_of(request: Request[Any, Any, Any]) -> ApiKey:
    caller = request.state.caller
    assert isinstance(caller, ApiKey), "the API key guard runs before every /v1 route"
    return caller
