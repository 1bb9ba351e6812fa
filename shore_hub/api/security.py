"""Authentication middleware and role guards; every refusal is audited."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.openapi.datastructures import ResponseSpec

from shore_hub.auth import AuthError, Principal, Role

if TYPE_CHECKING:
    from shore_hub.hub import Hub

# Served without a role: probes, the API's schema and the console's files (HTML, JS and CSS
# with no data in them: the console reads everything from the API with the caller's token).
PUBLIC = ("/health", "/metrics", "/schema", "/console")


def public_patterns() -> list[str]:
    """What the auth middleware skips: the PUBLIC prefixes and `/` itself (a redirect to
    the console), not every path under it."""
    return ["^/$", *(f"^{p}" for p in PUBLIC)]


@dataclass
class ErrorBody:
    status_code: int
    detail: str
    extra: dict[str, Any] | list[Any] | None = None


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI documentation of the error answers a handler can give (auth ones always)."""
    described = {
        400: "invalid parameters",
        401: "missing or invalid credentials",
        403: "the caller's role is not enough",
        404: "not found (or not in scope)",
        409: "conflicts with the current state (already decided)",
        503: "a backing service is disabled or unavailable",
    }
    return {
        c: ResponseSpec(data_container=ErrorBody, description=described[c])
        for c in (400, 401, 403, *codes)
    }


class HubAuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        hub: Hub = connection.app.state.hub
        try:
            principal = hub.auth.from_headers(
                connection.headers.get("authorization"), connection.headers.get("x-api-key")
            )
        except AuthError as exc:
            hub.audit(None, "authenticate", connection.url.path, allowed=False, detail=str(exc))
            raise NotAuthorizedException(str(exc)) from None
        return AuthenticationResult(user=principal, auth=None)


def requires(role: Role) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    """A guard: the caller's role must be at least `role`."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal: Principal = connection.user
        if principal.role < role:
            hub: Hub = connection.app.state.hub
            detail = f"needs {role.name.lower()}, has {principal.role.name.lower()}"
            method = str(dict(connection.scope).get("method", "WEBSOCKET"))
            hub.audit(principal, method, connection.url.path, allowed=False, detail=detail)
            raise PermissionDeniedException(f"this needs the {role.name.lower()} role")

    return guard


viewer = requires(Role.VIEWER)
operator = requires(Role.OPERATOR)
approver = requires(Role.APPROVER)
admin = requires(Role.ADMIN)
