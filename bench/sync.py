"""`seawatch bench sync`: the store-and-forward link against its targets, on a real fleet.

A real hub (own nats-server, chdb) and real ship agents, each behind the link simulator
(sync.linksim), so every byte is counted where a satellite modem would see it:
- catchup: a ship configured as on a LEO-class link (budget 50 Mbit/s on an unthrottled
  proxy) queues items across all lanes while its link is cut, stays cut for the outage,
  then is restored: time to the first arrival and until the hub stores every item. JetStream
  resumes sourcing after a back-off that grows with the outage; the hub restarts sourcing
  when a ship reconnects, which the run counts (`kicks`) and, with `--compare-backoff`,
  repeats with that restart disabled.
- slowlink: 64 kbit/s, 600 ms RTT, the default 48 kbit/s budget; bulk then urgent incidents
  queued during an outage: time until every urgent one is stored after restore, then the
  uplink rate at the proxy over a window while bulk drains, against the budget.
- bytes: wire bytes per incident version, or version of a remediation request proposed
  for one (both directions at the proxy, minus the idle traffic of an equally long quiet
  spell measured right after) against the same versions as plain JSON (orjson of
  model_dump(mode="json") of the outbox payloads); and the NATS framing per message
  against sync.uplink.FRAMING_BYTES.
- retention: no hub link. A pipeline and store fed 7 simulated days of the ship simulator
  (normal traffic, the weekly maintenance window, one fault of each type a day), an uplink
  that sees the link down (urgent rows leave for the local stream, the rest wait), and
  Outbox.evict every simulated hour with a bound scaled down so that it must evict.
  Reported: unsent outbox bytes against the bound, evictions per lane, gap keys against
  evicted keys; with a hub running, the gap records are delivered and its table compared.

A real hour of outage is impractical: the default outage is 120 s, enough to show the
sourcing back-off the hub's restart removes. Needs the hub extra and a source checkout
(the fleet harness lives in tests/fleet.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from shared import log, wire
from shared.models import ActionRequest, Gap, Heartbeat, Incident
from shared.policy import Policy, load_policy
from shared.taxonomy import Priority, priority_for
from sync.outbox import LANES, Outbox
from sync.uplink import FRAMING_BYTES, Uplink

if TYPE_CHECKING:
    from tests.fleet import Fleet

SCENARIOS = ("catchup", "slowlink", "bytes", "retention")
LEO_BPS = 50_000_000.0  # what a LEO-class ship's policy would grant the uplink
DAY = 86_400.0
SIM_START = 1_790_035_200.0  # Tuesday 2026-09-22 00:00 UTC, as bench.scenarios
LANE_SPLIT = (("urgent", 0.1), ("normal", 0.3), ("bulk", 0.6))  # catchup and bytes mix


@dataclass(frozen=True, slots=True)
class Config:
    """Sizes at scale 1; `scaled` shrinks them for quick runs (tests)."""

    catchup_items: int = 10_000
    outage_s: float = 120.0
    slow_bulk: int = 10_000
    slow_urgent: int = 20
    slow_link_bps: float = 64_000.0
    slow_rtt_ms: float = 600.0
    rate_window_s: float = 60.0
    bytes_incidents: int = 1_500
    bytes_fault_rounds: int = 3  # simulated injections of every fault type
    retention_days: float = 7.0
    retention_bound: int = 4_096  # bytes of unsent outbox rows: about a third of 7 days of it
    seed: int = 1
    compare_backoff: bool = False

    @classmethod
    def scaled(cls, scale: float, **overrides: Any) -> Config:
        base = cls()
        days = max(0.25, base.retention_days * scale)
        scaled = cls(
            catchup_items=max(30, round(base.catchup_items * scale)),
            outage_s=max(5.0, base.outage_s * scale),
            slow_bulk=max(30, round(base.slow_bulk * scale)),
            slow_urgent=max(3, round(base.slow_urgent * scale)),
            rate_window_s=max(10.0, base.rate_window_s * scale),
            bytes_incidents=max(30, round(base.bytes_incidents * scale)),
            bytes_fault_rounds=max(1, round(base.bytes_fault_rounds * scale)),
            retention_days=days,
            retention_bound=max(256, round(base.retention_bound * days / base.retention_days)),
        )
        return replace(scaled, **overrides)


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the table: a measured figure and, where the issue sets one, its target."""

    scenario: str
    name: str
    value: float | None
    unit: str = ""
    target: str = ""  # as the issue states it, e.g. "<= 60"
    ok: bool | None = None  # None: no target


