"""Fleet issues: one problem on several ships at once (a satellite beam under a storm, a
bad update pushed to every ship), found by grouping recent incidents across ships.

Deterministic and explainable, no model. Incidents first seen in the last `LOOKBACK_S`
are put in buckets by what broke: incident type and place (the network path for path
incidents, else the device's role from the ingest policy, else the device id). Within a
bucket two incidents are linked when they were first seen within `WINDOW_S` of each
other and share an evidence signal (a detector such as `threshold:vsat_snr_low`), or
neither carries evidence. A linked group that spans at least two ships is a fleet issue;
its id hashes the bucket and the group's earliest incident, so it stays the same while
the issue grows.

The issues are kept in memory and recomputed every `INTERVAL_S` from ClickHouse, the
source of truth: they are derived and cheap to rebuild, every hub worker computes the
same issues under the same ids, and a change of the rule needs no migration.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import log
from shared.taxonomy import Severity
from shared.timeutil import iso
from shore_hub.fleetstore import FleetStore
from shore_hub.metrics import HubMetrics

LOOKBACK_S = 86_400.0
WINDOW_S = 2 * 3600.0
INTERVAL_S = 60.0
MIN_SHIPS = 2
MAX_INCIDENTS = 5000  # per run; a larger burst is reported as truncated
_PAGE = 1000
_log = log.get("shore_hub.patterns")


@dataclass(frozen=True)
class Member:
    """One incident as the grouping sees it."""

    id: str
    ship: str
    first_seen: float
    last_seen: float
    severity: str
    signals: frozenset[str]


@dataclass(frozen=True)
class FleetIssue:
    id: str
    type: str
    where: str
    members: tuple[Member, ...]  # by first_seen

    def view(self, may_see: Callable[[str], bool]) -> dict[str, Any] | None:
        """The issue as a caller sees it: only incidents of ships in its scope."""
        members = [m for m in self.members if may_see(m.ship)]
        if not members:
            return None
        ships = sorted({m.ship for m in members})
        seen = Counter(s for m in self.members for s in m.signals)  # why it is one issue
        shared = sorted(s for s, n in seen.items() if n >= 2)
        kind = self.type.replace("_", " ")
        evidence = (
            f"sharing evidence from {', '.join(shared)}"
            if shared
            else "with no evidence attached, so by type and place alone"
        )
        return {
            "id": self.id,
            "type": self.type,
            "title": f"{kind} on {self.where} across {_ships(len(ships))}",
            "where": self.where,
            "ships": ships,
            "incident_ids": [m.id for m in members],
            "first_seen": iso(min(m.first_seen for m in members)),
            "last_seen": iso(max(m.last_seen for m in members)),
            "count": len(members),
            "severity": max((Severity(m.severity) for m in members), key=lambda s: s.rank).value,
            "signals": shared,
            "why": (
                f"{len(members)} {kind} incidents on {_where(self.where)} of "
                f"{_ships(len(ships))}, each first seen within {WINDOW_S / 3600:g} h of "
                f"another, {evidence}"
            ),
        }


def _where(where: str) -> str:
    return where if where.startswith("path") else f"the {where}"


def _ships(n: int) -> str:
    return f"{n} ship" if n == 1 else f"{n} ships"


def place(doc: Mapping[str, Any], role_of: Callable[[str], str]) -> str:
    """Where an incident happened, in terms that mean the same on every ship."""
    if doc.get("path"):
        return f"path {doc['path']}"
    role = role_of(doc["device"])
    return f"{role} devices" if role != "unknown" else f"device {doc['device']}"


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def find_issues(
    docs: Iterable[Mapping[str, Any]], role_of: Callable[[str], str]
) -> list[FleetIssue]:
    """Fleet issues among these incident documents (Incident JSON), widest first."""
    buckets: dict[tuple[str, str], list[Member]] = defaultdict(list)
    for doc in docs:
        buckets[(doc["type"], place(doc, role_of))].append(
            Member(
                doc["id"],
                doc["ship_id"],
                _epoch(doc["first_seen"]),
                _epoch(doc["last_seen"]),
                doc["severity"],
                frozenset(e["detector"] for e in doc.get("evidence", ())),
            )
        )
    issues = []
    for (itype, where), members in sorted(buckets.items()):
        for group in _linked_groups(sorted(members, key=lambda m: (m.first_seen, m.id))):
            if len({m.ship for m in group}) >= MIN_SHIPS:
                digest = hashlib.sha256(f"{itype}\n{where}\n{group[0].id}".encode()).hexdigest()
                issues.append(FleetIssue(f"FI-{digest[:16]}", itype, where, tuple(group)))
    issues.sort(key=lambda i: (-len({m.ship for m in i.members}), -i.members[-1].first_seen, i.id))
    return issues


def _linked_groups(members: list[Member]) -> list[list[Member]]:
    """Connected groups (union-find) of time-sorted members under the linking rule."""
    parent = list(range(len(members)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, m in enumerate(members):
        j = i - 1
        while j >= 0 and m.first_seen - members[j].first_seen <= WINDOW_S:
            other = members[j]
            if (m.signals & other.signals) or not (m.signals or other.signals):
                parent[root(i)] = root(j)
            j -= 1
    groups: dict[int, list[Member]] = defaultdict(list)
    for i, m in enumerate(members):
        groups[root(i)].append(m)
    return list(groups.values())


class FleetPatterns:
    """The hub's current fleet issues, rebuilt periodically and on demand."""

    def __init__(
        self, store: FleetStore, role_of: Callable[[str], str], metrics: HubMetrics
    ) -> None:
        self.store = store
        self.role_of = role_of
        self.metrics = metrics
        self.issues: list[FleetIssue] = []
        self.computed_at: float | None = None
        self.truncated = False

    def refresh(self) -> None:
        """Regroups the incidents of the last LOOKBACK_S (blocking: run it in a thread)."""
        now = time.time()
        docs: list[dict[str, Any]] = []
        cursor = None
        while len(docs) < MAX_INCIDENTS:
            page = self.store.list_incidents(since=now - LOOKBACK_S, cursor=cursor, limit=_PAGE)
            docs += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        self.issues = find_issues(docs[:MAX_INCIDENTS], self.role_of)
        self.computed_at, self.truncated = now, cursor is not None
        self.metrics.fleet_issues.set(len(self.issues))

    async def run(self, interval: float = INTERVAL_S) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:  # the store restarting: next round
                _log.warning("fleet patterns not refreshed", error=str(exc))
            await asyncio.sleep(interval)

    def view(self, may_see: Callable[[str], bool]) -> dict[str, Any]:
        issues = [v for i in self.issues if (v := i.view(may_see)) is not None]
        return {
            "computed_at": iso(self.computed_at) if self.computed_at is not None else None,
            "lookback_s": LOOKBACK_S,
            "window_s": WINDOW_S,
            "truncated": self.truncated,
            "issues": issues,
        }
