"""Incident memory: the real MiniLM model on onnxruntime, real Qdrant (Qdrant Edge and
qdrant-client's local mode, and a server when SEAWATCH_QDRANT_URL is set), the real
runbooks, a real HTTP embedding peer."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import qdrant_edge

import shore_hub.memory as memory_pkg
from policies import runbooks_dir
from shared.models import EvidenceRef, Incident, TimelineEntry
from shared.policy import load_policy
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from shore_hub.memory import (
    BackendError,
    BackendUnavailable,
    CachedEmbedder,
    HttpEmbedder,
    IncidentMemory,
    NotIndexed,
    OnnxMiniLM,
    RunbookError,
    default_embedder,
    evidence_gist,
    incident_text,
    load_runbooks,
)
from shore_hub.memory.embeddings import fuse, packaged_model

SERVER = os.environ.get("SEAWATCH_QDRANT_URL")
T0 = datetime(2026, 9, 21, 14, 0, tzinfo=UTC)
BACKENDS = [
    pytest.param("edge", id="edge"),
    pytest.param("local", id="local"),
    pytest.param(
        "server",
        id="server",
        marks=pytest.mark.skipif(
            not SERVER, reason="no Qdrant server: set SEAWATCH_QDRANT_URL=http://host:6333"
        ),
    ),
]


@pytest.fixture(scope="module")
def embedder() -> OnnxMiniLM:
    return OnnxMiniLM()


@pytest.fixture(scope="module")
def shipped() -> OnnxMiniLM:
    """The model's graph as shipped, with float activations: the fused one's reference."""
    return OnnxMiniLM(fused=False)


@pytest.fixture(params=BACKENDS)
def memory(
    request: pytest.FixtureRequest, embedder: OnnxMiniLM, tmp_path: Path
) -> Iterator[IncidentMemory]:
    if request.param in ("edge", "local"):
        mem = IncidentMemory(embedder, path=tmp_path / "qdrant", engine=request.param)
    else:
        mem = IncidentMemory(embedder, url=SERVER, namespace=f"t{uuid.uuid4().hex[:10]}_")
    mem.ensure_collections()
    yield mem
    if not mem.local:
        mem.drop_collections()
    mem.close()


def incident(
    iid: str,
    ship: str,
    itype: IncidentType,
    device: str,
    summaries: list[str],
    *,
    version: int = 1,
    hours_ago: float = 0.0,
    resolved: str | None = None,
    resolve_s: float = 1800.0,
    severity: Severity = Severity.HIGH,
) -> Incident:
    first = T0 - timedelta(hours=hours_ago)
    evidence = [
        EvidenceRef(anomaly_id=f"{iid}-a{i}", tracking_id=f"{iid}-t{i}", ts=first,
                    detector="threshold", device=device, score=0.95, summary=s)
        for i, s in enumerate(summaries)
    ]  # fmt: skip
    timeline = [TimelineEntry(ts=first, version=1, event="opened", detail=summaries[0])]
    resolved_at = None
    if resolved is not None:
        resolved_at = first + timedelta(seconds=resolve_s)
        timeline.append(TimelineEntry(ts=resolved_at, version=version, event="resolved",
                                      detail=resolved))  # fmt: skip
    return Incident(
        tracking_id=f"{iid}-t0", ship_id=ship, ts=first, id=iid, version=version, type=itype,
        severity=severity,
        status=IncidentStatus.RESOLVED if resolved else IncidentStatus.OPEN,
        device=device, devices=[device], corr_key=f"{itype.value}:{device}",
        suppress_key=f"{itype.value}:{device}", first_seen=first, last_seen=first,
        anomaly_count=len(summaries), evidence=evidence, timeline=timeline,
        resolved_at=resolved_at,
    )  # fmt: skip


RAIN = ["snr_db 8.9 < 12 for 60 s during heavy rain", "ber 3e-5 > 1e-5", "esno_db falling"]


def fleet() -> list[Incident]:
    return [
        incident("A-now", "MV-ALPHA", IncidentType.LINK_DEGRADATION, "vsat-01", RAIN),
        incident("B-rain", "MV-BRAVO", IncidentType.LINK_DEGRADATION, "vsat-01",
                 ["snr_db 9.4 < 12 in a rain squall", "ber 2e-5 > 1e-5"], hours_ago=30,
                 resolved="rain-fade QoS profile applied; SNR back above 12 dB after the squall",
                 resolve_s=2400),
        incident("C-disk", "MV-CHARLIE", IncidentType.RESOURCE_PRESSURE, "pos-srv-01",
                 ["disk_pct 97 > 90: No space left on device"], hours_ago=5,
                 resolved="rotated logs", severity=Severity.MEDIUM),
        incident("D-ssh", "MV-DELTA", IncidentType.SECURITY_ALERT, "crew-srv-02",
                 ["sshd: 40 Failed password for invalid user in 60 s"], hours_ago=2),
        incident("A-old", "MV-ALPHA", IncidentType.LINK_DEGRADATION, "vsat-01",
                 ["snr_db 10.1 < 12 while raining", "ber 1.5e-5 > 1e-5"], hours_ago=200,
                 resolved="passed by itself"),
    ]  # fmt: skip


def cosine(a: Any, b: Any) -> float:
    return float(np.dot(a, b))


# ---------------------------------------------------------------- embeddings


def test_onnx_vectors_are_384_unit_vectors_in_input_order(
    embedder: OnnxMiniLM, shipped: OnnxMiniLM
) -> None:
    texts = ["VSAT link down", "", "disk full on the POS server " * 80]
    for model in (embedder, shipped):
        vectors = model.embed(texts)
        assert vectors.shape == (3, 384) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert model.embed([]).shape == (0, 384)
    # padding must not leak into the mean: alone or beside a 128-token text, the same vector
    assert cosine(shipped.embed(["VSAT link down"])[0], shipped.embed(texts)[0]) > 0.9999
    # the fused graph quantises each batch's activations with one scale: nearly the same
    assert cosine(embedder.embed(["VSAT link down"])[0], embedder.embed(texts)[0]) > 0.98


def test_onnx_similar_sentences_score_higher_than_unrelated(embedder: OnnxMiniLM) -> None:
    rain, fade, disk, gps = embedder.embed([
        "VSAT SNR dropping during heavy rain",
        "rain fade on the satellite modem, Es/No falling in a downpour",
        "No space left on device on the reservations server",
        "GPS receiver lost its fix",
    ])  # fmt: skip
    assert cosine(rain, fade) > 0.45
    assert cosine(rain, fade) > cosine(rain, disk) + 0.3
    assert cosine(rain, fade) > cosine(rain, gps) + 0.2


def test_fused_graph_multiplies_the_int8_weights_as_int8() -> None:
    ops = Counter(node.op_type for node in fuse(onnx.load(packaged_model())).graph.node)
    assert ops["DynamicQuantizeMatMul"] == 36  # Q, K, V, output, up and down in 6 layers
    assert ops["Cast"] == 3  # the mask and two embedding tables (looked up, not multiplied)
    assert ops["MatMul"] == 12  # query x key and weights x value, in float
    assert (ops["Gelu"], ops["Erf"], ops["IsNaN"], ops["Where"]) == (6, 0, 0, 1)


def test_fused_graph_points_where_the_shipped_graph_does(
    embedder: OnnxMiniLM, shipped: OnnxMiniLM
) -> None:
    """x is quantised to uint8 on the fly, per batch: the vectors move a little, not their
    meaning. The default embedder runs the fused graph (its vectors are not the shipped
    graph's). A one-letter text, batched with longer ones, moves most."""
    texts = [incident_text(i) for i in fleet()] + ["VSAT link down", "GPS fix lost"]
    agreement = np.sum(embedder.embed([*texts, "x"]) * shipped.embed([*texts, "x"]), axis=1)
    assert agreement[:-1].min() > 0.98 and agreement[-1] > 0.97
    assert agreement.min() < 0.9999


def test_threads_run_batches_side_by_side_and_keep_the_order() -> None:
    texts = [f"{'VSAT link down ' * n}on MV-{n:03d}" for n in (5, 1, 9, 3, 7, 2, 8)]
    one, two = OnnxMiniLM(batch_size=2), OnnxMiniLM(batch_size=2, threads=2)
    assert np.array_equal(one.embed(texts), two.embed(texts))
    two.close()


def test_onnx_missing_model_file_is_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="cannot load"):
        OnnxMiniLM(model_path=tmp_path / "absent.onnx")


