"""The monitor pages under `/ui`: the tenant's monitors with where each group stands
(`/ui/monitors`, which reloads itself every few seconds, and the same as JSON at
`/ui/monitors.json`), one monitor's history as a chart with its breaches
(`/ui/monitors/{id}`), and one breach with the decision that crossed and the decisions of
its window (`/ui/breaches/{id}`).

They are signed in to and scoped like the other pages (`query.ui.pages`): the session's key
names the tenant, and another tenant's monitor or breach is a 404 page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
from litestar import MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.response import Template

from ledger.errors import BadRequest
from ledger.keys.apikeys import ApiKey
from ledger.ledger import Ledger
from ledger.log.entry import rfc3339, to_micros
from query.audit.monitors import (
    DEFAULT_BREACHES,
    MonitorSummary,
    breach_detail,
    breaches_of,
    get_monitor,
    list_monitors,
    monitor_history,
    monitor_versions,
    window_decisions,
)
from query.ui.monitor_view import gauge, history_chart, short_value

# How often the list reloads itself (a meta refresh: the pages run no script).
REFRESH_SECONDS = 5
BIGINT_MAX = 2**63 - 1


def _page(name: str, caller: ApiKey, **context: Any) -> Template:
    # The same context `query.ui.pages.page` gives every page (it imports this module).
    return Template(name, context={"caller": caller, "section": "monitors", **context})


def _int_param(request: Request[Any, Any, State], name: str) -> int | None:
    text = request.query_params.get(name)
    if not text:
        return None
    if not text.isdigit() or int(text) > BIGINT_MAX:
        raise BadRequest(f"{name!r} must be a log index, not {text[:40]!r}", pointer=f"/{name}")
    return int(text)


def _rows(summary: MonitorSummary) -> list[dict[str, Any]]:
    """Each group of the monitor as the list and the detail page show it."""
    limit = summary.definition.limit
    return [
        {
            "group": "(all)" if group.group is None else group.group,
            "value": short_value(group.value),
            "exact": group.value,
            "count": group.count,
            "breached": group.breached,
            "index": group.index,
            "as_of": group.as_of,
            "bar": gauge(group.value, limit),
        }
        for group in summary.groups
    ]


@get("/monitors", sync_to_thread=True)
def monitors_page(caller: ApiKey, ledger: Ledger) -> Template:
    with ledger.engine.connect() as connection:
        found = list_monitors(connection, caller.tenant)
    return _page(
        "monitors.html",
        caller,
        monitors=[(summary, _rows(summary)) for summary in found],
        refresh=REFRESH_SECONDS,
    )


@get("/monitors.json", sync_to_thread=True)
def monitors_file(caller: ApiKey, ledger: Ledger) -> Response[bytes]:
    """What the list page shows, as `GET /v1/monitors` answers it."""
    with ledger.engine.connect() as connection:
        found = list_monitors(connection, caller.tenant)
    return Response(
        msgspec.json.encode({"tenant": caller.tenant, "monitors": found}),
        media_type=MediaType.JSON,
    )


@get("/monitors/{monitor_id:str}", sync_to_thread=True)
def monitor_page(
    monitor_id: str, request: Request[Any, Any, State], caller: ApiKey, ledger: Ledger
) -> Template:
    version = _int_param(request, "version")
    before = _int_param(request, "before")
    with ledger.engine.connect() as connection:
        summary = get_monitor(connection, caller.tenant, monitor_id)
        history = monitor_history(connection, caller.tenant, monitor_id, version)
        versions = monitor_versions(connection, caller.tenant, monitor_id)
        breaches = breaches_of(connection, caller.tenant, monitor_id, before=before)
    return _page(
        "monitor.html",
        caller,
        summary=summary,
        definition=msgspec.json.format(msgspec.json.encode(summary.definition), indent=2).decode(),
        groups=_rows(summary),
        history=history,
        chart=history_chart(history),
        versions=versions,
        breaches=breaches,
        short=short_value,
        next_url=None
        if len(breaches) < DEFAULT_BREACHES
        else f"/ui/monitors/{quote(monitor_id, safe='')}?before={breaches[-1].index}",
    )


@get("/breaches/{record_id:str}", sync_to_thread=True)
def breach_page(
    record_id: str, request: Request[Any, Any, State], caller: ApiKey, ledger: Ledger
) -> Template:
    after = _int_param(request, "after")
    with ledger.engine.connect() as connection:
        detail = breach_detail(connection, caller.tenant, record_id)
        window = detail.record.window
        page = window_decisions(connection, caller.tenant, window.first, window.last, after=after)
    return _page(
        "breach.html",
        caller,
        detail=detail,
        breach=detail.record,
        window_start=rfc3339(to_micros(window.start)),
        window_end=rfc3339(to_micros(window.end)),
        short=short_value,
        window_page=page,
        after=after,
        next_url=None
        if page.next_after is None
        else f"/ui/breaches/{quote(record_id, safe='')}?after={page.next_after}",
    )


PAGES = (monitors_page, monitors_file, monitor_page, breach_page)
