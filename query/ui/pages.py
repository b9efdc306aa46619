"""The auditor pages: server-rendered HTML under `/ui` for reading one tenant's decisions.

Signing in: `POST /ui/login` takes an audit or admin API key, checks it exactly as the API
does, and starts a server-side session (`ledger.keys.ui_sessions`): the browser gets only the
session's random id, in an HttpOnly, SameSite=Strict cookie scoped to `/ui`, marked Secure
when the request came over HTTPS (or through a trusted proxy that says so). The key itself
never leaves the form post. Every other page resolves the session on each request through
its key, so sign-out, expiry and the key's revocation end it at once, and a request without
a usable session is sent to the sign-in form. The key's tenant scopes every page, as a
bearer key scopes the API: another tenant's decision is a 404 page.

The pages are not API routes: they carry no `roles`, so the bearer-key guard lets them
through to the cookie guard here; they are left out of the OpenAPI document; and their
errors are HTML pages, not problem documents. Every answer under `/ui`, errors and
redirects included, carries the same security headers (`secure_page_headers`).
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Annotated, Any, Final
from urllib.parse import urlencode, urlsplit

import anyio.to_thread
import msgspec
import sqlalchemy.exc
import structlog
from litestar import MediaType, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler
from litestar.params import Body
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.types import ExceptionHandler, ExceptionHandlersMap, Message, Scope

from httpapi.errors import Unauthenticated
from httpapi.problems import problem_for
from ledger.errors import BadRequest, LedgerError
from ledger.keys import ui_sessions
from ledger.keys.apikeys import READERS, ApiKey
from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from ledger.storage.db import side_write_transaction
from query.audit.freshness import freshness_answer
from query.audit.search import QUERY_FIELDS, DecisionFilter, search
from query.audit.why import why_report
from query.services import SessionPolicy, read_services
from query.ui.monitor_pages import PAGES as MONITOR_PAGES
from query.ui.subject_pages import PAGES as SUBJECT_PAGES
from query.ui.view import STATIC_DIR, checkpoint_size, timeline_bars
from query.ui.witness_view import witness_rows

log = structlog.get_logger("prov.http")

COOKIE = "prov_ui_session"
# Before sessions, the cookie held the API key itself: it is cleared wherever it shows up.
LEGACY_COOKIE = "prov_ui_key"
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
# On every answer under /ui, whatever produced it: a page, an error page, a redirect, the
# stylesheet, or the framework's own 404 and 405. A page shows a tenant's decisions: no
# shared or browser cache may keep it.
SECURITY_HEADERS: Final = (
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)
_REPLACED = frozenset(name for name, _ in SECURITY_HEADERS)


def under_pages(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


async def secure_page_headers(message: Message, scope: Scope) -> None:
    """The application's `before_send` hook: set the pages' security headers on the start
    of every answer under /ui, replacing any value a handler chose."""
    if message["type"] != "http.response.start" or not under_pages(scope.get("path", "")):
        return
    kept = [
        (name, value)
        for name, value in message.get("headers", ())
        if bytes(name).lower() not in _REPLACED
    ]
    message["headers"] = [*kept, *SECURITY_HEADERS]


class SignInRequired(Unauthenticated):
    """The request has no session, or one that has ended or whose key no longer reads.

    The pages answer it with a redirect to the sign-in page, not a problem document."""

    kind = "sign-in-required"
    title = "Sign-in required"

    def __init__(self, detail: str = "sign in to see this page") -> None:
        super().__init__(detail)


def _resolve(ledger: Ledger, session_id: str, policy: SessionPolicy) -> ApiKey | None:
    return ui_sessions.resolve(
        ledger.engine, session_id, now_us=now_micros(), idle_us=policy.idle_us
    )


async def require_sign_in(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Resolve the session's key and leave it where the `caller` dependency finds it.
    Never cached: sign-out and revocation must end the session in every worker at once."""
    if handler.opt.get("signed_out_ok"):
        return
    session_id = connection.cookies.get(COOKIE)
    key = None
    if session_id:
        services = read_services(connection.app.state)
        key = await anyio.to_thread.run_sync(
            _resolve, services.ledger, session_id, services.ui_sessions
        )
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
    """Check the key as the API would; if it may read decisions, start a session and send
    the browser only the session's id."""
    if not same_origin(request):
        return cross_site_refusal()
    token = data.api_key.strip()
    key: ApiKey | None = await read_services(request.app.state).api_keys.lookup(token)
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
    services = read_services(request.app.state)
    policy = services.ui_sessions
    session_id = await anyio.to_thread.run_sync(
        _start_session, services.ledger, key, request.cookies.get(COOKIE), policy
    )
    signed_in = Redirect(SEARCH_PATH, status_code=SEE_OTHER)
    # No Max-Age: the browser forgets the id when it closes; the server ends it at the TTL.
    signed_in.set_cookie(
        COOKIE,
        session_id,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=policy.secure(request),
    )
    forget_legacy_cookie(request, signed_in)
    return signed_in