# ---------------------------------------------------------------- incidents


def test_upsert_is_idempotent(memory: IncidentMemory) -> None:
    incidents = fleet()
    assert memory.upsert_incidents(incidents) == 5
    assert memory.upsert_incidents(incidents) == 0
    assert memory.upsert_incidents([incidents[0], incidents[0]]) == 0
    assert memory.count() == 5


def test_newer_version_replaces_and_older_replay_is_ignored(memory: IncidentMemory) -> None:
    v1 = incident("X-1", "MV-ECHO", IncidentType.COMMS_OUTAGE, "vsat-02", ["Rx lock lost x3"])
    v2 = incident("X-1", "MV-ECHO", IncidentType.COMMS_OUTAGE, "vsat-02", ["Rx lock lost x3"],
                  version=2, resolved="modem power-cycled, lock back", resolve_s=900)  # fmt: skip
    assert memory.upsert_incidents([v1]) == 1
    assert memory.upsert_incidents([v2]) == 1
    assert memory.upsert_incidents([v1]) == 0  # a late replay of the old version
    assert memory.count() == 1
    [hit] = memory.search("satellite modem lost lock", limit=5)
    assert (hit["id"], hit["version"], hit["status"]) == ("X-1", 2, "resolved")
    assert hit["resolution"] == "modem power-cycled, lock back"
    assert hit["time_to_resolve_s"] == pytest.approx(900)


