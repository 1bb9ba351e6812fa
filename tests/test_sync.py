"""Ship-to-shore sync over real nats-servers: a hub, ship agents with their leaf servers and
a link simulator between each ship and the hub's leafnode port.

What the uplink promises, each tested through the whole chain (agent -> SQLite outbox ->
OUTBOX stream -> leaf link -> FLEET_UP -> hub ingest -> fleet store -> receipt -> outbox):
every committed incident version reaches the hub exactly once, whatever the link, the
ship's nats-server or the agent process does in between; urgent incidents go first; a
bounded outbox reports what it gave up; only registered ships, with their current
secret, get through.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared import wire
from shared.models import Gap, Incident
from shared.policy import Policy
from shared.taxonomy import Priority
from ship_agent.pipeline import OperatorCommand
from sync.linksim import ThreadedLink
from sync.outbox import Outbox
from sync.topology import FLEET_UP, OUTBOX
from tests.conftest import RunningAgent, wait_for
from tests.fleet import Fleet

T = TypeVar("T")
SHIPS = ["SHIP-A", "SHIP-B"]
DATABASE = "sync_test"
# Generous deadlines: polls return as soon as the condition holds.
DELIVERY_S = 30.0
REPO = Path(__file__).resolve().parents[1]
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, chdb_path: Path, policy: Policy
) -> Iterator[Fleet]:
    # A budget far above what the tests send, so catch-up never waits on it: what is tested
    # here is order and completeness, not pacing.
    fast = policy.model_copy(
        update={"sync": policy.sync.model_copy(update={"uplink_budget_bps": 4_000_000})}
    )
    running = Fleet(tmp_path_factory.mktemp("fleet"), chdb_path, DATABASE, fast, SHIPS)
    try:
        running.start()
        yield running
    finally:
        running.stop()


# ------------------------------------------------------------------------------ helpers


def on_agent(agent: RunningAgent, fn: Callable[[], T]) -> T:
    """Run fn on the agent's own loop: its SQLite connection is used from there only."""

    async def run() -> T:
        return fn()

    return agent.call(run())  # type: ignore[no-any-return]


def raise_new(fleet: Fleet, ship: str, n: int, lane: str) -> dict[str, int]:
    """n new incidents in one lane on fresh devices; returns them (id -> version)."""
    before = fleet.committed(ship)
    fleet.raise_incidents(ship, n, lane, prefix=f"p{next(_prefixes)}")
    new = {i: v for i, v in fleet.committed(ship).items() if i not in before}
    assert len(new) == n, f"expected {n} new {lane} incidents on {ship}, got {len(new)}"
    return new


def evicted_keys(fleet: Fleet, ship: str) -> set[str]:
    rows = fleet.agents[ship].sql(
        "SELECT incident_id || ':' || version FROM outbox WHERE note = 'evicted'"
    )
    return {r[0] for r in rows}


def expected_ashore(fleet: Fleet, ship: str) -> dict[str, int]:
    """What the hub must hold for a ship: everything committed, less what its bounded
    outbox evicted (and reported in a gap record)."""
    gone = evicted_keys(fleet, ship)
    return {i: v for i, v in fleet.committed(ship).items() if f"{i}:{v}" not in gone}


def in_sync(fleet: Fleet, ship: str) -> bool:
    want = expected_ashore(fleet, ship)
    return bool(want) and fleet.stored(ship) == want


def wait_in_sync(fleet: Fleet, ship: str, timeout: float = DELIVERY_S) -> None:
    """Poll until the hub holds what it must for the ship; on failure say what is missing
    and where it is (outbox row, FLEET_UP), not just that time ran out."""
    try:
        wait_for(lambda: in_sync(fleet, ship), timeout)
    except AssertionError:
        want, have = expected_ashore(fleet, ship), fleet.stored(ship)
        missing = {i: v for i, v in want.items() if have.get(i) != v}
        rows = fleet.agents[ship].sql(
            "SELECT incident_id, version, priority, sent, delivered, note FROM outbox"
        )
        up = incident_counts(fleet, ship)
        where = {
            f"{i}:{v}": ([r[2:] for r in rows if r[0] == i and r[1] == v], up.get(f"{i}:{v}"))
            for i, v in list(missing.items())[:5]
        }
        extra = {i: v for i, v in have.items() if want.get(i) != v}
        raise AssertionError(
            f"{ship}: {len(missing)} of {len(want)} incident versions not stored after"
            f" {timeout} s (outbox row, count in FLEET_UP: {where}); unexpected: {extra}"
        ) from None


def wait_receipted(fleet: Fleet, ship: str) -> None:
    """Poll until the hub's receipts have marked every outbox row of the ship delivered."""
    wait_for(lambda: fleet.undelivered(ship) == 0, DELIVERY_S)


