"""API requests whose path or query holds a NUL character are refused before any route.

No store the ledger uses can compare text holding U+0000 (PostgreSQL refuses it outright),
and no identifier the API names can hold one, so such a request could only fail deeper
down. Refused here, once, for every `/v1` route alike: a path naming such an id answers
404 (nothing can have it), a query holding one 400. The auditor pages under `/ui` answer
with their own HTML error pages and check their parameters themselves.
"""

from __future__ import annotations

import msgspec
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from httpapi.problems import PROBLEM_MEDIA_TYPE, problem_for
from ledger.errors import BadRequest, NotFound, ProvError


def refuse_nul(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and not scope["path"].startswith("/ui"):
            query = scope.get("query_string", b"")
            if "\x00" in scope["path"]:
                await _refuse(scope, send, NotFound, "path")
                return
            if b"%00" in query or b"\x00" in query:
                await _refuse(scope, send, BadRequest, "query")
                return
        await app(scope, receive, send)

    return middleware


async def _refuse(scope: Scope, send: Send, error: type[ProvError], where: str) -> None:
    detail = f"the request {where} holds a NUL character, which no identifier or filter may"
    problem = problem_for(error(detail, pointer=""))  # the pointer "" is the whole request
    problem.instance = scope["path"].replace("\x00", "%00")
    body = msgspec.json.encode(problem)
    status = problem.status
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)
