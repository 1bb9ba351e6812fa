"""Incident memory: fleet-wide "seen before" and runbook retrieval over Qdrant.

`IncidentMemory` (store.py) keeps the latest version of every incident and the runbooks as
vectors (in process on Qdrant Edge by default, or on qdrant-client's local mode or a Qdrant
server); an `Embedder` (embeddings.py) turns text into those vectors, in this process
(`OnnxMiniLM`) or over HTTP (`HttpEmbedder`), behind a cache of recent texts
(`CachedEmbedder`); text.py says which words of an incident are embedded;
`shared.runbooks` reads the runbook files.
"""

from shared.runbooks import Runbook, RunbookError, load_runbooks
from shore_hub.fleetstore.backends import BackendError, BackendUnavailable
from shore_hub.memory.embeddings import (
    CachedEmbedder,
    Embedder,
    HttpEmbedder,
    OnnxMiniLM,
    default_embedder,
)
from shore_hub.memory.store import IncidentMemory, NotIndexed, point_id
from shore_hub.memory.text import evidence_gist, incident_text

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "CachedEmbedder",
    "Embedder",
    "HttpEmbedder",
    "IncidentMemory",
    "NotIndexed",
    "OnnxMiniLM",
    "Runbook",
    "RunbookError",
    "default_embedder",
    "evidence_gist",
    "incident_text",
    "load_runbooks",
    "point_id",
]
