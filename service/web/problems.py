"""RFC 9457 problem details: every error the service answers, from one exception hierarchy.

Ledger errors are rendered as `application/problem+json` with the status and document
`httpapi.problems` gives them. The framework's own errors (unknown route, wrong method, body
too large, unreadable parameters) are rendered the same way, so a client parses one shape.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from httpapi.errors import Overloaded, Unauthenticated
from httpapi.problems import (
    PROBLEM_MEDIA_TYPE,
    TYPE_PREFIX,
    FieldError,
    Problem,
    problem_for,
)
from ledger.errors import BlobStoreUnavailable, DatabaseUnavailable, ProvError

log = structlog.get_logger("prov.http")

_NAMED_MEMBER = re.compile(r"(?:unknown|missing required) field `([^`]+)`")

# The framework's errors, by status, when they are not ours.
_KIND_BY_STATUS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
}


def problem_response(
    problem: Problem, request: Request[Any, Any, Any], headers: dict[str, str] | None = None
) -> Response[Problem]:
    problem.instance = request.url.path
    return Response(
        problem, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def ledger_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    assert isinstance(error, ProvError)
    headers: dict[str, str] = {}
    if isinstance(error, Overloaded | DatabaseUnavailable | BlobStoreUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    elif isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="prov"'
    problem = problem_for(error)
    if problem.status >= 500:
        log.warning("service unavailable", kind=error.kind, detail=error.detail)
    return problem_response(problem, request, headers)


def http_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    assert isinstance(error, HTTPException)
    status = error.status_code
    kind = _KIND_BY_STATUS.get(status, "http-error")
    if status == 413:
        kind = request.route_handler.opt.get("too_large_kind", kind)
    errors = []
    if isinstance(error, ValidationException) and isinstance(error.extra, list):
        errors = [
            FieldError(_pointer(item), item["message"])
            for item in error.extra
            if isinstance(item, dict) and "message" in item
        ]
    detail = error.detail
    if errors:
        detail = "; ".join(f"{e.pointer}: {e.detail}" for e in errors)
    problem = Problem(
        type=TYPE_PREFIX + kind,
        title=kind.replace("-", " ").capitalize(),
        status=status,
        detail=detail,
        errors=errors,
    )
    return problem_response(problem, request, dict(error.headers or {}))


def _pointer(item: dict[str, Any]) -> str:
    """RFC 6901 pointer of a framework validation error: its key path, plus the member a
    message names (`unknown field `x``, `missing required field `x``)."""
    key = str(item.get("key", ""))
    segments = [] if key in ("", "data") else key.split(".")
    if named := _NAMED_MEMBER.search(str(item["message"])):
        segments.append(named.group(1))
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segments)


def database_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    """The database cannot be reached or is overloaded: nothing was acknowledged, and a
    retry after a pause is the right answer."""
    log.warning("database unavailable", path=request.url.path, error=str(error).splitlines()[0])
    unavailable = DatabaseUnavailable(
        "the database did not answer; nothing was acknowledged, so retrying is safe"
    )
    return problem_response(
        problem_for(unavailable), request, {"Retry-After": str(unavailable.retry_after)}
    )


def internal_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    log.exception("unhandled error", path=request.url.path, exc_info=error)
    problem = Problem(
        type=TYPE_PREFIX + "internal-error",
        title="Internal error",
        status=500,
        detail="the service failed to answer; nothing was acknowledged, so retrying is safe",
    )
    return problem_response(problem, request)