# ------------------------------------------------------------------ the fleet


def _lane_counts(n: int) -> list[tuple[str, int]]:
    """n split over the lanes as LANE_SPLIT says, summing to n exactly."""
    counts = [(lane, int(n * share)) for lane, share in LANE_SPLIT]
    rest = n - sum(c for _, c in counts)
    return [(lane, c + (rest if lane == "bulk" else 0)) for lane, c in counts]


def _with_budget(policy: Policy, bps: float) -> Policy:
    return policy.model_copy(
        update={"sync": policy.sync.model_copy(update={"uplink_budget_bps": bps})}
    )


def _add_ship(
    fleet: Fleet, ship: str, policy: Policy, rate_bps: float | None = None, rtt_ms: float = 0.0
) -> None:
    """A ship with its own policy behind its own link (Fleet starts all on one policy)."""
    from sync.linksim import ThreadedLink

    fleet.secrets[ship] = fleet.call(fleet.hub.fleet.add_ship(ship))
    link = ThreadedLink("127.0.0.1", fleet.hub.fleet.leaf_port, name=ship)
    link.start()
    link.set_rate(rate_bps)
    link.set_delay(rtt_ms)
    fleet.links[ship] = link
    hub_policy, fleet.policy = fleet.policy, policy
    try:
        fleet.start_agent(ship)
    finally:
        fleet.policy = hub_policy


def _uplink(fleet: Fleet, ship: str) -> Uplink:
    uplink = fleet.agents[ship].agent.link.uplink
    assert uplink is not None
    return uplink  # type: ignore[no-any-return]


def _wait(what: str, predicate: Callable[[], bool], timeout: float, every: float = 0.1) -> float:
    """Poll until predicate() holds; returns the monotonic time it was seen to hold."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic()


def _cut(fleet: Fleet, ship: str) -> float:
    fleet.links[ship].cut("reset")
    _wait("link down seen by the ship", lambda: not _uplink(fleet, ship).link.leaf_up, 30)
    return time.monotonic()


def _wait_up(fleet: Fleet, ship: str) -> None:
    _wait("leaf connection up", lambda: _uplink(fleet, ship).link.leaf_up, 60)


def _committed(fleet: Fleet, ship: str, prefix: str) -> dict[str, int]:
    """The newest version of each incident on devices named with `prefix`."""
    rows = fleet.agents[ship].sql(
        "SELECT id, version FROM incidents WHERE device LIKE ?", f"{prefix}-%"
    )
    return {str(i): int(v) for i, v in rows}


def _arrived(fleet: Fleet, ship: str, want: dict[str, int]) -> int:
    stored = fleet.stored(ship)
    return sum(1 for i, v in want.items() if stored.get(i, 0) >= v)


@dataclass
class _Arrivals:
    first_s: float | None = None
    all_s: float | None = None
    leaf_s: float | None = None  # when the ship saw its leaf connection up again


def _watch_arrivals(
    fleet: Fleet, ship: str, want: dict[str, int], since: float, timeout: float
) -> _Arrivals:
    """Poll the hub's store until every wanted version is there (or timeout)."""
    out = _Arrivals()
    deadline = since + timeout
    uplink = _uplink(fleet, ship)
    while time.monotonic() < deadline:
        n = _arrived(fleet, ship, want)
        t = time.monotonic() - since
        if out.leaf_s is None and uplink.link.leaf_up:
            out.leaf_s = uplink.link.since - time.time() + time.monotonic() - since
        if n and out.first_s is None:
            out.first_s = t
        if n == len(want):
            out.all_s = t
            break
        time.sleep(0.2)
    return out


# ------------------------------------------------------------------ catchup


