"""Fleet reports over HTTP: one document as JSON, a printable HTML page or a CSV file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from litestar import Controller, MediaType, Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Operation, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import FromQuery, QueryParameter

from shore_hub import reports
from shore_hub.api.security import errors, viewer
from shore_hub.auth import Principal

if TYPE_CHECKING:
    from shore_hub.hub import Hub

Format = Literal["json", "html", "csv"]
# the page has no script and may load nothing but its own inline style
_HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


@dataclass
class _ReportOperation(Operation):
    """The 200 answer in its three media types, so clients (and the schema tests) know an
    HTML or CSV body is as documented as the JSON one."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            text = Schema(type=OpenAPIType.STRING)
            ok.content = {
                **(ok.content or {}),
                "text/html": OpenAPIMediaType(schema=text),
                "text/csv": OpenAPIMediaType(schema=text),
            }


class ReportController(Controller):
    path = "/api/v3/reports"
    guards = [viewer]

    @get("/fleet", responses=errors(), operation_class=_ReportOperation)
    async def fleet(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        period: FromQuery[reports.PeriodKind] = "day",
        day: Annotated[date | None, QueryParameter(name="date")] = None,
        fmt: Annotated[Format, QueryParameter(name="format")] = "json",
    ) -> Response[Any]:
        """The fleet report for a day or the week ending on `date` (UTC, default today):
        incidents by ship and type, worst devices, link availability per ship, open
        approvals and what changed against the period before, within the caller's ship
        scope. `format=html` is a printable page, `format=csv` a file (one row per figure:
        section, ship_id, item, metric, value)."""
        now = time.time()
        try:
            chosen = reports.Period(period, day or datetime.fromtimestamp(now, UTC).date())
        except ValueError as exc:
            raise ValidationException(str(exc)) from None
        report = await hub.read(
            reports.build,
            hub.store,
            chosen,
            hub.policy.sync.heartbeat_s,
            request.user.scope(),
            now,
        )
        if fmt == "html":
            return Response(
                reports.to_html(report), media_type=MediaType.HTML, headers=_HTML_HEADERS
            )
        if fmt == "csv":
            return Response(
                reports.to_csv(report),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{chosen.filename}.csv"'},
            )
        return Response(report, media_type=MediaType.JSON)
