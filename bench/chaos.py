"""`seawatch bench chaos`: a fleet of real processes under link cuts and kill -9, and a
count of what the hub ends up with against what the ships committed.

The hub (`seawatch hub`) and every ship agent (`seawatch ship`) run as subprocesses, so
they can be killed like a crash kills them; each ship reaches the hub's leaf port through
a link simulator in this process. Feeders post new incidents and updates to the agents all
along. When the chaos is over every link is up, and the agents run until their outboxes
are sent and confirmed. Then the hub's FLEET_UP stream is read back (duplicates, versions
out of order) and its fleet store compared with each ship's SQLite (lost versions). The
truth is what the ships committed: an input an agent never took is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sync.linksim import CutMode, ThreadedLink
from sync.natsserver import free_port
from sync.registry import ShipRegistry
from sync.topology import FLEET_UP, HUB_DOMAIN, HUB_USER

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "seawatch"  # the hub's default fleet store database
LANES = ("urgent", "normal", "bulk")
CUT_MODES: tuple[CutMode, ...] = ("reset", "blackhole")
WORDS = "abcdefghijklmnopqrstuvwxyz"
DURATION_S = 480.0  # with start-up and catch-up, about ten minutes on two cores

# Read in a process of its own: chdb opens one data path per process, and a test runner
# may have opened another already.
READ_STORE = r"""
import json, sys
from pathlib import Path
from shore_hub.fleetstore import FleetStore
store = FleetStore.open(None, Path(sys.argv[1]), database=sys.argv[2])
rows = store.backend.query(f"SELECT ship_id, id, version FROM {sys.argv[2]}.incidents FINAL")
print("ROWS " + json.dumps([[r["ship_id"], r["id"], int(r["version"])] for r in rows]))
store.close()
"""

Say = Callable[[str], None]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ships", type=int, default=10)
    p.add_argument("--cuts", type=int, default=50, help="link cuts, spread over ships and time")
    p.add_argument("--agent-kills", type=int, default=5, help="ship agent kill -9 + restart")
    p.add_argument("--nats-kills", type=int, default=2, help="ship nats-server kill -9")
    p.add_argument(
        "--hub-restarts", type=int, default=2, help="hub restarts (kill -9, SIGTERM, ... in turn)"
    )
    p.add_argument(
        "--duration",
        type=float,
        default=DURATION_S,
        help="seconds of chaos; cuts last 1 s .. a fifth of it (default: ~10 min in all)",
    )
    p.add_argument(
        "--rate", type=float, default=1.0, help="new incidents/s per ship (as many updates)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", type=Path, help="where the fleet keeps its data (default: temp)")
    p.add_argument("--keep", action="store_true", help="keep the data directory afterwards")


# ------------------------------------------------------------------ processes


def _env(**extra: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT), **extra}


def _wait_banner(proc: subprocess.Popen[bytes], log: Path, marker: str, timeout: float) -> str:
    """The banner line a process prints once it serves; its log is a file so that what the
    process prints later can never fill a pipe and stall it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if marker in line:
                return line
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-1500:]
    raise RuntimeError(f"no {marker!r} from {log.name} (exit {proc.poll()}): {tail}")


def _alive_nats(pid: int, under: Path) -> bool:
    """Is pid a nats-server of this run (its config under our data directory)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and b"nats-server" in cmdline and str(under).encode() in cmdline


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _end(proc: subprocess.Popen[bytes] | None, sig: int) -> int | None:
    """Signal a process (SIGTERM: a clean stop; SIGKILL: a crash) and reap it."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(60.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class _Hub:
    """`seawatch hub` on fixed ports, so a restart keeps the addresses ships use."""

    def __init__(self, root: Path, logs: Path) -> None:
        self.data_dir = root / "hub"
        self.logs = logs
        self.nats_port = free_port()
        self.leaf_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.lock = threading.Lock()
        self.nats_pids: set[int] = set()  # every hub nats-server seen, for the sweep

    def note_nats_pid(self) -> None:
        pid = _read_pid(self.data_dir / "nats" / "nats-server.pid")
        if pid is not None:
            self.nats_pids.add(pid)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def password(self) -> str:
        return (self.data_dir / "ships" / "hub-nats.secret").read_text().strip()

    def start(self) -> None:
        self.starts += 1
        log = self.logs / f"hub-{self.starts}.log"
        args = ["--data-dir", str(self.data_dir), "--http-port", "0", "--no-memory"]
        args += ["--nats-port", str(self.nats_port), "--leaf-port", str(self.leaf_port)]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "seawatch", "hub", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=_env(),
            )
        _wait_banner(self.proc, log, "seawatch hub: API", 180.0)
        self.note_nats_pid()

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        proc, self.proc = self.proc, None
        return _end(proc, sig)