def test_new_version_with_same_text_reuses_the_vector(embedder: OnnxMiniLM, tmp_path: Path) -> None:
    counted = RecordingEmbedder(embedder)
    mem = IncidentMemory(counted, path=tmp_path / "q")
    mem.ensure_collections()
    v1 = incident("Y-1", "MV-FOX", IncidentType.NETWORK_ISSUE, "sw-03", ["port 12 flapping"])
    ack = v1.model_copy(update={"version": 2, "status": IncidentStatus.ACKNOWLEDGED})
    more = incident("Y-1", "MV-FOX", IncidentType.NETWORK_ISSUE, "sw-03",
                    ["port 12 flapping", "crc errors 300/s"], version=3)  # fmt: skip
    assert mem.upsert_incidents([v1]) == 1 and counted.texts == 1
    assert mem.upsert_incidents([ack]) == 1 and counted.texts == 1
    assert mem.upsert_incidents([more]) == 1 and counted.texts == 2
    assert mem.search("switch port errors")[0]["status"] == "open"
    mem.close()


def test_embedded_text_names_the_problem_the_device_role_and_the_evidence(
    embedder: OnnxMiniLM,
) -> None:
    recorder = RecordingEmbedder(embedder)
    mem = IncidentMemory(recorder, role_of=load_policy().ingest.role_of)
    mem.ensure_collections()
    odd = incident("Z-1", "MV-GOLF", IncidentType.APP_DEGRADATION, "kiosk7", ["x"] * 3 + ["y"])
    mem.upsert_incidents([fleet()[0], odd])
    assert recorder.seen == [
        "link degradation. vsat modem vsat-01. snr db < for s during heavy rain. ber >. "
        "esno db falling",
        "app degradation. kiosk7. x. y",  # no role known: none invented
    ]
    mem.close()


# One line in each form the ship's detectors write (ship_agent/detect/), and its gist.
GISTS = [
    ("vsat.snr_db < 12 for 60 s (now 8.42)", "vsat snr db low"),  # thresholds.py
    ("host.disk_pct >= 90 for 300 s (now 97.3)", "host disk pct high"),
    ("vsat.ber = 7.63e-05, expected about 3.93e-08 (+0.1 deviations): unlikely run",
     "vsat ber unusually high"),  # robust.py
    ("nav.sats = 3, expected about 10.8889 (-7.4 deviations): beyond its whole observed range",
     "nav sats unusually low"),
    ("net.temp_c shifted up: now 58.2, expected about 35.3019", "net temp c rose"),
    ("vsat.link_up shifted down: now 0, expected about 0.98", "vsat link up fell"),
    ("20 lines matching /Failed password|Invalid user/ in 60 s",
     "log lines: Failed password|Invalid user"),  # logs.py
    ("50 error-level lines in 60 s", "error-level log lines"),
    ("rare log template #72 (2 seen): Out of memory: Killed process <NUM> (mediasrv) <*> "
     "file-rss:0kB, shmem-rss:0kB, UID:<NUM>", "log: Out of memory: Killed process (mediasrv) "
     "file-rss"),
    ("new log template #85 (1 seen): rain fade: Es/No <NUM> dB, fade margin <NUM> dB",
     "log: rain fade: Es/No dB, fade margin dB"),
    ("unusual combination of 4 KPIs (half-space score 0.93)",
     "unusual combination of KPIs"),  # hst.py
    ("port Gi1/0/24 on sw-03 went down at 47C", "port Gi1/0/24 on sw-03 went down at"),
]  # fmt: skip


