"""Training the wire format's zstd dictionaries (codec 2 in shared.wire).

One incident per NATS message is 1-4 KB of JSON: too little for zstd to find much to
reuse inside it, while most of it (field names, enums, detector names, device names, the
phrasing of summaries and timeline entries) repeats from one incident to the next. A
dictionary trained on what actually crosses the link gives the compressor that shared
context up front. The samples are therefore real pipeline output: incident versions from
simulated ship-days with every fault scenario injected (plus fault-free days with the
weekly maintenance window, whose incidents are recorded as suppressed), read back from
the agent's outbox, redacted as the link requires, beside heartbeats.

A shipped dictionary never changes (frames name it by version); a better one is trained
as the next version, committed beside the old ones and registered in shared.wire:

    python -m sync.dictionary train --out shared/dicts/incidents-v2.zdict

Training uses its own simulator seed (`TRAIN_SEED`); measure on another (bench/wire.py).
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import zstandard
from pydantic import BaseModel

from bench.scenarios.run import maintenance_policy
from bench.scenarios.schedule import inject, plan_end, plan_faults
from policies import runbooks_dir
from shared import wire
from shared.ids import new_id
from shared.models import Command, Heartbeat, Incident
from shared.policy import Policy, load_policy
from shared.taxonomy import IncidentStatus, Priority
from ship_agent.insight import Knowledge
from ship_agent.pipeline import Pipeline
from ship_agent.remediate import Remediator
from ship_agent.simulator import Simulator
from ship_agent.simulator.feed import replay_into
from ship_agent.store import Batch, Store
from sync.privacy import Redactor

TRAIN_SEED = 101
START = 1_790_035_200.0  # Tuesday 2026-09-22 00:00 UTC
FIRST_FAULT_S = 1800.0
DAY = 86_400.0
HEARTBEAT_S = 300.0
DEFAULT_SIZE = 32 * 1024
_BATCH = 2000
APPROVERS = ["ops-anna", "ops-ben"]
_LINK_STATES: tuple[Literal["up", "degraded", "down"], ...] = ("up", "degraded", "down")


class _Remediating:
    """The pipeline with the agent's remediation loop behind it, since a ship's uplink
    carries the remediations it proposes too: dry-run, and those that wait for people
    approved by two ashore."""

    def __init__(self, policy: Policy, store: Store) -> None:
        self.pipeline = Pipeline(policy, store)
        self.remediator = Remediator(
            store, policy.remediate, Knowledge(None, runbooks_dir()), policy.ingest.role_of
        )

    def run_batch(self, items: list[Any]) -> Batch:
        batch = self.pipeline.run_batch(items)
        r = self.remediator
        r.propose_for(batch)
        for request in r.requests("pending"):
            approvers = APPROVERS[: request.approvals_needed]
            r.decide_ashore(
                Command(
                    tracking_id=new_id(),
                    ship_id=request.ship_id,
                    ts=request.ts,
                    action="approval_decision",
                    actor=approvers[-1],
                    payload={"approval_id": request.id, "decision": "approved",
                             "approvers": approvers},
                )
            )  # fmt: skip
        for request_id in r.due():
            claimed = r.claim(request_id)
            if claimed is not None:
                r.finish(claimed, *r.execute(claimed))
        return batch


def outbox_messages(sim: Simulator, duration_s: float, policy: Policy) -> list[BaseModel]:
    """Run the simulation through a real pipeline, store and remediation loop; every
    outbox message, in order."""
    with tempfile.TemporaryDirectory(prefix="seawatch-dict-") as tmp:
        store = Store(Path(tmp) / "agent.db", sim.ship_id)
        try:
            replay_into(_Remediating(policy, store), sim.events(duration_s), _BATCH)
            rows = store.conn.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
        finally:
            store.close()
    return [m for (payload,) in rows for m in wire.decode(payload)]


def heartbeats(
    ship_id: str, policy: Policy, incidents: Sequence[Incident], rng: random.Random
) -> list[Heartbeat]:
    """One heartbeat every HEARTBEAT_S over the incidents' span, with the open ones counted."""
    if not incidents:
        return []
    first = min(i.first_seen for i in incidents).timestamp()
    last = max(i.last_seen for i in incidents).timestamp()
    latest: dict[str, Incident] = {}
    out = []
    ordered = sorted(incidents, key=lambda i: i.ts)
    k = 0
    t = first
    while t <= last:
        while k < len(ordered) and ordered[k].ts.timestamp() <= t:
            latest[ordered[k].id] = ordered[k]
            k += 1
        open_by_type: dict[str, int] = {}
        for inc in latest.values():
            if inc.status is not IncidentStatus.RESOLVED:
                open_by_type[inc.type.value] = open_by_type.get(inc.type.value, 0) + 1
        link = rng.choices(_LINK_STATES, [0.9, 0.07, 0.03])[0]
        backlog = 0 if link == "up" else rng.randrange(1, 400)
        out.append(
            Heartbeat(
                tracking_id=new_id(),
                ship_id=ship_id,
                ts=datetime.fromtimestamp(t, UTC),
                agent_version="0.1.0",
                policy_version=policy.version,
                link_state=link,
                queue_depths={p.name.lower(): rng.randrange(0, 3) + backlog for p in Priority},
                oldest_unsent_s=round(rng.uniform(0.1, 5.0) + backlog * 3.1, 3),
                open_incidents=open_by_type,
            )
        )
        t += HEARTBEAT_S
    return out


