"""/ask, conversations and similar incidents over a real hub: nats-server, chdb, Qdrant local
mode, the ONNX embedder, the default GGUF model (llama.cpp) and real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.taxonomy import IncidentType
from shore_hub.ask import Citation, Context, LanguageModel, finish, prompt
from shore_hub.auth import Role
from shore_hub.metrics import HubMetrics
from sync.topology import up_subject
from tests.conftest import wait_for
from tests.test_hub import RunningHub, frame, hub_running, hub_settings, indexed
from tests.test_patterns import NOW, fleet_incident

FIX = "failed over to LEO until the rain passed"
SEEDED = {
    "fade_before": fleet_incident("MV-ASK-A", NOW - timedelta(days=3), resolution=FIX),
    "fade_now": fleet_incident("MV-ASK-B", NOW - timedelta(days=2)),
    "brute_force": fleet_incident(
        "MV-ASK-C",
        NOW - timedelta(days=2, hours=5),
        itype=IncidentType.SECURITY_ALERT,
        device="crew-srv-01",
        path=None,
        detector="pattern:ssh_bruteforce",
        summary="400 lines matching /Failed password/ in 60 s",
        narrative="sshd brute force: 400 failed logins from one public address",
    ),
}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[RunningHub]:
    settings = hub_settings(tmp_path_factory.mktemp("hub-ask"), chdb_path, "hub_ask_test")
    with hub_running(settings) as running:
        seeded = list(SEEDED.values())
        running.publish([(up_subject(i.ship_id, "incident"), frame(i)) for i in seeded])
        wait_for(lambda: all(indexed(running, i.id) for i in seeded), timeout=90)
        yield running


def ask(running: RunningHub, headers: dict[str, str], **body: Any) -> httpx.Response:
    return httpx.post(f"{running.url}/api/v3/ask", json=body, headers=headers, timeout=120)


def test_ask_cites_only_retrieved_evidence(running: RunningHub) -> None:
    """The real model answers (or its answer is replaced); either way every citation is
    an item retrieval gave it, and incident citations lead to real incidents."""
    operator = running.key(Role.OPERATOR)
    r = ask(running, operator, question="Why did the VSAT link degrade and what fixed it?")
    assert r.status_code == 200, r.text
    body = r.json()
    retrieved = {(c["kind"], c["id"]) for c in body["retrieved"]}
    assert ("incident", SEEDED["fade_before"].id) in retrieved
    assert any(kind == "runbook" for kind, _ in retrieved)
    assert body["citations"] and body["answer"] and body["conversation_id"]
    assert {(c["kind"], c["id"]) for c in body["citations"]} <= retrieved
    seeded_ids = {i.id for i in SEEDED.values()}
    for c in body["citations"]:
        if c["kind"] == "incident":
            assert c["id"] in seeded_ids and c["ref"] in body["answer"]
            detail = httpx.get(f"{running.url}{c['link']}", headers=operator)
            assert detail.status_code == 200 and detail.json()["incident"]["id"] == c["id"]
    # the model was reached: a fallback here can only be a rejected answer
    assert body["fallback"] == bool(body["reason"])
    assert not body["reason"].startswith("model unavailable"), body["reason"]
    assert body["model"] == running.hub.llm.name
    # a key scoped to one ship retrieves nothing of the others
    scoped = running.key(Role.OPERATOR, ["MV-ASK-C"])
    only = ask(running, scoped, question="Why did the VSAT link degrade?").json()
    assert {c["ship"] for c in only["retrieved"]} <= {"MV-ASK-C", None}
    metrics = httpx.get(f"{running.url}/metrics").text
    assert "seawatch_hub_ask_answers_total" in metrics and "seawatch_hub_ask_seconds" in metrics


def test_viewer_may_not_ask_and_the_refusal_is_audited(running: RunningHub) -> None:
    r = ask(running, running.key(Role.VIEWER), question="What is wrong with the fleet?")
    assert r.status_code == 403
    admin = running.key(Role.ADMIN)

    def refusal() -> dict[str, Any] | None:
        rows = httpx.get(f"{running.url}/api/v3/audit", headers=admin).json()
        return next((x for x in rows if x["target"] == "/api/v3/ask" and not x["allowed"]), None)

    row = wait_for(refusal)
    assert row["role"] == "viewer" and "needs operator" in row["detail"]


def _context() -> Context:
    ctx = Context(
        facts="2 incidents from 2026-11-01 to 2026-11-22; by ship: MV-A 1, MV-B 1.",
        ships=frozenset(("MV-A", "MV-B")),
    )
    rain = "MV-A link_degradation high open on vsat-modem-01: SNR below 12 dB in heavy rain"
    brute = "MV-B security_alert high open on crew-srv-01: sshd brute force"
    for item, line in (
        (Citation("I1", "incident", "01INC1", rain, "MV-A", "/api/v3/incidents/01INC1"), rain),
        (Citation("I2", "incident", "01INC2", brute, "MV-B", "/api/v3/incidents/01INC2"), brute),
        (Citation("RB-01", "runbook", "RB-01", "VSAT rain fade", None, "RB-01-rain.md"), "runbook"),
    ):
        ctx.items[item.ref], ctx.lines[item.ref] = item, f"[{item.ref}] {line}"
    return ctx


def test_answers_not_grounded_in_what_was_given_are_replaced() -> None:
    """The validator on crafted model output: each way of going wrong, then a good one."""
    ctx, metrics = _context(), HubMetrics()
    given = ctx.given(1)  # what a base model gets: the nearest incident and the runbooks
    assert given == ["I1", "RB-01"]
    task = prompt("why no link?", ctx, given)
    assert "[I1] MV-A" in task.query and "[RB-01]" in task.query and "[I2]" not in task.query

    def answer(text: str) -> Any:
        return finish(ctx, given, text, "gemma", "", 0.5, metrics)

    unknown = answer("It was rain [I1] and a brute force [I2].")  # I2 was not given
    assert unknown.fallback and "I2" in unknown.reason
    assert [c.ref for c in unknown.citations] == ["I1", "I2", "RB-01"]
    assert all(f"[{c.ref}]" in unknown.answer for c in unknown.citations)
    assert "cited none" in answer("It was rain.").reason
    assert "MV-B" in answer("[I1] MV-B lost SNR in heavy rain.").reason  # I1 is MV-A's
    copied = answer("[I1] MV-A lost SNR in heavy rain until the squall passed.")
    assert copied.fallback and "worked examples" in copied.reason
    good = answer("[I1] MV-A, vsat-modem-01: SNR below 12 dB in heavy rain. Runbook [RB-01].")
    assert not good.fallback and good.reason == "" and good.answer.startswith("[I1] MV-A")
    assert [c.link for c in good.citations] == ["/api/v3/incidents/01INC1", "RB-01-rain.md"]
    rejected = metrics.ask_rejected
    for kind in ("unknown_citation", "no_citation", "ungrounded", "copied_example"):
        assert rejected.labels(kind)._value.get() == 1, kind
    assert metrics.ask_answers.labels("fallback")._value.get() == 4
    assert metrics.ask_answers.labels("model")._value.get() == 1


def test_unreachable_model_endpoint_still_answers_fault_injected(running: RunningHub) -> None:
    """Fault injection: the hub's model is swapped for an endpoint nobody listens on."""
    hub = running.hub
    broken = LanguageModel(hub.policy.llm, "http://127.0.0.1:9/v1", "none")
    kept, hub.llm = hub.llm, broken
    try:
        r = ask(running, running.key(Role.OPERATOR), question="sshd brute force attacks?")
    finally:
        hub.llm = kept
        broken.close()
    body = r.json()
    assert r.status_code == 200 and body["fallback"] and "unreachable" in body["reason"]
    assert SEEDED["brute_force"].id in {c["id"] for c in body["citations"]}


