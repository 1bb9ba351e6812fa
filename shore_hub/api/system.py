"""Health, metrics, tokens, the caller's identity, audit and the live feed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from shared.taxonomy import Severity
from shore_hub.api.ask import ASK_ROLE
from shore_hub.api.security import admin, errors, viewer
from shore_hub.api.ships import NEEDS
from shore_hub.auth import Principal, Role

if TYPE_CHECKING:
    from shore_hub.hub import Hub


@get("/health", sync_to_thread=False, security=[{}])
def health(hub: NamedDependency[Hub]) -> dict[str, Any]:
    return {"status": "ok", "workers": len(hub.workers), "memory": hub.memory is not None}


@get("/metrics", sync_to_thread=False, include_in_schema=False)
def metrics(hub: NamedDependency[Hub]) -> Response[bytes]:
    return Response(hub.metrics.render(), media_type="text/plain; version=0.0.4")


@post(
    "/api/v3/auth/token", guards=[viewer], status_code=201, sync_to_thread=False, responses=errors()
)
def token(request: Request[Principal, Any, Any], hub: NamedDependency[Hub]) -> dict[str, Any]:
    """A short-lived bearer token for the caller's key (same role and ship scope)."""
    hub.audit(request.user, "POST", "/api/v3/auth/token", allowed=True, detail="token issued")
    return {
        "token": hub.auth.issue_token(request.user),
        "token_type": "bearer",
        "role": request.user.role.name.lower(),
        "ships": request.user.scope(),
    }


@get("/api/v3/me", guards=[viewer], sync_to_thread=False, responses=errors())
def me(request: Request[Principal, Any, Any]) -> dict[str, Any]:
    """The caller's name, role, ship scope and `may`: the commands (and /ask, and deciding
    on remediations) its role allows, so a console offers only those. The API checks
    again on every call."""
    user = request.user
    needs: list[tuple[str, Role]] = [
        *NEEDS.items(),
        ("ask", ASK_ROLE),
        ("approve", Role.APPROVER),
    ]
    return {
        "name": user.name,
        "role": user.role.name.lower(),
        "ships": user.scope(),
        "may": sorted(action for action, role in needs if user.role >= role),
    }


@get("/api/v3/audit", guards=[admin], responses=errors())
async def audit(
    hub: NamedDependency[Hub], limit: Annotated[int, Parameter(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await hub.read(hub.store.audit_log, limit)
    return rows


@get("/api/v3/live", guards=[viewer], responses=errors())
async def live(
    request: Request[Principal, Any, Any],
    hub: NamedDependency[Hub],
    ship: FromQuery[str | None] = None,
    severity: FromQuery[Severity] = Severity.INFO,
) -> ServerSentEvent:
    """Incident changes as server-sent events (`incident`), filtered by ship and severity."""
    scope = request.user.scope()
    ships = tuple(s for s in ([ship] if ship else scope or []) if request.user.may_see(s))
    sub = hub.live.subscribe(ships if (ship or scope is not None) else None, severity)

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        async for item in hub.live.events(sub):
            if item is None:
                yield ServerSentEventMessage(comment="heartbeat")
            else:
                yield ServerSentEventMessage(
                    data=orjson.dumps(item).decode(), event="incident", id=item["id"]
                )

    return ServerSentEvent(stream())