def sample_messages(
    seed: int = TRAIN_SEED, rounds: int = 4, normal_days: float = 2.0, ship_id: str = "MV-TRAIN"
) -> list[BaseModel]:
    """Redacted wire messages of simulated ship-days: `rounds` injections of every fault
    scenario (overlapping, on every device where each can happen), `normal_days` of normal
    traffic with the weekly maintenance window, and heartbeats over both."""
    policy = load_policy(ship_id=ship_id)
    sim = Simulator(ship_id, seed=seed, start_ts=START)
    plan = plan_faults(policy, START + FIRST_FAULT_S, rounds, seed)
    inject(sim, plan)
    messages = outbox_messages(sim, plan_end(policy, plan) - START, policy)
    if normal_days > 0:
        with tempfile.TemporaryDirectory(prefix="seawatch-dict-") as tmp:
            quiet = maintenance_policy(Path(tmp))
        normal = Simulator(ship_id, seed=seed + 1000, start_ts=START, maintenance=True)
        messages += outbox_messages(normal, normal_days * DAY, quiet)
    incidents = [m for m in messages if isinstance(m, Incident)]
    messages += heartbeats(ship_id, policy, incidents, random.Random(seed))
    return Redactor.from_policy(policy.privacy).redact(messages)


def train(samples: Sequence[bytes], size: int = DEFAULT_SIZE) -> bytes:
    """A zstd dictionary of at most `size` bytes for bodies like `samples` (wire bodies)."""
    try:
        trained = zstandard.train_dictionary(size, list(samples), level=wire.LEVEL)
    except zstandard.ZstdError as exc:
        total = sum(len(s) for s in samples)
        raise ValueError(
            f"cannot train a {size}-byte dictionary on {len(samples)} samples of {total} bytes"
            f" ({exc}): simulate more ship-days"
        ) from exc
    return trained.as_bytes()


def bodies(messages: Sequence[BaseModel]) -> list[bytes]:
    """Each message as the body of its own frame: one message per NATS message."""
    return [wire.dumps([m]) for m in messages]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync.dictionary", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("train", help="train a wire dictionary on simulated ship-days")
    cmd.add_argument("--out", type=Path, required=True, help="e.g. shared/dicts/incidents-v2.zdict")
    cmd.add_argument("--size", type=int, default=DEFAULT_SIZE, help="dictionary bytes")
    cmd.add_argument("--seed", type=int, default=TRAIN_SEED)
    cmd.add_argument("--rounds", type=int, default=4, help="injections of each fault type")
    cmd.add_argument("--normal-days", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists: a shipped dictionary never changes, train a new version")
    messages = sample_messages(args.seed, args.rounds, args.normal_days)
    samples = bodies(messages)
    data = train(samples, args.size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    incidents = sum(isinstance(m, Incident) for m in messages)
    print(
        f"{args.out}: {len(data):,} bytes from {len(samples):,} messages ({incidents:,} incident"
        f" versions, {sum(map(len, samples)):,} bytes), seed {args.seed}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