def lanes(agent: RunningAgent, ids: dict[str, int]) -> dict[str, int]:
    """The outbox lane (priority) of each incident version."""
    rows = agent.sql("SELECT incident_id, version, priority FROM outbox WHERE kind='incident'")
    return {i: p for i, v, p in rows if ids.get(i) == v}


def leaf_up(agent: RunningAgent) -> bool:
    return bool(agent.agent.link.uplink.link.leaf_up)


def hub_leafs(fleet: Fleet) -> set[str]:
    assert fleet.hub.nats_server is not None
    return {str(leaf.get("name")) for leaf in fleet.hub.nats_server.leafnodes()}


@dataclass(frozen=True)
class UpMessage:
    seq: int  # FLEET_UP stream sequence: the order of arrival at the hub
    subject: str
    kind: str
    keys: tuple[str, ...]  # "incident_id:version" of incidents, "tracking_id:1" of gaps
    items: tuple[Any, ...]


async def _read_fleet_up(js: Any, ship: str) -> list[UpMessage]:
    sub = await js.pull_subscribe(
        f"fleet.up.{ship}.>",
        stream=FLEET_UP,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30
        ),
    )
    out: list[UpMessage] = []
    name = (await sub.consumer_info()).name
    try:
        while pending := (await sub.consumer_info()).num_pending:
            for msg in await sub.fetch(min(pending, 500), timeout=10):
                items = tuple(wire.decode(msg.data))
                keys = tuple(
                    f"{m.id}:{m.version}" if isinstance(m, Incident) else f"{m.tracking_id}:1"
                    for m in items
                    if isinstance(m, Incident | Gap)
                )
                kind = msg.subject.rsplit(".", 1)[-1]
                out.append(UpMessage(msg.metadata.sequence.stream, msg.subject, kind, keys, items))
    finally:
        await sub.unsubscribe()
        await js.delete_consumer(FLEET_UP, name)
    return out


def fleet_up(fleet: Fleet, ship: str) -> list[UpMessage]:
    """Every message of one ship in FLEET_UP, in stream order (an ephemeral consumer)."""
    return fleet.call(_read_fleet_up(fleet.hub.js, ship))  # type: ignore[no-any-return]


def up_count(fleet: Fleet, ship: str) -> int:
    """How many incident messages of the ship FLEET_UP holds (from the stream's state)."""
    subject = f"fleet.up.{ship}.incident"
    info = fleet.call(fleet.hub.js.stream_info(FLEET_UP, subjects_filter=subject))
    return int((info.state.subjects or {}).get(subject, 0))


def incident_counts(fleet: Fleet, ship: str) -> Counter[str]:
    return Counter(k for m in fleet_up(fleet, ship) if m.kind == "incident" for k in m.keys)


def assert_no_duplicates(fleet: Fleet, ship: str) -> Counter[str]:
    counts = incident_counts(fleet, ship)
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not twice, f"incident versions in FLEET_UP more than once: {twice}"
    return counts


# ------------------------------------------------------------------------------ tests


def ack(agent: RunningAgent, incident_id: str) -> None:
    """An operator's ack: a newer version of the incident."""
    agent.call(agent.agent.command(OperatorCommand("ack", incident_id, "test-operator")))


def test_incidents_of_every_ship_reach_the_hub_and_are_receipted(fleet: Fleet) -> None:
    """Every incident version committed on either ship is stored at the hub under that ship,
    at its newest version, and the hub's receipts mark every outbox row delivered."""
    new: dict[str, dict[str, int]] = {}
    for ship in SHIPS:
        new[ship] = {}
        for lane in ("urgent", "normal", "bulk"):
            new[ship] |= raise_new(fleet, ship, 3, lane)
    a = fleet.agents["SHIP-A"]
    acked = sorted(new["SHIP-A"])[:2]
    for iid in acked:  # newer versions of incidents that may be on their way already
        ack(a, iid)
    assert all(fleet.committed("SHIP-A")[i] == new["SHIP-A"][i] + 1 for i in acked)

    for ship in SHIPS:
        wait_in_sync(fleet, ship)
        assert set(new[ship]) <= set(fleet.stored(ship))
        wait_receipted(fleet, ship)
        agent = fleet.agents[ship]
        committed = fleet.committed(ship)
        outbox = agent.agent.outbox
        for iid in new[ship]:
            d = on_agent(agent, partial(outbox.delivery, iid))
            assert d is not None and d["delivered_at"] is not None, (iid, d)
            assert d["sent_version"] == committed[iid] and d["pending_version"] is None
    assert {i: fleet.stored("SHIP-A")[i] for i in acked} == {i: new["SHIP-A"][i] + 1 for i in acked}
    # each ship's incidents are stored under that ship only
    assert not set(fleet.stored("SHIP-A")) & set(fleet.stored("SHIP-B"))