def test_conversations_are_kept_per_user(running: RunningHub) -> None:
    """Asked about a ship with no incidents, so the model is not needed here."""
    alice = {"X-API-Key": running.hub.keys.create("alice", Role.OPERATOR)}
    bob = {"X-API-Key": running.hub.keys.create("bob", Role.OPERATOR)}
    admin = running.key(Role.ADMIN)
    first = ask(running, alice, question="Anything on MV-NOWHERE?", ship="MV-NOWHERE").json()
    conv = first["conversation_id"]
    assert first["fallback"] and "not asked" in first["reason"]
    assert {c["kind"] for c in first["citations"]} <= {"runbook"}
    again = ask(running, alice, question="And last week?", ship="MV-NOWHERE", conversation_id=conv)
    assert again.status_code == 200 and again.json()["conversation_id"] == conv
    ask(running, bob, question="Bob's own question", ship="MV-NOWHERE")

    mine = httpx.get(f"{running.url}/api/v3/conversations", headers=alice).json()
    assert [(c["id"], c["turns"], c["title"]) for c in mine] == [
        (conv, 2, "Anything on MV-NOWHERE?")
    ]
    bobs = httpx.get(f"{running.url}/api/v3/conversations", headers=bob).json()
    assert len(bobs) == 1 and bobs[0]["id"] != conv
    assert httpx.get(f"{running.url}/api/v3/conversations/{conv}", headers=bob).status_code == 404
    hijack = ask(running, bob, question="mine now?", ship="MV-NOWHERE", conversation_id=conv)
    assert hijack.status_code == 404
    seen = httpx.get(f"{running.url}/api/v3/conversations/{conv}", headers=admin).json()
    assert seen["user"] == "alice"
    assert [t["question"] for t in seen["turns"]] == ["Anything on MV-NOWHERE?", "And last week?"]

    def audited() -> list[dict[str, Any]]:
        rows = httpx.get(f"{running.url}/api/v3/audit", headers=admin).json()
        return [x for x in rows if x["who"] in ("alice", "bob")]

    rows = wait_for(lambda: len(audited()) >= 5 and audited())
    assert sum(x["action"] == "ask" and x["allowed"] for x in rows) == 3
    assert sum(not x["allowed"] and x["who"] == "bob" for x in rows) == 2


def test_incident_detail_includes_similar_incidents(running: RunningHub) -> None:
    viewer = running.key(Role.VIEWER)
    now = SEEDED["fade_now"]
    detail = httpx.get(f"{running.url}/api/v3/incidents/{now.id}", headers=viewer).json()
    ids = [s["id"] for s in detail["similar"]]
    before = SEEDED["fade_before"]
    assert ids[0] == before.id and SEEDED["brute_force"].id in ids
    assert detail["similar"][0]["resolution"] == FIX
    assert detail["similar"][0]["time_to_resolve_s"] == 1800
    scoped = running.key(Role.VIEWER, ["MV-ASK-B"])
    own = httpx.get(f"{running.url}/api/v3/incidents/{now.id}", headers=scoped).json()
    assert own["similar"] == []  # the others' incidents are out of this key's scope