@dataclass
class _Ship:
    ship_id: str
    data_dir: Path
    secret: str
    link: ThreadedLink
    logs: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str | None = None  # the agent's API while it serves
    starts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    nats_pids: set[int] = field(default_factory=set)  # every leaf server seen, for the sweep
    accepted: int = 0  # batches the agent answered 202 to
    refused: int = 0  # attempts that failed (agent down, queue full)
    last_restore: float | None = None  # wall clock, as the agent stamps its outbox

    @property
    def db(self) -> Path:
        return self.data_dir / "agent.db"

    @property
    def nats_pid_file(self) -> Path:
        return self.data_dir / "nats" / "nats-server.pid"

    def start(self) -> None:
        self.starts += 1
        log = self.logs / f"{self.ship_id}-{self.starts}.log"
        args = ["--ship-id", self.ship_id, "--data-dir", str(self.data_dir)]
        args += ["--http-port", "0", "--syslog-port", "0", "--no-llm"]
        args += ["--hub-leaf-url", f"nats-leaf://127.0.0.1:{self.link.port}"]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "seawatch", "ship", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=_env(SEAWATCH_SHIP_SECRET=self.secret),
            )
        banner = _wait_banner(self.proc, log, "API http://", 180.0)
        self.url = banner.split("API ", 1)[1].split()[0]
        self.note_nats_pid()

    def note_nats_pid(self) -> None:
        pid = _read_pid(self.nats_pid_file)
        if pid is not None:
            self.nats_pids.add(pid)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        self.url = None
        proc, self.proc = self.proc, None
        return _end(proc, sig)

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read-only, beside a running agent (WAL lets readers in)."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10.0)
        try:
            return list(conn.execute(query, params))
        finally:
            conn.close()

    def backlog(self) -> tuple[int, int]:
        """(unsent, sent but not confirmed by the hub) outbox rows."""
        rows = self.sql(
            "SELECT sum(sent IS NULL), sum(sent IS NOT NULL AND delivered IS NULL"
            " AND note IS NULL) FROM outbox"
        )
        return int(rows[0][0] or 0), int(rows[0][1] or 0)

    def restore(self) -> None:
        if not self.link.sim.up:
            self.link.restore()
            self.last_restore = time.time()

    def catchup(self) -> float | None:
        """Seconds from the link's last restore until the hub confirmed the last row queued
        before it (rows whose receipt never came are left out)."""
        if self.last_restore is None:
            return None
        last = self.sql(
            "SELECT max(delivered) FROM outbox WHERE created <= ? AND note IS NULL",
            self.last_restore,
        )[0][0]
        return None if last is None else max(0.0, float(last) - self.last_restore)


# ------------------------------------------------------------------ workload


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _log(device: str, app: str, message: str, ts: float) -> dict[str, Any]:
    return {"ts": _iso(ts), "device": device, "app": app, "message": message}


def new_incident(lane: str, device: str, now: float) -> dict[str, list[dict[str, Any]]]:
    """Inputs that open one incident in one uplink lane (default severity map, as in
    tests/fleet.py): urgent = navigation_data (high), normal = resource_pressure (medium),
    bulk = auth_failure (low)."""
    if lane == "urgent":
        return {"logs": [_log(device, "gpsd", "GPS fix lost", now)], "metrics": []}
    if lane == "normal":
        samples = [
            {"ts": _iso(now - 31 * k), "device": device, "metric": "host.disk_pct", "value": 97.0}
            for k in (2, 1, 0)
        ]
        return {"logs": [], "metrics": samples}
    failed = "Failed password for admin from 10.10.1.5"
    return {"logs": [_log(device, "sshd", failed, now - k) for k in (4, 3, 2, 1, 0)], "metrics": []}


