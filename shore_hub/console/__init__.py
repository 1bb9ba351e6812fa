"""The fleet operations console: a small hand-written JavaScript app (ES modules, no build
step) served by the hub at /console.

The files carry no data, so they are public (`shore_hub.api.security.PUBLIC`); every
figure on a page comes from the /api/v3 endpoints, called with the bearer token the
operator's API key was exchanged for, so the API's roles and ship scopes apply as they do
to any other client. One module per page under `static/pages/`; `static/api.js` is the
only place that talks HTTP.
"""

from __future__ import annotations

from pathlib import Path

from litestar import get
from litestar.datastructures import CacheControlHeader
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

STATIC = Path(__file__).parent / "static"
PATH = "/console"


@get("/", sync_to_thread=False, include_in_schema=False)
def root() -> Redirect:
    """The hub's address in a browser opens the console."""
    return Redirect(f"{PATH}/")


def routes() -> list[ControllerRouterHandler]:
    # no-cache: browsers revalidate, so an upgraded hub never runs with last version's JS
    return [
        root,
        create_static_files_router(
            PATH,
            [STATIC],
            html_mode=True,
            name="console",
            cache_control=CacheControlHeader(no_cache=True),
        ),
    ]
