"""What the service attaches to a request, for the append routes to read directly.

The append routes are the hot path, and resolving several injected dependencies makes the
framework start a task group per request; reading the caller (set by the API key guard)
and the committer (set at startup) from the request costs nothing.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from ingest.commit.groupcommit import GroupCommitter
from ledger.keys.apikeys import ApiKey


def caller_of(request: Request[Any, Any, Any]) -> ApiKey:
    caller = request.state.caller
    assert isinstance(caller, ApiKey), "the API key guard runs before every /v1 route"
    return caller


def committer_of(request: Request[Any, Any, Any]) -> GroupCommitter:
    committer: GroupCommitter = request.app.state.committer
    return committer


def batch_limit_of(request: Request[Any, Any, Any]) -> int:
    limit: int = request.app.state.batch_limit
    return limit