@pytest.mark.parametrize(("summary", "gist"), GISTS)
def test_evidence_gist_keeps_the_signal_and_drops_the_readings(summary: str, gist: str) -> None:
    assert evidence_gist(summary) == gist


def test_the_same_fault_elsewhere_reads_the_same_and_costs_no_model_time(
    embedder: OnnxMiniLM, tmp_path: Path
) -> None:
    """Other readings, another ship, a narrative added later: one text, embedded once."""
    counted = RecordingEmbedder(embedder)
    mem = IncidentMemory(CachedEmbedder(counted), path=tmp_path / "q")
    mem.ensure_collections()

    def fade(iid: str, ship: str, snr: float, z: float) -> Incident:
        lines = [f"vsat.snr_db < 12 for {int(snr * 10)} s (now {snr})",
                 f"vsat.esno_db = {snr - 2}, expected about 12.9 ({z:+.1f} deviations): "
                 "unlikely run", f"vsat.snr_db < 12 for 90 s (now {snr + 0.3})"]  # fmt: skip
        return incident(iid, ship, IncidentType.LINK_DEGRADATION, "vsat-modem-01", lines)

    here, there = fade("F-1", "MV-ALPHA", 8.4, -18.2), fade("F-2", "MV-BRAVO", 10.1, -6.0)
    assert (
        incident_text(here)
        == incident_text(there)
        == ("link degradation. vsat-modem-01. vsat snr db low. vsat esno db unusually low")
    )
    explained = here.model_copy(update={"version": 2, "narrative": "Rain fade on the VSAT."})
    assert mem.upsert_incidents([here, there]) == 2 and counted.seen == [incident_text(here)]
    assert mem.upsert_incidents([explained]) == 1 and counted.texts == 1
    [first, second] = mem.similar("F-1", limit=2) + mem.similar("F-2", limit=1)
    assert (first["id"], second["id"]) == ("F-2", "F-1")
    mem.close()


def test_cache_embeds_each_new_text_once_and_forgets_the_least_used(
    embedder: OnnxMiniLM,
) -> None:
    counted = RecordingEmbedder(embedder)
    cached = CachedEmbedder(counted, size=2)
    vectors = cached.embed(["VSAT link down", "disk full", "VSAT link down"])
    assert counted.seen == ["VSAT link down", "disk full"]
    assert np.array_equal(vectors, embedder.embed(["VSAT link down", "disk full"])[[0, 1, 0]])
    cached.embed(["VSAT link down"])  # used again: now "disk full" is the least recent
    cached.embed(["GPS fix lost"])
    cached.embed(["VSAT link down", "disk full", "GPS fix lost"])
    assert counted.seen[2:] == ["GPS fix lost", "disk full"]
    assert (cached.name, cached.dim) == (embedder.name, embedder.dim)
    assert isinstance(default_embedder(), CachedEmbedder)


def test_similar_finds_the_same_problem_on_another_ship_with_its_fix(
    memory: IncidentMemory,
) -> None:
    memory.upsert_incidents(fleet())
    found = memory.similar("A-now", limit=4, other_ships_only=True)
    assert [f["id"] for f in found][0] == "B-rain"
    assert {f["ship"] for f in found}.isdisjoint({"MV-ALPHA"})
    best = found[0]
    assert best["resolution"].startswith("rain-fade QoS profile")
    assert best["time_to_resolve_s"] == pytest.approx(2400)
    assert best["type"] == "link_degradation" and best["score"] > found[1]["score"]
    everyone = memory.similar("A-now", limit=4)
    assert "A-now" not in {f["id"] for f in everyone}
    assert [f["id"] for f in everyone][:2] in (["B-rain", "A-old"], ["A-old", "B-rain"])


def test_similar_to_an_incident_not_stored_yet(memory: IncidentMemory) -> None:
    memory.upsert_incidents(fleet()[1:])
    fresh = fleet()[0]
    assert memory.similar(fresh, limit=1, other_ships_only=True)[0]["id"] == "B-rain"
    with pytest.raises(NotIndexed, match="A-now"):
        memory.similar("A-now")