def _catchup_once(
    fleet: Fleet, ship: str, n: int, outage_s: float, prefix: str
) -> tuple[_Arrivals, int, float, int]:
    """Cut, queue n items, stay cut for outage_s, restore; (arrivals, kicks, queue_s, n)."""
    _wait_up(fleet, ship)
    cut_at = _cut(fleet, ship)
    for lane, count in _lane_counts(n):
        if count:
            fleet.raise_incidents(ship, count, lane, prefix=prefix)
    queued_s = time.monotonic() - cut_at
    want = _committed(fleet, ship, prefix)
    time.sleep(max(0.0, cut_at + outage_s - time.monotonic()))
    kicks = fleet.hub.fleet.kicks
    fleet.links[ship].restore()
    restored = time.monotonic()
    arrivals = _watch_arrivals(fleet, ship, want, restored, timeout=max(300.0, outage_s * 3))
    _wait("receipts back on the ship", lambda: fleet.undelivered(ship) == 0, 120)
    return arrivals, fleet.hub.fleet.kicks - kicks, queued_s, len(want)


def catchup(fleet: Fleet, ship: str, cfg: Config) -> list[Figure]:
    s = "catchup"
    arr, kicks, queued_s, n = _catchup_once(fleet, ship, cfg.catchup_items, cfg.outage_s, "cu")
    out = [
        Figure(s, "incidents queued during the outage (10/30/60 % urgent/normal/bulk)", n),
        Figure(s, "outage (link cut, reset)", cfg.outage_s, "s"),
        Figure(s, "  of which queueing them on the ship", queued_s, "s"),
        Figure(s, "leaf connection up again (as the ship sees it)", arr.leaf_s, "s"),
        Figure(s, "first arrival at the hub after restore", arr.first_s, "s"),
        Figure(
            s,
            "all stored at the hub after restore",
            arr.all_s,
            "s",
            "<= 60",
            arr.all_s is not None and arr.all_s <= 60,
        ),
        Figure(s, "hub sourcing restarts on reconnect (kicks)", kicks),
    ]
    if arr.all_s and arr.first_s is not None:
        out.append(
            Figure(
                s, "catch-up rate once flowing", n / max(arr.all_s - arr.first_s, 1e-3), "items/s"
            )
        )
    if cfg.compare_backoff:
        restart = fleet.hub.fleet.restart_source

        async def no_restart(ship_id: str) -> None:
            return None

        setattr(fleet.hub.fleet, "restart_source", no_restart)  # noqa: B010
        try:
            arr2, _, _, _ = _catchup_once(fleet, ship, cfg.catchup_items, cfg.outage_s, "nk")
        finally:
            setattr(fleet.hub.fleet, "restart_source", restart)  # noqa: B010
        out += [
            Figure(s, "without the hub's restart: first arrival", arr2.first_s, "s"),
            Figure(s, "without the hub's restart: all stored", arr2.all_s, "s"),
        ]
    return out


# ------------------------------------------------------------------ slowlink


def slowlink(fleet: Fleet, ship: str, cfg: Config) -> list[Figure]:
    s = "slowlink"
    budget = fleet.agents[ship].agent.policy.sync.uplink_budget_bps
    link = fleet.links[ship]
    _wait_up(fleet, ship)
    cut_at = _cut(fleet, ship)
    fleet.raise_incidents(ship, cfg.slow_bulk, "bulk", prefix="sl")
    fleet.raise_incidents(ship, cfg.slow_urgent, "urgent", prefix="crit")
    urgent = _committed(fleet, ship, "crit")
    bulk = _committed(fleet, ship, "sl")
    time.sleep(max(0.0, cut_at + cfg.outage_s - time.monotonic()))
    kicks = fleet.hub.fleet.kicks
    link.restore()
    restored = time.monotonic()
    arr = _watch_arrivals(fleet, ship, urgent, restored, timeout=max(120.0, cfg.outage_s))
    kicks = fleet.hub.fleet.kicks - kicks
    # the uplink rate while bulk drains: bytes at the proxy over the window
    up0, t0, done0 = link.sim.bytes_up, time.monotonic(), _arrived(fleet, ship, bulk)
    time.sleep(cfg.rate_window_s)
    up1, t1, done1 = link.sim.bytes_up, time.monotonic(), _arrived(fleet, ship, bulk)
    rate_bps = (up1 - up0) * 8 / (t1 - t0)
    drain = (done1 - done0) / (t1 - t0)
    left = len(bulk) - done1
    ratio = rate_bps / budget
    return [
        Figure(
            s,
            f"link {cfg.slow_link_bps / 1000:g} kbit/s, RTT {cfg.slow_rtt_ms:g} ms; budget",
            budget / 1000,
            "kbit/s",
        ),
        Figure(s, "bulk then urgent incidents queued during the outage", len(bulk) + len(urgent)),
        Figure(s, "  urgent ones", len(urgent)),
        Figure(s, "outage (link cut, reset)", cfg.outage_s, "s"),
        Figure(s, "leaf connection up again (as the ship sees it)", arr.leaf_s, "s"),
        Figure(s, "hub sourcing restarts on reconnect (kicks)", kicks),
        Figure(s, "first urgent one stored at the hub after restore", arr.first_s, "s"),
        Figure(
            s,
            "every urgent one stored at the hub after restore",
            arr.all_s,
            "s",
            "<= 30",
            arr.all_s is not None and arr.all_s <= 30,
        ),
        Figure(
            s,
            f"uplink rate at the proxy over {cfg.rate_window_s:.0f} s of bulk drain",
            rate_bps / 1000,
            "kbit/s",
        ),
        Figure(s, "  of the budget", 100 * ratio, "%", "<= 110", ratio <= 1.10),
        Figure(s, "bulk drain rate", drain, "items/s"),
        Figure(
            s, "  projected time to drain the rest", left / drain / 60 if drain > 0 else None, "min"
        ),
    ]


