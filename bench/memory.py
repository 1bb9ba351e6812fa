"""`seawatch bench memory`: how fast the hub's incident memory embeds, stores and finds.

Throughput, on the incidents a fleet really produces: fault plans replayed through the
ship's real pipeline on --fleet-ships simulated ships (`bench.insight.fleet_set`), each
incident labelled with its fault. Side by side on those incidents:
- the text: evidence lines verbatim (`raw_text`, how incidents were embedded before) and
  their gists (`incident_text`): tokens, distinct texts, similar-incident recall@5;
- the model alone: graph as shipped on raw text (before), fused graph on raw text, fused
  graph on gists (the default);
- per engine and thread count, the incidents arriving in order through
  `IncidentMemory.upsert_incidents` in the hub's batch size, on the real model and real
  Qdrant persisted in a temporary folder (Qdrant Edge and qdrant-client's local mode side
  by side, or the server given with --url): with the text cache (the hub's default), and
  without it, where every text goes through the model (the worst case: nothing repeats).
  Then a second version of each (resolved, same text): upsert without the model.
Each rate is the median of --passes passes, each on an empty memory and an empty cache.
Search: per engine, the collection is filled to each size with perturbed copies of real
vectors (those of varied synthetic incidents; the model would need minutes per 100k texts
and adds nothing to search cost), through the same upsert code; local mode fills in
memory, where it searches anyway. Then p50/p95/p99 of `similar()` by id, with and without
other_ships_only, and of a filtered `search()` without its query embedding, timed
separately on the real model.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bench import banner
from shared import log
from shared.models import EvidenceRef, Incident, TimelineEntry
from shared.policy import load_policy
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from shore_hub.memory import CachedEmbedder, Embedder, IncidentMemory, OnnxMiniLM, incident_text
from shore_hub.memory.embeddings import packaged_tokenizer

T = TypeVar("T")
SHIPS = [f"MV-{i:03d}" for i in range(1, 41)]
T0 = datetime(2026, 9, 1, tzinfo=UTC)
TARGET_RATE = 500.0  # incidents/s, embed + upsert
TARGET_P99_MS = 50.0  # similar-incident search at 100k vectors

# (type, device prefix, evidence templates): what ships really report, numbers varied.
KINDS: list[tuple[IncidentType, str, list[str]]] = [
    (IncidentType.LINK_DEGRADATION, "vsat", ["snr_db {f:.1f} < 12 for 60 s",
     "ber {e:.1e} > 1e-05", "esno_db fell {f:.1f} dB in {n} min while heavy rain reported"]),
    (IncidentType.LINK_DEGRADATION, "acu", ["acu.blocked 1 for {n} s at relative bearing {n}",
     "snr_db dropped {f:.1f} dB within 5 s"]),
    (IncidentType.COMMS_OUTAGE, "vsat", ["Rx lock lost {n} times in 10 min",
     "vsat.link_up 0 for {n} s"]),
    (IncidentType.RESOURCE_PRESSURE, "pos-srv", ["disk_pct {n} > 90 on /var",
     "No space left on device ({n} lines in 5 min)"]),
    (IncidentType.RESOURCE_PRESSURE, "fw", ["net.cpu_pct {n} > 90 for 180 s",
     "session table at {n} % of its limit"]),
    (IncidentType.NETWORK_ISSUE, "sw", ["if_errors_per_s {n} > 50 on Gi1/0/{n}",
     "Gi1/0/{n} changed state to down {n} times in 5 min"]),
    (IncidentType.APP_DEGRADATION, "crew-srv", ["portal.service: Main process exited, "
     "status=1/FAILURE, {n} times in 5 min"]),
    (IncidentType.SECURITY_ALERT, "crew-srv", ["sshd: {n} Failed password for invalid user "
     "from 10.20.{n}.{n} in 60 s"]),
    (IncidentType.HARDWARE_ENVIRONMENT, "sw", ["net.temp_c {n} > 55 for 60 s",
     "temperature above threshold, fan {n} failed"]),
    (IncidentType.NAVIGATION_DATA, "gps", ["GPS fix lost", "nav.fix_quality 0 for {n} s"]),
]  # fmt: skip
FIXES = ["rain-fade QoS profile, recovered after the squall", "failover to LEO, back 40 min later",
         "modem power-cycled", "logs rotated", "port patch lead replaced", "service restarted",
         "source blocked at firewall", "rack fan replaced", "passed by itself"]  # fmt: skip


def make_incidents(n: int, seed: int = 7) -> list[Incident]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        itype, prefix, templates = KINDS[i % len(KINDS)]
        device = f"{prefix}-{rng.randint(1, 4):02d}"
        first = T0 + timedelta(seconds=rng.uniform(0, 180 * 86_400))
        summaries = [
            t.format(f=rng.uniform(2, 11), e=rng.uniform(1e-5, 1e-3), n=rng.randint(3, 99))
            for t in rng.sample(templates, rng.randint(1, len(templates)))
        ]
        iid = f"BENCH-{i:07d}"
        out.append(
            Incident(
                tracking_id=iid, ship_id=rng.choice(SHIPS), ts=first, id=iid, version=1,
                type=itype, severity=Severity.HIGH, status=IncidentStatus.OPEN, device=device,
                devices=[device], corr_key=f"{itype.value}:{device}",
                suppress_key=f"{itype.value}:{device}", first_seen=first, last_seen=first,
                evidence=[
                    EvidenceRef(anomaly_id=f"{iid}-{k}", tracking_id=iid, ts=first,
                                detector="threshold", device=device, score=0.95, summary=s)
                    for k, s in enumerate(summaries)
                ],
            )
        )  # fmt: skip
    return out


def resolved(inc: Incident, rng: random.Random) -> Incident:
    at = inc.first_seen + timedelta(seconds=rng.uniform(600, 4 * 3600))
    entry = TimelineEntry(ts=at, version=2, event="resolved", detail=rng.choice(FIXES))
    return inc.model_copy(
        update={
            "version": 2,
            "status": IncidentStatus.RESOLVED,
            "resolved_at": at,
            "timeline": [*inc.timeline, entry],
        }  # fmt: skip
    )


class PerturbedEmbedder:
    """Unit vectors near the real ones: a text maps (by hash) to one of the real incident
    vectors plus Gaussian noise, so the filled collection has the real clusters."""

    name = "all-MiniLM-L6-v2-int8"  # same space as the vectors it perturbs
    dim = 384

    def __init__(self, base: np.ndarray[Any, Any], noise: float = 0.03) -> None:
        self.base = base
        self.noise = noise
        self.rng = np.random.default_rng(11)

    def embed(self, texts: list[str]) -> np.ndarray[Any, Any]:
        rows = [zlib.crc32(t.encode()) % len(self.base) for t in texts]
        v = self.base[rows] + self.rng.normal(0, self.noise, (len(texts), self.dim))
        unit: np.ndarray[Any, Any] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(
            np.float32
        )
        return unit

    def close(self) -> None:
        """Nothing to release."""


def _backends(args: argparse.Namespace) -> list[str]:
    return ["server"] if args.url else args.engines


def _open(embedder: Any, args: argparse.Namespace, backend: str, path: Path | None) -> Any:
    if backend == "server":
        namespace = f"bench_{uuid.uuid4().hex[:8]}_"
        memory = IncidentMemory(embedder, url=args.url, namespace=namespace)
    else:
        memory = IncidentMemory(embedder, path=path, engine=backend)
    memory.ensure_collections()
    return memory


def _close(memory: IncidentMemory) -> None:
    if not memory.local:
        memory.drop_collections()
    memory.close()


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _thread_counts(args: argparse.Namespace) -> list[int]:
    return sorted({1, args.threads, os.cpu_count() or 1})


def raw_text(incident: Incident) -> str:
    """The text incidents were embedded as before gists: evidence lines verbatim (up to
    8), and the narrative. The reference the gists are measured against."""
    summaries = dict.fromkeys(e.summary.strip() for e in incident.evidence if e.summary.strip())
    narrative = [incident.narrative] if incident.narrative else []
    where = [f"{incident.device} ({incident.service})" if incident.service else incident.device]
    return ". ".join([incident.type.value.replace("_", " "), *where, *narrative,
                      *list(summaries)[:8]])  # fmt: skip


def model_rates(args: argparse.Namespace, raw: list[str], gists: list[str]) -> dict[str, float]:
    """Texts/s of the model alone (`--threads`): before (shipped graph, raw text), fused
    graph on raw text, fused graph on gists. Each text once, as if none repeated."""
    out = {}
    for name, fused, texts in (("before", False, raw), ("fused", True, raw),
                               ("gists", True, gists)):  # fmt: skip
        model = OnnxMiniLM(threads=args.threads, fused=fused)
        model.embed(texts[:64])  # warm-up
        out[name] = statistics.median(
            _rate(model.embed, _batches(texts, args.batch)) for _ in range(args.passes)
        )
        model.close()
    return out


def throughput(
    args: argparse.Namespace,
    incidents: list[Incident],
    backend: str,
    threads: int,
    cached: bool,
    work: Path,
) -> dict[str, float]:
    """embed + upsert of new incidents, then upsert alone (new versions, same text); the
    median of `args.passes` passes, each on an empty memory (and cache)."""
    rng = random.Random(3)
    second = [resolved(i, rng) for i in incidents]
    upserts, reversions = [], []
    for n in range(args.passes):
        model = OnnxMiniLM(threads=threads)
        model.embed(["warm-up"])
        embedder: Embedder = CachedEmbedder(model) if cached else model
        memory = _open(embedder, args, backend, work / f"{backend}-{threads}-{cached}-{n}")
        upserts.append(_rate(memory.upsert_incidents, _batches(incidents, args.batch)))
        reversions.append(_rate(memory.upsert_incidents, _batches(second, args.batch)))
        _close(memory)  # and the model
    return {"upsert": statistics.median(upserts), "reversion": statistics.median(reversions)}


def _mean_tokens(texts: list[str]) -> float:
    """Tokens per text, uncut (the model reads the first 128)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(packaged_tokenizer()))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return statistics.fmean(len(e.ids) for e in tokenizer.encode_batch(texts))


