"""Policies ashore: each ship's effective policy, and new versions rolled out to ships.

The fleet's policy files are the hub's policy directory (`HubSettings.policy_dir`; the
packaged defaults when none is set), read by `load_policy` exactly as a ship reads its
own: fleet defaults in policy.yaml and its segment files, one ship's overrides under
`ships.<id>` in policy.yaml or in ships/<id>.yaml. A rollout does not change that
directory (it is the deployment's, kept under version control): it sends the edited
files as one policy_bundle command per ship, after the same validation
`POST /ships/{id}/commands` makes, and records which command went to which ship in
data_dir/rollouts/<version>.json. Progress is then read from what the ships report: the
command's ActionResult (refused, or active) and the policy_version of their heartbeats.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody

from shared.ids import new_id
from shared.models import Command
from shared.policy import PolicyError, default_dir, effective_yaml, load_policy
from shared.timeutil import utcnow
from shore_hub.api.security import admin, errors
from shore_hub.api.ships import bundle_problem
from shore_hub.auth import Principal

if TYPE_CHECKING:
    from shore_hub.hub import Hub


@dataclass
class Rollout:
    version: str
    files: dict[str, str]
    ships: list[str] | Literal["all"]
    reason: str = ""


class PolicyController(Controller):
    path = "/api/v3/policies"
    guards = [admin]  # policies name hosts, addresses and channels: not for every role

    @get("/effective", responses=errors(404, 409))
    async def effective(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        ship: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        """The fleet default and one ship's effective policy (YAML), the diff between them
        (that ship's overrides at work), the files a rollout starts from, and the policy
        version the ship last reported."""
        if ship is not None and ship not in _ships(hub, request.user):
            raise NotFoundException(f"no registered ship {ship}")
        directory = hub.settings.policy_dir or default_dir()
        try:
            fleet = effective_yaml(await hub.read(load_policy, hub.settings.policy_dir))
            own = effective_yaml(await hub.read(load_policy, hub.settings.policy_dir, ship))
        except PolicyError as exc:
            raise HTTPException(status_code=409, detail=exc.report()) from None
        running = await _running(hub, [ship] if ship else [])
        return {
            "ship": ship,
            "running": running.get(ship or ""),
            "files": await hub.read(_files, directory),
            "fleet": fleet,
            "effective": own,
            "diff": list(
                difflib.unified_diff(
                    fleet.splitlines(), own.splitlines(), "fleet", ship or "fleet", lineterm=""
                )
            ),
        }

    @post("/check", status_code=200, responses=errors(404))
    async def check(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        data: JSONBody[Rollout],
    ) -> dict[str, str | None]:
        """Why a rollout of this bundle would be refused (`problem`, null if it would not),
        as an answer rather than an error: the console checks before it sends."""
        _, problem = await _checked(hub, request.user, data)
        return {"problem": problem}

    @post("/rollout", status_code=202, responses=errors(400, 404))
    async def rollout(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        data: JSONBody[Rollout],
    ) -> dict[str, Any]:
        """Validate the bundle for every target ship, then send one policy_bundle command
        per ship. Nothing is sent unless it loads for all of them."""
        user = request.user
        targets, problem = await _checked(hub, user, data)
        if problem:
            raise HTTPException(status_code=400, detail=problem)
        payload = {"version": data.version, "files": data.files}
        commands = {
            ship: Command(
                tracking_id=new_id(),
                ship_id=ship,
                ts=utcnow(),
                action="policy_bundle",
                actor=user.name,
                reason=data.reason,
                payload=payload,
            )
            for ship in sorted(targets)
        }
        ids = {ship: cmd.id for ship, cmd in commands.items()}
        doc = {"version": data.version, "by": user.name, "ts": utcnow().isoformat()}
        record = {**doc, "reason": data.reason, "commands": ids}
        await hub.read(_write, _record(hub, data.version), record)
        for ship, cmd in commands.items():
            await hub.send_command(cmd)
            detail = f"version {data.version}, command {cmd.id}: {data.reason}"
            hub.audit(user, "rollout:policy_bundle", ship, allowed=True, detail=detail)
        return {"version": data.version, "commands": ids}

    @get("/rollouts/{version:str}", responses=errors(404))
    async def progress(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        version: FromPath[str],
    ) -> dict[str, Any]:
        """Per ship: queued (sent, nothing heard back), delivered (the ship made it active,
        no heartbeat with it yet), applied (its heartbeat carries the version) or rejected
        (the ship refused it, with why)."""
        record = _record(hub, version)
        if not record.is_file():
            raise NotFoundException(f"no rollout {version}")
        doc = json.loads(await hub.read(record.read_text, encoding="utf-8"))
        commands = {s: c for s, c in doc["commands"].items() if request.user.may_see(s)}
        results = await hub.read(
            hub.store.actions, list(commands), len(commands), list(commands.values())
        )
        by_command = {r["command_id"]: r for r in results}
        running = await _running(hub, list(commands))
        ships = []
        for ship, command_id in commands.items():
            result = by_command.get(command_id)
            if result is None:
                status, detail = "queued", ""
            elif not result["ok"]:
                status, detail = "rejected", result["detail"]
            else:
                applied = running.get(ship) == version
                status, detail = ("applied" if applied else "delivered"), result["detail"]
            ships.append(
                {
                    "ship": ship,
                    "command_id": command_id,
                    "status": status,
                    "detail": detail,
                    "running": running.get(ship),
                }
            )
        return {**{k: doc[k] for k in ("version", "by", "ts", "reason")}, "ships": ships}


def _ships(hub: Hub, user: Principal) -> list[str]:
    return [s for s in hub.fleet.registry.ships() if user.may_see(s)]


async def _checked(hub: Hub, user: Principal, data: Rollout) -> tuple[list[str], str | None]:
    """The target ships, and the first reason to refuse: the bundle must load for each
    (as the ship will check it), state its version in policy.yaml, and be a new version."""
    known = _ships(hub, user)
    targets = known if data.ships == "all" else data.ships
    unknown = sorted(set(targets) - set(known))
    if unknown:
        raise NotFoundException(f"no registered ship {', '.join(unknown)}")
    if not targets:
        return targets, "no ship to roll out to"
    payload = {"version": data.version, "files": data.files}
    problems = {s: await hub.read(bundle_problem, payload, s) for s in targets}
    if any(problems.values()):
        return targets, _report(problems)
    stated = _stated_version(data.files)
    if stated != data.version:
        return targets, (
            f"policy.yaml: version: is {stated!r}, the rollout is {data.version!r};"
            " ships report the policy's version, so the two must match"
        )
    if _record(hub, data.version).exists():  # a checked version: a plain file name
        return targets, f"version {data.version} was rolled out already: use a new one"
    return targets, None


async def _running(hub: Hub, ships: list[str]) -> dict[str, str | None]:
    """The policy version each ship's latest heartbeat reports."""
    if not ships:
        return {}
    rows = await hub.read(hub.store.fleet, ships)
    return {r["ship_id"]: r["policy_version"] for r in rows}


def _files(directory: Path) -> dict[str, str]:
    """The bundle's files: every YAML file of the policy directory, policy.yaml first."""
    names = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*.yaml"))
    names.sort(key=lambda n: n != "policy.yaml")
    return {n: (directory / n).read_text(encoding="utf-8") for n in names}


def _record(hub: Hub, version: str) -> Path:
    return hub.settings.data_dir / "rollouts" / f"{version}.json"


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _stated_version(files: dict[str, str]) -> str:
    """policy.yaml's own `version` (it already loaded, so it parses)."""
    root = yaml.safe_load(files["policy.yaml"]) or {}
    return str(root.get("version", ""))


def _report(problems: dict[str, str | None]) -> str:
    """One report per distinct problem, naming the ships it concerns when not all do."""
    found: dict[str, list[str]] = {}
    for ship, problem in problems.items():
        if problem:
            found.setdefault(problem, []).append(ship)
    if len(found) == 1 and len(next(iter(found.values()))) == len(problems):
        return next(iter(found))
    return "\n".join(f"{', '.join(ships)}: {problem}" for problem, ships in found.items())