# ------------------------------------------------------------------ bytes


@dataclass
class _Delivery:
    """What crossed the link while a ship delivered a batch of incident versions."""

    seconds: float
    up: int  # at the proxy, both counters less the idle traffic of as long
    down: int
    idle: int  # the idle bytes (both ways) subtracted
    messages: int  # rows the uplink released
    frames: int  # their frames' bytes (redacted, zstd + dictionary)
    plain: list[int]  # plain JSON bytes of each incident version released

    @property
    def wire(self) -> int:
        return self.up + self.down


def _submit_sim(fleet: Fleet, ship: str, seed: int, rounds: int) -> None:
    """Simulated fault traffic into the ship agent, as its ingest would hand it over."""
    from bench.scenarios.schedule import inject, plan_end, plan_faults
    from ship_agent.simulator import Simulator
    from ship_agent.simulator.feed import agent_input

    running, policy = fleet.agents[ship], fleet.agents[ship].agent.policy
    sim = Simulator(ship, seed=seed, start_ts=SIM_START)
    plan = plan_faults(policy, SIM_START + 1800, rounds, seed)
    inject(sim, plan)

    async def submit(items: list[Any]) -> None:
        while not running.agent.submit(items):
            await asyncio.sleep(0.05)

    items: list[Any] = []
    for ev in sim.events(plan_end(policy, plan) - SIM_START):
        items.append(agent_input(ev, time.time()))
        if len(items) >= 2000:
            running.call(submit(items))
            items = []
    running.call(submit(items))
    running.drain()


def _deliver(fleet: Fleet, ship: str, feed: Callable[[], None]) -> _Delivery:
    """Bytes at the proxy from the first input until the hub confirmed every row, less an
    equally long quiet spell right after (heartbeats, leaf pings, sourcing heartbeats)."""
    sim, uplink, running = fleet.links[ship].sim, _uplink(fleet, ship), fleet.agents[ship]
    _wait_up(fleet, ship)
    _wait("an idle outbox", lambda: fleet.undelivered(ship) == 0, 60)
    time.sleep(1.0)
    up0, down0, t0, wall0 = sim.bytes_up, sim.bytes_down, time.monotonic(), time.time()
    msgs0, sent0 = uplink.sent_messages, uplink.sent_bytes
    feed()
    _wait("receipts back on the ship", lambda: fleet.undelivered(ship) == 0, 300, 0.2)
    time.sleep(0.5)  # the last receipt's bytes reach the counters
    up, down = sim.bytes_up - up0, sim.bytes_down - down0
    seconds = time.monotonic() - t0
    messages = uplink.sent_messages - msgs0
    frames = uplink.sent_bytes - sent0 - messages * FRAMING_BYTES
    i_up, i_down, i0 = sim.bytes_up, sim.bytes_down, time.monotonic()
    time.sleep(seconds)
    scale = seconds / (time.monotonic() - i0)
    idle_up = (sim.bytes_up - i_up) * scale
    idle_down = (sim.bytes_down - i_down) * scale
    rows = running.sql(  # incidents, and the remediations the ship proposed for them
        "SELECT payload FROM outbox WHERE kind IN ('incident', 'action_request')"
        " AND note IS NULL AND sent >= ?",
        wall0,
    )
    plain = [
        len(orjson.dumps(m.model_dump(mode="json")))
        for (payload,) in rows
        for m in wire.decode(bytes(payload))
        if isinstance(m, Incident | ActionRequest)
    ]
    return _Delivery(
        seconds,
        round(up - idle_up),
        round(down - idle_down),
        round(idle_up + idle_down),
        messages,
        frames,
        plain,
    )