def update_line(device: str, now: float, rng: random.Random) -> dict[str, Any]:
    """A log line of a template never seen before: weak evidence that joins the device's
    open incident as a new version, without changing its type or lane."""
    words = ["".join(rng.choices(WORDS, k=rng.randint(4, 9))) for _ in range(rng.randint(3, 8))]
    return _log(device, words[0], " ".join(words), now)


def _warm_up(started: float) -> dict[str, Any]:
    """An old line first in every batch: the template detector dates its start-up grace
    from the first line it sees, so new templates count from the first batch on, even
    after an agent restarts cold."""
    return _log("chaos-feeder", "feeder", "chaos feeder warm up", started - 7_200)


def _feed(ship: _Ship, stop: threading.Event, rate: float, seed: int) -> None:
    """New incidents and updates at a steady rate; a batch the agent does not take (down,
    restarting, queue full) is tried again until it does or the chaos ends."""
    rng = random.Random(seed)
    started = time.time()
    recent: deque[str] = deque(maxlen=50)
    n = 0
    period = 1.0 / rate
    next_at = time.monotonic()
    with httpx.Client(timeout=5.0) as client:
        while not stop.is_set():
            now = time.time()
            lane = rng.choice(LANES)
            device = f"{lane}-{n:06d}"
            n += 1
            body = new_incident(lane, device, now)
            body["logs"].insert(0, _warm_up(started))
            if recent:
                body["logs"].append(update_line(rng.choice(recent), now, rng))
            while not stop.is_set():
                url = ship.url
                if url is not None:
                    try:
                        r = client.post(f"{url}/api/v3/ingest", json=body)
                        if r.status_code == 202:
                            ship.accepted += 1
                            recent.append(device)
                            break
                    except httpx.HTTPError:
                        pass
                ship.refused += 1
                stop.wait(0.2)
            next_at = max(next_at + period, time.monotonic() - period)
            stop.wait(max(0.0, next_at - time.monotonic()))


# ------------------------------------------------------------------ the plan


@dataclass(order=True)
class _Event:
    at: float  # seconds after the chaos starts
    kind: str  # cut | restore | agent_kill | nats_kill | hub_restart
    ship: int = -1
    mode: CutMode = "reset"
    index: int = 0


def plan(
    rng: random.Random,
    ships: int,
    cuts: int,
    agent_kills: int,
    nats_kills: int,
    hub_restarts: int,
    duration: float,
) -> list[_Event]:
    """When each fault happens. A ship's cuts never overlap (each one counts); every cut
    ends within the chaos; kills and restarts fall inside it, away from its edges."""
    longest = max(1.0, duration / 5)
    busy: list[list[tuple[float, float]]] = [[] for _ in range(ships)]
    events: list[_Event] = []
    for i in range(cuts):
        length = rng.uniform(1.0, longest)
        for attempt in range(400):
            if attempt and attempt % 50 == 0:
                length = max(1.0, length / 2)
            ship = rng.randrange(ships)
            start = rng.uniform(0.0, max(0.0, duration - length - 1.0))
            end = start + length
            if all(end + 1.0 <= s or start >= e + 1.0 for s, e in busy[ship]):
                break
        else:
            raise ValueError(f"cannot fit {cuts} cuts into {duration:.0f} s on {ships} ships")
        busy[ship].append((start, end))
        mode = rng.choice(CUT_MODES)
        events.append(_Event(start, "cut", ship, mode, i))
        events.append(_Event(end, "restore", ship, mode, i))
    victims = rng.sample(range(ships), ships)  # different ships first
    for i in range(agent_kills):
        at = rng.uniform(0.05, 0.8) * duration
        events.append(_Event(at, "agent_kill", victims[i % ships], index=i))
    for i in range(nats_kills):
        ship = rng.randrange(ships)
        events.append(_Event(rng.uniform(0.05, 0.85) * duration, "nats_kill", ship, index=i))
    for i in range(hub_restarts):
        at = (i + rng.uniform(0.3, 0.7)) / hub_restarts * 0.85 * duration
        events.append(_Event(at, "hub_restart", index=i))
    return sorted(events)


