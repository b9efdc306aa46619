"""The auditor pages: server-rendered HTML under `/ui` for reading one tenant's decisions.

Signing in: `POST /ui/login` takes an audit or admin API key, checks it exactly as the API
does, and keeps it in an HttpOnly, SameSite=Strict cookie scoped to `/ui`. Every other page
resolves that cookie on each request through the same per-worker key cache as the bearer
guard, so a revoked key signs the browser out within `auth_cache_seconds`, and a request
without a usable cookie is sent to the sign-in form. The key's tenant scopes every page, as
a bearer key scopes the API: another tenant's decision is a 404 page.

The pages are not API routes: they carry no `roles`, so the bearer-key guard lets them
through to the cookie guard here; they are left out of the OpenAPI document; and their
errors are HTML pages, not problem documents.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, Final
from urllib.parse import urlencode, urlsplit

import msgspec
import sqlalchemy.exc
import structlog
from litestar import MediaType, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader, ResponseHeader, State
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler
from litestar.params import Body
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.types import ExceptionHandlersMap

from ingest.problems import problem_for
from ledger.apikeys import READERS, ApiKey
from ledger.errors import BadRequest, LedgerError
from ledger.ledger import Ledger
from ledger.sequencer import now_micros
from query.pages_view import STATIC_DIR, checkpoint_size, timeline_bars
from query.search import QUERY_FIELDS, DecisionFilter, search
from query.why import why_report

log = structlog.get_logger("prov.http")

COOKIE = "prov_ui_key"
COOKIE_PATH = "/ui"
LOGIN_PATH = "/ui/login"
SEARCH_PATH = "/ui/"
# After a form post, the browser follows with a GET: a reload does not post the key again.
SEE_OTHER: Final = 303
# The sign-in form and sign-out are the only pages reachable without the cookie.
SIGNED_OUT_OK = {"signed_out_ok": True}
# No script at all; inline style attributes only place the timeline's bars.
_CSP = (
    "default-src 'none'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SignInRequired(Exception):
    """The request has no cookie, or one whose key no longer exists or reads decisions."""


async def require_sign_in(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Resolve the cookie's key and leave it where the `caller` dependency finds it."""
    if handler.opt.get("signed_out_ok"):
        return
    token = connection.cookies.get(COOKIE)
    key = await connection.app.state.api_keys.lookup(token) if token else None
    if key is None or key.role not in READERS:
        raise SignInRequired
    connection.state.caller = key


def page(
    name: str, caller: ApiKey | None, *, section: str = "", status: int = 200, **context: Any
) -> Template:
    """A page; `caller` (None before sign-in) and `section` feed the navigation bar."""
    return Template(
        name, context={"caller": caller, "section": section, **context}, status_code=status
    )


