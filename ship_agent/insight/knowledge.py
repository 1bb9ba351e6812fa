"""What the ship knows without the shore: its runbooks and its own incident history.

Runbooks are indexed with SQLite FTS5 in memory (fifteen or so documents: rebuilt at start
in milliseconds) and ranked by BM25 against the words of an incident's evidence. Past
incidents come from the agent's own database through a separate read-only connection, so
the insight worker never shares a connection with the fast path.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from shared.runbooks import Runbook, load_runbooks
from shared.taxonomy import IncidentType

_STEP = re.compile(r"^\s*\d+\.\s+", re.MULTILINE)
_WORD = re.compile(r"[a-z][a-z0-9]{2,}")
# Words every evidence line has; they would match every runbook equally.
_COMMON = frozenset(
    [
        "the",
        "and",
        "for",
        "now",
        "seen",
        "lines",
        "matching",
        "expected",
        "about",
        "template",
        "rare",
        "new",
        "log",
        "num",
        "from",
        "with",
        "shifted",
        "into",
        "over",
        "than",
        "below",
        "above",
    ]
)


@dataclass(frozen=True)
class RunbookHit:
    book: Runbook
    rank: float  # BM25 (lower is better), 0.0 when no word matched

    @property
    def first_step(self) -> str:
        """The runbook's first step, one line, as a narrative can quote it."""
        first = _STEP.split(self.book.sections.get("Steps", ""))[1:2]
        return _first_sentence(" ".join(first[0].split())) if first else ""


@dataclass(frozen=True)
class PastIncident:
    id: str
    first_seen: str
    severity: str
    resolution: str
    time_to_resolve_s: float | None


class Knowledge:
    def __init__(self, db_path: Path | None, runbooks_dir: Path) -> None:
        self.books = {b.id: b for b in load_runbooks(runbooks_dir)}
        self._lock = threading.Lock()  # the worker and an overflow fallback may both ask
        self._fts = sqlite3.connect(":memory:", check_same_thread=False)
        self._fts.execute("CREATE VIRTUAL TABLE books USING fts5(id UNINDEXED, title, body)")
        self._fts.executemany(
            "INSERT INTO books VALUES (?,?,?)",
            [(b.id, b.title, _book_text(b)) for b in self.books.values()],
        )
        self._db: sqlite3.Connection | None = None
        if db_path is not None:
            self._db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)

    def runbooks_for(
        self, itype: IncidentType, role: str, words: str, limit: int = 3
    ) -> list[RunbookHit]:
        """Runbooks for this incident type: those written first for the device's role ahead
        (a runbook lists its main role first), then by BM25 over the evidence words; ties
        broken by id so the choice is reproducible."""
        ranks = self._bm25(words)
        hits = [
            RunbookHit(b, ranks.get(b.id, 0.0))
            for b in self.books.values()
            if itype in b.incident_types
        ]
        hits.sort(key=lambda h: (_role_place(h.book, role), h.rank, h.book.id))
        return hits[:limit]

    def _bm25(self, text: str) -> dict[str, float]:
        words = sorted({w for w in _WORD.findall(text.lower()) if w not in _COMMON})
        if not words:
            return {}
        query = " OR ".join(f'"{w}"' for w in words)
        with self._lock:
            rows = self._fts.execute(
                "SELECT id, bm25(books) FROM books WHERE books MATCH ?", (query,)
            ).fetchall()
        return {str(i): float(r) for i, r in rows}

    def history(
        self, incident_id: str, itype: IncidentType, device: str, limit: int = 3
    ) -> list[PastIncident]:
        """This ship's earlier resolved incidents of the same type on the same device."""
        if self._db is None:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM incidents WHERE device=? AND type=? AND status='resolved'"
                " AND id<>? ORDER BY first_seen DESC LIMIT ?",
                (device, itype.value, incident_id, limit),
            ).fetchall()
        return [_past(orjson.loads(doc)) for (doc,) in rows]

    def close(self) -> None:
        self._fts.close()
        if self._db is not None:
            self._db.close()


def _role_place(book: Runbook, role: str) -> int:
    return book.roles.index(role) if role in book.roles else len(book.roles)


def _book_text(b: Runbook) -> str:
    kinds = " ".join(t.value.replace("_", " ") for t in b.incident_types)
    roles = " ".join(r.replace("_", " ") for r in b.roles)
    return f"{kinds} {roles} {b.sections.get('Symptoms', '')} {b.sections.get('Checks', '')}"


def _past(doc: dict[str, Any]) -> PastIncident:
    timeline = doc.get("timeline") or []
    resolved = [t for t in timeline if isinstance(t, dict) and t.get("event") == "resolved"]
    how = str(resolved[-1].get("detail", "")) if resolved else ""
    first, done = doc.get("first_seen"), doc.get("resolved_at")
    took = None
    if isinstance(first, str) and isinstance(done, str):
        took = (datetime.fromisoformat(done) - datetime.fromisoformat(first)).total_seconds()
    return PastIncident(str(doc["id"]), str(first), str(doc.get("severity")), how, took)


def _first_sentence(text: str) -> str:
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]
