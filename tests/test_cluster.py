"""Scale-out on one machine: a real 3-member NATS cluster on loopback (JetStream streams
and the ingest consumer with 3 replicas) and the hub with 3 ingest workers sharing the
durable consumer. Mid-stream one member is killed with SIGKILL and one worker crashes
after storing a batch and before acknowledging it; the store ends with every incident
version once and nothing else. Run with -s for the measured figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from shore_hub.ingest import DURABLE, Decoded, IngestWorker
from sync.natsserver import NatsServer, cluster, start_all
from sync.topology import FLEET_UP, HUB_DOMAIN, up_subject
from tests.conftest import wait_for
from tests.test_hub import frame, hub_running, hub_settings, incident

SHIPS = ("MV-KILO", "MV-LIMA", "MV-MIKE", "MV-OSCAR")  # distinct last letters: distinct ids
INCIDENTS_PER_SHIP = 250
VERSIONS = 4  # of each incident: 4,000 versions, one message each, as ships send them
IN_FLIGHT = 64  # publishes awaiting their JetStream ack at once
CRASH_AT, KILL_AT = 0.2, 0.5  # fractions of the messages acknowledged by the stream
DEADLINE_S = 150.0  # generous: a crashed batch comes again only after the ack wait (30 s)


@dataclass
class Publisher:
    """Publishes every message to FLEET_UP through JetStream, retrying each until the
    stream acknowledges it (with the ships' Nats-Msg-Id, so a retry of a message stored
    but not acknowledged is dropped by the stream), and runs each fault once the stream
    has acknowledged that many messages, while other publishes are in flight."""

    servers: list[str]
    messages: list[tuple[str, bytes, str]]
    faults: dict[int, Callable[[], None]]
    acked: int = 0
    retries: int = 0
    longest_stall_s: float = 0.0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False

    def start(self) -> None:
        threading.Thread(target=self._thread, name="publisher", daemon=True).start()

    def _thread(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    async def _run(self) -> None:
        # the first server first: the member the test kills, so this client fails over too
        nc = await nats.connect(self.servers, dont_randomize=True, max_reconnect_attempts=-1)
        js = nc.jetstream(domain=HUB_DOMAIN)
        todo = iter(self.messages)
        last_ack = time.monotonic()

        async def lane() -> None:
            nonlocal last_ack
            for subject, data, msg_id in todo:
                while True:
                    if self.stopping:
                        return
                    try:
                        await js.publish(
                            subject, data, timeout=2.0, headers={"Nats-Msg-Id": msg_id}
                        )
                        break
                    except Exception:  # no stream leader yet, a lost connection: again
                        self.retries += 1
                        await asyncio.sleep(0.2)
                now = time.monotonic()
                self.longest_stall_s = max(self.longest_stall_s, now - last_ack)
                last_ack, self.acked = now, self.acked + 1
                fault = self.faults.pop(self.acked, None)
                if fault is not None:
                    await asyncio.to_thread(fault)  # the other lanes keep publishing

        try:
            await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
        finally:
            await nc.close()


class InjectedCrash:
    """Fault injection: once armed, the worker's task ends (cancelled) on its next batch
    after the batch is stored and before any of it is acknowledged or confirmed to the
    ship, as a crashed worker process would leave it. The real worker cannot be made to
    crash at that point on demand."""

    def __init__(self, worker: IngestWorker) -> None:
        self.worker = worker
        self.armed = threading.Event()
        self.crashed = threading.Event()
        self.batch: set[tuple[str, int]] = set()
        self.stored_before = 0
        self._confirm = worker._before_ack
        worker._before_ack = self

    async def __call__(self, decoded: Decoded) -> None:
        if self.armed.is_set() and not self.crashed.is_set():
            self.batch = {(i.id, i.version) for i in decoded.incidents}
            self.stored_before = self.worker.stored
            self.crashed.set()
            raise asyncio.CancelledError  # ends the worker's task right here
        if self._confirm is not None:
            await self._confirm(decoded)


@pytest.fixture
def members(tmp_path: Path) -> Iterator[list[NatsServer]]:
    servers = cluster("seawatch-hub", tmp_path / "nats", HUB_DOMAIN)
    start_all(servers)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def _admin(servers: list[str], action: Callable[[Any, Any], Any]) -> Any:
    """One call to the cluster's JetStream API from this thread, on its own connection."""

    async def go() -> Any:
        nc = await nats.connect(servers)
        try:
            return await action(nc, nc.jetstream(domain=HUB_DOMAIN))
        finally:
            await nc.close()

    return asyncio.run(go())


