"""Runbooks: Markdown with a small YAML front matter, read strictly.

A runbook is what the insight path may cite and what remediation may offer, so a typo
must stop the load with the file and the field named, not drop the runbook quietly::

    ---
    id: RB-01
    title: VSAT rain fade
    incident_types: [link_degradation, comms_outage]
    roles: [vsat_modem, antenna]
    allowed_actions: [qos_shaping, bandwidth_reduction, failover_path]
    ---
    # VSAT rain fade
    ## Symptoms ... ## Checks ... ## Steps ... ## Escalate ...

`allowed_actions` come from the remediation allow-list; runbooks for navigation or safety
incidents must list none, so nothing can ever be run on those systems from a runbook.
Every `*.md` file of the folder is a runbook, except README.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shared.taxonomy import IncidentType

FIELDS = ("id", "title", "incident_types", "roles", "allowed_actions")
SECTIONS = ("Symptoms", "Checks", "Steps", "Escalate")
HANDS_OFF = frozenset({IncidentType.NAVIGATION_DATA, IncidentType.SAFETY})
_ID = re.compile(r"^RB-\d{2,3}$")
_ROLE = re.compile(r"^[a-z][a-z0-9_]*$")
_HEADING = re.compile(r"^## +(.+?)\s*$", re.MULTILINE)


class RunbookError(ValueError):
    """A runbook file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Runbook:
    id: str
    title: str
    incident_types: tuple[IncidentType, ...]
    roles: tuple[str, ...]
    allowed_actions: tuple[str, ...]
    path: str  # relative to the runbook folder, as the API shows it
    sections: dict[str, str]

    def search_text(self) -> str:
        """Title, what it is about and its symptoms: what an incident or a question
        resembles. The steps are left out; they would only blur the match."""
        kinds = ", ".join(t.value.replace("_", " ") for t in self.incident_types)
        roles = ", ".join(r.replace("_", " ") for r in self.roles)
        return f"{self.title}. {kinds}; {roles}. {self.sections['Symptoms']}"


def load_runbooks(directory: Path, allowed_actions: Iterable[str] | None = None) -> list[Runbook]:
    """All runbooks of `directory`, sorted by id; `allowed_actions` defaults to the
    remediation allow-list of the built-in policy."""
    if allowed_actions is None:
        from shared.policy import load_policy

        allowed_actions = load_policy().remediate.actions
    allowed = frozenset(allowed_actions)
    if not directory.is_dir():
        raise RunbookError(f"{directory}: not a folder of runbooks")
    books: dict[str, Runbook] = {}
    for file in sorted(directory.glob("*.md")):
        if file.name.lower() == "readme.md":
            continue
        book = parse_runbook(file.read_text(encoding="utf-8"), file.name, allowed)
        if book.id in books:
            raise RunbookError(
                f"{file.name}: field 'id': {book.id} is also used by {books[book.id].path}"
            )
        books[book.id] = book
    return sorted(books.values(), key=lambda b: b.id)


def parse_runbook(text: str, name: str, allowed_actions: frozenset[str]) -> Runbook:
    meta, body = _split(text, name)
    unknown = sorted(set(meta) - set(FIELDS))
    if unknown:
        raise RunbookError(f"{name}: field {unknown[0]!r}: unknown (allowed: {', '.join(FIELDS)})")
    for field in FIELDS:
        if field not in meta:
            raise RunbookError(f"{name}: field {field!r}: missing")
    book_id = meta["id"]
    if not isinstance(book_id, str) or not _ID.match(book_id):
        raise RunbookError(f"{name}: field 'id': {book_id!r} is not like RB-01")
    title = meta["title"]
    if not isinstance(title, str) or not title.strip() or len(title) > 120:
        raise RunbookError(f"{name}: field 'title': must be text of 1..120 characters")
    types = tuple(_each(meta, "incident_types", name, _incident_type, empty_ok=False))
    roles = tuple(_each(meta, "roles", name, _role, empty_ok=False))
    actions = tuple(
        _each(meta, "allowed_actions", name, lambda v: _action(v, allowed_actions), empty_ok=True)
    )
    hands_off = sorted(t.value for t in HANDS_OFF.intersection(types))
    if actions and hands_off:
        raise RunbookError(
            f"{name}: field 'allowed_actions': must be empty for {', '.join(hands_off)} "
            "(navigation and safety systems are never remediated automatically)"
        )
    return Runbook(book_id, title.strip(), types, roles, actions, name, _sections(body, name))


def _split(text: str, name: str) -> tuple[dict[str, Any], str]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise RunbookError(f"{name}: front matter: the file must start with a '---' line")
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        raise RunbookError(f"{name}: front matter: no closing '---' line") from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise RunbookError(f"{name}: front matter: not valid YAML ({exc})") from exc
    if not isinstance(meta, dict):
        raise RunbookError(f"{name}: front matter: must be a mapping of {', '.join(FIELDS)}")
    return meta, "\n".join(lines[end + 1 :])


def _each(meta: dict[str, Any], field: str, name: str, check: Any, *, empty_ok: bool) -> list[Any]:
    values = meta[field]
    if not isinstance(values, list) or (not values and not empty_ok):
        need = "a list" if empty_ok else "a non-empty list"
        raise RunbookError(f"{name}: field {field!r}: must be {need}")
    out = []
    for value in values:
        try:
            out.append(check(value))
        except ValueError as exc:
            raise RunbookError(f"{name}: field {field!r}: {exc}") from None
    if len(set(out)) != len(out):
        raise RunbookError(f"{name}: field {field!r}: lists a value twice")
    return out


def _incident_type(value: Any) -> IncidentType:
    try:
        return IncidentType(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an incident type ({', '.join(t.value for t in IncidentType)})"
        ) from None


def _role(value: Any) -> str:
    if not isinstance(value, str) or not _ROLE.match(value):
        raise ValueError(f"{value!r} is not a device role like vsat_modem")
    return value


def _action(value: Any, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not on the allow-list ({', '.join(sorted(allowed))})")
    return str(value)


def _sections(body: str, name: str) -> dict[str, str]:
    marks = list(_HEADING.finditer(body))
    sections = {
        m.group(1): body[
            m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(body)
        ].strip()
        for i, m in enumerate(marks)
    }
    for wanted in SECTIONS:
        if not sections.get(wanted):
            raise RunbookError(f"{name}: section '## {wanted}': missing or empty")
    return sections