def test_other_ships_only_falls_back_to_a_filtered_query(memory: IncidentMemory) -> None:
    """Eight near-copies on the same ship fill the unfiltered candidates."""
    same = [
        incident(f"S-{i}", "MV-ALPHA", IncidentType.LINK_DEGRADATION, "vsat-01", RAIN,
                 hours_ago=i + 1)
        for i in range(8)
    ]  # fmt: skip
    memory.upsert_incidents([*fleet(), *same])
    found = memory.similar("A-now", limit=1, other_ships_only=True)
    assert [f["id"] for f in found] == ["B-rain"]


def test_search_filters_and_ship_scope(memory: IncidentMemory) -> None:
    memory.upsert_incidents(fleet())
    query = "satellite link degraded"
    assert {h["id"] for h in memory.search(query, ship="MV-ALPHA")} == {"A-now", "A-old"}
    assert {h["id"] for h in memory.search(query, type="security_alert")} == {"D-ssh"}
    assert {h["id"] for h in memory.search(query, severity="medium")} == {"C-disk"}
    recent = memory.search(query, since=T0 - timedelta(hours=6))
    assert {h["id"] for h in recent} == {"A-now", "C-disk", "D-ssh"}
    window = memory.search(query, since=(T0 - timedelta(hours=40)).timestamp(),
                           until=T0 - timedelta(hours=3))  # fmt: skip
    assert {h["id"] for h in window} == {"B-rain", "C-disk"}
    scoped = memory.search(query, ships=["MV-BRAVO", "MV-DELTA"])
    assert {h["ship"] for h in scoped} == {"MV-BRAVO", "MV-DELTA"}
    assert memory.search(query, ships=[]) == []
    assert memory.search(query, limit=2)[0]["id"] in {"A-now", "B-rain", "A-old"}
    with pytest.raises(ValueError, match="timezone"):
        memory.search(query, since=datetime(2026, 1, 1))  # noqa: DTZ001


class ClusteredEmbedder:
    """Unit vectors near one of 50 random centres, chosen by the text: fills a collection
    with what real incidents look like (clusters) without the model's time."""

    name, dim = "clustered", 384

    def __init__(self) -> None:
        self.rng = np.random.default_rng(3)
        self.centres = self.rng.normal(size=(50, self.dim))

    def embed(self, texts: list[str]) -> Any:
        rows = [sum(map(ord, t)) % 50 for t in texts]
        v = self.centres[rows] + self.rng.normal(0, 0.1, (len(texts), self.dim))
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    def close(self) -> None:
        pass


def test_edge_indexes_the_filtered_fields_and_builds_hnsw(tmp_path: Path) -> None:
    """Payload indexes for the API's filters; HNSW once thousands of points wait for it."""
    mem = IncidentMemory(ClusteredEmbedder(), path=tmp_path / "q")
    mem.ensure_collections()
    base = fleet()[0]
    many = [
        base.model_copy(update={"id": f"R-{i}", "ship_id": f"MV-{i % 40}", "device": f"sw-{i}"})
        for i in range(8000)
    ]
    for start in range(0, len(many), 2000):
        assert mem.upsert_incidents(many[start : start + 2000]) == 2000
    hits = mem.search("anything", ship="MV-7", limit=20)
    assert len(hits) == 20 and {h["ship"] for h in hits} == {"MV-7"}
    mem.close()
    shard = qdrant_edge.EdgeShard.load(str(tmp_path / "q" / "incidents"))
    info = shard.info()
    shard.close()
    assert set(info.payload_schema) == {"ship_id", "type", "severity", "status", "ts"}
    assert info.points_count == 8000 and info.indexed_vectors_count >= 6000


# ---------------------------------------------------------------- runbooks


