"""`GET /v1/reports/{name}`: a canned report over the Parquet export, as JSON or a chart.

The report reads the export location the service was configured with
(`ReadServices.export_dir`), and only the caller's tenant's partitions of it: the views are
built from that tenant's files alone, so no report can count another tenant's rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, QueryParameter

from httpapi.problems import problem_spec
from ledger.errors import NotFound
from ledger.keys.apikeys import READERS, ApiKey
from query.analytics.charts import FORMATS, render_chart
from query.analytics.reports import DEFAULT_BY, REPORTS, ReportQuery, parse_window, run_report
from query.analytics.views import connect
from query.audit.search import MAX_TEXT
from query.export.paths import open_location
from query.services import read_services

Text = Annotated[str | None, QueryParameter(max_length=MAX_TEXT)]


@get(
    "/{name:str}",
    opt={"roles": READERS},
    summary="A report over the exported decisions",
    description="Reports: " + ", ".join(REPORTS) + ". `format=svg` or `png` draws its chart.",
    tags=["reports"],
    sync_to_thread=True,
    responses={
        400: problem_spec("A parameter is malformed"),
        404: problem_spec("No such report, or nothing has been exported"),
    },
)
def report(
    name: FromPath[str],
    caller: ApiKey,
    request: Request[Any, Any, State],
    fmt: Annotated[Literal["json", "svg", "png"], QueryParameter(name="format")] = "json",
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    service: Text = None,
    decision_type: Text = None,
    bucket: FromQuery[Literal["day", "week", "month"]] = "day",
    by: Annotated[
        str | None,
        QueryParameter(max_length=128, description="cost: comma-separated tenant,service,…"),
    ] = None,
    window: Annotated[
        str, QueryParameter(max_length=16, description="exposure: 30m, 24h…")
    ] = "24h",
    at: FromQuery[datetime | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 50,
) -> Response[Any]:
    """The report `name` over the caller's tenant's exported decisions."""
    if name not in REPORTS:
        raise NotFound(f"there is no report {name!r}; reports: {', '.join(REPORTS)}")
    query = ReportQuery(
        since=since,
        until=until,
        service=service,
        decision_type=decision_type,
        bucket=bucket,
        by=tuple(by.split(",")) if by else DEFAULT_BY,
        window=parse_window(window),
        at=at,
        limit=limit,
    )
    services = read_services(request.app.state)
    if not services.export_dir:
        raise NotFound("this service has no export location (PROV_EXPORT_DIR)")
    location = open_location(services.export_dir, s3=services.export_s3)
    with connect(location, tenant=caller.tenant) as connection:
        result = run_report(connection, name, query)
    if fmt == "json":
        return Response(result.to_json(), media_type=MediaType.JSON)
    return Response(render_chart(result, fmt), media_type=FORMATS[fmt])