def test_sync_metrics_show_lanes_bytes_link_and_source_lag(fleet: Fleet) -> None:
    """The ship's /metrics carry what its uplink did (bytes by lane, link up, unsent by
    lane) and the hub's carry each ship's source lag and idle time."""
    raise_new(fleet, "SHIP-A", 1, "urgent")
    wait_in_sync(fleet, "SHIP-A")
    ship = fleet.agents["SHIP-A"].agent.metrics.render().decode()
    assert 'seawatch_uplink_bytes_total{lane="urgent"}' in ship
    urgent = next(x for x in ship.splitlines() if x.startswith("seawatch_uplink_bytes_total{la"))
    assert float(urgent.rsplit(" ", 1)[1]) > 0
    assert "seawatch_link_up 1.0" in ship
    assert 'seawatch_outbox_depth{lane="bulk"}' in ship

    def hub_lag() -> bool:
        text = fleet.hub.metrics.render().decode()
        return 'seawatch_hub_source_lag_messages{ship="SHIP-A"}' in text and (
            'seawatch_hub_source_idle_seconds{ship="SHIP-B"}' in text
        )

    wait_for(hub_lag, DELIVERY_S)


def test_a_cut_link_queues_on_board_and_catches_up_after_restore(fleet: Fleet) -> None:
    """While one ship's link is down (connections reset) nothing of it reaches the hub and
    the other ship is unaffected; after restore everything queued arrives, sourcing having
    been restarted at once (FleetLink.kicks) rather than after the server's back-off."""
    link, a = fleet.links["SHIP-A"], fleet.agents["SHIP-A"]
    kicks = fleet.hub.fleet.kicks
    link.cut("reset")
    try:
        wait_for(lambda: not leaf_up(a) and "SHIP-A" not in hub_leafs(fleet), DELIVERY_S)
        queued: dict[str, int] = {}
        for lane in ("urgent", "normal", "bulk"):
            queued |= raise_new(fleet, "SHIP-A", 4, lane)
        elsewhere = raise_new(fleet, "SHIP-B", 3, "urgent")
        wait_in_sync(fleet, "SHIP-B", DELIVERY_S)
        assert set(elsewhere) <= set(fleet.stored("SHIP-B"))
        assert not set(queued) & set(fleet.stored("SHIP-A"))
        assert not set(queued) & set(incident_counts(fleet, "SHIP-A"))
    finally:
        link.restore()
    wait_in_sync(fleet, "SHIP-A", DELIVERY_S)
    assert set(queued) <= set(fleet.stored("SHIP-A"))
    # the hub saw the new leaf connection and restarted the ship's sourcing
    wait_for(lambda: fleet.hub.fleet.kicks > kicks, DELIVERY_S)
    wait_receipted(fleet, "SHIP-A")


def test_a_blackholed_link_loses_nothing(fleet: Fleet) -> None:
    """A link that silently forwards nothing (sockets open, bytes vanish: the ship still
    believes it is up and releases every lane) loses nothing: what was in flight on the
    dead connection is sourced again after restore, each version once."""
    link, b = fleet.links["SHIP-B"], fleet.agents["SHIP-B"]
    link.cut("blackhole")
    try:
        queued: dict[str, int] = {}
        for lane in ("urgent", "normal", "bulk"):
            queued |= raise_new(fleet, "SHIP-B", 4, lane)
        # the ship sees no outage and releases all of it into the dead link
        wait_for(
            lambda: not b.sql("SELECT count(*) FROM outbox WHERE sent IS NULL")[0][0],
            DELIVERY_S,
        )
        assert leaf_up(b)
        marker = raise_new(fleet, "SHIP-A", 1, "urgent")
        wait_for(lambda: set(marker) <= set(fleet.stored("SHIP-A")), DELIVERY_S)
        assert not set(queued) & set(fleet.stored("SHIP-B"))
    finally:
        link.restore()
    wait_in_sync(fleet, "SHIP-B", 60.0)
    assert set(queued) <= set(fleet.stored("SHIP-B"))
    assert_no_duplicates(fleet, "SHIP-B")
    wait_receipted(fleet, "SHIP-B")


def test_urgent_incidents_overtake_a_bulk_backlog(fleet: Fleet) -> None:
    """With the link down, urgent incidents are released into the ship's stream at once
    while an older bulk backlog stays in the outbox; after restore the urgent ones reach
    the hub before the first of the bulk ones."""
    link, a = fleet.links["SHIP-A"], fleet.agents["SHIP-A"]
    link.cut("reset")
    try:
        wait_for(lambda: not leaf_up(a), DELIVERY_S)
        bulk = raise_new(fleet, "SHIP-A", 30, "bulk")
        urgent = raise_new(fleet, "SHIP-A", 3, "urgent")
        assert set(lanes(a, bulk).values()) == {int(Priority.BULK)}
        assert set(lanes(a, urgent).values()) == {int(Priority.URGENT)}

        def sent(ids: dict[str, int]) -> list[bool]:
            rows = a.sql("SELECT incident_id, version, sent FROM outbox WHERE kind='incident'")
            return [s is not None for i, v, s in rows if ids.get(i) == v]

        wait_for(lambda: all(sent(urgent)), DELIVERY_S)
        # the round that released the urgent rows had the bulk rows before it, and held them
        assert not any(sent(bulk))
        assert len(sent(bulk)) == len(bulk)
    finally:
        link.restore()
    wait_in_sync(fleet, "SHIP-A", DELIVERY_S)
    arrival = {k: m.seq for m in fleet_up(fleet, "SHIP-A") for k in m.keys}
    urgent_seq = [arrival[f"{i}:{v}"] for i, v in urgent.items()]
    bulk_seq = [arrival[f"{i}:{v}"] for i, v in bulk.items()]
    assert max(urgent_seq) < min(bulk_seq), (urgent_seq, sorted(bulk_seq)[:3])