async def _leaders(nc: Any, js: Any) -> tuple[str | None, str | None]:
    stream = (await js.stream_info(FLEET_UP)).cluster
    consumer = (await js.consumer_info(FLEET_UP, DURABLE)).cluster  # None while being made
    return stream and stream.leader, consumer and consumer.leader


def _move_leaders(servers: list[str], target: str) -> str:
    """Asks FLEET_UP's and the ingest consumer's leaders to move to `target` (the member
    the hub's connection is on), so that killing it takes all three at once; returns the
    stream's leader then. A stream with one replica cannot move: its leader stays where
    its only copy is, and that is the member killed."""
    api = f"$JS.{HUB_DOMAIN}.API"
    preferred = json.dumps({"placement": {"preferred": target}}).encode()

    async def step(nc: Any, js: Any) -> tuple[str | None, str | None]:
        stream, consumer = await _leaders(nc, js)
        if stream not in (None, target):
            await nc.request(f"{api}.STREAM.LEADER.STEPDOWN.{FLEET_UP}", preferred, timeout=5)
        if consumer not in (None, target):
            await nc.request(
                f"{api}.CONSUMER.LEADER.STEPDOWN.{FLEET_UP}.{DURABLE}", preferred, timeout=5
            )
        return stream, consumer

    with contextlib.suppress(AssertionError):  # one replica cannot move: kill where it is
        wait_for(lambda: _admin(servers, step) == (target, target), timeout=15, interval=0.5)
    leader = _admin(servers, _leaders)[0]
    assert leader is not None
    return str(leader)


def _local_messages(server: NatsServer) -> int:
    """Messages in this member's own copy of FLEET_UP (its /jsz), 0 while it has none."""
    url = f"http://{server.host}:{server.monitor_port}/jsz?streams=true"
    accounts = httpx.get(url, timeout=2.0).json().get("account_details") or []
    streams = [s for a in accounts for s in a.get("stream_detail") or []]
    return sum(int(s["state"]["messages"]) for s in streams if s["name"] == FLEET_UP)


