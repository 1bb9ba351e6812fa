"""The chaos bench at a small scale: real hub and ship processes, link cuts, kill -9 of an
agent, of a ship's nats-server and of the hub; the hub ends with exactly the versions the
ships committed."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from bench.chaos import count, plan, run


def test_plan_fits_every_fault_inside_the_chaos() -> None:
    events = plan(random.Random(3), 3, 12, 2, 2, 2, duration=60.0)
    kinds = Counter(e.kind for e in events)
    assert kinds == {"cut": 12, "restore": 12, "agent_kill": 2, "nats_kill": 2, "hub_restart": 2}
    assert all(0 <= e.at <= 60.0 for e in events)
    for ship in range(3):  # a ship's cuts never overlap, so each one is a real cut
        down = 0
        for e in events:
            if e.ship == ship and e.kind in ("cut", "restore"):
                down += 1 if e.kind == "cut" else -1
                assert down in (0, 1)


def test_count_tells_lost_duplicated_and_out_of_order_apart() -> None:
    committed = {"A": {"i1": 3, "i2": 1, "i3": 2}, "B": {"i1": 1}}
    stored = [("A", "i1", 3), ("A", "i2", 1), ("A", "i3", 1), ("B", "i9", 1)]
    seen = [("A", "i1", 1), ("A", "i1", 3), ("A", "i1", 2), ("A", "i2", 1), ("A", "i2", 1)]
    f = count(committed, stored, seen)
    assert (f["lost"], f["duplicated"], f["out_of_order"]) == (2, 1, 1)  # A/i3 stale, B/i1 absent
    assert (f["ahead"], f["unexpected"], f["versions_sent"]) == (0, 1, 4)
    assert count({"A": {"i1": 1}}, [("A", "i1", 2)], [])["ahead"] == 1


def test_small_chaos_loses_duplicates_and_reorders_nothing(tmp_path: Path) -> None:
    f = run(
        ships=2,
        cuts=4,
        agent_kills=1,
        nats_kills=1,
        hub_restarts=1,
        duration=40.0,
        seed=7,
        data_dir=tmp_path / "chaos",
    )
    assert f["errors"] == []
    assert (f["lost"], f["duplicated"], f["out_of_order"]) == (0, 0, 0)
    assert (f["ahead"], f["unexpected"]) == (0, 0)
    assert f["versions_stored"] > 0 and f["versions_stored"] == f["versions_committed"]
    assert f["incidents"] > 10 and f["versions_committed"] > f["incidents"]  # updates too
    assert f["cuts"] == 4
    assert f["agent_kills"] == 1
    assert f["nats_kills"] == f["nats_recovered"] == 1
    assert f["hub_restarts"] == f["hub_kill9"] == 1  # the harsher kind: its server orphaned
    assert f["orphans"] == 0