# ------------------------------------------------------------------ faults


@dataclass
class _Faults:
    agent_kills: int = 0
    nats_kills: int = 0
    nats_recovered: int = 0
    hub_restarts: int = 0
    hub_kill9: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


def _kill_agent(ship: _Ship, faults: _Faults, downtime: float) -> None:
    with ship.lock:
        ship.note_nats_pid()
        if ship.stop(signal.SIGKILL) != -signal.SIGKILL:
            faults.error(f"{ship.ship_id}: agent was not running at its kill")
            return
        with faults.lock:
            faults.agent_kills += 1
        time.sleep(downtime)
        try:
            ship.start()
        except RuntimeError as exc:
            faults.error(f"{ship.ship_id}: agent restart failed: {exc}")


def _kill_nats(ship: _Ship, faults: _Faults) -> None:
    with ship.lock:
        pid = _read_pid(ship.nats_pid_file)
        if pid is None or not _alive_nats(pid, ship.data_dir):
            faults.error(f"{ship.ship_id}: no leaf nats-server to kill")
            return
        ship.nats_pids.add(pid)
        os.kill(pid, signal.SIGKILL)
        with faults.lock:
            faults.nats_kills += 1
        deadline = time.monotonic() + 30.0  # the agent's supervisor starts a new one
        while time.monotonic() < deadline:
            new = _read_pid(ship.nats_pid_file)
            if new is not None and new != pid and _alive_nats(new, ship.data_dir):
                ship.nats_pids.add(new)
                with faults.lock:
                    faults.nats_recovered += 1
                return
            time.sleep(0.2)
        faults.error(f"{ship.ship_id}: leaf nats-server not restarted within 30 s")


def _restart_hub(hub: _Hub, faults: _Faults, kill9: bool) -> None:
    with hub.lock:
        hub.note_nats_pid()  # orphaned by a kill -9: the next hub must end it
        code = hub.stop(signal.SIGKILL if kill9 else signal.SIGTERM)
        if code is None or (kill9 and code != -signal.SIGKILL):
            faults.error(f"hub was not running at its restart (exit {code})")
        with faults.lock:
            faults.hub_restarts += 1
            faults.hub_kill9 += int(kill9)
        try:
            hub.start()
        except RuntimeError as exc:
            faults.error(f"hub restart failed: {exc}")


# ------------------------------------------------------------------ reading the results


@dataclass
class _Scan:
    seen: list[tuple[str, str, int]]  # (ship, incident id, version) in stream order
    messages: int
    ingest_pending: int


