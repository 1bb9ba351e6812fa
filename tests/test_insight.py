"""The ship's insight path: rules choose, the local model phrases, citations are checked.

Everything that needs the model is in this module and shares one loaded model (real
llama.cpp, the packaged Gemma 3 270M GGUF): real generations, a real generation cut off
by its deadline, the circuit breaker, the cache, and an agent that explains an incident.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from policies import runbooks_dir
from shared import wire
from shared.ids import new_id
from shared.llm import (
    GenerationTimeout,
    HttpGenerator,
    LlamaCppGenerator,
    open_generator,
    packaged_model,
)
from shared.models import EvidenceRef, Incident, Insight
from shared.policy import LlmPolicy, Policy
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from ship_agent.insight import Knowledge, ship_runbooks
from ship_agent.insight.analyzer import analyze
from ship_agent.insight.narrator import check, task
from ship_agent.insight.worker import InsightWorker
from ship_agent.records import Explanation
from shore_hub.ask import LanguageModel
from sync import bundles
from sync.natsserver import free_port
from sync.privacy import Redactor
from tests.conftest import logline, metric, start_agent, stop_agent, wait_for

SHIP = "MV-INSIGHT"

# Evidence as the detectors word it (taken from a simulator run), and the runbook that fits.
FAULTS = {
    "disk": (
        IncidentType.RESOURCE_PRESSURE, "pos-srv-01", "RB-07",
        ["host.disk_pct > 90 for 90 s (now 94.45)",
         "3 lines matching /No space left on device/ in 300 s"],
    ),
    "cpu": (
        IncidentType.RESOURCE_PRESSURE, "res-srv-01", "RB-16",
        ["host.cpu_pct > 95 for 300 s (now 98.8)",
         "host.cpu_pct shifted up: now 99.4, expected about 39.5"],
    ),
    "oom": (
        IncidentType.RESOURCE_PRESSURE, "ent-srv-01", "RB-17",
        ["1 lines matching /Out of memory: Killed process/ in 60 s",
         "host.mem_pct > 95 for 300 s (now 97.5)"],
    ),
    "rain": (
        IncidentType.LINK_DEGRADATION, "vsat-modem-01", "RB-01",
        ["vsat.snr_db < 12 for 80 s (now 10.58)", "vsat.ber > 1e-05 for 80 s (now 0.000146)",
         "new log template #84 (1 seen): rain fade: Es/No <NUM> dB, fade margin <NUM> dB"],
    ),
    "blockage": (
        IncidentType.LINK_DEGRADATION, "acu-01", "RB-02",
        ["acu.blocked >= 1 for 20 s (now 1)", "vsat.snr_db < 12 for 60 s (now 8.76)"],
    ),
    "modem": (
        IncidentType.COMMS_OUTAGE, "vsat-modem-01", "RB-03",
        ["vsat.link_up < 0.5 for 60 s (now 0)", "3 lines matching /Rx lock lost/ in 600 s"],
    ),
    "port": (
        IncidentType.NETWORK_ISSUE, "sw-core-01", "RB-05",
        ["4 lines matching /changed state to down/ in 300 s",
         "net.if_errors_per_s > 50 for 120 s (now 172.9)"],
    ),
    "firewall": (
        IncidentType.RESOURCE_PRESSURE, "fw-01", "RB-06",
        ["net.cpu_pct > 90 for 225 s (now 97)"],
    ),
    "crashloop": (
        IncidentType.APP_DEGRADATION, "res-srv-01", "RB-08",
        ["3 lines matching /Main process exited/ in 300 s"],
    ),
    "bruteforce": (
        IncidentType.SECURITY_ALERT, "crew-srv-01", "RB-09",
        ["20 lines matching /Failed password|Invalid user|authentication failure/ in 60 s"],
    ),
    "gps": (
        IncidentType.NAVIGATION_DATA, "gps-01", "RB-10",
        ["nav.fix_quality < 1 for 40 s (now 0)", "1 lines matching /GPS fix lost/ in 60 s"],
    ),
    "heat": (
        IncidentType.HARDWARE_ENVIRONMENT, "sw-bridge-01", "RB-11",
        ["net.temp_c > 55 for 120 s (now 58.2)",
         "1 lines matching /temperature above threshold/ in 60 s"],
    ),
    "payments": (
        IncidentType.APP_DEGRADATION, "pos-srv-01", "RB-18",
        ["20 lines matching /authorisation failed|authorization failed/ in 60 s",
         "50 error-level lines in 60 s"],
    ),
}  # fmt: skip


def incident(
    fault: str, severity: Severity = Severity.MEDIUM, ship: str = SHIP, **changes: Any
) -> Incident:
    itype, device, _, summaries = FAULTS[fault]
    now = datetime.now(UTC)
    evidence = [
        EvidenceRef(
            anomaly_id=new_id(),
            tracking_id=new_id(),
            ts=now,
            detector=f"detector-{i}",
            device=device,
            score=0.95 - i * 0.1,
            summary=summary,
        )
        for i, summary in enumerate(summaries)
    ]
    fields: dict[str, Any] = {
        "tracking_id": new_id(),
        "ship_id": ship,
        "ts": now,
        "id": new_id(),
        "version": 1,
        "type": itype,
        "severity": severity,
        "status": IncidentStatus.OPEN,
        "device": device,
        "devices": [device],
        "corr_key": f"dev:{device}",
        "suppress_key": f"{itype.value}:{device}",
        "first_seen": now,
        "last_seen": now,
        "evidence": evidence,
    }
    return Incident(**{**fields, **changes})


@pytest.fixture(scope="module")
def knowledge() -> Iterator[Knowledge]:
    k = Knowledge(None, runbooks_dir())
    yield k
    k.close()


def redactor(policy: Policy) -> Any:
    return Redactor.from_policy(policy.privacy).redact_text


# ---------------------------------------------------------------- rules, no model


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_rules_choose_the_runbook_that_fits_the_evidence(
    fault: str, knowledge: Knowledge, policy: Policy
) -> None:
    inc = incident(fault)
    analysis = analyze(inc, policy.ingest.role_of(inc.device), knowledge, redactor(policy))
    assert analysis.runbooks[0].book.id == FAULTS[fault][2]
    assert analysis.probable_cause == analysis.runbooks[0].book.title
    # the deterministic narrative cites the evidence and the chosen runbook, nothing else
    verdict = check(analysis.narrative(), analysis.citable)
    assert verdict.ok, verdict.reason
    assert {"E1", FAULTS[fault][2]} <= set(verdict.citations)


def test_allowed_actions_come_from_the_chosen_runbook(knowledge: Knowledge, policy: Policy) -> None:
    rain = analyze(incident("rain"), "vsat_modem", knowledge, redactor(policy))
    assert rain.allowed_actions == ["qos_shaping", "bandwidth_reduction", "failover_path"]
    gps = analyze(incident("gps"), "gps", knowledge, redactor(policy))
    assert gps.allowed_actions == []  # navigation is never remediated


def test_prompts_and_narratives_never_carry_guest_pii(knowledge: Knowledge, policy: Policy) -> None:
    inc = incident("bruteforce")
    leaky = inc.evidence[0].model_copy(
        update={
            "summary": "portal login failed for anna.berg@example.com, card 4111 1111 1111 1111"
        }
    )
    inc = inc.model_copy(update={"evidence": [leaky]})
    analysis = analyze(inc, "host", knowledge, redactor(policy))
    for text in (analysis.facts(), analysis.narrative()):
        assert "anna.berg@example.com" not in text and "4111 1111 1111 1111" not in text
        assert "portal login failed for" in text  # the rest of the evidence stays


def test_citation_check_accepts_only_ids_it_gave() -> None:
    given = frozenset({"E1", "E2", "RB-07"})
    assert check("Disk full [E1] and writes fail [E2]; rotate logs [RB-07].", given).ok
    bad = check("Disk full [E1]; see [RB-16].", given)
    assert not bad.ok and "RB-16" in bad.reason
    assert not check("The disk is full.", given).ok  # cites nothing
    assert not check("", given).ok
    assert not check("[E1] " + "x" * 700, given).ok
    # only the first paragraph counts: what follows a blank line is not the narrative
    assert check("Disk full [E1].\n\nInput: [E9]", given).citations == ["E1"]


def test_narratives_naming_details_not_in_the_facts_are_rejected() -> None:
    """What a small model copies from its worked examples: hosts, figures, log patterns."""
    facts = (
        "Incident: comms outage, critical, on vsat-modem-01 (vsat_modem)\n"
        "[E1] vsat.link_up < 0.5 for 60 s (now 0)\n[E2] 3 lines matching /Rx lock lost/ in 600 s"
    )
    given = frozenset({"E1", "E2", "RB-03"})
    good = "vsat-modem-01 lost its link for 60 s [E1] with Rx lock lost [E2]; see [RB-03]."
    assert check(good, given, facts).ok
    for bad, detail in (
        ("pos-srv-01 lost its link [E1].", "pos-srv-01"),
        ("vsat-modem-01 is 94 % down [E1].", "94"),
        ("vsat-modem-01 logged /Failed password/ [E2].", "/Failed password/"),
        ("vsat-modem-01 logged 1000000000000 errors [E2].", "degenerate"),
    ):
        verdict = check(bad, given, facts)
        assert not verdict.ok and detail in verdict.reason, (bad, verdict)


def test_history_lists_earlier_resolved_incidents_of_that_device(
    tmp_path: Path, policy: Policy
) -> None:
    from ship_agent.pipeline import Pipeline
    from ship_agent.store import Store

    store = Store(tmp_path / "agent.db", SHIP)
    pipeline = Pipeline(policy, store)
    t0 = time.time() - 7200
    pipeline.run_batch(
        [metric("pos-srv-01", "host.disk_pct", 97.0, t0 + i * 15) for i in range(12)]
    )
    pipeline.run_batch([metric("pos-srv-01", "host.disk_pct", 40.0, t0 + 4000)])
    resolved = store.conn.execute(
        "SELECT id FROM incidents WHERE device='pos-srv-01' AND status='resolved'"
    ).fetchall()
    assert resolved, "the disk incident should have resolved after its quiet window"
    knowledge = Knowledge(tmp_path / "agent.db", runbooks_dir())
    try:
        past = knowledge.history("new", IncidentType.RESOURCE_PRESSURE, "pos-srv-01")
        assert [p.id for p in past] == [resolved[0][0]]
        assert past[0].resolution == "quiet for its window"
        assert past[0].time_to_resolve_s is not None and past[0].time_to_resolve_s > 0
        assert knowledge.history("new", IncidentType.RESOURCE_PRESSURE, "res-srv-01") == []
    finally:
        knowledge.close()
        store.close()


def test_runbooks_sent_in_a_policy_bundle_replace_the_built_in_ones(tmp_path: Path) -> None:
    assert ship_runbooks(tmp_path) == runbooks_dir()
    files = {"policy.yaml": (runbooks_dir().parent / "policy.yaml").read_text()}
    for book in sorted(runbooks_dir().glob("RB-0*.md"))[:2]:
        files[f"runbooks/{book.name}"] = book.read_text()
    bundles.activate(tmp_path, bundles.stage(tmp_path, "v2", files))
    chosen = ship_runbooks(tmp_path)
    assert chosen != runbooks_dir() and len(list(chosen.glob("*.md"))) == 2
    with pytest.raises(bundles.BundleError, match="runbooks/\\*.md"):
        bundles.stage(tmp_path, "v3", {**files, "notes/x.md": "# x"})


# ---------------------------------------------------------------- the worker, no model


class Delivered:
    def __init__(self) -> None:
        self.items: list[Explanation] = []
        self.event = threading.Condition()

    def __call__(self, e: Explanation) -> None:
        with self.event:
            self.items.append(e)
            self.event.notify_all()

    def wait(self, n: int, timeout: float = 120.0) -> list[Explanation]:
        with self.event:
            ok = self.event.wait_for(lambda: len(self.items) >= n, timeout)
        assert ok, f"{len(self.items)} of {n} explanations within {timeout} s"
        return self.items


def llm_policy(policy: Policy, **changes: Any) -> LlmPolicy:
    return policy.llm.model_copy(update=changes)


def worker(
    policy: Policy, knowledge: Knowledge, model: Any, deliver: Delivered, **changes: Any
) -> InsightWorker:
    return InsightWorker(
        llm_policy(policy, **changes),
        SHIP,
        knowledge,
        policy.ingest.role_of,
        redactor(policy),
        lambda: model,
        deliver,
    )


@pytest.mark.parametrize(
    ("rule", "given_up"),
    [("lowest_severity", ["low-1", "low-2"]), ("oldest", ["medium", "critical"]),
     ("newest", ["low-1", "low-2"])],
)  # fmt: skip
def test_a_full_queue_gives_up_by_policy_and_explains_those_by_rules(
    rule: str, given_up: list[str], policy: Policy, knowledge: Knowledge
) -> None:
    """Queue of 2, no thread serving it: the third and fourth requests overflow."""
    delivered = Delivered()
    w = worker(policy, knowledge, None, delivered, queue_size=2, drop_on_overflow=rule)
    named = {
        "medium": incident("disk", Severity.MEDIUM),
        "critical": incident("rain", Severity.CRITICAL),
        "low-1": incident("port", Severity.LOW),
        "low-2": incident("heat", Severity.LOW),
    }
    for name in ("medium", "critical", "low-1", "low-2"):
        w.submit(named[name])
    out = delivered.wait(2)
    names = {v.id: k for k, v in named.items()}
    assert [names[e.incident_id] for e in out] == given_up
    assert all(e.insight.fallback and e.note == "queue full" for e in out)
    assert w.depth == 2
    assert w.metrics.insight_dropped._value.get() == 2


def test_a_newer_version_of_a_queued_incident_replaces_it(
    policy: Policy, knowledge: Knowledge
) -> None:
    w = worker(policy, knowledge, None, Delivered(), queue_size=2)
    first = incident("disk")
    w.submit(first)
    w.submit(first.model_copy(update={"version": 2, "severity": Severity.HIGH}))
    assert w.depth == 1


# ---------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaCppGenerator]:
    gen = LlamaCppGenerator(packaged_model(), n_threads=1)
    yield gen
    gen.close()


def test_the_default_model_is_a_base_model_prompted_by_completion(
    model: LlamaCppGenerator,
) -> None:
    assert model.chat is False and "Gemma 3" in model.name
    prompt = task("Incident: network issue, low, on sw-1 (switch)\n[E1] port down")
    text = prompt.as_completion()
    assert text.startswith(prompt.instruction) and text.endswith("Output:")
    assert text.count("Input:") == 4  # three worked examples and the question


def test_real_generations_are_accepted_only_with_valid_citations(
    policy: Policy, knowledge: Knowledge, model: LlamaCppGenerator
) -> None:
    delivered = Delivered()
    w = worker(policy, knowledge, model, delivered, temperature=0.0)
    w.start()
    try:
        faults = ["disk", "rain", "port", "bruteforce"]
        for fault in faults:
            w.submit(incident(fault))
        out = delivered.wait(len(faults), timeout=240)
    finally:
        w.stop(keep_model=True)
    assert all(e.insight.model == model.name for e in out)
    accepted = [e for e in out if not e.insight.fallback]
    assert accepted, [e.note for e in out]  # the small model gets some right at temperature 0
    for e in out:
        assert e.insight.citations and set(e.insight.citations) <= {
            "E1", "E2", "E3", *(FAULTS[f][2] for f in faults)
        }  # fmt: skip
        assert e.insight.latency_ms > 0 or e.insight.fallback
    rejected = [e for e in out if e.note.startswith("model narrative rejected")]
    assert w.metrics.insight_rejected._value.get() == len(rejected)


def test_the_same_signature_is_answered_from_the_cache(
    policy: Policy, knowledge: Knowledge, model: LlamaCppGenerator
) -> None:
    delivered = Delivered()
    w = worker(policy, knowledge, model, delivered, temperature=0.0)
    w.start()
    try:
        w.submit(incident("port"))
        first = delivered.wait(1)[0]
        w.submit(incident("port"))  # another incident, same type, device, detectors, runbook
        second = delivered.wait(2)[1]
    finally:
        w.stop(keep_model=True)
    if first.insight.fallback:
        pytest.fail(f"the model's first answer was not accepted: {first.note}")
    assert second.insight.cache_hit and not first.insight.cache_hit
    assert second.narrative == first.narrative and second.insight.latency_ms == 0


def test_a_real_generation_past_its_deadline_falls_back_and_opens_the_breaker(
    policy: Policy, knowledge: Knowledge, model: LlamaCppGenerator
) -> None:
    with pytest.raises(GenerationTimeout):
        model.generate(task("Incident: x"), max_tokens=400, temperature=0.0, timeout_s=0.01)
    delivered = Delivered()
    w = worker(
        policy,
        knowledge,
        model,
        delivered,
        timeout_s=0.01,
        retries=0,
        circuit_breaker={"failures": 2, "window_s": 300},
    )
    w.start()
    try:
        for fault in ("disk", "rain", "port"):
            w.submit(incident(fault, Severity.HIGH))
            delivered.wait(len(delivered.items) + 1)
    finally:
        w.stop(keep_model=True)
    notes = [e.note for e in delivered.items]
    assert notes[0].startswith("model failed: generation ran past")
    assert notes[1].startswith("model failed: generation ran past")
    assert notes[2] == "circuit breaker open"  # the model was not even called
    assert w.metrics.insight_failures._value.get() == 2
    assert all(e.insight.fallback for e in delivered.items)
    assert all(check(e.narrative, frozenset(e.insight.citations)).ok for e in delivered.items)


def test_the_agent_explains_its_incident_as_a_new_version_that_syncs(
    tmp_path: Path, policy: Policy
) -> None:
    running = start_agent(tmp_path, policy, ship_id=SHIP, insight=True)
    try:
        assert running.agent.insight.wait_ready(60) and not running.agent.insight.model_error
        t0 = time.time() - 600
        events: list[Any] = [
            metric("pos-srv-01", "host.disk_pct", 97.0, t0 + i * 15) for i in range(12)
        ]
        events += [
            logline("pos-srv-01", "pos", "ERROR journal write failed: No space left on device",
                    t0 + 100 + i, severity=3)
            for i in range(4)
        ]  # fmt: skip
        assert running.agent.submit(events)

        def explained() -> Any:
            rows = running.sql(
                "SELECT i.id, i.version, i.doc FROM incidents i WHERE i.device='pos-srv-01'"
                " AND EXISTS (SELECT 1 FROM incident_timeline t WHERE t.incident_id=i.id"
                " AND t.event='insight')"
            )
            return rows[0] if rows else None

        inc_id, version, doc = wait_for(explained, timeout=180)
        model_incident = Incident.model_validate_json(doc)
        assert model_incident.narrative and model_incident.runbook_refs[0] == "RB-07"
        assert "[E1]" in model_incident.narrative
        (payload,) = running.sql(
            "SELECT payload FROM outbox WHERE kind='insight' ORDER BY id DESC LIMIT 1"
        )[0]
        (insight,) = wire.decode(bytes(payload))
        assert isinstance(insight, Insight) and insight.incident_id == inc_id
        assert insight.narrative == model_incident.narrative
        assert insight.model in ("Gemma 3 270m", "deterministic")
        versions = running.sql("SELECT version FROM outbox WHERE incident_id=?", inc_id)
        assert (version,) in versions  # the explained version is queued for shore too
    finally:
        stop_agent(running)


# ---------------------------------------------------------------- an OpenAI-compatible server

HTTP_MODEL = "gemma-3-270m-served"


@pytest.fixture(scope="module")
def served_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server (the kind of endpoint a bigger model
    runs behind ashore: llama-server, vLLM, Ollama), serving the packaged model."""
    port = free_port()
    log = (tmp_path_factory.mktemp("llm-server") / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_model()),
         "--model_alias", HTTP_MODEL, "--n_threads", "1", "--n_ctx", "2048",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"

    def serving() -> bool:
        assert proc.poll() is None, "the LLM server exited; see its log"
        try:
            return httpx.get(f"{url}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(serving, timeout=120)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_served_model_explains_incidents_over_http(
    policy: Policy, knowledge: Knowledge, served_model: str
) -> None:
    generator = open_generator(None, n_threads=1, url=served_model, model=HTTP_MODEL)
    assert isinstance(generator, HttpGenerator) and generator.name == HTTP_MODEL
    out = generator.generate(task("Incident: x"), max_tokens=8, temperature=0.0, timeout_s=120)
    assert out.text and out.tokens > 0 and out.model == HTTP_MODEL
    delivered = Delivered()
    w = worker(policy, knowledge, generator, delivered, temperature=0.0)
    w.start()
    try:
        for fault in ("disk", "bruteforce"):
            w.submit(incident(fault))
        explained = delivered.wait(2, timeout=240)
    finally:
        w.stop()
    # the server answered every request: its narrative was either accepted or rejected by
    # the grounding check, never lost to a transport failure
    for e in explained:
        assert e.insight.model == HTTP_MODEL, e.note
        assert e.insight.fallback == e.note.startswith("model narrative rejected"), e.note
        assert check(e.narrative, frozenset(e.insight.citations)).ok