def test_runbooks_index_and_search(memory: IncidentMemory, tmp_path: Path) -> None:
    assert memory.index_runbooks(runbooks_dir()) == 18
    assert memory.index_runbooks(runbooks_dir()) == 18
    assert memory.count("runbooks") == 18
    top = memory.search_runbooks("SNR dropping in heavy rain", limit=3)
    assert top[0]["id"] == "RB-01" and top[0]["title"] == "VSAT rain fade"
    assert top[0]["path"] == "RB-01-vsat-rain-fade.md" and top[0]["score"] > top[1]["score"]
    gps = memory.search_runbooks("GPS fix lost", limit=1)[0]
    assert gps["id"] == "RB-10" and gps["allowed_actions"] == []
    assert memory.search_runbooks("guests on wifi get no IP address", 1)[0]["id"] == "RB-13"
    # re-indexing a folder leaves exactly its runbooks
    small = tmp_path / "rb"
    small.mkdir()
    for name in ("RB-07-disk-full.md", "RB-10-gps-loss.md"):
        (small / name).write_text((runbooks_dir() / name).read_text())
    assert memory.index_runbooks(small) == 2
    assert memory.count("runbooks") == 2
    assert memory.search_runbooks("SNR dropping in heavy rain", 1)[0]["id"] in {"RB-07", "RB-10"}


def test_starter_runbooks_are_complete_and_safe() -> None:
    books = load_runbooks(runbooks_dir())
    assert [b.id for b in books] == [f"RB-{i:02d}" for i in range(1, 19)]
    for book in books:
        assert set(book.sections) >= {"Symptoms", "Checks", "Steps", "Escalate"}
        if {t.value for t in book.incident_types} & {"navigation_data", "safety"}:
            assert book.allowed_actions == ()