def recall_at_5(vectors: np.ndarray[Any, Any], labels: list[str]) -> float:
    """Mean recall@5 of exact nearest neighbours (cosine, the incident itself excluded)
    against the fault labels, over incidents whose fault has other incidents."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    total = Counter(labels)
    recalls = []
    for row, label in enumerate(labels):
        if total[label] > 1:
            top = np.argpartition(-scores[row], 5)[:5]
            recalls.append(sum(labels[i] == label for i in top) / min(5, total[label] - 1))
    return statistics.fmean(recalls)


def _rate(fn: Callable[[list[T]], object], batches: list[list[T]]) -> float:
    """Items per second through fn, one batch after the other."""
    start = time.perf_counter()
    for batch in batches:
        fn(batch)
    return sum(map(len, batches)) / (time.perf_counter() - start)


def _latency(fn: Callable[[T], object], items: list[T]) -> tuple[float, float, float]:
    """p50, p95 and p99 in milliseconds of fn(item), one item after the other."""
    ms = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        ms.append((time.perf_counter() - start) * 1000)
    ms.sort()
    p50, p95, p99 = (ms[round(q * (len(ms) - 1))] for q in (0.5, 0.95, 0.99))
    return p50, p95, p99


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def _engines(text: str) -> list[str]:
    return text.split(",")


def search_latency(
    args: argparse.Namespace, backend: str, base: np.ndarray[Any, Any]
) -> list[dict[str, Any]]:
    memory = _open(PerturbedEmbedder(base), args, backend, None)
    fill = make_incidents(max(args.sizes), seed=11)
    rng = random.Random(5)
    results, filled = [], 0
    for size in sorted(args.sizes):
        slowest, start = 0.0, time.perf_counter()
        for batch in _batches(fill[filled:size], 2000):
            call = time.perf_counter()
            memory.upsert_incidents(batch)
            slowest = max(slowest, time.perf_counter() - call)
        row: dict[str, Any] = {"size": memory.count(), "fill_s": time.perf_counter() - start}
        row["slowest_upsert_s"] = slowest
        filled = size
        probes = rng.sample(fill[:filled], min(args.queries, filled))
        row["similar"] = _latency(lambda p: memory.similar(p.id), probes)
        row["similar_other"] = _latency(lambda p: memory.similar(p.id, True), probes)
        row["search_ship"] = _latency(lambda p: memory.search("rain", ship=p.ship_id), probes)
        results.append(row)
    _close(memory)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleet-ships", type=int, default=10,
                        help="simulated ships whose incidents are embedded")  # fmt: skip
    parser.add_argument("--fleet-rounds", type=int, default=2, help="fault rounds per ship")
    parser.add_argument("--passes", type=int, default=5, help="passes per rate (median)")
    parser.add_argument("--incidents", type=int, default=2000,
                        help="synthetic incidents whose vectors seed the search fill")  # fmt: skip
    parser.add_argument("--sizes", type=_sizes, default=[10_000, 100_000],
                        help="collection sizes for search latency, comma-separated")  # fmt: skip
    parser.add_argument("--queries", type=int, default=100, help="queries per size and kind")
    parser.add_argument("--batch", type=int, default=64, help="incidents per upsert")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--engines", type=_engines, default=["edge", "local"],
                        help="embedded engines to compare, comma-separated")  # fmt: skip
    parser.add_argument("--url", help="a Qdrant server instead of the embedded engines")


def _row(name: str, values: list[str], note: str = "") -> None:
    print(f"  {name:<50}" + "".join(f"{v:>22}" for v in values) + (f"  {note}" if note else ""))


def _verdict(ok: bool) -> str:
    return "meets target" if ok else "misses target"


def main(args: argparse.Namespace) -> int:
    # qdrant-client warns past 20k points in local mode; the table below shows why.
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    backends = _backends(args)
    print(banner("memory", ", ".join(backends) + (f" {args.url}" if args.url else "")))
    log.configure("WARNING")
    from bench.insight import fleet_set

    labelled = fleet_set(load_policy(), args.fleet_ships, args.fleet_rounds)
    incidents = [d.incident for d in labelled]
    raw, gists = [raw_text(i) for i in incidents], [incident_text(i) for i in incidents]
    tokens = {name: _mean_tokens(t) for name, t in (("raw", raw), ("gists", gists))}
    model = OnnxMiniLM()
    print(
        f"\nthroughput: {len(incidents):,} incidents from the ship pipeline on "
        f"{args.fleet_ships} simulated ships ({len({d.scenario for d in labelled})} faults), "
        f"in the order they opened, batches of {args.batch}, all-MiniLM-L6-v2 int8 on "
        f"onnxruntime, {args.threads} thread(s) where not said, median of {args.passes} passes"
    )
    _row("embedded text", ["raw evidence lines", "gists (default)"])
    _row("tokens per text, mean", [f"{tokens['raw']:.1f}", f"{tokens['gists']:.1f}"])
    _row("distinct texts", [f"{len(set(raw))}", f"{len(set(gists))}"])
    labels = [d.scenario for d in labelled]
    _row("similar-incident recall@5 (exact kNN)",
         [f"{recall_at_5(model.embed(t), labels):.3f}" for t in (raw, gists)])  # fmt: skip
    rates = model_rates(args, raw, gists)
    _row("model alone, texts/s", ["before", "fused, raw", "fused, gists"])
    _row("", [f"{rates[k]:,.0f}" for k in ("before", "fused", "gists")],
         f"{rates['gists'] / rates['before']:.1f}x before")  # fmt: skip
    query = _latency(lambda text: model.embed([text]), gists[:100])
    _row("embed one query text, p50 / p99 (ms)", [f"{query[0]:.1f}", f"{query[2]:.1f}"])
    model.close()
    with tempfile.TemporaryDirectory(prefix="seawatch-bench-memory-") as tmp:
        runs = {
            (b, n, c): throughput(args, incidents, b, n, c, Path(tmp))
            for n in _thread_counts(args)
            for c in (True, False)
            for b in backends
        }
    _row(f"incidents/s, {'server' if args.url else 'persisted in a folder'}", backends)
    for n in _thread_counts(args):
        for cached, how in ((True, "text cache (default)"), (False, "every text new")):
            got = [runs[b, n, cached]["upsert"] for b in backends]
            verdicts = [
                f"{b}: {_verdict(r >= TARGET_RATE)}" for b, r in zip(backends, got, strict=True)
            ]
            _row(f"embed + upsert, {n} thread(s), {how}", [f"{r:,.0f}" for r in got],
                 " | ".join(verdicts) + f" (>= {TARGET_RATE:.0f}/s)")  # fmt: skip
    alone = [runs[b, args.threads, True]["reversion"] for b in backends]
    _row("upsert alone (new version, same text)", [f"{r:,.0f}" for r in alone])

    texts = [raw_text(i) for i in make_incidents(args.incidents)]
    base = OnnxMiniLM().embed(texts)
    rows = {b: search_latency(args, b, base) for b in backends}
    print(
        f"\nsearch latency in ms, {args.queries} queries per line; the collection is filled "
        f"with perturbed copies of the {len(texts):,} real vectors (inserted through "
        "upsert_incidents; local mode in memory), not with model output"
    )
    for i, size in enumerate(sorted(args.sizes)):
        print(f"  {size:,} vectors: " + ", ".join(
            f"{b} filled in {rows[b][i]['fill_s']:.0f} s (slowest upsert call "
            f"{rows[b][i]['slowest_upsert_s']:.1f} s)" for b in backends))  # fmt: skip
        _row(
            "",
            [f"{b} p50/p95/p99" for b in backends] + (["ratio p99"] if len(backends) > 1 else []),
        )
        for key, label in (
            ("similar", "similar(id), limit 5"),
            ("similar_other", "similar(id, other_ships_only)"),
            ("search_ship", "search(text, ship=...), Qdrant part"),
        ):
            cells = [rows[b][i][key] for b in backends]
            ratio = [f"{cells[1][2] / cells[0][2]:,.0f}x"] if len(backends) > 1 else []
            note = ""
            if key == "similar" and size >= 100_000:
                note = (
                    " | ".join(
                        f"{b}: {_verdict(c[2] <= TARGET_P99_MS)}"
                        for b, c in zip(backends, cells, strict=True)
                    )
                    + f" (p99 <= {TARGET_P99_MS:.0f} ms)"
                )
            _row(label, ["/".join(f"{x:.1f}" for x in c) for c in cells] + ratio, note)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