def _bytes_figures(what: str, d: _Delivery, judged: bool) -> list[Figure]:
    s, n = "bytes", max(len(d.plain), 1)
    per, plain = d.wire / n, sum(d.plain) / n
    ratio = per / plain if plain else math.inf
    m = max(d.messages, 1)
    return [
        Figure(s, f"{what}: versions delivered, one per message", len(d.plain)),
        Figure(s, "  delivery, until the hub's receipts were back", d.seconds, "s"),
        Figure(s, "  idle traffic over as long, subtracted", d.idle / 1000, "kB"),
        Figure(s, "  plain JSON per version", plain, "B"),
        Figure(s, "  frame per message (redacted, zstd + dictionary)", d.frames / m, "B"),
        Figure(s, "  wire bytes per version, up + down", per, "B"),
        Figure(
            s,
            "  wire bytes of plain JSON",
            100 * ratio,
            "%",
            "<= 30" if judged else "(info)",
            ratio <= 0.30 if judged else None,
        ),
        Figure(
            s,
            "  of which up (the budgeted direction), of plain JSON",
            100 * d.up / n / plain if plain else None,
            "%",
        ),
        Figure(
            s,
            "  framing up per message (wire up - frame)",
            (d.up - d.frames) / m,
            "B",
            f"~ {FRAMING_BYTES} (uplink)",
        ),
        Figure(s, "  down per message (receipts, flow control)", d.down / m, "B"),
    ]


def wire_bytes(fleet: Fleet, ship: str, cfg: Config) -> list[Figure]:
    """Simulated faults are what the target is judged on: synthetic incidents (one log line
    or metric repeated) are half the size of real ones, so framing weighs double."""
    figures: list[Figure] = []
    if cfg.bytes_fault_rounds:
        sim = _deliver(
            fleet, ship, lambda: _submit_sim(fleet, ship, cfg.seed, cfg.bytes_fault_rounds)
        )
        figures += _bytes_figures("simulated faults", sim, True)
    if cfg.bytes_incidents:

        def synthetic() -> None:
            for lane, count in _lane_counts(cfg.bytes_incidents):
                if count:
                    fleet.raise_incidents(ship, count, lane, prefix="by")

        figures += _bytes_figures("synthetic incidents", _deliver(fleet, ship, synthetic), False)
    return figures


# ------------------------------------------------------------------ retention


