"""Questions to the fleet's evidence (/ask), the conversations they make, and fleet issues."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, JSONBody, Parameter
from msgspec import Meta

from shared.ids import new_id
from shore_hub.api.incidents import epoch
from shore_hub.api.security import errors, operator, requires, viewer
from shore_hub.ask import Answer, ask
from shore_hub.auth import Principal, Role

if TYPE_CHECKING:
    from shore_hub.hub import Hub


ASK_ROLE = Role.OPERATOR  # a question costs model time; /me tells consoles


@dataclass
class Question:
    question: Annotated[str, Meta(min_length=1, max_length=2000)]
    conversation_id: str | None = None  # continue one of the caller's conversations
    ship: str | None = None  # only this ship's incidents
    since: datetime | None = None  # incidents first seen from (and counts over) this period
    until: datetime | None = None


class AskController(Controller):
    path = "/api/v3"
    guards = [viewer]

    @post("/ask", guards=[requires(ASK_ROLE)], status_code=200, responses=errors(404))
    async def ask(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        data: JSONBody[Question],
    ) -> Answer:
        """A short answer from the fleet's incidents and runbooks, citing only what was
        retrieved; `fallback` marks an extractive answer (with `reason`) where the model's
        was unusable or unavailable."""
        user = request.user
        question = data.question.strip()
        if not question:
            raise HTTPException(status_code=400, detail="the question is empty")
        since, until = epoch(data.since), epoch(data.until)
        conversation_id = data.conversation_id or new_id()
        if data.conversation_id:
            await _own_conversation(hub, request, data.conversation_id, for_writing=True)
        ships = user.scope()
        if data.ship is not None:  # a ship out of the key's scope finds nothing, as in lists
            ships = [data.ship] if user.may_see(data.ship) else []
        answer = replace(
            await ask(hub, question, ships, since, until), conversation_id=conversation_id
        )
        turn_id = new_id()
        await hub.read(
            hub.store.insert_turns,
            [
                {
                    "user": user.name,
                    "conversation_id": conversation_id,
                    "turn_id": turn_id,
                    "question": question,
                    "answer": answer.answer,
                    "citations": [asdict(c) for c in answer.citations],
                    "fallback": answer.fallback,
                    "reason": answer.reason,
                    "model": answer.model,
                    "latency_ms": answer.latency_ms,
                }
            ],
        )
        source = f"fallback: {answer.reason}" if answer.fallback else f"model {answer.model}"
        detail = f"turn {turn_id}, {len(answer.citations)} citations, {source}"
        hub.audit(user, "ask", conversation_id, allowed=True, detail=detail)
        return answer

    @get("/conversations", responses=errors())
    async def conversations(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        """The caller's own conversations, most recently active first."""
        rows: list[dict[str, Any]] = await hub.read(
            hub.store.conversations, request.user.name, limit
        )
        return rows

    @get("/conversations/{conversation_id:str}", responses=errors(404))
    async def conversation(
        self,
        request: Request[Principal, Any, Any],
        hub: NamedDependency[Hub],
        conversation_id: FromPath[str],
    ) -> dict[str, Any]:
        """Every turn of one conversation: its owner's, or any for an admin."""
        return await _own_conversation(hub, request, conversation_id, for_writing=False)

    @get("/fleet/issues", responses=errors())
    async def fleet_issues(
        self, request: Request[Principal, Any, Any], hub: NamedDependency[Hub]
    ) -> dict[str, Any]:
        """Problems seen on several ships at once, from the last grouping run (every
        minute): each with its ships, incidents and why they were grouped."""
        return hub.patterns.view(request.user.may_see)

    @post("/fleet/issues/refresh", guards=[operator], status_code=200, responses=errors())
    async def refresh_fleet_issues(
        self, request: Request[Principal, Any, Any], hub: NamedDependency[Hub]
    ) -> dict[str, Any]:
        """Regroup now instead of at the next run."""
        await hub.read(hub.patterns.refresh)
        hub.audit(request.user, "refresh_fleet_issues", "fleet/issues", allowed=True)
        return hub.patterns.view(request.user.may_see)


async def _own_conversation(
    hub: Hub, request: Request[Principal, Any, Any], conversation_id: str, *, for_writing: bool
) -> dict[str, Any]:
    """The conversation if the caller owns it (or, to read, is an admin); a 404 otherwise,
    audited as a refusal, so others' conversations cannot even be told to exist."""
    found: dict[str, Any] | None = await hub.read(hub.store.conversation, conversation_id)
    user = request.user
    if found is not None and (
        found["user"] == user.name or (not for_writing and user.role >= Role.ADMIN)
    ):
        return found
    if found is not None:
        detail = f"conversation of {found['user']}"
        hub.audit(user, request.method, request.url.path, allowed=False, detail=detail)
    raise NotFoundException(f"no conversation {conversation_id}")