async def _scan(url: str, password: str, full: bool) -> _Scan:
    """FLEET_UP read back from its first message (and how far the hub's ingest is)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from shared import wire
    from shared.models import Incident

    nc = await nats.connect(url, user=HUB_USER, password=password, max_reconnect_attempts=3)
    try:
        js = nc.jetstream(domain=HUB_DOMAIN)
        info = await js.consumer_info(FLEET_UP, "hub-ingest")
        pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        last = int((await js.stream_info(FLEET_UP)).state.last_seq or 0)
        seen: list[tuple[str, str, int]] = []
        messages = 0
        if full and last:
            config = ConsumerConfig(
                ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=60
            )
            sub = await js.pull_subscribe("fleet.up.>", stream=FLEET_UP, config=config)
            done = False
            while not done:
                for msg in await sub.fetch(1000, timeout=10.0):
                    messages += 1
                    for item in wire.decode(msg.data):
                        if isinstance(item, Incident):
                            seen.append((item.ship_id, item.id, item.version))
                    done = msg.metadata.sequence.stream >= last
            await sub.unsubscribe()
        return _Scan(seen, messages, pending)
    finally:
        await nc.close()


def _read_store(hub_dir: Path) -> list[tuple[str, str, int]]:
    out = subprocess.run(
        [sys.executable, "-c", READ_STORE, str(hub_dir / "clickhouse"), DATABASE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        timeout=300,
    )
    rows = next((ln for ln in out.stdout.splitlines() if ln.startswith("ROWS ")), None)
    if out.returncode != 0 or rows is None:
        raise RuntimeError(f"reading the fleet store failed: {out.stderr[-1500:]}")
    return [(s, i, int(v)) for s, i, v in json.loads(rows[5:])]


def count(
    committed: dict[str, dict[str, int]],
    stored: list[tuple[str, str, int]],
    seen: list[tuple[str, str, int]],
) -> dict[str, int]:
    """lost: a committed (id, newest version) the store does not hold with that version;
    duplicated: a version on FLEET_UP more than once; out_of_order: a version arriving
    after a higher one of the same incident; ahead/unexpected: what cannot be (errors)."""
    at_hub = {(s, i): v for s, i, v in stored}
    lost = ahead = 0
    for ship, incidents in committed.items():
        for inc_id, version in incidents.items():
            have = at_hub.get((ship, inc_id))
            if have is None or have < version:
                lost += 1
            elif have > version:
                ahead += 1
    known = {(s, i) for s, incs in committed.items() for i in incs}
    unexpected = sum(1 for key in at_hub if key not in known)
    occurrences = Counter(seen)
    highest: dict[tuple[str, str], int] = {}
    out_of_order = 0
    for ship, inc_id, version in seen:
        top = highest.get((ship, inc_id), 0)
        if version < top:
            out_of_order += 1
        highest[(ship, inc_id)] = max(top, version)
    return {
        "lost": lost,
        "duplicated": sum(n - 1 for n in occurrences.values()),
        "out_of_order": out_of_order,
        "ahead": ahead,
        "unexpected": unexpected,
        "versions_sent": len(occurrences),
        "versions_stored": sum(at_hub[k] for k in known if k in at_hub),
    }


# ------------------------------------------------------------------ the run


def _wait_caught_up(
    ships: list[_Ship], hub: _Hub, since: float, timeout: float, say: Say
) -> dict[str, float]:
    """Per ship, seconds from `since` until its outbox held nothing unsent or unconfirmed.

    A receipt can be lost (the hub stopped between storing and confirming): once nothing is
    unsent and the hub's ingest is idle for a while, the ship counts as caught up anyway."""
    caught: dict[str, float] = {}
    quiet_since: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(caught) < len(ships):
        unsent_total = 0
        for ship in ships:
            if ship.ship_id in caught:
                continue
            try:
                unsent, unconfirmed = ship.backlog()
            except sqlite3.Error:
                continue
            unsent_total += unsent
            if unsent == unconfirmed == 0:
                caught[ship.ship_id] = time.monotonic() - since
        if unsent_total == 0 and len(caught) < len(ships):
            try:
                pending = asyncio.run(_scan(hub.nats_url, hub.password, full=False)).ingest_pending
            except Exception:  # the hub's server not answering this round
                pending = -1
            if pending == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 30.0:
                    for ship in ships:
                        caught.setdefault(ship.ship_id, time.monotonic() - since)
                    say("receipts missing: counting ships with sent rows as caught up")
            else:
                quiet_since = None
        time.sleep(0.5)
    return caught


