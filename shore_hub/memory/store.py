"""The hub's incident memory in Qdrant: "has this been seen before, and what fixed it?".

Two collections, one vector per item: `incidents` (the latest version of every incident
of the fleet) and `runbooks`. The same code runs on qdrant-client's local mode (`path=`,
the embedded default: a folder that one process at a time may open, searched by brute
force) and on a Qdrant server or cluster (`url=`, with HNSW and payload indexes).
qdrant-client's exceptions become `BackendUnavailable`/`BackendError` in `_call` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from shared.models import Incident
from shared.taxonomy import IncidentStatus
from shore_hub.fleetstore.backends import BackendError, BackendUnavailable
from shore_hub.memory.embeddings import Embedder
from shore_hub.memory.runbooks import Runbook, load_runbooks

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

T = TypeVar("T")

INCIDENTS = "incidents"
RUNBOOKS = "runbooks"
# Point ids are uuid5(namespace, key): never change this, or every point gets a new id.
_NAMESPACE = uuid.UUID("0b6f3c2e-5d1a-4e8b-9c7f-2a4d6e8f0a1c")
_MAX_EVIDENCE = 8  # distinct evidence summaries in an incident's text
# Payload indexes (qdrant PayloadSchemaType names) for the fields the API filters on.
_INDEXED = {"ship_id": "KEYWORD", "type": "KEYWORD", "severity": "KEYWORD",
            "status": "KEYWORD", "ts": "FLOAT"}  # fmt: skip
_RETRYABLE = {408, 429, 502, 503, 504}


class NotIndexed(LookupError):
    """The incident has no vector yet (not ingested, or still waiting to be embedded)."""


def point_id(key: str) -> str:
    """The same key always gives the same point, so a newer version overwrites the older."""
    return str(uuid.uuid5(_NAMESPACE, key))


def incident_text(incident: Incident, role: str | None = None) -> str:
    """What an incident means, in words: type, what broke, the narrative, the evidence."""
    parts = [incident.type.value.replace("_", " ")]
    where = incident.device if not role else f"{role.replace('_', ' ')} {incident.device}"
    parts.append(f"{where} ({incident.service})" if incident.service else where)
    if incident.narrative:
        parts.append(incident.narrative)
    summaries = dict.fromkeys(e.summary.strip() for e in incident.evidence if e.summary.strip())
    parts.extend(list(summaries)[:_MAX_EVIDENCE])
    return ". ".join(parts)


def _epoch(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    if value.tzinfo is None:
        raise ValueError("since/until must be timezone-aware")
    return value.timestamp()


def _resolution(incident: Incident) -> str:
    """The detail of the resolving timeline entry: the fix that worked, in the crew's words."""
    if incident.status is not IncidentStatus.RESOLVED:
        return ""
    resolved = [t for t in incident.timeline if t.event == "resolved"]
    return resolved[-1].detail if resolved else ""


