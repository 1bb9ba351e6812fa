"""Remediation ashore: what ships ask to do, decided by approvers, sent down once.

A request needs `approvals_needed` different approvers (two under the two-person rule),
none of them its requester; the first rejection ends it. When the quorum is reached the hub
sends one `approval_decision` command; the ship checks it again and runs the action once,
and its next versions of the request (running, succeeded, failed) come back up. Decisions
are serialised per hub, so two approvers clicking at once cannot send two decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from shared.ids import new_id
from shared.models import FINISHED_ACTIONS, ActionStatus, Command
from shared.timeutil import utcnow
from shore_hub.api.security import approver, errors, viewer
from shore_hub.auth import Principal

if TYPE_CHECKING:
    from shore_hub.hub import Hub


@dataclass
class Decision:
    decision: Literal["approve", "reject"]
    reason: Annotated[str, Parameter(max_length=1024)] = ""


class ApprovalController(Controller):
    path = "/api/v3"
    guards = [viewer]

    @get("/approvals", responses=errors())
    async def approvals(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        status: FromQuery[ActionStatus | None] = "pending",
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        """Remediation requests (default: those waiting for a decision), newest first, each
        with the decisions taken on it ashore so far."""
        found: list[dict[str, Any]] = await hub.read(
            hub.store.action_requests, request.user.scope(), status=status, limit=limit
        )
        for r in found:
            r["decisions"] = await hub.read(hub.store.approvals, None, r["id"])
        return found

    @get("/approvals/{request_id:str}", responses=errors(404))
    async def approval(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        request_id: FromPath[str],
    ) -> dict[str, Any]:
        found = await _request(hub, request.user, request_id)
        found["decisions"] = await hub.read(hub.store.approvals, None, request_id)
        return found

    @post(
        "/approvals/{request_id:str}/decision",
        guards=[approver],
        status_code=200,
        responses=errors(404, 409),
    )
    async def decide(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        request_id: FromPath[str],
        data: JSONBody[Decision],
    ) -> dict[str, Any]:
        """Approve or reject; returns where the request stands and whether a decision
        went down to the ship."""
        user = request.user
        async with hub.deciding:  # one at a time: the quorum is counted, then sent
            found = await _request(hub, user, request_id)
            if found["requested_by"] == user.name:
                detail = f"{user.name} requested {request_id}: may not decide on it"
                hub.audit(user, "decide", request_id, allowed=False, detail=detail)
                raise PermissionDeniedException(detail)
            if found["status"] != "pending":
                raise HTTPException(status_code=409, detail=f"{request_id} is {found['status']}")
            steps = await hub.read(hub.store.approvals, None, request_id)
            if any(s["actor"] == user.name for s in steps):
                raise HTTPException(status_code=409, detail=f"{user.name} has already decided")
            approvers = sorted({s["actor"] for s in steps if s["decision"] == "approved"})
            needed = int(found["approvals_needed"])
            if any(s["decision"] == "rejected" for s in steps) or len(approvers) >= needed:
                raise HTTPException(status_code=409, detail="the decision has already been sent")
            decision = "approved" if data.decision == "approve" else "rejected"
            await hub.read(
                hub.store.insert_approvals,
                [
                    {
                        "approval_id": request_id,
                        "ship_id": found["ship_id"],
                        "incident_id": found["incident_id"],
                        "action": found["action"],
                        "target": found["target"],
                        "actor": user.name,
                        "role": user.role.name.lower(),
                        "decision": decision,
                        "reason": data.reason,
                    }
                ],
            )
            approvers = [*approvers, user.name] if decision == "approved" else [user.name]
            sent = decision == "rejected" or len(approvers) >= needed
            if sent:
                await hub.send_command(
                    Command(
                        tracking_id=new_id(),
                        ship_id=found["ship_id"],
                        ts=utcnow(),
                        action="approval_decision",
                        actor=user.name,
                        reason=data.reason,
                        payload={
                            "approval_id": request_id,
                            "decision": decision,
                            "approvers": approvers,
                        },
                    )
                )
        detail = f"{decision} ({len(approvers)} of {needed})" + (", sent" if sent else "")
        hub.audit(user, f"decide:{found['action']}", f"{found['ship_id']}/{request_id}",
                  allowed=True, detail=f"{detail}: {data.reason}")  # fmt: skip
        return {"id": request_id, "decision": decision, "approvers": approvers,
                "needed": needed, "sent": sent}  # fmt: skip

    @get("/actions", responses=errors())
    async def actions(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        """What ran where, who approved it and how each step went (pre-check, run,
        post-check, rollback), and what was rejected or interrupted; newest first."""
        rows: list[dict[str, Any]] = await hub.read(
            hub.store.action_requests,
            request.user.scope(),
            status=list(FINISHED_ACTIONS),
            limit=limit,
        )
        return rows


async def _request(hub: Hub, user: Principal, request_id: str) -> dict[str, Any]:
    found = await hub.read(hub.store.action_requests, user.scope(), request_id=request_id)
    if not found:
        raise NotFoundException(f"no action request {request_id}")
    return dict(found[0])
