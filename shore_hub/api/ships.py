"""Ships the hub accepts, commands to them over the downlink, and what they evicted unsent.

Commands need more than the controller's viewer role, and how much depends on the action
in the body, so that check is made in the handler (audited like the guards' refusals).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath, JSONBody, Parameter

from shared.ids import new_id
from shared.models import Command
from shared.policy import PolicyError, load_policy
from shared.timeutil import utcnow
from shore_hub.api.security import admin, errors, viewer
from shore_hub.auth import Principal, Role
from sync.bundles import stage
from sync.topology import check_ship_id

if TYPE_CHECKING:
    from shore_hub.hub import Hub

# Approval decisions are not among them: they go through /approvals, which enforces the
# quorum and the two-person rule before sending one.
Action = Literal["ack", "resolve", "suppress", "policy_bundle"]

NEEDS: dict[Action, Role] = {
    "ack": Role.OPERATOR,
    "resolve": Role.OPERATOR,
    "suppress": Role.OPERATOR,
    "policy_bundle": Role.ADMIN,
}
_ON_INCIDENT = ("ack", "resolve", "suppress")
_BUNDLE_SHAPE = 'a policy_bundle payload is {"version": str, "files": {name: YAML text}}'


@dataclass
class NewShip:
    ship_id: str


@dataclass
class RegisteredShip:
    ship_id: str
    secret: str  # the ship's leaf credential: in this answer only, never stored in clear


@dataclass
class CommandRequest:
    action: Action
    incident_id: str | None = None
    reason: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Accepted:
    command_id: str


def bundle_problem(payload: dict[str, Any], ship_id: str) -> str | None:
    """Why the ship would refuse this bundle, if it would: refused here, it never takes
    link time. The ship checks again on arrival."""
    version, files = payload.get("version"), payload.get("files")
    if (
        set(payload) != {"version", "files"}
        or not isinstance(version, str)
        or not isinstance(files, dict)
        or not all(isinstance(v, str) for v in files.values())
    ):
        return _BUNDLE_SHAPE
    with tempfile.TemporaryDirectory() as tmp:
        try:
            target = stage(Path(tmp), version, files)
        except OSError as exc:  # a file name the file system refuses
            return f"bundle file names: {exc.strerror}"
        except ValueError as exc:  # BundleError, or a NUL in a name
            return str(exc)
        try:
            load_policy(target, ship_id)
        except PolicyError as exc:
            return exc.report().replace(f"{target}{os.sep}", "")
    return None


class ShipController(Controller):
    path = "/api/v3"
    guards = [viewer]

    @post("/ships", guards=[admin], status_code=201, responses=errors())
    async def register(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        data: JSONBody[NewShip],
    ) -> RegisteredShip:
        """Register (or re-key) a ship: the secret for its leaf connection is shown once."""
        try:
            ship_id = check_ship_id(data.ship_id)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        secret = await hub.fleet.add_ship(ship_id)
        hub.audit(request.user, "register_ship", ship_id, allowed=True)
        return RegisteredShip(ship_id, secret)

    @delete("/ships/{ship_id:str}", guards=[admin], responses=errors(404))
    async def remove(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        ship_id: FromPath[str],
    ) -> None:
        """The ship's leaf credential stops working and its outbox is no longer sourced."""
        if not await hub.fleet.remove_ship(ship_id):
            raise NotFoundException(f"no registered ship {ship_id}")
        hub.audit(request.user, "remove_ship", ship_id, allowed=True)

    @get("/ships", sync_to_thread=False, responses=errors())
    def ships(self, request: Request[Principal, Any, Any], hub: NamedDependency[Hub]) -> list[str]:
        """Registered ship ids (those in the caller's scope)."""
        return [s for s in hub.fleet.registry.ships() if request.user.may_see(s)]

    @post("/ships/{ship_id:str}/commands", status_code=202, responses=errors(404))
    async def command(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        ship_id: FromPath[str],
        data: JSONBody[CommandRequest],
    ) -> Accepted:
        """Queue a command for one ship; it is delivered when the ship is next reachable.
        ack/resolve/suppress need operator, policy_bundle admin."""
        user = request.user
        needed = NEEDS[data.action]
        if user.role < needed:
            detail = f"{data.action}: needs {needed.name.lower()}, has {user.role.name.lower()}"
            raise _denied(
                hub, request, detail, f"{data.action} needs the {needed.name.lower()} role"
            )
        if not user.may_see(ship_id):
            detail = f"ship {ship_id} is outside this key's scope"
            raise _denied(hub, request, detail, detail)
        if ship_id not in hub.fleet.registry.ships():
            raise NotFoundException(f"no registered ship {ship_id}")
        if data.action in _ON_INCIDENT and not data.incident_id:
            raise HTTPException(status_code=400, detail=f"{data.action} needs an incident_id")
        if data.action == "policy_bundle":
            problem = await hub.read(bundle_problem, data.payload, ship_id)
            if problem:
                raise HTTPException(status_code=400, detail=problem)
        cmd = Command(
            tracking_id=new_id(),
            ship_id=ship_id,
            ts=utcnow(),
            action=data.action,
            incident_id=data.incident_id,
            actor=user.name,
            reason=data.reason,
            payload=data.payload,
        )
        await hub.send_command(cmd)
        target = f"{ship_id}/{data.incident_id}" if data.incident_id else ship_id
        detail = f"command {cmd.id}: {data.reason}" if data.reason else f"command {cmd.id}"
        hub.audit(user, f"command:{data.action}", target, allowed=True, detail=detail)
        return Accepted(cmd.id)

    @get("/gaps", responses=errors())
    async def gaps(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Incident versions ships evicted from their outbox unsent: the hub never gets them."""
        rows: list[dict[str, Any]] = await hub.read(hub.store.gaps, request.user.scope(), limit)
        return rows


def _denied(
    hub: Hub, request: Request[Principal, Any, Any], detail: str, message: str
) -> PermissionDeniedException:
    """Audited as the guards audit theirs: method, path and why."""
    hub.audit(request.user, request.method, request.url.path, allowed=False, detail=detail)
    return PermissionDeniedException(message)