class IncidentMemory:
    """Incidents and runbooks as vectors, searchable by meaning and narrowed by payload.

    Exactly one of `path` (local mode, persisted in that folder) or `url` (a server); with
    neither, an in-process memory that vanishes on close (tests, benchmarks). `namespace`
    prefixes the collection names, so tests and benchmarks can share a server safely.
    `role_of` maps a device id to its role (`policy.ingest.role_of`) for the embedded text.
    The memory owns `embedder` and closes it.
    """

    def __init__(
        self,
        embedder: Embedder,
        path: Path | None = None,
        url: str | None = None,
        *,
        api_key: str | None = None,
        namespace: str = "",
        role_of: Callable[[str], str] | None = None,
        timeout_s: int = 10,
    ) -> None:
        from qdrant_client import QdrantClient

        if path is not None and url is not None:
            raise ValueError("give a local path or a server url, not both")
        self.embedder = embedder
        self.local = url is None
        self.incidents = namespace + INCIDENTS
        self.runbooks = namespace + RUNBOOKS
        self._role_of = role_of
        # Local mode is plain Python over numpy arrays and SQLite: one caller at a time.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.local else contextlib.nullcontext()
        )
        where = str(path) if path is not None else url or ":memory:"
        self._client: QdrantClient
        try:
            if url is not None:
                self._client = QdrantClient(
                    url=url, api_key=api_key, timeout=timeout_s, check_compatibility=False
                )
            else:
                self._client = QdrantClient(path=str(path)) if path else QdrantClient(":memory:")
        except RuntimeError as exc:  # local mode: the folder is locked by another client
            raise BackendUnavailable(f"qdrant local storage {where}: {exc}") from exc
        self.where = where

    # ------------------------------------------------------------------ collections

    def ensure_collections(self) -> None:
        """Creates what is missing; refuses vectors of another size than the embedder's."""
        from qdrant_client import models as qm

        for name in (self.incidents, self.runbooks):
            if not self._call(self._client.collection_exists, name):
                params = qm.VectorParams(size=self.embedder.dim, distance=qm.Distance.COSINE)
                try:
                    self._call(self._client.create_collection, name, vectors_config=params)
                except BackendError:  # another hub worker may have created it first
                    if not self._call(self._client.collection_exists, name):
                        raise
            self._check_vectors(name)
        if not self.local:  # local mode scans every point; indexes are a server feature
            for field, schema in _INDEXED.items():
                kind = qm.PayloadSchemaType[schema]
                self._call(self._client.create_payload_index, self.incidents, field, kind)

    def _check_vectors(self, name: str) -> None:
        from qdrant_client import models as qm

        vectors = self._call(self._client.get_collection, name).config.params.vectors
        if not isinstance(vectors, qm.VectorParams) or vectors.size != self.embedder.dim:
            size = vectors.size if isinstance(vectors, qm.VectorParams) else vectors
            raise BackendError(
                f"collection {name} holds vectors of {size}, {self.embedder.name} makes "
                f"{self.embedder.dim}: drop it (drop_collections) and re-index"
            )

    def drop_collections(self) -> None:
        """Deletes both collections (a model change, or cleaning up after a test run)."""
        for name in (self.incidents, self.runbooks):
            self._call(self._client.delete_collection, name)

    def count(self, collection: str = INCIDENTS) -> int:
        name = self.runbooks if collection == RUNBOOKS else self.incidents
        return int(self._call(self._client.count, name, exact=True).count)

    # ------------------------------------------------------------------ incidents

    def upsert_incidents(self, incidents: Iterable[Incident]) -> int:
        """Stores the newest version of each incident; returns how many points were written.

        A version older than or equal to the stored one is skipped (replays, duplicates,
        out-of-order delivery). A newer version whose text did not change reuses the stored
        vector, so status and count updates cost no model time.
        """
        from qdrant_client import models as qm

        latest: dict[str, Incident] = {}
        for inc in incidents:
            if inc.id not in latest or inc.version > latest[inc.id].version:
                latest[inc.id] = inc
        if not latest:
            return 0
        stored = {
            str(p.id): p
            for p in self._call(
                self._client.retrieve,
                self.incidents,
                [point_id(i) for i in latest],
                with_payload=["version", "text_sha"],
                with_vectors=True,
            )
        }
        points: list[qm.PointStruct] = []
        to_embed: list[tuple[str, str, dict[str, Any]]] = []
        for inc in latest.values():
            pid = point_id(inc.id)
            old = stored.get(pid)
            old_payload = (old.payload or {}) if old is not None else {}
            if old_payload.get("version", 0) >= inc.version:
                continue
            text = incident_text(inc, self._role(inc))
            payload = self._payload(inc, text)
            kept = _dense(old.vector) if old is not None else None
            if kept and old_payload.get("text_sha") == payload["text_sha"]:
                points.append(qm.PointStruct(id=pid, vector=kept, payload=payload))
            else:
                to_embed.append((pid, text, payload))
        vectors = self.embedder.embed([text for _, text, _ in to_embed]) if to_embed else []
        for (pid, _, payload), vector in zip(to_embed, vectors, strict=True):
            points.append(qm.PointStruct(id=pid, vector=vector, payload=payload))
        if points:
            self._call(self._client.upsert, self.incidents, points, wait=True)
        return len(points)

    def _payload(self, inc: Incident, text: str) -> dict[str, Any]:
        first = inc.first_seen.timestamp()
        resolved = inc.resolved_at.timestamp() if inc.resolved_at else None
        digest = hashlib.sha256(f"{self.embedder.name}\n{text}".encode()).hexdigest()
        return {
            "incident_id": inc.id,
            "ship_id": inc.ship_id,
            "type": inc.type.value,
            "severity": inc.severity.value,
            "status": inc.status.value,
            "device": inc.device,
            "ts": first,
            "resolved_at": resolved,
            "time_to_resolve_s": resolved - first if resolved is not None else None,
            "resolution": _resolution(inc),
            "version": inc.version,
            "text_sha": digest[:32],
        }

    def similar(
        self, incident: str | Incident, limit: int = 5, other_ships_only: bool = False
    ) -> list[dict[str, Any]]:
        """The nearest other incidents, best first, with how and how fast they were resolved.

        By id, the stored vector is used (raises `NotIndexed` if there is none); an
        `Incident` is embedded as it is now. With `other_ships_only`, the nearest neighbours
        are fetched without a filter first and the same ship's dropped here; only if too few
        remain does the query run again with a filter, which costs a full payload scan in
        local mode and nothing much on a server.
        """
        from qdrant_client import models as qm

        if isinstance(incident, Incident):
            own_id, ship = point_id(incident.id), str(incident.ship_id)
            vector = self.embedder.embed([incident_text(incident, self._role(incident))])[0]
        else:
            own_id = point_id(incident)
            found = self._call(
                self._client.retrieve,
                self.incidents,
                [own_id],
                with_payload=["ship_id"],
                with_vectors=True,
            )
            stored = _dense(found[0].vector) if found else None
            if stored is None:
                raise NotIndexed(f"incident {incident} is not in the incident memory (yet)")
            vector, ship = stored, str((found[0].payload or {}).get("ship_id"))

        def keep(hit: dict[str, Any]) -> bool:
            return hit["point"] != own_id and not (other_ships_only and hit["ship"] == ship)

        wide = limit * 4 + 1 if other_ships_only else limit + 1
        hits = [h for h in self._query(self.incidents, vector, wide, None) if keep(h)]
        if len(hits) < limit and other_ships_only:
            others = qm.Filter(must_not=[_match("ship_id", ship)])
            hits = [h for h in self._query(self.incidents, vector, limit + 1, others) if keep(h)]
        return [_public(h) for h in hits[:limit]]

    def _role(self, incident: Incident) -> str | None:
        role = self._role_of(incident.device) if self._role_of else None
        return role if role != "unknown" else None  # policy.ingest.role_of's "no idea"

    def search(
        self,
        text: str,
        ship: str | None = None,
        type: str | None = None,  # noqa: A002 - the API's name for it
        severity: str | None = None,
        since: datetime | float | None = None,
        until: datetime | float | None = None,
        ships: list[str] | None = None,
        limit: int = 10,
    ) -> list[dict[str, Any]]:
        """Incidents nearest in meaning to `text`, within the filters and the caller's
        `ships` (None: the whole fleet; an empty list: nothing). `since`/`until` bound
        when the incident was first seen (aware datetimes or epoch seconds)."""
        from qdrant_client import models as qm

        if ships is not None and not ships:
            return []
        must: list[qm.Condition] = []
        for field, value in (("ship_id", ship), ("type", type), ("severity", severity)):
            if value is not None:
                must.append(_match(field, value))
        if ships is not None:
            must.append(qm.FieldCondition(key="ship_id", match=qm.MatchAny(any=list(ships))))
        start, end = _epoch(since), _epoch(until)
        if start is not None or end is not None:
            must.append(qm.FieldCondition(key="ts", range=qm.Range(gte=start, lte=end)))
        vector = self.embedder.embed([text])[0]
        hits = self._query(self.incidents, vector, limit, qm.Filter(must=must) if must else None)
        return [_public(h) for h in hits]

    # ------------------------------------------------------------------ runbooks

    def index_runbooks(self, directory: Path, allowed_actions: Iterable[str] | None = None) -> int:
        """Makes the `runbooks` collection hold exactly the runbooks in `directory`."""
        from qdrant_client import models as qm

        books = load_runbooks(directory, allowed_actions)
        vectors = self.embedder.embed([b.search_text() for b in books]) if books else []
        points = [
            qm.PointStruct(id=point_id(f"runbook:{b.id}"), vector=v, payload=_runbook_payload(b))
            for b, v in zip(books, vectors, strict=True)
        ]
        if points:
            self._call(self._client.upsert, self.runbooks, points, wait=True)
        keep = {str(p.id) for p in points}
        stale = [p.id for p in self._all_points(self.runbooks) if str(p.id) not in keep]
        if stale:
            self._call(self._client.delete, self.runbooks, qm.PointIdsList(points=stale))
        return len(points)

    def search_runbooks(self, text: str, limit: int = 5) -> list[dict[str, Any]]:
        vector = self.embedder.embed([text])[0]
        return [
            {"id": h["payload"]["id"], "title": h["payload"]["title"], "score": h["score"],
             "path": h["payload"]["path"], "incident_types": h["payload"]["incident_types"],
             "allowed_actions": h["payload"]["allowed_actions"]}
            for h in self._query(self.runbooks, vector, limit, None)
        ]  # fmt: skip

    def _all_points(self, name: str) -> Iterator[qm.Record]:
        offset: Any = None
        while True:
            page, offset = self._call(
                self._client.scroll, name, limit=256, offset=offset, with_payload=False
            )
            yield from page
            if offset is None:
                return

    # ------------------------------------------------------------------ plumbing

    def _query(
        self, name: str, vector: list[float], limit: int, flt: qm.Filter | None
    ) -> list[dict[str, Any]]:
        found = self._call(
            self._client.query_points, name, query=vector, query_filter=flt, limit=limit
        )
        return [
            {"point": str(p.id), "score": float(p.score), "ship": (p.payload or {}).get("ship_id"),
             "payload": p.payload or {}}
            for p in found.points
        ]  # fmt: skip

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Every request goes through here: one lock in local mode, our errors always."""
        import httpx
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        try:
            with self._lock:
                return fn(*args, **kwargs)
        except UnexpectedResponse as exc:
            kind = BackendUnavailable if exc.status_code in _RETRYABLE else BackendError
            raise kind(f"qdrant {self.where} answered {exc.status_code}: {exc}") from exc
        except (ResponseHandlingException, httpx.TransportError) as exc:
            raise BackendUnavailable(f"qdrant {self.where} unreachable: {exc}") from exc
        except (ValueError, RuntimeError) as exc:  # local mode: unknown collection, closed
            raise BackendError(f"qdrant {self.where}: {exc}") from exc

    def close(self) -> None:
        self._client.close()
        self.embedder.close()


def _dense(vector: Any) -> list[float] | None:
    """A stored vector as one list of numbers, or None if the point has no such vector."""
    if isinstance(vector, list) and vector and isinstance(vector[0], int | float):
        return vector
    return None


def _match(field: str, value: Any) -> qm.FieldCondition:
    from qdrant_client import models as qm

    return qm.FieldCondition(key=field, match=qm.MatchValue(value=value))


def _public(hit: dict[str, Any]) -> dict[str, Any]:
    p = hit["payload"]
    return {
        "id": p["incident_id"],
        "score": hit["score"],
        "ship": p["ship_id"],
        "type": p["type"],
        "severity": p["severity"],
        "status": p["status"],
        "device": p["device"],
        "ts": p["ts"],
        "version": p["version"],
        "resolution": p["resolution"],
        "resolved_at": p["resolved_at"],
        "time_to_resolve_s": p["time_to_resolve_s"],
    }


def _runbook_payload(book: Runbook) -> dict[str, Any]:
    return {
        "id": book.id,
        "title": book.title,
        "path": book.path,
        "incident_types": list(book.incident_types),
        "roles": list(book.roles),
        "allowed_actions": list(book.allowed_actions),
    }