def test_a_served_generation_past_its_deadline_times_out(served_model: str) -> None:
    generator = HttpGenerator(served_model, HTTP_MODEL)
    try:
        with pytest.raises(GenerationTimeout):
            generator.generate(task("Incident: x"), max_tokens=16, temperature=0.0, timeout_s=0.05)
    finally:
        generator.close()


def test_the_hub_opens_a_configured_endpoint_for_ask(policy: Policy, served_model: str) -> None:
    llm = LanguageModel(policy.llm, served_model, HTTP_MODEL)
    try:
        generator = asyncio.run(llm.open())
        assert isinstance(generator, HttpGenerator) and llm.name == HTTP_MODEL
        assert generator.generate(
            task("Incident: y"), max_tokens=4, temperature=0.0, timeout_s=120
        ).text
    finally:
        llm.close()


# ---------------------------------------------------------------- retrieval quality


def test_retrieval_on_a_small_labelled_set_from_the_simulator(
    policy: Policy, knowledge: Knowledge
) -> None:
    """Two simulated ships, every fault type once: the rules find the right runbook and the
    shore memory finds the same fault on the other ship (the bench runs the full set)."""
    from bench.insight import fleet_set, runbook_top3, similar_recall

    data = fleet_set(policy, ships=2, rounds=1)
    assert len({d.scenario for d in data}) >= 12
    assert len({d.incident.ship_id for d in data}) == 2
    hits, n = runbook_top3(data, policy, knowledge)
    assert hits / n >= 0.9, f"right runbook in the top 3 for {hits} of {n}"
    recall, hit, queries = similar_recall(data)
    assert queries >= 12 and recall >= 0.8 and hit >= 0.9, (recall, hit)