def test_republished_rows_are_stored_once(fleet: Fleet) -> None:
    """Rows published again (as after a crash between publish and marking them sent) carry
    the same Nats-Msg-Id: FLEET_UP still holds each incident version once, and the hub's
    store is unchanged."""
    b = fleet.agents["SHIP-B"]
    raise_new(fleet, "SHIP-B", 3, "normal")
    wait_for(lambda: in_sync(fleet, "SHIP-B") and fleet.undelivered("SHIP-B") == 0, DELIVERY_S)
    stored = fleet.stored("SHIP-B")
    counts = assert_no_duplicates(fleet, "SHIP-B")
    published = b.agent.link.uplink.sent_messages

    def unsend() -> int:
        return int(
            b.agent.store.conn.execute(
                "UPDATE outbox SET sent = NULL WHERE kind = 'incident' AND note IS NULL"
                " AND delivered IS NOT NULL AND NOT EXISTS (SELECT 1 FROM outbox n"
                " WHERE n.incident_id = outbox.incident_id AND n.version > outbox.version)"
            ).rowcount
        )

    again = on_agent(b, unsend)  # the newest version of every incident, once delivered
    assert again == len(stored)
    wait_for(lambda: b.agent.link.uplink.sent_messages >= published + again, DELIVERY_S)
    # a later message: once it is ashore, anything published before it would be too
    marker = raise_new(fleet, "SHIP-B", 1, "urgent")
    wait_for(lambda: set(marker) <= set(fleet.stored("SHIP-B")), DELIVERY_S)
    after = assert_no_duplicates(fleet, "SHIP-B")
    assert after - Counter(f"{i}:{v}" for i, v in marker.items()) == counts
    assert {i: v for i, v in fleet.stored("SHIP-B").items() if i not in marker} == stored


def test_a_killed_ship_nats_server_is_restarted_and_loses_nothing(fleet: Fleet) -> None:
    """SIGKILL of the ship's leaf nats-server: the agent keeps committing, the supervisor
    restarts the server on its ports and store, and everything committed reaches the hub,
    each version once."""
    a = fleet.agents["SHIP-A"]
    server = a.agent.link.server
    restarts, pid = server.restarts, server.pid
    server.kill()
    queued: dict[str, int] = {}
    for lane in ("urgent", "normal", "bulk"):
        queued |= raise_new(fleet, "SHIP-A", 3, lane)
    wait_for(lambda: server.restarts > restarts and server.running, DELIVERY_S)
    assert server.pid != pid
    wait_in_sync(fleet, "SHIP-A", DELIVERY_S)
    assert set(queued) <= set(fleet.stored("SHIP-A"))
    assert_no_duplicates(fleet, "SHIP-A")
    wait_receipted(fleet, "SHIP-A")


# ------------------------------------------------------------------ an agent process, killed


def _alive(pid: int) -> bool:
    """Running (a zombie, killed but not yet reaped by its new parent, is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _serves(pid: int, data_dir: Path) -> bool:
    """pid is alive and is the leaf nats-server of the agent in data_dir."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(data_dir / "nats" / "nats-server.conf").encode() in cmdline and _alive(pid)


