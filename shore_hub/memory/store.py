"""The hub's incident memory in Qdrant: "has this been seen before, and what fixed it?".

Two collections, one vector per item: `incidents` (the latest version of every incident
of the fleet) and `runbooks`. The same code runs on three engines behind one small
interface: Qdrant Edge (`qdrant-edge-py`, the embedded default: Qdrant's own engine in
this process, with HNSW and payload indexes, one folder per collection), qdrant-client's
local mode (`engine="local"`: plain Python over numpy, searched by brute force, with
filters evaluated point by point) and a Qdrant server or cluster (`url=`). Each engine
translates its library's exceptions into `BackendUnavailable`/`BackendError` in one place.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import numpy as np

from shared.models import Incident
from shared.runbooks import Runbook, load_runbooks
from shared.taxonomy import IncidentStatus
from shore_hub.fleetstore.backends import BackendError, BackendUnavailable
from shore_hub.memory.embeddings import Embedder
from shore_hub.memory.text import incident_text

if TYPE_CHECKING:
    import numpy.typing as npt
    from qdrant_edge import EdgeConfig, EdgeShard

    Vectors = npt.NDArray[np.float32]

T = TypeVar("T")

INCIDENTS = "incidents"
RUNBOOKS = "runbooks"
ENGINES = ("edge", "local")  # without a url; a url means a Qdrant server
# Point ids are uuid5(namespace, key): never change this, or every point gets a new id.
_NAMESPACE = uuid.UUID("0b6f3c2e-5d1a-4e8b-9c7f-2a4d6e8f0a1c")
# Payload indexes (qdrant PayloadSchemaType names) for the fields the API filters on.
_INDEXED = {"ship_id": "KEYWORD", "type": "KEYWORD", "severity": "KEYWORD",
            "status": "KEYWORD", "ts": "FLOAT"}  # fmt: skip
_RETRYABLE = {408, 429, 502, 503, 504}


class NotIndexed(LookupError):
    """The incident has no vector yet (not ingested, or still waiting to be embedded)."""


def point_id(key: str) -> str:
    """The same key always gives the same point, so a newer version overwrites the older."""
    return str(uuid.uuid5(_NAMESPACE, key))


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

    Without `url`, the memory is embedded: `engine` "edge" (the default) or "local", kept
    in the folder `path`, which one process at a time may open; with no path either, in a
    temporary folder (edge) or in memory (local) that vanish on close (tests, benchmarks).
    With `url`, a Qdrant server. `namespace` prefixes the collection names, so tests and
    benchmarks can share a server safely. `role_of` maps a device id to its role
    (`policy.ingest.role_of`) for the embedded text. The memory owns `embedder` and
    closes it.
    """

    def __init__(
        self,
        embedder: Embedder,
        path: Path | None = None,
        url: str | None = None,
        *,
        engine: str = "edge",
        api_key: str | None = None,
        namespace: str = "",
        role_of: Callable[[str], str] | None = None,
        timeout_s: int = 10,
    ) -> None:
        if path is not None and url is not None:
            raise ValueError("give a local path or a server url, not both")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
        self.embedder = embedder
        self.local = url is None
        self.incidents = namespace + INCIDENTS
        self.runbooks = namespace + RUNBOOKS
        self._role_of = role_of
        self._engine: _Engine
        if url is None and engine == "edge":
            names = (self.incidents, self.runbooks)
            self._engine = _EdgeEngine(path, names, embedder.dim, embedder.name)
        else:
            self._engine = _ClientEngine(path, url, api_key, timeout_s)
        self.where = self._engine.where

    # ------------------------------------------------------------------ collections

    def ensure_collections(self) -> None:
        """Creates what is missing; refuses vectors of another size than the embedder's."""
        self._engine.ensure(self.incidents, self.embedder, _INDEXED)
        self._engine.ensure(self.runbooks, self.embedder, {})

    def drop_collections(self) -> None:
        """Deletes both collections (a model change, or cleaning up after a test run)."""
        for name in (self.incidents, self.runbooks):
            self._engine.drop(name)

    def count(self, collection: str = INCIDENTS) -> int:
        return self._engine.count(self.runbooks if collection == RUNBOOKS else self.incidents)

    # ------------------------------------------------------------------ incidents

    def upsert_incidents(self, incidents: Iterable[Incident], refresh: bool = False) -> int:
        """Stores the newest version of each incident; returns how many points were written.

        A version older than or equal to the stored one is skipped (replays, duplicates,
        out-of-order delivery). A newer version whose text did not change reuses the stored
        vector, so status and count updates cost no model time. With `refresh`, the stored
        version is embedded again if its text is no longer what `incident_text` makes of
        it, or not by this embedder (`seawatch hub reembed`, after either changes).
        """
        latest: dict[str, Incident] = {}
        for inc in incidents:
            if inc.id not in latest or inc.version > latest[inc.id].version:
                latest[inc.id] = inc
        if not latest:
            return 0
        pids = [point_id(i) for i in latest]
        stored = {
            p.id: p for p in self._engine.retrieve(self.incidents, pids, ["version", "text_sha"])
        }
        kept: list[tuple[str, dict[str, Any], list[float]]] = []
        to_embed: list[tuple[str, dict[str, Any], str]] = []
        for pid, inc in zip(pids, latest.values(), strict=True):
            old = stored.get(pid)
            have = old.payload.get("version", 0) if old is not None else 0
            if have > inc.version or (have == inc.version and not refresh):
                continue
            text = incident_text(inc, self._role(inc))
            payload = self._payload(inc, text)
            if (
                old is not None
                and old.vector
                and old.payload.get("text_sha") == payload["text_sha"]
            ):
                if have < inc.version:  # same text, newer version: the vector carries over
                    kept.append((pid, payload, old.vector))
            else:
                to_embed.append((pid, payload, text))
        if not kept and not to_embed:
            return 0
        vectors = np.asarray([v for _, _, v in kept], np.float32).reshape(-1, self.embedder.dim)
        if to_embed:
            vectors = np.concatenate([vectors, self.embedder.embed([t for _, _, t in to_embed])])
        ids = [pid for pid, _, _ in kept] + [pid for pid, _, _ in to_embed]
        payloads = [payload for _, payload, _ in kept] + [payload for _, payload, _ in to_embed]
        self._engine.upsert(self.incidents, ids, vectors, payloads)
        return len(ids)

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
        local mode and little with a payload index (edge, server).
        """
        vector: Vectors | list[float]
        if isinstance(incident, Incident):
            own_id, ship = point_id(incident.id), str(incident.ship_id)
            vector = self.embedder.embed([incident_text(incident, self._role(incident))])[0]
        else:
            own_id = point_id(incident)
            found = self._engine.retrieve(self.incidents, [own_id], ["ship_id"])
            if not found or not found[0].vector:
                raise NotIndexed(f"incident {incident} is not in the incident memory (yet)")
            vector, ship = found[0].vector, str(found[0].payload.get("ship_id"))

        def keep(hit: _Hit) -> bool:
            return hit.id != own_id and not (
                other_ships_only and hit.payload.get("ship_id") == ship
            )

        wide = limit * 4 + 1 if other_ships_only else limit + 1
        hits = [h for h in self._engine.query(self.incidents, vector, wide, ()) if keep(h)]
        if len(hits) < limit and other_ships_only:
            others = (_Match("ship_id", (ship,), negate=True),)
            hits = [h for h in self._engine.query(self.incidents, vector, limit + 1, others)
                    if keep(h)]  # fmt: skip
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
        if ships is not None and not ships:
            return []
        where: list[_Condition] = [
            _Match(field, (value,))
            for field, value in (("ship_id", ship), ("type", type), ("severity", severity))
            if value is not None
        ]
        if ships is not None:
            where.append(_Match("ship_id", tuple(ships)))
        start, end = _epoch(since), _epoch(until)
        if start is not None or end is not None:
            where.append(_Between("ts", start, end))
        vector = self.embedder.embed([text])[0]
        return [_public(h) for h in self._engine.query(self.incidents, vector, limit, where)]

    # ------------------------------------------------------------------ runbooks

    def index_runbooks(self, directory: Path, allowed_actions: Iterable[str] | None = None) -> int:
        """Makes the `runbooks` collection hold exactly the runbooks in `directory`."""
        books = load_runbooks(directory, allowed_actions)
        ids = [point_id(f"runbook:{b.id}") for b in books]
        if books:
            vectors = self.embedder.embed([b.search_text() for b in books])
            self._engine.upsert(self.runbooks, ids, vectors, [_runbook_payload(b) for b in books])
        keep = set(ids)
        stale = [i for i in self._engine.ids(self.runbooks) if i not in keep]
        if stale:
            self._engine.delete(self.runbooks, stale)
        return len(books)

    def search_runbooks(self, text: str, limit: int = 5) -> list[dict[str, Any]]:
        vector = self.embedder.embed([text])[0]
        return [
            {"id": h.payload["id"], "title": h.payload["title"], "score": h.score,
             "path": h.payload["path"], "incident_types": h.payload["incident_types"],
             "allowed_actions": h.payload["allowed_actions"]}
            for h in self._engine.query(self.runbooks, vector, limit, ())
        ]  # fmt: skip

    def close(self) -> None:
        self._engine.close()
        self.embedder.close()


# ---------------------------------------------------------------------- engines


class _Stored(NamedTuple):
    """A point read back by id: the payload fields asked for, and its vector."""

    id: str
    payload: dict[str, Any]
    vector: list[float] | None


class _Hit(NamedTuple):
    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class _Match:
    """The field holds one of `values` (or, negated, none of them)."""

    field: str
    values: tuple[Any, ...]
    negate: bool = False


@dataclass(frozen=True)
class _Between:
    field: str
    gte: float | None
    lte: float | None


_Condition = _Match | _Between


class _Engine(Protocol):
    """What the memory needs of Qdrant; `ids` are point ids, `where` is all-of."""

    where: str

    def ensure(self, name: str, embedder: Embedder, indexes: Mapping[str, str]) -> None: ...

    def drop(self, name: str) -> None: ...

    def count(self, name: str) -> int: ...

    def retrieve(self, name: str, ids: list[str], fields: list[str]) -> list[_Stored]: ...

    def upsert(
        self, name: str, ids: list[str], vectors: Vectors, payloads: list[dict[str, Any]]
    ) -> None: ...

    def query(
        self, name: str, vector: Vectors | list[float], limit: int, where: Sequence[_Condition]
    ) -> list[_Hit]: ...

    def delete(self, name: str, ids: list[str]) -> None: ...

    def ids(self, name: str) -> Iterator[str]: ...

    def close(self) -> None: ...


def _filter(models: Any, range_type: Any, where: Sequence[_Condition]) -> Any:
    """`where` in a library's filter classes: qdrant-client's `models` and `qdrant_edge`
    name Filter, FieldCondition, MatchValue and MatchAny alike; only the range differs."""
    if not where:
        return None
    must: list[Any] = []
    must_not: list[Any] = []
    for c in where:
        if isinstance(c, _Between):
            must.append(models.FieldCondition(key=c.field, range=range_type(gte=c.gte, lte=c.lte)))
            continue
        if len(c.values) == 1:
            match = models.MatchValue(value=c.values[0])
        else:
            match = models.MatchAny(any=list(c.values))
        (must_not if c.negate else must).append(models.FieldCondition(key=c.field, match=match))
    return models.Filter(must=must or None, must_not=must_not or None)


class _EdgeEngine:
    """Qdrant Edge: the Qdrant engine in this process, one shard (a folder under `path`)
    per collection, with a write-ahead log, payload indexes and HNSW.

    Shards that exist are opened here, so a folder that another process holds fails at
    once, as local mode does. After each upsert the shard's optimizers run: a no-op until
    enough points wait unindexed (thousands), then they are indexed before the call returns.
    That takes seconds and qdrant-edge-py holds the GIL meanwhile, so the rest of the
    process waits too (measured in `seawatch bench memory`); until then the unindexed
    points are searched by brute force, which is cheap for a few thousand.
    """

    def __init__(
        self, path: Path | None, names: Iterable[str], dim: int, embedder_name: str
    ) -> None:
        self.where = str(path) if path is not None else "a temporary folder"
        self._scratch = None
        if path is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="seawatch-memory-")
            path = Path(self._scratch.name)
        self.root = path
        self._lock = threading.Lock()  # one operation at a time, as for local mode
        self._shards: dict[str, EdgeShard] = {}
        try:
            for name in names:
                if (self.root / name).is_dir():
                    self._shards[name] = self._load(name, dim, embedder_name)
        except BackendError:
            self.close()  # what did open, so the folder is not held by a memory never returned
            raise

    def _config(self, dim: int) -> EdgeConfig:
        """Segments of at most ~20 MB (13,000 vectors of 384), up to 16 before merging:
        with the defaults every optimisation merged all points into one segment and
        rebuilt its HNSW graph (up to 48 s per upsert at 100,000 points, growing); capped,
        the slowest upsert took 1.6 s and a search visits a dozen small graphs."""
        import qdrant_edge as qe

        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            optimizers=qe.EdgeOptimizersConfig(max_segment_size=20_000, default_segment_number=16),
        )

    def _load(self, name: str, dim: int, embedder_name: str) -> EdgeShard:
        """Opens a shard, checking its vector size. qdrant_edge raises one exception type
        for everything, so a failed load is retried without the size to tell a busy or
        broken folder (unavailable) from vectors of another size (our error)."""
        import qdrant_edge as qe

        folder = str(self.root / name)
        try:
            return qe.EdgeShard.load(folder, self._config(dim))
        except Exception as exc:
            refused = exc
        try:
            qe.EdgeShard.load(folder).close()
        except Exception as exc:
            raise BackendUnavailable(f"qdrant edge storage {folder}: {exc}") from exc
        raise BackendError(
            f"collection {name} holds vectors of another size ({refused}), {embedder_name} "
            f"makes {dim}: drop it (drop_collections) and re-index"
        ) from refused

    def ensure(self, name: str, embedder: Embedder, indexes: Mapping[str, str]) -> None:
        import qdrant_edge as qe

        if name in self._shards:
            return
        shard = self._call(qe.EdgeShard.create, str(self.root / name), self._config(embedder.dim))
        self._shards[name] = shard
        for field, schema in indexes.items():
            kind = getattr(qe.PayloadSchemaType, schema.title())
            self._call(shard.update, qe.UpdateOperation.create_field_index(field, kind))

    def _shard(self, name: str) -> EdgeShard:
        try:
            return self._shards[name]
        except KeyError:
            raise BackendError(f"qdrant edge {self.where}: no collection {name}") from None

    def drop(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is not None:
            self._call(shard.close)
        shutil.rmtree(self.root / name, ignore_errors=True)

    def count(self, name: str) -> int:
        import qdrant_edge as qe

        return int(self._call(self._shard(name).count, qe.CountRequest(exact=True)))

    def retrieve(self, name: str, ids: list[str], fields: list[str]) -> list[_Stored]:
        found = self._call(self._shard(name).retrieve, ids, with_payload=fields, with_vector=True)
        return [_Stored(str(r.id), r.payload or {}, _dense(r.vector)) for r in found]

    def upsert(
        self, name: str, ids: list[str], vectors: Vectors, payloads: list[dict[str, Any]]
    ) -> None:
        import qdrant_edge as qe

        shard = self._shard(name)
        points = [qe.Point(i, v, p) for i, v, p in zip(ids, vectors, payloads, strict=True)]
        self._call(shard.update, qe.UpdateOperation.upsert_points(points))
        self._call(shard.optimize)

    def query(
        self, name: str, vector: Vectors | list[float], limit: int, where: Sequence[_Condition]
    ) -> list[_Hit]:
        import qdrant_edge as qe

        request = qe.QueryRequest(
            query=qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            limit=limit,
            filter=_filter(qe, qe.RangeFloat, where),
            with_payload=True,
        )
        found = self._call(self._shard(name).query, request)
        return [_Hit(str(p.id), float(p.score), p.payload or {}) for p in found]

    def delete(self, name: str, ids: list[str]) -> None:
        import qdrant_edge as qe

        points: list[str | int | uuid.UUID] = [*ids]
        self._call(self._shard(name).update, qe.UpdateOperation.delete_points(points))

    def ids(self, name: str) -> Iterator[str]:
        import qdrant_edge as qe

        offset: Any = None
        while True:
            request = qe.ScrollRequest(offset=offset, limit=256, with_payload=False)
            page, offset = self._call(self._shard(name).scroll, request)
            yield from (str(p.id) for p in page)
            if offset is None:
                return

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            with self._lock:
                return fn(*args, **kwargs)
        except Exception as exc:  # qdrant_edge raises plain Exception for everything
            raise BackendError(f"qdrant edge {self.where}: {exc}") from exc

    def close(self) -> None:
        for name in list(self._shards):
            shard = self._shards.pop(name)
            self._call(shard.flush)
            self._call(shard.close)
        if self._scratch is not None:
            self._scratch.cleanup()


class _ClientEngine:
    """qdrant-client: its local mode (a folder, or in memory) or a Qdrant server (`url`)."""

    def __init__(
        self, path: Path | None, url: str | None, api_key: str | None, timeout_s: int
    ) -> None:
        from qdrant_client import QdrantClient

        self.local = url is None
        # Local mode is plain Python over numpy arrays and SQLite: one caller at a time.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.local else contextlib.nullcontext()
        )
        self.where = str(path) if path is not None else url or ":memory:"
        try:
            if url is not None:
                self._client = QdrantClient(
                    url=url, api_key=api_key, timeout=timeout_s, check_compatibility=False
                )
            else:
                self._client = QdrantClient(path=str(path)) if path else QdrantClient(":memory:")
        except RuntimeError as exc:  # local mode: the folder is locked by another client
            raise BackendUnavailable(f"qdrant local storage {self.where}: {exc}") from exc

    def ensure(self, name: str, embedder: Embedder, indexes: Mapping[str, str]) -> None:
        from qdrant_client import models as qm

        if not self._call(self._client.collection_exists, name):
            params = qm.VectorParams(size=embedder.dim, distance=qm.Distance.COSINE)
            try:
                self._call(self._client.create_collection, name, vectors_config=params)
            except BackendError:  # another hub worker may have created it first
                if not self._call(self._client.collection_exists, name):
                    raise
        vectors = self._call(self._client.get_collection, name).config.params.vectors
        if not isinstance(vectors, qm.VectorParams) or vectors.size != embedder.dim:
            size = vectors.size if isinstance(vectors, qm.VectorParams) else vectors
            raise BackendError(
                f"collection {name} holds vectors of {size}, {embedder.name} makes "
                f"{embedder.dim}: drop it (drop_collections) and re-index"
            )
        if not self.local:  # local mode scans every point; indexes are a server feature
            for field, schema in indexes.items():
                kind = qm.PayloadSchemaType[schema]
                self._call(self._client.create_payload_index, name, field, kind)

    def drop(self, name: str) -> None:
        self._call(self._client.delete_collection, name)

    def count(self, name: str) -> int:
        return int(self._call(self._client.count, name, exact=True).count)

    def retrieve(self, name: str, ids: list[str], fields: list[str]) -> list[_Stored]:
        found = self._call(self._client.retrieve, name, ids, with_payload=fields, with_vectors=True)
        return [_Stored(str(p.id), p.payload or {}, _dense(p.vector)) for p in found]

    def upsert(
        self, name: str, ids: list[str], vectors: Vectors, payloads: list[dict[str, Any]]
    ) -> None:
        from qdrant_client import models as qm

        batch = qm.Batch(ids=list(ids), vectors=vectors.tolist(), payloads=payloads)
        self._call(self._client.upsert, name, batch, wait=True)

    def query(
        self, name: str, vector: Vectors | list[float], limit: int, where: Sequence[_Condition]
    ) -> list[_Hit]:
        from qdrant_client import models as qm

        found = self._call(
            self._client.query_points,
            name,
            query=np.asarray(vector, dtype=np.float32).tolist(),
            query_filter=_filter(qm, qm.Range, where),
            limit=limit,
        )
        return [_Hit(str(p.id), float(p.score), p.payload or {}) for p in found.points]

    def delete(self, name: str, ids: list[str]) -> None:
        from qdrant_client import models as qm

        self._call(self._client.delete, name, qm.PointIdsList(points=list(ids)))

    def ids(self, name: str) -> Iterator[str]:
        offset: Any = None
        while True:
            page, offset = self._call(
                self._client.scroll, name, limit=256, offset=offset, with_payload=False
            )
            yield from (str(p.id) for p in page)
            if offset is None:
                return

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


def _dense(vector: Any) -> list[float] | None:
    """A stored vector as one list of numbers, or None if the point has no such vector."""
    if isinstance(vector, list) and vector and isinstance(vector[0], int | float):
        return vector
    return None


def _public(hit: _Hit) -> dict[str, Any]:
    p = hit.payload
    return {
        "id": p["incident_id"],
        "score": hit.score,
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
