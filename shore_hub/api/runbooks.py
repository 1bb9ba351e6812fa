"""Runbook text, so that a citation such as [RB-01] in an insight or an /ask answer leads
somewhere an operator can read."""

from __future__ import annotations

from functools import cache
from typing import Any

from litestar import get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from shared.runbooks import Runbook, load_runbooks
from shore_hub.api.security import errors, viewer


@cache
def _runbooks() -> dict[str, Runbook]:
    """The packaged runbooks, the ones the incident memory indexes; they ship with the
    wheel and do not change while the hub runs, so they are read once."""
    from policies import runbooks_dir

    return {book.id: book for book in load_runbooks(runbooks_dir())}


@get(
    "/api/v3/runbooks/{runbook_id:str}",
    guards=[viewer],
    sync_to_thread=True,  # the first call reads the files
    responses=errors(404),
)
def runbook(runbook_id: FromPath[str]) -> dict[str, Any]:
    """One runbook: title, the incident types and device roles it is for, the actions
    remediation may take from it, and its sections (Markdown) in order."""
    book = _runbooks().get(runbook_id)
    if book is None:
        raise NotFoundException(f"no runbook {runbook_id}")
    return {
        "id": book.id,
        "title": book.title,
        "incident_types": [t.value for t in book.incident_types],
        "roles": list(book.roles),
        "allowed_actions": list(book.allowed_actions),
        "path": book.path,
        "sections": book.sections,
    }
