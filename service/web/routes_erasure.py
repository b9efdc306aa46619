"""Erasure, retention and legal holds over HTTP (docs/erasure.md).

- `POST /v1/erasures` (admin): erase every blob of a subject, `{subject, reason,
  request_id?, queue?}`. 201 with the request, done; 202 when it was queued (inside the
  floor or under a hold, with ``queue``); 200 for a request id already known (a retry
  completes an interrupted erasure). Refused: an unknown subject (404 ``subject-unknown``),
  the floor or a hold (409 ``erasure-refused``, naming the floor's end or the hold), a
  request id used for another subject (409 ``id-conflict``), a bad body (422
  ``erasure-request-invalid`` naming the member).
- `GET /v1/erasures`, `GET /v1/erasures/{request_id}` (audit, admin): the tenant's
  requests; one request with the digests it erased.
- `GET /v1/retention` (audit, admin), `PUT /v1/retention` (admin): the rule in force,
  and its next version.
- `GET /v1/holds`, `GET /v1/holds/{hold_id}` (audit, admin); `POST /v1/holds` and
  `DELETE /v1/holds/{hold_id}` (admin): place and release legal holds. A released hold
  stays listed (`?all=true`), with its release.

Every change is a record signed by the ledger's key; who asked is the API key's name. The
clock is the server's: no request can set it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Response, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from httpapi.problems import problem_spec
from ingest.routes.monitors import applied_by
from ledger.erasure.requests import (
    EraseRequest,
    HoldRequest,
    RetentionRequest,
    parse,
)
from ledger.erasure.views import ErasureView, HoldView, RetentionView
from ledger.errors import NotFound
from ledger.keys.apikeys import ADMINS, READERS, ApiKey
from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_BAD_BODY = problem_spec("A member of the body is missing, unknown or out of bounds")


def _checked_id(value: str, what: str) -> str:
    """An id no request or hold can have is one the tenant does not hold."""
    if _ID.fullmatch(value) is None:
        raise NotFound(f"no {what} {value[:80]!r}")
    return value


@post(
    "/",
    opt={"roles": ADMINS},
    summary="Erase a subject",
    tags=["erasure"],
    sync_to_thread=True,
    status_code=201,
    responses={
        200: ResponseSpec(ErasureView, description="A known request id: completed, as it stands"),
        202: ResponseSpec(ErasureView, description="Queued: the floor or a hold forbids it now"),
        403: problem_spec("Only admin keys erase"),
        404: problem_spec("The tenant holds nothing about the subject"),
        409: problem_spec("Refused by the retention floor or a legal hold, or the id is taken"),
        422: _BAD_BODY,
    },
)
def erase_subject(data: dict[str, Any], caller: ApiKey, ledger: Ledger) -> Response[ErasureView]:
    """Erase every blob of `subject`: an erasure record signed by the ledger, the blobs
    unreadable from its commit, then their objects deleted and the subject's key destroyed.
    Body: `{"subject": str, "reason": str, "request_id"?: str, "queue"?: bool}`."""
    body = parse(EraseRequest, data)
    known = body.request_id is not None and _known(ledger, caller.tenant, body.request_id)
    view = ledger.erasures.erase_subject(
        caller.tenant,
        body.subject,
        reason=body.reason,
        requested_by=applied_by(caller),
        now_us=now_micros(),
        request_id=body.request_id,
        queue=body.queue,
    )
    status = 200 if known else 202 if view.state == "queued" else 201
    return Response(view, status_code=status)


def _known(ledger: Ledger, tenant: str, request_id: str) -> bool:
    try:
        ledger.erasures.get(tenant, request_id)
    except NotFound:
        return False
    return True


@get("/", opt={"roles": READERS}, summary="Erasure requests", tags=["erasure"], sync_to_thread=True)
def list_erasures(caller: ApiKey, ledger: Ledger) -> list[ErasureView]:
    """The tenant's erasure requests, newest first (without their digests)."""
    return ledger.erasures.of_tenant(caller.tenant)