def _start_session(ledger: Ledger, key: ApiKey, previous: str | None, policy: SessionPolicy) -> str:
    """A new session for `key`; the browser's previous one (if any) ends, and so does every
    session past its time, so that the table holds only live ones."""
    now_us = now_micros()
    with side_write_transaction(ledger.engine) as connection:
        session_id = ui_sessions.create(connection, key, now_us=now_us, ttl_us=policy.ttl_us)
        if previous:
            ui_sessions.end(connection, previous)
        ui_sessions.purge_expired(connection, now_us=now_us, idle_us=policy.idle_us)
    return session_id


def _end_session(ledger: Ledger, session_id: str) -> None:
    with side_write_transaction(ledger.engine) as connection:
        ui_sessions.end(connection, session_id)


def forget_legacy_cookie(request: Request[Any, Any, State], response: Response[Any]) -> None:
    if LEGACY_COOKIE in request.cookies:
        response.delete_cookie(LEGACY_COOKIE, path=COOKIE_PATH)


@post("/logout", opt=SIGNED_OUT_OK, status_code=SEE_OTHER)
async def logout(request: Request[Any, Any, State]) -> Response[Any]:
    """End the session on the server, not only in this browser: a copy of the cookie taken
    before sign-out signs no one in."""
    if not same_origin(request):
        return cross_site_refusal()
    session_id = request.cookies.get(COOKIE)
    if session_id:
        await anyio.to_thread.run_sync(
            _end_session, read_services(request.app.state).ledger, session_id
        )
    signed_out = Redirect(LOGIN_PATH, status_code=SEE_OTHER)
    signed_out.delete_cookie(COOKIE, path=COOKIE_PATH)
    forget_legacy_cookie(request, signed_out)
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


@get("/decisions/{record_id:str}/freshness.json", sync_to_thread=True)
def freshness_file(record_id: str, caller: ApiKey, ledger: Ledger) -> Response[bytes]:
    """The signed freshness answer with its evidence, for `prov verify-freshness`."""
    with ledger.engine.connect() as connection:
        answer = freshness_answer(
            connection, ledger.signer, ledger.origin, caller.tenant, record_id, now_us=now_micros()
        )
    return Response(
        msgspec.json.encode(answer),
        media_type=MediaType.JSON,
        headers={"Content-Disposition": 'attachment; filename="freshness.json"'},
    )


@get("/log", sync_to_thread=True)
def log_page(request: Request[Any, Any, State], caller: ApiKey, ledger: Ledger) -> Template:
    services = read_services(request.app.state)
    latest = ledger.latest_checkpoint()
    with ledger.engine.connect() as connection:
        witnesses = witness_rows(connection, services.witnesses, latest.tree_size, time.time())
    return page(
        "log.html",
        caller,
        section="log",
        origin=ledger.origin,
        checkpoint=latest,
        served=ledger.served_checkpoint(services.witness_quorum, services.witnesses),
        witnesses=witnesses,
        quorum=services.witness_quorum,
        verifier_key=ledger.verifier.encode(),
        base_url=str(request.base_url).rstrip("/"),
    )


def error_page(request: Request[Any, Any, State], status: int, title: str, detail: str) -> Template:
    # The guard has set the caller unless the error is about signing in.
    caller: ApiKey | None = request.state.get("caller")
    return page("error.html", caller, status=status, title=title, detail=detail)


def sign_in_redirect(request: Request[Any, Any, State], _: Exception) -> Response[Any]:
    to_login = Redirect(LOGIN_PATH, status_code=SEE_OTHER)
    if COOKIE in request.cookies:  # a session ended since, or a forged cookie
        to_login.delete_cookie(COOKIE, path=COOKIE_PATH)
    forget_legacy_cookie(request, to_login)
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


def or_error_page(api_handler: ExceptionHandler[Any]) -> ExceptionHandler[Any]:
    """The application's handler for HTTP errors, except under /ui: there, an address no
    page matches (404) or a method no page takes (405) is an HTML error page too."""

    def handler(request: Request[Any, Any, State], error: Exception) -> Response[Any]:
        if under_pages(request.scope.get("path", "")) and isinstance(error, HTTPException):
            return http_error_page(request, error)
        return api_handler(request, error)

    return handler


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
            freshness_file,
            log_page,
            *MONITOR_PAGES,
            *SUBJECT_PAGES,
        ],
        guards=[require_sign_in],
        exception_handlers=PAGE_ERRORS,
        include_in_schema=False,
        # The security headers are set by `secure_page_headers`, on errors too.
    )
    static = create_static_files_router(
        "/ui/static", [STATIC_DIR], name="ui-static", include_in_schema=False
    )
    return [pages, static]