class _LocalStream:
    """Stands in for the ship's OUTBOX stream while the link is down: keeps what arrives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> _Ack:
        self.messages.append((subject, payload, headers))
        return _Ack(seq=len(self.messages))

    async def purge_stream(self, name: str, seq: int) -> None:
        """Nothing is confirmed with the link down: the uplink trims nothing (seq 1)."""
        assert seq <= 1, f"trimmed unconfirmed messages up to {seq}"


@dataclass(frozen=True)
class _Ack:
    seq: int


def _no_heartbeat(state: str) -> Heartbeat:
    raise AssertionError(f"no heartbeat is sent with the link {state}")


@dataclass
class RetentionRun:
    """What the 7 simulated days left behind."""

    days: float
    events: int
    bound: int
    max_before: int  # unsent outbox bytes each hour before eviction, worst hour
    max_after: int
    evicted: Counter[str]  # lane -> rows
    evicted_keys: list[str]
    gap_keys: list[str]
    gap_frames: list[tuple[str, bytes, dict[str, str]]]
    order_violations: int  # evictions of a lane while a lower one kept unsent rows
    stream_bytes: int  # released to the local stream while down (urgent lane, gaps)
    released_non_urgent: int
    versions: int
    seconds: float
    hub_gaps: int | None = None


def _unsent_bytes(conn: Any) -> int:
    row = conn.execute("SELECT coalesce(sum(length(payload)),0) FROM outbox WHERE sent IS NULL")
    return int(row.fetchone()[0])


def _sim_events(days: float, seed: int, policy: Policy, ship: str) -> Iterator[Any]:
    from bench.scenarios.schedule import inject, plan_faults
    from ship_agent.simulator import SCENARIOS, Simulator

    sim = Simulator(ship, seed=seed, start_ts=SIM_START, maintenance=True)
    rounds = math.ceil(days)  # one fault of each type per simulated day
    inject(sim, plan_faults(policy, SIM_START + 1800, rounds, seed, DAY / len(SCENARIOS)))
    return sim.events(days * DAY)


def retention_run(work: Path, cfg: Config, ship: str) -> RetentionRun:
    from ship_agent.metrics import AgentMetrics
    from ship_agent.pipeline import Pipeline
    from ship_agent.simulator.feed import agent_input
    from ship_agent.store import Store
    from sync.privacy import Redactor

    policy = load_policy(ship_id=ship)
    store = Store(work / "agent.db", ship)
    pipeline = Pipeline(policy, store)
    pipeline.warm_start()
    outbox, stream = Outbox(store.conn, ship), _LocalStream()
    uplink = Uplink(
        outbox,
        stream,
        ship,
        lambda: policy.sync,
        Redactor.from_policy(policy.privacy).redact,
        _no_heartbeat,
        AgentMetrics(),
    )  # never told the leaf is up: the link stays down all along
    max_age_s = policy.retention.outbox["max_age_days"] * DAY
    loop = asyncio.new_event_loop()
    evicted: Counter[str] = Counter()
    evicted_keys: list[str] = []
    worst_before = worst_after = violations = events = 0
    started = time.perf_counter()

    def hour() -> None:
        nonlocal worst_before, worst_after, violations
        while loop.run_until_complete(uplink.round()):
            pass
        worst_before = max(worst_before, _unsent_bytes(store.conn))
        # Row stamps are wall time (the store's), so the age bound is not what is tested:
        # the byte bound is. Eviction as the agent's housekeeping does it, hourly.
        keys = outbox.evict(cfg.retention_bound, max_age_s, time.time())
        if keys:
            lanes = dict(
                store.conn.execute(
                    "SELECT incident_id || ':' || version, priority FROM outbox"
                    " WHERE note='evicted'"
                ).fetchall()
            )
            hit = {int(lanes[k]) for k in keys}
            left = {
                int(p)
                for (p,) in store.conn.execute(
                    "SELECT DISTINCT priority FROM outbox WHERE sent IS NULL AND kind != 'gap'"
                )
            }
            violations += sum(1 for p in hit for q in left if q > p)
            evicted.update(LANES[int(lanes[k])] for k in keys)
            evicted_keys.extend(keys)
        while loop.run_until_complete(uplink.round()):
            pass  # the gap record goes out at once, in the urgent lane
        worst_after = max(worst_after, _unsent_bytes(store.conn))

    try:
        items: list[Any] = []
        next_hour = SIM_START + 3600
        for ev in _sim_events(cfg.retention_days, cfg.seed, policy, ship):
            if ev.ts >= next_hour:
                pipeline.run_batch(items)
                items = []
                hour()
                next_hour += 3600
            items.append(agent_input(ev, time.time()))
            events += 1
            if len(items) >= 2000:
                pipeline.run_batch(items)
                items = []
        pipeline.run_batch(items)
        hour()
        gap_keys = [
            key
            for (payload,) in store.conn.execute("SELECT payload FROM outbox WHERE kind='gap'")
            for gap in wire.decode(bytes(payload))
            if isinstance(gap, Gap)
            for key in gap.evicted
        ]
        versions = store.conn.execute(
            "SELECT count(*) FROM outbox WHERE kind='incident'"
        ).fetchone()[0]
    finally:
        loop.close()
        store.close()
    return RetentionRun(
        days=cfg.retention_days,
        events=events,
        bound=cfg.retention_bound,
        max_before=worst_before,
        max_after=worst_after,
        evicted=evicted,
        evicted_keys=evicted_keys,
        gap_keys=gap_keys,
        gap_frames=[m for m in stream.messages if m[0].endswith(".gap")],
        order_violations=violations,
        stream_bytes=sum(len(m[1]) for m in stream.messages),
        released_non_urgent=sum(
            1
            for _, payload, _ in stream.messages
            for m in wire.decode(payload)
            if isinstance(m, Incident) and priority_for(m.severity) != Priority.URGENT
        ),
        versions=int(versions),
        seconds=time.perf_counter() - started,
    )


def deliver_gaps(fleet: Fleet, ship: str, run: RetentionRun) -> int:
    """Publish the run's gap records into the ship's real stream; how many keys the hub
    then holds for the ship."""
    running = fleet.agents[ship]
    js = running.agent.link.js

    async def publish() -> None:
        for subject, payload, headers in run.gap_frames:
            await js.publish(subject, payload, headers=headers)

    running.call(publish())
    db = fleet.database

    def held() -> int:
        rows = fleet.hub.store.backend.query(
            f"SELECT uniqExact(key) AS n FROM {db}.gaps WHERE ship_id = {{ship:String}}",
            {"ship": ship},
        )
        return int(rows[0]["n"]) if rows else 0

    with contextlib.suppress(TimeoutError):
        _wait("gap records at the hub", lambda: held() >= len(set(run.evicted_keys)), 60, 0.5)
    return held()


def retention_figures(run: RetentionRun) -> list[Figure]:
    s = "retention"
    evicted = set(run.evicted_keys)
    out = [
        Figure(s, "simulated outage (normal traffic, 15 faults a day)", run.days, "days"),
        Figure(s, "  events through the pipeline", run.events),
        Figure(s, "  incident versions committed", run.versions),
        Figure(s, "  wall time", run.seconds, "s"),
        Figure(s, "outbox bound (retention.outbox.max_bytes, scaled down)", run.bound, "B"),
        Figure(s, "unsent outbox, worst hour, before eviction", run.max_before, "B"),
        Figure(
            s,
            "unsent outbox, worst hour, after eviction",
            run.max_after,
            "B",
            "<= bound",
            run.max_after <= run.bound,
        ),
        Figure(s, "evicted: bulk", run.evicted["bulk"]),
        Figure(s, "evicted: normal", run.evicted["normal"]),
        Figure(s, "evicted: urgent", run.evicted["urgent"], "", "0", run.evicted["urgent"] == 0),
        Figure(
            s,
            "evictions of a lane while a lower lane kept rows",
            run.order_violations,
            "",
            "0",
            run.order_violations == 0,
        ),
        Figure(
            s,
            "keys in queued gap records",
            len(run.gap_keys),
            "",
            f"== evicted ({len(evicted)})",
            len(run.gap_keys) == len(evicted) and set(run.gap_keys) == evicted,
        ),
        Figure(
            s,
            "non-urgent rows released while the link was down",
            run.released_non_urgent,
            "",
            "0",
            run.released_non_urgent == 0,
        ),
        Figure(s, "local stream while down (urgent lane + gaps)", run.stream_bytes, "B"),
    ]
    if run.hub_gaps is not None:
        out.append(
            Figure(
                s,
                "evicted keys in the hub's gap table after delivery",
                run.hub_gaps,
                "",
                f"== evicted ({len(evicted)})",
                run.hub_gaps == len(evicted),
            )
        )
    return out


# ------------------------------------------------------------------ the run


def run(
    only: Sequence[str] = SCENARIOS,
    cfg: Config | None = None,
    work_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Figure]:
    """Every selected scenario, in an order that keeps them from disturbing each other
    (retention first, CPU-bound and alone; slowlink last, its bulk drains on)."""
    cfg = cfg or Config()
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    say = progress or (lambda _: None)
    figures: list[Figure] = []
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sw-sync-")))
        retention: RetentionRun | None = None
        if "retention" in only:
            say(f"retention: {cfg.retention_days:g} simulated days")
            (work_dir / "retention").mkdir(parents=True, exist_ok=True)
            retention = retention_run(work_dir / "retention", cfg, "MV-RETAIN")
        if set(only) & {"catchup", "slowlink", "bytes"} or retention is not None:
            figures += _fleet_scenarios(only, cfg, work_dir, retention, say)
        if retention is not None:
            figures += retention_figures(retention)
    order = {name: i for i, name in enumerate(SCENARIOS)}
    return sorted(figures, key=lambda f: order[f.scenario])


def _fleet_scenarios(
    only: Sequence[str],
    cfg: Config,
    work: Path,
    retention: RetentionRun | None,
    say: Callable[[str], None],
) -> list[Figure]:
    try:
        from tests.fleet import Fleet
    except ImportError as exc:  # an installed package: the harness is not shipped
        raise RuntimeError(f"bench sync runs from a source checkout ({exc})") from exc

    base = load_policy()
    leo = _with_budget(base, LEO_BPS)
    fleet = Fleet(work / "fleet", work / "chdb", "bench_sync", base, []).start()
    figures: list[Figure] = []
    try:
        ships = [("MV-RETAIN", base)] if retention is not None else []
        ships += [(f"MV-{name.upper()}", leo) for name in ("bytes", "catchup") if name in only]
        if "slowlink" in only:
            ships.append(("MV-SLOWLINK", base))
        for ship, policy in ships:
            if ship == "MV-SLOWLINK":  # slow from the first byte, the leaf handshake included
                _add_ship(fleet, ship, policy, cfg.slow_link_bps, cfg.slow_rtt_ms)
            else:
                _add_ship(fleet, ship, policy)
        if retention is not None:
            say("retention: gap records to the hub")
            _wait_up(fleet, "MV-RETAIN")
            retention.hub_gaps = deliver_gaps(fleet, "MV-RETAIN", retention)
        if "bytes" in only:
            say(f"bytes: {cfg.bytes_fault_rounds} fault round(s), {cfg.bytes_incidents} incidents")
            figures += wire_bytes(fleet, "MV-BYTES", cfg)
        if "catchup" in only:
            say(f"catchup: {cfg.catchup_items} items, {cfg.outage_s:g} s outage")
            figures += catchup(fleet, "MV-CATCHUP", cfg)
        if "slowlink" in only:
            say(f"slowlink: {cfg.slow_bulk} bulk + {cfg.slow_urgent} urgent")
            figures += slowlink(fleet, "MV-SLOWLINK", cfg)
    finally:
        fleet.stop()
    return figures


# ------------------------------------------------------------------ report and CLI


def _value(f: Figure) -> str:
    if f.value is None:
        return "-"
    v = float(f.value)
    if v.is_integer() and (f.unit in {"", "B"} or abs(v) >= 100):
        return f"{int(v):,}"
    return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"


def report(figures: Sequence[Figure]) -> list[str]:
    out = [f"  {'scenario':10s} {'measure':62s} {'value':>10s} {'unit':8s} {'target':18s} met"]
    for f in figures:
        met = "" if f.ok is None else ("yes" if f.ok else "NO")
        out.append(
            f"  {f.scenario:10s} {f.name:62s} {_value(f):>10s} {f.unit:8s} {f.target:18s} {met}"
        )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated of {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="size factor for items, windows and days"
    )
    parser.add_argument(
        "--outage-s", type=float, default=None, help="link outage in seconds (default 120 x scale)"
    )
    parser.add_argument(
        "--compare-backoff",
        action="store_true",
        help="catchup again with the hub's sourcing restart disabled (adds an outage and more)",
    )
    parser.add_argument("--seed", type=int, default=1, help="simulator seed for retention")


def main(args: argparse.Namespace) -> int:
    log.configure("ERROR")
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    overrides: dict[str, Any] = {"seed": args.seed, "compare_backoff": args.compare_backoff}
    if args.outage_s is not None:
        overrides["outage_s"] = args.outage_s
    cfg = Config.scaled(args.scale, **overrides)
    print(
        f"seawatch bench sync: {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, scale {args.scale:g}, "
        f"scenarios {', '.join(only)}",
        flush=True,
    )
    figures = run(only, cfg, progress=lambda text: print(f"  running {text}", flush=True))
    for line in report(figures):
        print(line)
    missed = [f for f in figures if f.ok is False]
    print(f"  targets: {sum(1 for f in figures if f.ok)} met, {len(missed)} missed")
    return 0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__)
    add_arguments(cli)
    raise SystemExit(main(cli.parse_args()))
