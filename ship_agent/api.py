"""The ship's local API (Litestar): health, ingest, incidents, stats, trace, metrics.

Handlers are thin: reads go to `ship_agent.queries`, writes go through the agent's queue so
an operator's ack lands in order with the pipeline's own changes and in the same kind of
transaction (incident version + outbox row). OpenAPI at /schema.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from litestar import Litestar, Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.params import Body, FromPath, FromQuery, JSONBody
from litestar.response import Redirect
from pydantic import BaseModel, Field, ValidationError

from shared.models import FINISHED_ACTIONS, IngestBatch
from ship_agent import queries
from ship_agent.crew import CrewView
from ship_agent.crew import render as render_crew
from ship_agent.ingest.batch import WrongShip, events_from_batch
from ship_agent.pipeline import OperatorCommand
from ship_agent.remediate import DecisionError

if TYPE_CHECKING:
    from ship_agent.agent import ShipAgent


class ActionBody(BaseModel):
    actor: str = Field(min_length=1, max_length=128)
    reason: str = Field(default="", max_length=1024)


def _validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()[:20]
    ]


def create_app(agent: ShipAgent) -> Litestar:
    conn = agent.store.conn
    ingest_policy = agent.policy.ingest

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, Any]:
        return {"status": "ok", "ship_id": agent.ship_id, "policy_version": agent.policy.version}

    @post("/api/v3/ingest", status_code=202)
    async def ingest(request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Log records and metric samples as one JSON batch (see shared.models.IngestBatch)."""
        body = await request.body()
        if len(body) > ingest_policy.max_http_body_bytes:
            raise HTTPException(
                status_code=413,
                detail=(
                    f"body is {len(body)} bytes; the limit is {ingest_policy.max_http_body_bytes}"
                ),
            )
        try:
            batch = IngestBatch.model_validate_json(body)
        except ValidationError as exc:
            raise HTTPException(
                status_code=422, detail="invalid batch", extra={"errors": _validation_detail(exc)}
            ) from None
        n = len(batch.logs) + len(batch.metrics)
        if n > ingest_policy.max_batch_items:
            raise HTTPException(
                status_code=413,
                detail=(f"{n} items; the limit is {ingest_policy.max_batch_items} per batch"),
            )
        try:
            events = events_from_batch(batch, agent.ship_id, "http", time.time())
        except WrongShip as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        if not agent.submit(events):
            raise HTTPException(
                status_code=503,
                detail="ingest queue full; retry later",
                headers={"Retry-After": "1"},
            )
        return {"accepted": n, "tracking_ids": [e.tracking_id for e in events]}

    @get("/api/v3/incidents", sync_to_thread=False)
    def incidents(
        status: FromQuery[str | None] = None,
        severity: FromQuery[str | None] = None,
        type: FromQuery[str | None] = None,  # noqa: A002 - the API's field name
        device: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        if not 1 <= limit <= 500:
            raise HTTPException(status_code=400, detail="limit must be within 1..500")
        return queries.list_incidents(conn, status, severity, type, device, limit, cursor)

    @get("/api/v3/incidents/{incident_id:str}", sync_to_thread=False)
    def incident(incident_id: FromPath[str]) -> dict[str, Any]:
        doc = queries.incident_detail(conn, incident_id)
        if doc is None:
            raise NotFoundException(f"no incident {incident_id}")
        doc["delivery"] = agent.outbox.delivery(incident_id)  # "delivered to shore"
        return doc

    async def _act(action: str, incident_id: str, data: ActionBody) -> dict[str, Any]:
        cmd = OperatorCommand(action, incident_id, data.actor, data.reason)
        try:
            status = await agent.command(cmd)
        except LookupError as exc:
            raise NotFoundException(str(exc)) from None
        doc = queries.incident_detail(conn, incident_id) or {}
        return {"id": incident_id, "status": status, "version": doc.get("version")}

    @post("/api/v3/incidents/{incident_id:str}/ack", status_code=200)
    async def ack(incident_id: FromPath[str], data: JSONBody[ActionBody]) -> dict[str, Any]:
        return await _act("ack", incident_id, data)

    @post("/api/v3/incidents/{incident_id:str}/resolve", status_code=200)
    async def resolve(incident_id: FromPath[str], data: JSONBody[ActionBody]) -> dict[str, Any]:
        return await _act("resolve", incident_id, data)

    @post("/api/v3/incidents/{incident_id:str}/suppress", status_code=200)
    async def suppress(incident_id: FromPath[str], data: JSONBody[ActionBody]) -> dict[str, Any]:
        return await _act("suppress", incident_id, data)

    @get("/api/v3/actions", sync_to_thread=False)
    def actions(status: FromQuery[str | None] = None) -> list[dict[str, Any]]:
        """Remediation requests on board, newest first: pending ones wait for a decision."""
        return [r.model_dump(mode="json") for r in agent.remediator.requests(status)]

    async def _decide(request_id: str, decision: str, data: ActionBody) -> dict[str, Any]:
        try:
            request = agent.decide_on_board(request_id, data.actor, decision, data.reason)
        except DecisionError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return request.model_dump(mode="json")

    @post("/api/v3/actions/{request_id:str}/approve", status_code=200)
    async def approve(request_id: FromPath[str], data: JSONBody[ActionBody]) -> dict[str, Any]:
        """The crew approves while the shore link is down (when policy allows it)."""
        return await _decide(request_id, "approved", data)

    @post("/api/v3/actions/{request_id:str}/reject", status_code=200)
    async def reject(request_id: FromPath[str], data: JSONBody[ActionBody]) -> dict[str, Any]:
        return await _decide(request_id, "rejected", data)

    @get("/crew", sync_to_thread=False, include_in_schema=False)
    def crew(msg: FromQuery[str] = "") -> Response[str]:
        """The crew page (HTML, no script): works with the shore link down."""
        link = agent.link_state()
        may = agent.policy.remediate.crew_may_approve_offline
        oldest = agent.outbox.oldest_unsent()
        view = CrewView(
            ship_id=agent.ship_id,
            policy_version=agent.policy.version,
            link_state=link,
            unsent=agent.outbox.depths(),
            oldest_unsent_s=time.time() - oldest if oldest else None,
            incidents=[
                i
                for status in ("open", "acknowledged")
                for i in queries.list_incidents(conn, status, limit=200)["items"]
            ],
            pending=agent.remediator.requests("pending"),
            finished=[
                r for r in agent.remediator.requests(limit=30) if r.status in FINISHED_ACTIONS
            ],
            may_decide=may and link in ("down", "not configured"),
            why_not=(
                "Decided ashore while the shore link is up; the crew decides here when it is down."
                if may
                else "Policy: remediations are decided ashore only."
            ),
            message=msg[:200],
        )
        return Response(render_crew(view), media_type="text/html")

    @post("/crew/actions/{request_id:str}", status_code=303)
    async def crew_decide(
        request_id: FromPath[str],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Redirect:
        """The crew page's form: decide, then back to the page with what happened."""
        try:
            body = ActionBody(actor=data.get("actor", ""), reason=data.get("reason", ""))
            request = agent.decide_on_board(
                request_id, body.actor, data.get("decision", ""), body.reason
            )
            msg = f"{request.action} on {request.target}: {request.status}"
        except (DecisionError, ValidationError) as exc:
            msg = f"not decided: {exc}"
        return Redirect(path=f"/crew?{urlencode({'msg': msg})}", status_code=303)

    @get("/api/v3/stats", sync_to_thread=False)
    def stats() -> dict[str, Any]:
        out = queries.stats(conn)
        out["queue_depth"] = agent.queue_depth
        return out

    @get("/api/v3/dead-letters", sync_to_thread=False)
    def dead_letters(limit: FromQuery[int] = 100) -> list[dict[str, Any]]:
        return queries.dead_letters(conn, max(1, min(limit, 1000)))

    @get("/api/v3/trace/{tracking_id:str}", sync_to_thread=False)
    def trace(tracking_id: FromPath[str]) -> dict[str, Any]:
        out = queries.trace(conn, tracking_id)
        if out is None:
            raise NotFoundException(f"no record with tracking id {tracking_id}")
        return out

    @get("/api/v3/sync", sync_to_thread=False)
    def sync() -> dict[str, Any]:
        """The uplink as the crew sees it: link state, what waits in each lane, how old."""
        oldest = agent.outbox.oldest_unsent()
        uplink = agent.link.uplink if agent.link is not None else None
        return {
            "configured": uplink is not None,
            "link_state": agent.link_state(),
            "unsent": agent.outbox.depths(),
            "oldest_unsent_s": time.time() - oldest if oldest else None,
            "sent_messages": uplink.sent_messages if uplink else 0,
            "sent_bytes": uplink.sent_bytes if uplink else 0,
            "uplink_budget_bps": agent.policy.sync.uplink_budget_bps,
        }

    @get("/metrics", sync_to_thread=False, include_in_schema=False)
    def metrics() -> Response[bytes]:
        return Response(agent.metrics.render(), media_type="text/plain; version=0.0.4")

    return Litestar(
        route_handlers=[
            health,
            ingest,
            incidents,
            incident,
            ack,
            resolve,
            suppress,
            actions,
            approve,
            reject,
            crew,
            crew_decide,
            stats,
            dead_letters,
            trace,
            sync,
            metrics,
        ],
        openapi_config=OpenAPIConfig(title="Seawatch ship agent", version="3.0.0"),
        debug=False,
    )