def _leaf_server_pid(data_dir: Path) -> int | None:
    """The ship's leaf nats-server recorded in its pid file, if that server still runs."""
    try:
        pid = int((data_dir / "nats" / "nats-server.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _serves(pid, data_dir) else None


class AgentProcess:
    """`seawatch ship` as its own process, its output in a file."""

    def __init__(self, ship: str, data_dir: Path, policy_dir: Path, leaf_url: str, secret: str):
        self.args = [
            sys.executable, "-m", "seawatch", "ship", "--ship-id", ship,
            "--data-dir", str(data_dir), "--policy-dir", str(policy_dir),
            "--http-port", "0", "--syslog-port", "0", "--hub-leaf-url", leaf_url, "--no-llm",
        ]  # fmt: skip
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        self.env = {**os.environ, "PYTHONPATH": path, "SEAWATCH_SHIP_SECRET": secret}
        self.ship = ship
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> str:
        """Start it; returns its API URL once it is up."""
        self.runs += 1
        out = self.data_dir.parent / f"agent-{self.runs}.out"
        with open(out, "wb") as sink:
            self.proc = subprocess.Popen(
                self.args, stdout=sink, stderr=subprocess.STDOUT, env=self.env
            )

        def api() -> str | None:
            assert self.proc is not None
            assert self.proc.poll() is None, out.read_text(errors="replace")[-2000:]
            found = re.search(r"API (http://[\d.:]+)", out.read_text(errors="replace"))
            return found.group(1) if found else None

        return str(wait_for(api, 60.0))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        uri = f"file:{self.data_dir / 'agent.db'}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            return list(conn.execute(sql))

    def committed(self) -> dict[str, int]:
        """The incidents in the ship's SQLite file, read directly."""
        return {i: v for i, v in self._query("SELECT id, version FROM incidents")}

    def marked_sent(self) -> int:
        """Incident rows the uplink marked sent (published, and acknowledged by OUTBOX)."""
        rows = self._query(
            "SELECT count(*) FROM outbox"
            " WHERE kind='incident' AND sent IS NOT NULL AND note IS NULL"
        )
        return int(rows[0][0])

    def leaf_nats_url(self) -> str:
        """Client URL of the ship's leaf nats-server (a new port each start)."""
        conf = (self.data_dir / "nats" / "nats-server.conf").read_text()
        found = re.search(r'^listen: "([^"]+)"', conf, re.MULTILINE)
        assert found, conf
        return f"nats://{found.group(1)}"


class OutboxStream:
    """A client of the ship's leaf nats-server that counts the incidents in its OUTBOX."""

    def __init__(self, fleet: Fleet, url: str, ship: str) -> None:
        self.fleet, self.ship = fleet, ship
        self.nc = fleet.call(nats.connect(url, max_reconnect_attempts=0))
        self.js = self.nc.jetstream(domain=ship)

    def incidents(self) -> int:
        subject = f"fleet.up.{self.ship}.incident"
        info = self.fleet.call(self.js.stream_info(OUTBOX, subjects_filter=subject))
        return int((info.state.subjects or {}).get(subject, 0))

    def close(self) -> None:
        self.fleet.call(self.nc.close())


def _gps_batch(ship: str, n: int, first: int) -> dict[str, Any]:
    """n navigation-data (urgent) incidents on fresh devices, as the HTTP ingest body."""
    ts = datetime.now(UTC).isoformat()
    logs = [
        {"ts": ts, "device": f"k-gps-{first + i:05d}", "app": "gpsd", "message": "GPS fix lost"}
        for i in range(n)
    ]
    return {"ship_id": ship, "logs": logs}


def _kill_mid_round(fleet: Fleet, agent: AgentProcess, api: str, first: int, n: int) -> int:
    """Post n urgent incidents at once, so one uplink round publishes them one by one and
    marks them sent only at its end, and SIGKILL the agent inside that round. Returns how
    many rows the kill left published into OUTBOX but not marked sent (0: it missed)."""
    stream = OutboxStream(fleet, agent.leaf_nats_url(), agent.ship)
    try:
        with httpx.Client(base_url=api, timeout=10.0) as client:
            r = client.post("/api/v3/ingest", json=_gps_batch(agent.ship, n, first))
            assert r.status_code == 202, r.text
        deadline = time.monotonic() + DELIVERY_S
        while stream.incidents() <= agent.marked_sent():
            assert time.monotonic() < deadline, "the uplink never published the batch"
        agent.kill()
        return stream.incidents() - agent.marked_sent()  # the orphaned server still runs
    finally:
        stream.close()


def test_a_killed_agent_process_resumes_and_delivers_exactly_its_committed_set(
    fleet: Fleet, tmp_path: Path
) -> None:
    """SIGKILL of the agent process in the middle of an uplink round (rows published into
    OUTBOX, not yet marked sent): the agent restarted on the same data directory ends its
    orphaned leaf nats-server, publishes those rows again, and the hub ends with exactly
    the incident versions committed in the ship's SQLite file, each once in FLEET_UP."""
    ship = "SHIP-K"
    secret = fleet.call(fleet.hub.fleet.add_ship(ship))
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    (policy_dir / "sync.yaml").write_text("sync:\n  uplink_budget_bps: 4000000\n")
    link = ThreadedLink("127.0.0.1", fleet.hub.fleet.leaf_port, name=ship)
    link.start()
    data_dir = tmp_path / "ship"
    agent = AgentProcess(ship, data_dir, policy_dir, f"nats-leaf://127.0.0.1:{link.port}", secret)
    orphans: list[int] = []
    try:
        api, first, unmarked = agent.start(), 0, 0
        for _ in range(3):  # the kill may land just after the round: then try once more
            unmarked = _kill_mid_round(fleet, agent, api, first, 300)
            first += 300
            pid = _leaf_server_pid(data_dir)
            assert pid is not None, "the killed agent's leaf nats-server outlives it"
            orphans.append(pid)
            api = agent.start()
            assert not _serves(pid, data_dir), "the restarted agent must end the orphan"
            if unmarked:
                break
        assert unmarked > 0, "no kill landed between publishing rows and marking them sent"

        with httpx.Client(base_url=api, timeout=10.0) as client:
            r = client.post("/api/v3/ingest", json=_gps_batch(ship, 5, first))
            assert r.status_code == 202, r.text
        wait_for(lambda: fleet.stored(ship) == agent.committed(), DELIVERY_S * 2)
        assert agent.stop() == 0
        assert _leaf_server_pid(data_dir) is None
        committed = agent.committed()
        assert len(committed) > first  # the killed runs' input was committed
        assert fleet.stored(ship) == committed
        counts = assert_no_duplicates(fleet, ship)
        assert set(counts) == {f"{i}:{v}" for i, v in committed.items()}
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait(10)
        # never leave a leaf server behind: an orphan, or the server of a killed last run
        for pid in [*orphans, _leaf_server_pid(data_dir)]:
            if pid is not None and _serves(pid, data_dir):
                os.kill(pid, signal.SIGKILL)
        link.stop()


def test_a_full_outbox_evicts_the_lowest_lane_first_and_reports_the_gap(
    fleet: Fleet, policy: Policy
) -> None:
    """An outbox over its byte bound (link down) gives up its oldest bulk rows first, never
    a normal one while bulk is left, and queues an urgent gap record; after restore the
    hub's gap records name exactly the evicted versions, and everything else arrives."""
    link, a = fleet.links["SHIP-A"], fleet.agents["SHIP-A"]
    link.cut("reset")
    try:
        wait_for(lambda: not leaf_up(a), DELIVERY_S)
        normal = raise_new(fleet, "SHIP-A", 3, "normal")  # older than the bulk rows
        bulk = raise_new(fleet, "SHIP-A", 5, "bulk")
        rows = a.sql(
            "SELECT incident_id || ':' || version, priority, length(payload) FROM outbox"
            " WHERE sent IS NULL ORDER BY id"
        )
        assert {k for k, _, _ in rows} == {f"{i}:{v}" for i, v in (normal | bulk).items()}
        bulk_rows = [(k, n) for k, p, n in rows if p == int(Priority.BULK)]
        victims = [k for k, _ in bulk_rows[:2]]
        # a bound that the two oldest bulk rows, and only they, must make room for
        bound = sum(n for _, _, n in rows) - sum(n for _, n in bulk_rows[:2])
        max_age_s = policy.retention.outbox["max_age_days"] * 86_400  # nothing is that old
        outbox: Outbox = a.agent.outbox

        def evict() -> list[str]:  # what housekeeping does, with this tiny bound
            return outbox.evict(bound, max_age_s, time.time())

        evicted = on_agent(a, evict)
        assert evicted == victims
        assert evicted_keys(fleet, "SHIP-A") >= set(victims)
        unsent = {
            r[0]
            for r in a.sql(
                "SELECT incident_id || ':' || version FROM outbox"
                " WHERE sent IS NULL AND kind = 'incident'"
            )
        }
        assert unsent == {f"{i}:{v}" for i, v in (normal | bulk).items()} - set(victims)
        gap_id = a.sql("SELECT incident_id FROM outbox WHERE kind='gap' ORDER BY id DESC")[0][0]
        # the gap record is urgent: released into the stream with the link still down
        wait_for(
            lambda: a.sql("SELECT sent FROM outbox WHERE incident_id=?", gap_id)[0][0], DELIVERY_S
        )
    finally:
        link.restore()

    def gap_keys() -> set[str]:
        rows = fleet.hub.store.gaps(["SHIP-A"], limit=1000)
        return {str(r["key"]) for r in rows if r["tracking_id"] == gap_id}

    wait_for(lambda: gap_keys() == set(victims), DELIVERY_S)
    wait_in_sync(fleet, "SHIP-A")
    stored, gone = fleet.stored("SHIP-A"), {k.split(":")[0] for k in victims}
    assert (set(normal) | set(bulk)) - gone <= set(stored)
    assert not gone & set(stored)
    # the hub receipted the gap record like any other item
    wait_receipted(fleet, "SHIP-A")


def test_urgent_incidents_beyond_the_stream_bound_wait_on_board_and_arrive(
    fleet: Fleet,
) -> None:
    """However small the bound of the ship's stream, an urgent incident released while the
    link is down is never dropped from it: the full stream refuses more (they wait in the
    SQLite outbox), and after restore the uplink trims what the hub stored and sends the
    rest, so every one arrives (or, had the outbox evicted it, would be named in a gap)."""
    ship = "SHIP-T"
    out = {**fleet.policy.retention.outbox, "max_bytes": 4_000}
    tiny = fleet.policy.model_copy(
        update={"retention": fleet.policy.retention.model_copy(update={"outbox": out})}
    )
    t = fleet.add_ship(ship, policy=tiny)
    wait_for(lambda: leaf_up(t), DELIVERY_S)
    fleet.links[ship].cut("reset")
    try:
        wait_for(lambda: not leaf_up(t), DELIVERY_S)
        urgent = raise_new(fleet, ship, 30, "urgent")
        # the stream took what fits and refused the rest, which stays unsent on board
        wait_for(lambda: t.sql("SELECT count(*) FROM outbox WHERE sent IS NOT NULL")[0][0] > 0)
        assert t.sql("SELECT count(*) FROM outbox WHERE sent IS NULL")[0][0] > 0
    finally:
        fleet.links[ship].restore()
    wait_for(lambda: leaf_up(t), DELIVERY_S)
    later = raise_new(fleet, ship, 1, "urgent")  # behind all of them
    wait_for(lambda: set(later) <= set(fleet.stored(ship)), DELIVERY_S)
    wait_for(lambda: set(urgent) <= set(fleet.stored(ship)), DELIVERY_S)
    reported = {str(r["key"]) for r in fleet.hub.store.gaps([ship], limit=1000)}
    stored = fleet.stored(ship)
    lost = {f"{i}:{v}" for i, v in urgent.items() if stored.get(i) != v} - reported
    assert not lost, f"{len(lost)} of {len(urgent)} urgent incidents neither stored nor reported"
    assert_no_duplicates(fleet, ship)


def test_a_removed_ship_is_refused_until_readded_and_rekeyed(fleet: Fleet) -> None:
    """Removing a ship at runtime revokes it at once: its live leaf connection is dropped
    and every reconnect refused, so nothing more of it arrives while the other ship carries
    on; re-adding it issues a new secret, the old one stays refused, and with the new one
    everything held on board meanwhile is delivered, each version once."""
    b, link = fleet.agents["SHIP-B"], fleet.links["SHIP-B"]
    old = fleet.secrets["SHIP-B"]
    raise_new(fleet, "SHIP-B", 1, "normal")
    wait_in_sync(fleet, "SHIP-B")
    wait_for(lambda: "SHIP-B" in hub_leafs(fleet) and leaf_up(b), DELIVERY_S)
    attempts = link.sim.connections
    assert fleet.call(fleet.hub.fleet.remove_ship("SHIP-B"))
    # dropped, and it keeps trying (a new connection through the link each time): refused
    wait_for(lambda: link.sim.connections >= attempts + 2 and not leaf_up(b), DELIVERY_S)
    wait_for(lambda: "SHIP-A" in hub_leafs(fleet), DELIVERY_S)
    assert "SHIP-B" not in hub_leafs(fleet) and not leaf_up(b)
    held = raise_new(fleet, "SHIP-B", 2, "urgent") | raise_new(fleet, "SHIP-B", 2, "normal")
    marker = raise_new(fleet, "SHIP-A", 1, "urgent")
    wait_for(lambda: set(marker) <= set(fleet.stored("SHIP-A")), DELIVERY_S)
    assert not set(held) & set(fleet.stored("SHIP-B"))

    new = fleet.call(fleet.hub.fleet.add_ship("SHIP-B"))
    assert new != old
    attempts = link.sim.connections
    # the agent keeps presenting the old secret: it reconnects, and is refused
    wait_for(lambda: link.sim.connections >= attempts + 2, DELIVERY_S)
    assert "SHIP-B" not in hub_leafs(fleet) and not leaf_up(b)
    assert not set(held) & set(fleet.stored("SHIP-B"))

    fleet.secrets["SHIP-B"] = new
    fleet.stop_agent("SHIP-B")
    b = fleet.start_agent("SHIP-B")
    wait_for(lambda: "SHIP-B" in hub_leafs(fleet) and leaf_up(b), DELIVERY_S)
    wait_in_sync(fleet, "SHIP-B")
    assert set(held) <= set(fleet.stored("SHIP-B"))
    assert_no_duplicates(fleet, "SHIP-B")


def test_rekeying_a_connected_ship_refuses_its_old_secret(fleet: Fleet) -> None:
    """Re-keying a registered, connected ship takes effect at once: its connection on the
    old secret is dropped and refused from then on, and with the new secret what it
    committed meanwhile is delivered."""
    a, link = fleet.agents["SHIP-A"], fleet.links["SHIP-A"]
    wait_for(lambda: "SHIP-A" in hub_leafs(fleet) and leaf_up(a), DELIVERY_S)
    attempts = link.sim.connections
    new = fleet.call(fleet.hub.fleet.add_ship("SHIP-A"))
    assert new != fleet.secrets["SHIP-A"]
    wait_for(lambda: link.sim.connections >= attempts + 2 and not leaf_up(a), DELIVERY_S)
    wait_for(lambda: "SHIP-B" in hub_leafs(fleet), DELIVERY_S)
    # the hub is the authority (the ship may list a refused attempt for a moment)
    assert "SHIP-A" not in hub_leafs(fleet)
    held = raise_new(fleet, "SHIP-A", 2, "urgent")
    marker = raise_new(fleet, "SHIP-B", 1, "urgent")
    wait_for(lambda: set(marker) <= set(fleet.stored("SHIP-B")), DELIVERY_S)
    assert not set(held) & set(fleet.stored("SHIP-A"))  # nothing crossed on the old secret

    fleet.secrets["SHIP-A"] = new
    fleet.stop_agent("SHIP-A")
    a = fleet.start_agent("SHIP-A")
    wait_for(lambda: "SHIP-A" in hub_leafs(fleet) and leaf_up(a), DELIVERY_S)
    wait_in_sync(fleet, "SHIP-A")
    assert set(held) <= set(fleet.stored("SHIP-A"))
    assert_no_duplicates(fleet, "SHIP-A")


def test_insights_reach_the_hub_with_their_incident_and_are_receipted(fleet: Fleet) -> None:
    """A ship whose LLM endpoint refuses connections (a real failure, not a mock) explains
    by rules; the explained versions and their Insight messages are stored ashore and
    receipted like every other row."""
    ship = "SHIP-INSIGHT"
    agent = fleet.add_ship(ship, insight=True, llm_url="http://127.0.0.1:9/v1")
    new = raise_new(fleet, ship, 2, "normal")

    def insights_ashore() -> list[dict[str, Any]]:
        return fleet.hub.store.backend.query(
            f"SELECT incident_id, model, fallback FROM {DATABASE}.insights FINAL"
            " WHERE ship_id = {ship:String}",
            {"ship": ship},
        )

    rows = wait_for(lambda: len(insights_ashore()) >= 2 and insights_ashore(), DELIVERY_S)
    assert {r["incident_id"] for r in rows} == set(new)
    assert all(r["model"] == "deterministic" or r["fallback"] for r in rows)
    wait_in_sync(fleet, ship)
    for iid in new:  # the explained version is the one stored
        detail = fleet.hub.store.incident(iid)
        assert detail is not None and "[E1]" in detail["incident"]["narrative"], detail
        assert detail["insight"]["narrative"] == detail["incident"]["narrative"]
    wait_receipted(fleet, ship)
    kinds = agent.sql("SELECT kind, count(*) FROM outbox WHERE delivered IS NOT NULL GROUP BY kind")
    assert dict(kinds)["insight"] == 2


def _lan_address() -> str | None:
    """This machine's address on its main interface (no packet is sent), if not loopback."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_the_ship_nats_server_stays_on_loopback_when_the_agent_serves_the_lan(
    tmp_path: Path, policy: Policy
) -> None:
    """`host: 0.0.0.0` opens syslog and the crew's API to the ship's LAN; the agent's own
    nats-server, whose client port takes no credentials, must not follow."""
    import socket

    from tests.conftest import start_agent, stop_agent

    agent = start_agent(
        tmp_path, policy, host="0.0.0.0", hub_leaf_url="nats-leaf://127.0.0.1:9", ship_secret="s"
    )
    try:
        link = agent.agent.link
        assert link is not None and link.server.url.startswith("nats://127.0.0.1:")
        port = link.server.port
        with closing(socket.create_connection(("127.0.0.1", port), timeout=5)):
            pass  # the agent's own client connects here
        lan = _lan_address()
        if lan is not None:
            with pytest.raises(OSError):
                socket.create_connection((lan, port), timeout=5).close()
            # while the crew's API is on the LAN address
            assert httpx.get(f"http://{lan}:{agent.agent.http_port}/health").status_code == 200
    finally:
        stop_agent(agent)


def test_the_link_stops_when_a_cancel_is_lost_injected(
    tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: on Python 3.11, `asyncio.wait_for` drops a cancellation that lands
    as the awaited event completes (fixed in 3.12), which a test cannot time. Here every
    cancel of a `wait_for` is dropped, and the link is stopped while its uplink waits in
    one. The loops are also told to stop, so the stop ends; it once hung the agent's stop
    in CI until the test's 30 s."""
    import asyncio

    from tests.conftest import start_agent, stop_agent

    real = asyncio.wait_for
    waiting = asyncio.Event()

    async def losing_cancels(aw: Any, timeout: float | None) -> Any:
        if asyncio.current_task().get_name() == "uplink":  # type: ignore[union-attr]
            waiting.set()
        try:
            return await real(aw, timeout)
        except asyncio.CancelledError:
            return None

    agent = start_agent(tmp_path, policy, hub_leaf_url="nats-leaf://127.0.0.1:9", ship_secret="s")
    link = agent.agent.link
    assert link is not None

    async def stop_while_the_uplink_waits() -> None:
        waiting.clear()
        await waiting.wait()
        await link.stop()

    try:
        monkeypatch.setattr(asyncio, "wait_for", losing_cancels)
        agent.call(stop_while_the_uplink_waits(), timeout=20)  # TimeoutError if it hangs
        monkeypatch.undo()
    finally:
        stop_agent(agent)