def same_origin(request: Request[Any, Any, State]) -> bool:
    """Whether a form was posted from these pages. Browsers send `Origin` on every POST; a
    form on another site must not sign this browser in (to a key of its choosing) or out."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def cross_site_refusal() -> Template:
    return page(
        "error.html",
        None,
        status=403,
        title="Forbidden",
        detail="this form was sent from another site",
    )


@get("/login", opt=SIGNED_OUT_OK)
async def login_form() -> Template:
    return page("login.html", None, error=None)


class LoginForm(msgspec.Struct):
    api_key: str = ""


@post("/login", opt=SIGNED_OUT_OK, status_code=SEE_OTHER)
async def login(
    request: Request[Any, Any, State],
    data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    """Check the key as the API would; keep it in the cookie only if it may read decisions."""
    if not same_origin(request):
        return cross_site_refusal()
    token = data.api_key.strip()
    key: ApiKey | None = await request.app.state.api_keys.lookup(token)
    if key is None:
        return page(
            "login.html", None, status=401, error="This API key is unknown or has been revoked."
        )
    if key.role not in READERS:
        return page(
            "login.html",
            None,
            status=403,
            error=f"An {key.role.value} key cannot read decisions: "
            "sign in with an audit or admin key.",
        )
    signed_in = Redirect(SEARCH_PATH, status_code=SEE_OTHER)
    signed_in.set_cookie(
        COOKIE,
        token,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        # Over plain HTTP (a loopback port) a Secure cookie would never come back.
        secure=request.url.scheme == "https",
    )
    return signed_in


@post("/logout", opt=SIGNED_OUT_OK, status_code=SEE_OTHER)
async def logout(request: Request[Any, Any, State]) -> Response[Any]:
    if not same_origin(request):
        return cross_site_refusal()
    signed_out = Redirect(LOGIN_PATH, status_code=SEE_OTHER)
    signed_out.delete_cookie(COOKIE, path=COOKIE_PATH)
    return signed_out


@get("/", sync_to_thread=True)
def search_page(request: Request[Any, Any, State], caller: ApiKey, ledger: Ledger) -> Template:
    """The filter form and one page of matching decisions, newest first. The filters use
    the API's query names, so a page's address is also its `GET /v1/decisions` query."""
    filters = {name: request.query_params.get(name, "") for name in QUERY_FIELDS}
    cursor = request.query_params.get("cursor") or None
    try:
        where = DecisionFilter.from_query(caller.tenant, filters)
        with ledger.engine.connect() as connection:
            found = search(connection, where, cursor=cursor)
    except BadRequest as error:
        return page(
            "search.html",
            caller,
            section="search",
            status=400,
            filters=filters,
            error=error.detail,
            found=None,
            next_url=None,
            first_url=None,
        )
    chosen = {name: value for name, value in filters.items() if value}
    return page(
        "search.html",
        caller,
        section="search",
        filters=filters,
        error=None,
        found=found,
        next_url=None
        if found.next_cursor is None
        else f"{SEARCH_PATH}?{urlencode(chosen | {'cursor': found.next_cursor})}",
        first_url=None if cursor is None else f"{SEARCH_PATH}?{urlencode(chosen)}",
    )


def report_of(ledger: Ledger, caller: ApiKey, record_id: str) -> dict[str, Any]:
    """The why-report, as `GET /v1/decisions/{id}/why` gives it; NotFound for an id of
    another tenant, exactly as for one that does not exist."""
    with ledger.engine.connect() as connection:
        return why_report(
            connection,
            ledger.verifier,
            ledger.origin,
            caller.tenant,
            record_id,
            now_us=now_micros(),
        )


@get("/decisions/{record_id:str}", sync_to_thread=True)
def decision_page(record_id: str, caller: ApiKey, ledger: Ledger) -> Template:
    report = report_of(ledger, caller, record_id)
    analysis = report["analysis"]
    note = report["evidence"]["checkpoint"]
    return page(
        "decision.html",
        caller,
        section="search",
        record_id=record_id,
        report=report,
        bars=[] if analysis is None else timeline_bars(analysis["timeline"]),
        blobs={blob["digest"]: blob for blob in report["verification"]["blobs"]},
        checkpoint_size=None if note is None else checkpoint_size(note),
        verifier_key=ledger.verifier.encode(),
    )


@get("/decisions/{record_id:str}/report.json", sync_to_thread=True)
def report_file(record_id: str, caller: ApiKey, ledger: Ledger) -> Response[bytes]:
    """The why-report as a download, for `prov verify-report` to check offline."""
    return Response(
        msgspec.json.encode(report_of(ledger, caller, record_id)),
        media_type=MediaType.JSON,
        headers={"Content-Disposition": 'attachment; filename="report.json"'},
    )


@get("/log", sync_to_thread=True)
def log_page(request: Request[Any, Any, State], caller: ApiKey, ledger: Ledger) -> Template:
    latest = ledger.latest_checkpoint()
    return page(
        "log.html",
        caller,
        section="log",
        origin=ledger.origin,
        checkpoint=latest,
        verifier_key=ledger.verifier.encode(),
        base_url=str(request.base_url).rstrip("/"),
    )


def error_page(request: Request[Any, Any, State], status: int, title: str, detail: str) -> Template:
    # The guard has set the caller unless the error is about signing in.
    caller: ApiKey | None = request.state.get("caller")
    return page("error.html", caller, status=status, title=title, detail=detail)


def sign_in_redirect(request: Request[Any, Any, State], _: Exception) -> Response[Any]:
    to_login = Redirect(LOGIN_PATH, status_code=SEE_OTHER)
    if COOKIE in request.cookies:  # a key revoked since, or a forged cookie
        to_login.delete_cookie(COOKIE, path=COOKIE_PATH)
    return to_login


def ledger_error_page(request: Request[Any, Any, State], error: Exception) -> Template:
    assert isinstance(error, LedgerError)
    problem = problem_for(error)  # the status and title the API gives the same error
    return error_page(request, problem.status, problem.title, problem.detail)


def http_error_page(request: Request[Any, Any, State], error: Exception) -> Template:
    assert isinstance(error, HTTPException)
    status = error.status_code
    return error_page(request, status, HTTPStatus(status).phrase, error.detail)


def database_error_page(request: Request[Any, Any, State], error: Exception) -> Template:
    log.warning("database unavailable", path=request.url.path, error=str(error).splitlines()[0])
    return error_page(
        request, 503, "Database unavailable", "the database did not answer; try again shortly"
    )


def internal_error_page(request: Request[Any, Any, State], error: Exception) -> Template:
    log.exception("unhandled error", path=request.url.path, exc_info=error)
    return error_page(request, 500, "Internal error", "the page could not be shown")


# These replace the application's problem+json handlers for the pages (a router's handler
# for a class wins over the application's for the same class).
PAGE_ERRORS: ExceptionHandlersMap = {
    SignInRequired: sign_in_redirect,
    LedgerError: ledger_error_page,
    HTTPException: http_error_page,
    sqlalchemy.exc.OperationalError: database_error_page,
    Exception: internal_error_page,
}


def page_routers() -> list[Router]:
    """The pages and their stylesheet, for the application factory."""
    pages = Router(
        "/ui",
        route_handlers=[
            login_form,
            login,
            logout,
            search_page,
            decision_page,
            report_file,
            log_page,
        ],
        guards=[require_sign_in],
        exception_handlers=PAGE_ERRORS,
        include_in_schema=False,
        # A page shows a tenant's decisions: no shared or browser cache may keep it.
        cache_control=CacheControlHeader(no_store=True),
        response_headers=[
            ResponseHeader(name="Content-Security-Policy", value=_CSP),
            ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
            ResponseHeader(name="Referrer-Policy", value="same-origin"),
        ],
    )
    static = create_static_files_router(
        "/ui/static", [STATIC_DIR], name="ui-static", include_in_schema=False
    )
    return [pages, static]