@get(
    "/{request_id:str}",
    opt={"roles": READERS},
    summary="One erasure request",
    tags=["erasure"],
    sync_to_thread=True,
    responses={404: problem_spec("No such request for this tenant")},
)
def erasure(request_id: str, caller: ApiKey, ledger: Ledger) -> ErasureView:
    """The request, with the digests it erased and the log indexes of its records."""
    return ledger.erasures.get(caller.tenant, _checked_id(request_id, "erasure request"))


@get(
    "/", opt={"roles": READERS}, summary="The retention rule", tags=["erasure"], sync_to_thread=True
)
def retention(caller: ApiKey, ledger: Ledger) -> RetentionView:
    """The rule in force: the floor (183 days when none was recorded) and the expiry."""
    return ledger.rules.retention(caller.tenant)


@put(
    "/",
    opt={"roles": ADMINS},
    summary="Set the retention rule",
    tags=["erasure"],
    sync_to_thread=True,
    responses={403: problem_spec("Only admin keys set the rule"), 422: _BAD_BODY},
)
def set_retention(data: dict[str, Any], caller: ApiKey, ledger: Ledger) -> RetentionView:
    """Record the tenant's next retention version. Body: `{"floor_days": int,
    "expire_after_days"?: int (at least the floor), "reason"?: str}`."""
    body = parse(RetentionRequest, data)
    return ledger.rules.set_retention(
        caller.tenant,
        floor_days=body.floor_days,
        expire_after_days=body.expire_after_days,
        set_by=applied_by(caller),
        now_us=now_micros(),
        reason=body.reason,
    )


@get("/", opt={"roles": READERS}, summary="Legal holds", tags=["erasure"], sync_to_thread=True)
def list_holds(
    caller: ApiKey,
    ledger: Ledger,
    everything: Annotated[bool, Parameter(query="all", description="Released holds too")] = False,
) -> list[HoldView]:
    """The tenant's live holds (with `?all=true`, released ones too)."""
    return ledger.rules.holds(caller.tenant, released=everything)


@get(
    "/{hold_id:str}",
    opt={"roles": READERS},
    summary="One legal hold",
    tags=["erasure"],
    sync_to_thread=True,
    responses={404: problem_spec("No such hold for this tenant")},
)
def hold(hold_id: str, caller: ApiKey, ledger: Ledger) -> HoldView:
    return ledger.rules.hold(caller.tenant, _checked_id(hold_id, "hold"))


@post(
    "/",
    opt={"roles": ADMINS},
    summary="Place a legal hold",
    tags=["erasure"],
    sync_to_thread=True,
    status_code=201,
    responses={
        403: problem_spec("Only admin keys place holds"),
        409: problem_spec("The hold id is taken by another hold"),
        422: _BAD_BODY,
    },
)
def add_hold(data: dict[str, Any], caller: ApiKey, ledger: Ledger) -> HoldView:
    """Body: `{"subject": str}` or `{"filter": {"service"?: P, "decision_type"?: P}}` (each
    exact or a glob with `*`), and `"reason": str`, `"hold_id"?: str`."""
    body = parse(HoldRequest, data)
    return ledger.rules.add_hold(
        caller.tenant,
        reason=body.reason,
        placed_by=applied_by(caller),
        now_us=now_micros(),
        subject=body.subject,
        selected=body.filter,
        hold_id=body.hold_id,
    )


@delete(
    "/{hold_id:str}",
    opt={"roles": ADMINS},
    summary="Release a legal hold",
    tags=["erasure"],
    sync_to_thread=True,
    status_code=200,
    responses={
        403: problem_spec("Only admin keys release holds"),
        404: problem_spec("No such hold"),
    },
)
def release_hold(
    hold_id: str,
    caller: ApiKey,
    ledger: Ledger,
    reason: Annotated[str | None, Parameter(max_length=1024)] = None,
) -> HoldView:
    """Release the hold (a record; the hold stays listed as released)."""
    return ledger.rules.release_hold(
        caller.tenant,
        _checked_id(hold_id, "hold"),
        released_by=applied_by(caller),
        now_us=now_micros(),
        reason=reason,
    )