def _ingested(hub: _Hub, timeout: float = 120.0) -> None:
    """Wait until the hub's ingest has taken everything FLEET_UP holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if asyncio.run(_scan(hub.nats_url, hub.password, full=False)).ingest_pending == 0:
                return
        time.sleep(0.5)


def _settle(fleet: list[_Ship], hub: _Hub, say: Say) -> tuple[_Scan, int, int]:
    """Stop every agent and read FLEET_UP back; returns that scan, the rounds it took and
    the rows on the hub whose receipt never reached the ship.

    Stopping commits what an agent still had queued, and a row sent just before the stop
    may not have crossed yet: an agent that stopped with a row unsent, or sent but neither
    confirmed nor on FLEET_UP, is started again until a stop leaves nothing behind."""
    rounds = 0
    while True:
        rounds += 1
        for ship in fleet:
            ship.note_nats_pid()
            ship.stop()
        _ingested(hub)
        scan = asyncio.run(_scan(hub.nats_url, hub.password, full=True))
        on_hub = set(scan.seen)
        behind: list[_Ship] = []
        receipts_missing = 0
        for ship in fleet:
            unsent = ship.backlog()[0]
            unconfirmed = ship.sql(
                "SELECT incident_id, version FROM outbox WHERE kind='incident'"
                " AND sent IS NOT NULL AND delivered IS NULL AND note IS NULL"
            )
            absent = [k for k in unconfirmed if (ship.ship_id, k[0], k[1]) not in on_hub]
            receipts_missing += len(unconfirmed) - len(absent)
            if unsent or absent:
                behind.append(ship)
        if not behind or rounds == 5:
            return scan, rounds, receipts_missing
        say(f"{len(behind)} ships stopped with rows not on the hub: once more")
        starters = [threading.Thread(target=s.start) for s in behind]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        _wait_caught_up(behind, hub, time.monotonic(), 180.0, say)


def run(
    ships: int = 10,
    cuts: int = 50,
    agent_kills: int = 5,
    nats_kills: int = 2,
    hub_restarts: int = 2,
    duration: float = DURATION_S,
    rate: float = 1.0,
    seed: int = 1,
    data_dir: Path | None = None,
    keep: bool = False,
    say: Say | None = None,
) -> dict[str, Any]:
    """Run the chaos; returns its figures (see main for the table)."""
    say = say or (lambda _text: None)
    t_start = time.monotonic()
    rng = random.Random(seed)
    events = plan(rng, ships, cuts, agent_kills, nats_kills, hub_restarts, duration)
    if data_dir is not None and data_dir.exists() and any(data_dir.iterdir()):
        raise ValueError(f"{data_dir} is not empty: a run needs fresh ships and a fresh hub")
    root = data_dir or Path(tempfile.mkdtemp(prefix="seawatch-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    hub = _Hub(root, logs)
    registry = ShipRegistry(hub.data_dir / "ships")  # read by the hub when it starts
    fleet: list[_Ship] = []
    stop_feed = threading.Event()
    feeders: list[threading.Thread] = []
    actions: list[threading.Thread] = []
    faults = _Faults()
    figures: dict[str, Any] = {}
    try:
        for i in range(ships):
            ship_id = f"MV-CHAOS-{i:02d}"
            link = ThreadedLink("127.0.0.1", hub.leaf_port, name=ship_id)
            link.start()
            fleet.append(
                _Ship(ship_id, root / "ships" / ship_id, registry.add(ship_id), link, logs)
            )
        hub.start()
        say(f"hub up (nats {hub.nats_url}, leaf :{hub.leaf_port}); starting {ships} agents")
        starters = [threading.Thread(target=s.start) for s in fleet]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if any(s.url is None for s in fleet):
            raise RuntimeError("not every agent started: see the logs under " + str(logs))
        for i, ship in enumerate(fleet):
            feeder = threading.Thread(
                target=_feed, args=(ship, stop_feed, rate, seed * 1000 + i), daemon=True
            )
            feeder.start()
            feeders.append(feeder)
        say(f"chaos for {duration:.0f} s: {len(events)} events")
        t0 = time.monotonic()
        for ev in events:
            delay = t0 + ev.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if ev.kind == "cut":
                fleet[ev.ship].link.cut(ev.mode)
            elif ev.kind == "restore":
                fleet[ev.ship].restore()
            else:
                if ev.kind == "agent_kill":
                    target: Callable[..., None] = _kill_agent
                    args: tuple[Any, ...] = (fleet[ev.ship], faults, rng.uniform(0.5, 3.0))
                elif ev.kind == "nats_kill":
                    target, args = _kill_nats, (fleet[ev.ship], faults)
                else:
                    target, args = _restart_hub, (hub, faults, ev.index % 2 == 0)
                thread = threading.Thread(target=target, args=args, name=ev.kind)
                thread.start()
                actions.append(thread)
            what = fleet[ev.ship].ship_id if ev.ship >= 0 else "hub"
            say(f"{ev.at:6.1f} s  {ev.kind:<11} {what} {ev.mode if ev.kind == 'cut' else ''}")
        time.sleep(max(0.0, t0 + duration - time.monotonic()))
        stop_feed.set()
        for thread in actions:
            thread.join()
        for ship in fleet:
            ship.restore()
        restored = time.monotonic()
        chaos_s = restored - t0
        say(f"chaos over after {chaos_s:.0f} s; waiting for the ships to catch up")
        for feeder in feeders:
            feeder.join(10.0)
        caught = _wait_caught_up(fleet, hub, restored, max(180.0, duration), say)
        scan, rounds, receipts_missing = _settle(fleet, hub, say)
        committed = {s.ship_id: dict(s.sql("SELECT id, version FROM incidents")) for s in fleet}
        catchup = {s.ship_id: s.catchup() for s in fleet}
        known = [c for c in catchup.values() if c is not None]
        superseded = sum(
            s.sql("SELECT count(*) FROM outbox WHERE note='superseded'")[0][0] for s in fleet
        )
        evicted = sum(
            s.sql("SELECT count(*) FROM outbox WHERE note='evicted'")[0][0] for s in fleet
        )
        hub.stop()
        stored = _read_store(hub.data_dir)
        figures = {
            "ships": ships,
            "cuts": sum(s.link.sim.cuts for s in fleet),
            "cuts_blackhole": sum(1 for e in events if e.kind == "cut" and e.mode == "blackhole"),
            "agent_kills": faults.agent_kills,
            "nats_kills": faults.nats_kills,
            "nats_recovered": faults.nats_recovered,
            "hub_restarts": faults.hub_restarts,
            "hub_kill9": faults.hub_kill9,
            "incidents": sum(len(c) for c in committed.values()),
            "versions_committed": sum(sum(c.values()) for c in committed.values()),
            **count(committed, stored, scan.seen),
            "superseded": superseded,
            "evicted": evicted,
            "receipts_missing": receipts_missing,
            "fleet_up_messages": scan.messages,
            "ingest_pending": scan.ingest_pending,
            "batches_accepted": sum(s.accepted for s in fleet),
            "batches_refused": sum(s.refused for s in fleet),
            "stop_rounds": rounds,
            "chaos_s": round(chaos_s, 1),
            "catchup_max_s": round(max(known), 1) if known else None,
            "drain_s": round(max(caught.values()), 1) if caught else None,
            "caught_up": len(caught),
            "per_ship": {
                s.ship_id: {
                    "cuts": s.link.sim.cuts,
                    "down_s": round(float(s.link.sim.stats()["down_s"]), 1),
                    "agent_starts": s.starts,
                    "incidents": len(committed[s.ship_id]),
                    "versions": sum(committed[s.ship_id].values()),
                    "bytes_up": s.link.sim.bytes_up,
                    "bytes_down": s.link.sim.bytes_down,
                    "catchup_s": None if c is None else round(c, 1),
                }
                for s, c in zip(fleet, catchup.values(), strict=True)
            },
        }
    finally:
        stop_feed.set()
        for thread in actions:
            thread.join(120.0)
        for ship in fleet:
            ship.note_nats_pid()
            ship.stop()
            ship.link.stop()
        with contextlib.suppress(Exception):
            hub.stop()
        orphans = _sweep(fleet, hub)
        if not keep and data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    figures["orphans"] = orphans
    figures["errors"] = faults.errors
    figures["data_dir"] = str(root) if keep or data_dir is not None else None
    figures["wall_s"] = round(time.monotonic() - t_start, 1)
    return figures


def _sweep(fleet: list[_Ship], hub: _Hub) -> int:
    """nats-servers of this run still alive after every process was stopped: ended here,
    and counted (there should be none)."""
    pids = {p for s in fleet for p in s.nats_pids}
    pids |= {p for p in (_read_pid(s.nats_pid_file) for s in fleet) if p is not None}
    hub.note_nats_pid()
    pids |= hub.nats_pids
    root = hub.data_dir.parent
    orphans = [p for p in sorted(pids) if _alive_nats(p, root)]
    for pid in orphans:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(orphans)


# ------------------------------------------------------------------ the command


def table(f: dict[str, Any]) -> str:
    kill9 = f["hub_kill9"]
    rows = [
        ("ships", f["ships"]),
        (
            "cuts",
            f"{f['cuts']} ({f['cuts'] - f['cuts_blackhole']} reset, "
            f"{f['cuts_blackhole']} blackhole)",
        ),
        ("agent kills (kill -9)", f["agent_kills"]),
        ("nats kills (kill -9)", f"{f['nats_kills']} ({f['nats_recovered']} restarted)"),
        (
            "hub restarts",
            f"{f['hub_restarts']} ({f['hub_restarts'] - kill9} SIGTERM, {kill9} SIGKILL)",
        ),
        ("incidents", f["incidents"]),
        ("versions committed", f["versions_committed"]),
        ("versions sent", f["versions_sent"]),
        ("versions stored", f["versions_stored"]),
        ("lost", f["lost"]),
        ("duplicated", f["duplicated"]),
        ("out_of_order", f["out_of_order"]),
        ("stored ahead of ship (error)", f["ahead"]),
        ("stored, unknown to ships (error)", f["unexpected"]),
        ("superseded unsent", f["superseded"]),
        ("evicted", f["evicted"]),
        ("receipts missing (on the hub)", f["receipts_missing"]),
        ("FLEET_UP messages", f["fleet_up_messages"]),
        ("batches accepted (202)", f["batches_accepted"]),
        # each batch opens one incident: a 202 is a place in the agent's queue, not a commit
        ("  of them lost in a kill -9 before commit", f["batches_accepted"] - f["incidents"]),
        ("post attempts refused (agent down)", f["batches_refused"]),
        ("agent stop rounds", f["stop_rounds"]),
        ("orphan nats-servers", f["orphans"]),
        ("chaos s", f["chaos_s"]),
        ("max catch-up after last restore s", f["catchup_max_s"]),
        ("drain after chaos s", f["drain_s"]),
        ("wall time s", f["wall_s"]),
    ]
    width = max(len(k) for k, _ in rows)
    out = [f"{'figure':<{width}}  value"] + [f"{k:<{width}}  {v}" for k, v in rows]
    out += [
        "",
        f"{'ship':<12} {'cuts':>5} {'down s':>7} {'starts':>6} {'incidents':>9} "
        f"{'versions':>8} {'bytes up':>10} {'bytes down':>10} {'catch-up s':>10}",
    ]
    for ship, s in f["per_ship"].items():
        out.append(
            f"{ship:<12} {s['cuts']:>5} {s['down_s']:>7} {s['agent_starts']:>6} "
            f"{s['incidents']:>9} {s['versions']:>8} {s['bytes_up']:>10} {s['bytes_down']:>10} "
            f"{'-' if s['catchup_s'] is None else s['catchup_s']:>10}"
        )
    for err in f["errors"]:
        out.append(f"error: {err}")
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    figures = run(
        ships=args.ships,
        cuts=args.cuts,
        agent_kills=args.agent_kills,
        nats_kills=args.nats_kills,
        hub_restarts=args.hub_restarts,
        duration=args.duration,
        rate=args.rate,
        seed=args.seed,
        data_dir=args.data_dir,
        keep=args.keep,
        say=lambda text: print(text, file=sys.stderr, flush=True),
    )
    print(table(figures))
    if figures.get("data_dir"):
        print(f"data and logs: {figures['data_dir']}")
    ok = figures["lost"] == figures["duplicated"] == figures["out_of_order"] == 0
    return 0 if ok and not figures["ahead"] and not figures["unexpected"] else 1
