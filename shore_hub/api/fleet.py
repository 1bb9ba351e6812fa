"""Fleet-wide views: every ship's state, statistics, the trace of one record, search."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery, Parameter

from shared.taxonomy import IncidentType, Severity
from shore_hub.api.incidents import epoch
from shore_hub.api.security import errors, viewer
from shore_hub.auth import Principal

if TYPE_CHECKING:
    from shore_hub.hub import Hub

_DAY = 86_400.0
SILENT_HEARTBEATS = 3  # heartbeats missed before the hub calls a ship's link down


def hub_view(ship: dict[str, Any], heartbeat_s: float) -> dict[str, Any]:
    """A ship sends no heartbeat while its link is down, so its last heartbeat cannot say
    "down": the hub does, once SILENT_HEARTBEATS are missing, down since the last one."""
    age = ship["heartbeat_age_s"]
    if age is not None and age > SILENT_HEARTBEATS * heartbeat_s:
        ship.update(link_state="down", link_since=ship["last_heartbeat"])
    return ship


class FleetController(Controller):
    path = "/api/v3"
    guards = [viewer]

    @get("/fleet", responses=errors())
    async def fleet(
        self, request: Request[Principal, Any, Any], hub: NamedDependency[Hub]
    ) -> list[dict[str, Any]]:
        """Every ship: last heartbeat, link state and since when (`down` after three
        missed heartbeats), outbox depth and age, open incidents."""
        rows: list[dict[str, Any]] = await hub.read(hub.store.fleet, request.user.scope())
        return [hub_view(r, hub.policy.sync.heartbeat_s) for r in rows]

    @get("/stats", responses=errors())
    async def stats(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
    ) -> dict[str, Any]:
        """Counts by severity/type/status/ship, MTTA/MTTR, top devices (default: 30 days)."""
        end = epoch(until) or time.time()
        start = epoch(since) or end - 30 * _DAY  # since >= until is an empty range
        out: dict[str, Any] = await hub.read(hub.store.stats, start, end, request.user.scope())
        return out

    @get("/trace/{tracking_id:str}", responses=errors(404))
    async def trace(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        tracking_id: FromPath[str],
    ) -> dict[str, Any]:
        out: dict[str, Any] | None = await hub.read(
            hub.store.trace, tracking_id, request.user.scope()
        )
        if out is None:
            raise NotFoundException(f"no record with tracking id {tracking_id}")
        return out

    @get("/search", responses=errors(503))
    async def search(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        q: Annotated[str, Parameter(min_length=1, max_length=1000)],
        ship: FromQuery[str | None] = None,
        type: FromQuery[IncidentType | None] = None,  # noqa: A002 - the API's field name
        severity: FromQuery[Severity | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 10,
    ) -> dict[str, Any]:
        """Semantic search over incidents (and runbooks), narrowed by the filters."""
        if hub.memory is None:
            raise HTTPException(status_code=503, detail="incident memory is disabled")
        incidents = await hub.read(
            hub.memory.search,
            q,
            ship,
            type.value if type else None,
            severity.value if severity else None,
            epoch(since),
            epoch(until),
            request.user.scope(),
            limit,
        )
        runbooks = await hub.read(hub.memory.search_runbooks, q, 3)
        return {"incidents": incidents, "runbooks": runbooks}