GOOD = """---
id: RB-90
title: Test runbook
incident_types: [network_issue]
roles: [switch]
allowed_actions: [reset_connection]
---
## Symptoms
x
## Checks
x
## Steps
x
## Escalate
x
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("title: Test runbook\n", "", "field 'title': missing"),
        ("roles:", "owner: me\nroles:", "field 'owner': unknown"),
        ("RB-90", "runbook 9", "field 'id': 'runbook 9' is not like RB-01"),
        ("[network_issue]", "[network_isue]", "field 'incident_types': 'network_isue'"),
        ("[network_issue]", "[]", "field 'incident_types': must be a non-empty"),
        ("[reset_connection]", "[format_disk]", "field 'allowed_actions': 'format_disk'"),
        ("[network_issue]", "[navigation_data]", "field 'allowed_actions': must be empty"),
        ("[switch]", "[Switch Room]", "field 'roles': 'Switch Room'"),
        ("[switch]", "switch", "field 'roles': must be a non-empty list"),
        ("[switch]", "[switch, switch]", "field 'roles': lists a value twice"),
        ("---\nid:", "id:", "must start with a '---' line"),
        ("---\n## Symptoms", "## Symptoms", "no closing '---'"),
        ("roles: [switch]", "roles: [switch", "not valid YAML"),
        ("## Checks", "## Check", "section '## Checks': missing"),
    ],
)
def test_runbook_loader_names_the_file_and_field(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in GOOD
    (tmp_path / "RB-90-test.md").write_text(GOOD.replace(old, new))
    with pytest.raises(RunbookError, match="RB-90-test.md") as err:
        load_runbooks(tmp_path)
    assert message in str(err.value)


def test_runbook_ids_must_be_unique(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(GOOD)
    (tmp_path / "b.md").write_text(GOOD)
    (tmp_path / "README.md").write_text("# how to write a runbook\n")
    with pytest.raises(RunbookError, match="b.md: field 'id': RB-90 is also used by a.md"):
        load_runbooks(tmp_path)
    (tmp_path / "b.md").unlink()
    assert [b.id for b in load_runbooks(tmp_path, allowed_actions=["reset_connection"])] == [
        "RB-90"
    ]


# ---------------------------------------------------------------- backends and errors


class RecordingEmbedder:
    """The real embedder, keeping the texts it is asked to embed."""

    def __init__(self, inner: OnnxMiniLM) -> None:
        self.inner = inner
        self.seen: list[str] = []
        self.name, self.dim = inner.name, inner.dim

    @property
    def texts(self) -> int:
        return len(self.seen)

    def embed(self, texts: list[str]) -> Any:
        self.seen.extend(texts)
        return self.inner.embed(texts)

    def close(self) -> None:
        self.inner.close()


class EmbeddingPeer(ThreadingHTTPServer):
    """An OpenAI-compatible /v1/embeddings endpoint that serves the real model's vectors,
    answering out of index order; `status` and `body` make it misbehave on purpose."""

    def __init__(self, embedder: OnnxMiniLM) -> None:
        super().__init__(("127.0.0.1", 0), _PeerHandler)
        self.embedder = embedder
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.body: bytes | None = None
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"


class _PeerHandler(BaseHTTPRequestHandler):
    server: EmbeddingPeer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers["Authorization"],
                                     **request})  # fmt: skip
        vectors = self.server.embedder.embed(request["input"]).tolist()
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        body = self.server.body or json.dumps({"object": "list", "data": data[::-1]}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def peer(shipped: OnnxMiniLM) -> Iterator[EmbeddingPeer]:
    """Serves the shipped graph, whose vectors do not depend on how texts are batched."""
    server = EmbeddingPeer(shipped)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_http_embedder_batches_keeps_order_and_authenticates(
    peer: EmbeddingPeer, shipped: OnnxMiniLM
) -> None:
    http = HttpEmbedder(peer.url, api_key="k3y", batch_size=2)
    texts = ["VSAT link down", "disk full", "GPS fix lost", "port flapping", "rain fade"]
    vectors = http.embed(texts)
    assert [len(r["input"]) for r in peer.requests] == [2, 2, 1]
    assert {(r["path"], r["auth"], r["model"]) for r in peer.requests} == {
        ("/v1/embeddings", "Bearer k3y", "all-MiniLM-L6-v2")
    }
    assert all(cosine(a, b) > 0.9999 for a, b in zip(vectors, shipped.embed(texts), strict=True))
    http.close()


def test_memory_works_the_same_over_the_http_embedder(peer: EmbeddingPeer, tmp_path: Path) -> None:
    mem = IncidentMemory(HttpEmbedder(peer.url), path=tmp_path / "q")
    mem.ensure_collections()
    mem.index_runbooks(runbooks_dir())
    assert mem.search_runbooks("SNR dropping in heavy rain", 1)[0]["id"] == "RB-01"
    mem.close()


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (500, b'{"error": "boom"}', BackendError, "answered 500"),
        (400, b'{"error": "bad input"}', BackendError, "answered 400"),
        (503, b"overloaded", BackendUnavailable, "answered 503"),
        (200, b"<html>not json</html>", BackendError, "malformed"),
        (200, b'{"data": [{"index": 0, "embedding": [1.0, 2.0]}]}', BackendError, "384"),
    ],
)
def test_http_embedder_errors_are_ours(
    peer: EmbeddingPeer, status: int, body: bytes, error: type[Exception], message: str
) -> None:
    peer.status, peer.body = status, body
    http = HttpEmbedder(peer.url)
    with pytest.raises(error, match=message) as err:
        http.embed(["VSAT link down"])
    assert error is BackendUnavailable or not isinstance(err.value, BackendUnavailable)
    http.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_peers_are_backend_unavailable(embedder: OnnxMiniLM) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(BackendUnavailable, match="unreachable"):
        HttpEmbedder(url + "/v1", timeout_s=2).embed(["x"])
    mem = IncidentMemory(embedder, url=url, timeout_s=2)
    with pytest.raises(BackendUnavailable, match="unreachable"):
        mem.ensure_collections()
    mem.close()


def opened(embedder: Any, path: Path, engine: str) -> IncidentMemory:
    mem = IncidentMemory(embedder, path=path, engine=engine)
    try:
        mem.ensure_collections()
    except BackendError:
        mem.close()
        raise
    return mem


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_folder_is_locked_and_vector_size_is_checked(
    embedder: OnnxMiniLM, tmp_path: Path, engine: str
) -> None:
    first = opened(embedder, tmp_path / "q", engine)
    with pytest.raises(BackendUnavailable, match=re.escape(str(tmp_path / "q"))):
        IncidentMemory(embedder, path=tmp_path / "q", engine=engine)
    first.close()
    other = HttpEmbedder("http://127.0.0.1:9/v1", dim=768)
    with pytest.raises(BackendError, match="384.* makes 768: drop it"):
        opened(other, tmp_path / "q", engine)
    opened(embedder, tmp_path / "q", engine).close()  # refused, not damaged


def test_unknown_engine_is_refused(embedder: OnnxMiniLM) -> None:
    with pytest.raises(ValueError, match="engine"):
        IncidentMemory(embedder, engine="faiss")


def test_public_names() -> None:
    assert memory_pkg.__all__ == sorted(memory_pkg.__all__)
    assert all(hasattr(memory_pkg, name) for name in memory_pkg.__all__)
