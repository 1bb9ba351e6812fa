"""Incidents across the fleet: list with filters and cursor paging, detail, similar."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery, Parameter

from shared.grounding import insight_evidence
from shared.models import EvidenceRef
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from shore_hub.api.security import errors, viewer
from shore_hub.auth import Principal
from shore_hub.fleetstore import BackendError
from shore_hub.memory import NotIndexed

if TYPE_CHECKING:
    from shore_hub.hub import Hub


def epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise HTTPException(status_code=400, detail="times must carry a timezone (e.g. Z)")
    return value.timestamp()


def evidence_labels(evidence: list[dict[str, Any]]) -> dict[str, str]:
    """Anomaly id -> the label ("E1", ...) by which an insight on this version of the
    incident cites it, so a console can link an insight's [E1] to its evidence item."""
    refs = [EvidenceRef.model_validate(e) for e in evidence]
    return {r.anomaly_id: f"E{i}" for i, r in enumerate(insight_evidence(refs), 1)}


class IncidentController(Controller):
    path = "/api/v3/incidents"
    guards = [viewer]

    @get("/", responses=errors())
    async def list_incidents(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        ship: FromQuery[str | None] = None,
        type: FromQuery[IncidentType | None] = None,  # noqa: A002 - the API's field name
        severity: FromQuery[Severity | None] = None,
        status: FromQuery[IncidentStatus | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        text: FromQuery[str | None] = None,
        cursor: Annotated[str | None, Parameter(pattern=r"^[A-Za-z0-9_-]{1,200}$")] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        try:
            page: dict[str, Any] = await hub.read(
                hub.store.list_incidents,
                request.user.scope(),
                ship=ship,
                type=type.value if type else None,
                severity=severity.value if severity else None,
                status=status.value if status else None,
                since=epoch(since),
                until=epoch(until),
                text=text,
                cursor=cursor,
                limit=limit,
            )
        except ValueError as exc:  # a cursor that this API did not hand out
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return page

    @get("/{incident_id:str}", responses=errors(404))
    async def detail(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        incident_id: FromPath[str],
    ) -> dict[str, Any]:
        """The latest version with its timeline, evidence (each item with the `ref` an
        insight cites it by and, for the incident's main metric, its recent `values`), the
        latest insight and up to five similar incidents."""
        doc: dict[str, Any] | None = await hub.read(
            hub.store.incident, incident_id, request.user.scope()
        )
        if doc is None:
            raise NotFoundException(f"no incident {incident_id}")
        labels = evidence_labels(doc["incident"]["evidence"])
        recent = {e["anomaly_id"]: e.get("values") for e in doc["incident"]["evidence"]}
        for item in doc["evidence"]:
            item["ref"] = labels.get(item["anomaly_id"])
            item["values"] = recent.get(item["anomaly_id"])  # the series up to it, if sent
        doc["similar"] = []  # not yet embedded, or the memory is off or unreachable
        if hub.memory is not None:
            with contextlib.suppress(NotIndexed, BackendError):
                doc["similar"] = await similar_in_scope(hub, request.user, incident_id, 5, False)
        return doc

    @get("/{incident_id:str}/similar", responses=errors(404, 503))
    async def similar(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        incident_id: FromPath[str],
        limit: Annotated[int, Parameter(ge=1, le=50)] = 5,
        other_ships_only: FromQuery[bool] = False,
    ) -> list[dict[str, Any]]:
        """The same kind of problem elsewhere in the fleet, with how it was resolved."""
        doc = await hub.read(hub.store.incident, incident_id, request.user.scope())
        if doc is None:
            raise NotFoundException(f"no incident {incident_id}")
        if hub.memory is None:
            raise HTTPException(status_code=503, detail="incident memory is disabled")
        try:
            return await similar_in_scope(hub, request.user, incident_id, limit, other_ships_only)
        except NotIndexed as exc:  # stored, not embedded yet: the memory catches up shortly
            raise NotFoundException(str(exc)) from None


async def similar_in_scope(
    hub: Hub, user: Principal, incident_id: str, limit: int, other_ships_only: bool
) -> list[dict[str, Any]]:
    """The memory's nearest incidents (other ships and earlier dates included, with their
    resolution and time to resolve) that the caller may see."""
    found: list[dict[str, Any]] = await hub.read(
        hub.memory.similar, incident_id, limit, other_ships_only
    )
    return [f for f in found if user.may_see(f.get("ship_id", f.get("ship", "")))]
