"""The hub's Litestar application: one `create_app` wiring the domain controllers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from shore_hub.api.approvals import ApprovalController
from shore_hub.api.ask import AskController
from shore_hub.api.fleet import FleetController
from shore_hub.api.incidents import IncidentController
from shore_hub.api.policies import PolicyController
from shore_hub.api.reports import ReportController
from shore_hub.api.runbooks import runbook
from shore_hub.api.security import HubAuthMiddleware, public_patterns
from shore_hub.api.ships import ShipController
from shore_hub.api.system import audit, health, live, me, metrics, token
from shore_hub.console import routes as console_routes

if TYPE_CHECKING:
    from shore_hub.hub import Hub


def create_app(hub: Hub) -> Litestar:
    from shore_hub.hub import Hub as HubClass  # handlers name it in their signatures

    app = Litestar(
        signature_namespace={"Hub": HubClass},
        route_handlers=[
            health,
            metrics,
            token,
            me,
            audit,
            live,
            runbook,
            IncidentController,
            FleetController,
            ShipController,
            AskController,
            ApprovalController,
            PolicyController,
            ReportController,
            *console_routes(),
        ],
        dependencies={"hub": Provide(lambda: hub, sync_to_thread=False)},
        middleware=[DefineMiddleware(HubAuthMiddleware, exclude=public_patterns())],
        openapi_config=OpenAPIConfig(
            title="Seawatch shore hub",
            version="3.0.0",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="apiKey", name="X-API-Key", security_scheme_in="header"
                    ),
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
                }
            ),
            security=[{"apiKey": []}, {"bearer": []}],
        ),
        debug=False,
    )
    app.state.hub = hub
    return app