def test_r3_cluster_survives_member_sigkill_and_injected_worker_crash(
    members: list[NatsServer], tmp_path: Path, chdb_path: Path
) -> None:
    urls = [m.url for m in members]
    incidents = [
        incident(ship, n, version)
        for n in range(INCIDENTS_PER_SHIP)
        for ship in SHIPS
        for version in range(1, VERSIONS + 1)
    ]
    total = len(incidents)
    published = {(i.id, i.version) for i in incidents}
    assert len(published) == total
    messages = [
        (up_subject(i.ship_id, "incident"), frame(i), f"{i.id}:{i.version}") for i in incidents
    ]
    settings = hub_settings(
        tmp_path / "hub",
        chdb_path,
        "cluster_test",
        nats_url=",".join(urls),
        stream_replicas=3,
        workers=3,
        memory=False,
    )
    with hub_running(settings) as running:
        hub, db = running.hub, "cluster_test"
        # every copy the workers write stays visible as its own row: duplicates are counted,
        # not merged away in the background (reads use FINAL, which merges at read time)
        hub.store.backend.command(f"SYSTEM STOP MERGES {db}.incident_versions")
        wait_for(lambda: _consumer_made(urls), timeout=30, interval=0.2)
        hub_member = next(m for m in members if m.port == hub.nc.connected_url.port)
        victim = next(m for m in members if m.name == _move_leaders(urls, hub_member.name))
        victim_pid = victim.pid
        crash = InjectedCrash(hub.workers[0])
        publisher = Publisher(
            [victim.url, *(u for u in urls if u != victim.url)],
            messages,
            {int(total * CRASH_AT): crash.armed.set, int(total * KILL_AT): victim.kill},
        )
        t0 = time.monotonic()
        publisher.start()
        try:
            assert crash.crashed.wait(DEADLINE_S), "the worker never took a batch once armed"
            assert publisher.done.wait(DEADLINE_S), f"published {publisher.acked} of {total}"
            assert publisher.error is None, publisher.error
            published_s = time.monotonic() - t0
            assert not victim.running and not publisher.faults  # both faults happened

            def stored() -> int:
                sql = f"SELECT count() AS n FROM {db}.incident_versions FINAL"
                return int(hub.store.backend.query(sql)[0]["n"])

            wait_for(lambda: stored() >= total, timeout=DEADLINE_S, interval=0.2)
            stored_s = time.monotonic() - t0

            def settled() -> Any:
                info = _admin(urls, lambda nc, js: js.consumer_info(FLEET_UP, DURABLE))
                done = info.num_pending == 0 and info.num_ack_pending == 0
                return info if done else None

            consumer = wait_for(settled, timeout=DEADLINE_S, interval=0.5)
            settled_s = time.monotonic() - t0
        finally:
            publisher.stopping = True
            publisher.done.wait(30)

        # the stream: every message once, on 3 replicas, led by a survivor
        stream = _admin(urls, lambda nc, js: js.stream_info(FLEET_UP))
        assert stream.state.messages == total, "a publish retry was stored twice"
        assert stream.config.num_replicas == 3
        assert len(stream.cluster.replicas) == 2 and stream.cluster.leader != victim.name
        assert len(consumer.cluster.replicas) == 2  # the consumer follows the stream's R3

        # the store: every published version exactly once, nothing else, nothing dead
        versions = hub.store.backend.query(
            f"SELECT id, version, count() AS copies FROM {db}.incident_versions"
            " GROUP BY id, version"
        )
        copies = {(r["id"], int(r["version"])): int(r["copies"]) for r in versions}
        assert set(copies) == published  # none lost, none that was not published
        final = hub.store.backend.query(
            f"SELECT count() AS n, uniqExact(id, version) AS keys FROM {db}.incident_versions FINAL"
        )[0]
        assert int(final["n"]) == int(final["keys"]) == total  # what reads see: each once
        latest = hub.store.backend.query(f"SELECT id, version FROM {db}.incidents FINAL")
        assert len(latest) == len({r["id"] for r in latest}) == total // VERSIONS
        assert {int(r["version"]) for r in latest} == {VERSIONS}
        assert hub.store.dead_letters(10) == []

        # the crashed worker's batch was stored, never acknowledged, delivered again and
        # stored again by a survivor: two copies of each of its versions, read as one
        assert crash.batch and all(copies[k] >= 2 for k in crash.batch)
        alive = running.call(_alive_workers())
        assert crash.worker.name not in alive and len(alive) == 2
        assert crash.worker.stored == crash.stored_before  # it did nothing after the crash
        survivors = sum(w.stored for w in hub.workers if w.name in alive)
        assert survivors + crash.worker.stored >= total

        # the killed member, restarted on its ports and store, catches up with the stream
        restart = time.monotonic()
        victim.start(timeout=60)
        wait_for(lambda: _local_messages(victim) == total, timeout=60, interval=0.2)
        caught_up_s = time.monotonic() - restart
        hub_now = next(m.name for m in members if m.port == hub.nc.connected_url.port)

    raw = sum(copies.values())
    print(
        f"\ncluster scale-out, {os.cpu_count()} cores: 3 members, R3; {total:,} incident "
        f"versions ({total // VERSIONS:,} incidents x {VERSIONS}) in {total:,} messages, "
        f"{IN_FLIGHT} publishes in flight\n"
        f"  SIGKILL {victim.name} (pid {victim_pid}; leader of FLEET_UP and of the consumer, "
        f"{'' if victim is hub_member else 'not '}the hub's server) at "
        f"{int(total * KILL_AT):,} acknowledged: longest publish stall "
        f"{publisher.longest_stall_s:.2f} s, {publisher.retries} publish retries; new stream "
        f"leader {stream.cluster.leader}, the hub failed over to {hub_now}\n"
        f"  injected crash of {crash.worker.name} after storing a batch of "
        f"{len(crash.batch)} versions, before acknowledging it\n"
        f"  after the first publish: all published {published_s:.1f} s, all stored "
        f"{stored_s:.1f} s, all acknowledged {settled_s:.1f} s (what was fetched and not "
        f"acknowledged comes again after the consumer's 30 s ack wait)\n"
        f"  FLEET_UP {stream.state.messages:,} messages; store {total:,} versions read, "
        f"{raw:,} rows written ({raw - total:,} copies of redelivered versions, merged by "
        f"the engine); 0 dead letters\n"
        f"  stored per worker: "
        + ", ".join(f"{w.name} {w.stored:,}" for w in hub.workers)
        + f" (at most {consumer.config.max_ack_pending:,} messages unacknowledged at once)"
        + f"\n  restarted {victim.name} caught up with {total:,} messages in {caught_up_s:.1f} s"
    )


def _consumer_made(servers: list[str]) -> bool:
    try:
        return _admin(servers, _leaders)[1] is not None
    except nats.js.errors.NotFoundError:
        return False  # the workers have not created it yet


async def _alive_workers() -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("ingest-")}
