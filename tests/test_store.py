"""Store retention follows retention.yaml: old events by id range, a row cap, old incidents."""

from __future__ import annotations

import time

from shared.ids import id_floor
from shared.policy import Policy
from ship_agent.pipeline import Pipeline
from ship_agent.records import MetricEvent
from ship_agent.store import Batch, Store
from tests.conftest import T0, metric


def _event_at(ts: float, n: int) -> MetricEvent:
    tracking = id_floor(ts)[:-4] + f"{n:04d}"
    return MetricEvent(tracking, ts, "sw-01", "net.cpu_pct", 1.0, ts, "test")


def test_retention_deletes_old_events_and_caps_rows(store: Store, policy: Policy) -> None:
    now = time.time()
    r = policy.retention.ship
    old = [_event_at(now - (r.events_days + 1) * 86400, i) for i in range(50)]
    fresh = [_event_at(now - 3600, i) for i in range(200)]
    store.commit(Batch(metrics=old + fresh))
    removed = store.apply_retention(
        now, r.events_days, r.incidents_days, r.dead_letters_days, max_events_rows=150
    )
    assert removed["events"] == 50 + 50
    left = [row[0] for row in store.conn.execute("SELECT tracking_id FROM events ORDER BY 1")]
    assert len(left) == 150 and left == sorted(e.tracking_id for e in fresh)[50:]


def test_retention_keeps_open_incidents_and_drops_old_resolved(
    pipeline: Pipeline, store: Store, policy: Policy
) -> None:
    pipeline.run_batch([metric("vsat-modem-01", "vsat.snr_db", 9.0, T0 + i * 20) for i in range(9)])
    pipeline.run_batch(
        [metric("pos-srv-01", "host.disk_pct", 97.0, T0 + 5000 + i * 30) for i in range(5)]
    )
    assert dict(store.conn.execute("SELECT device, status FROM incidents")) == {
        "vsat-modem-01": "resolved",
        "pos-srv-01": "open",
    }
    r = policy.retention.ship
    removed = store.apply_retention(
        T0 + 5000 + (r.incidents_days + 1) * 86400,
        r.events_days,
        r.incidents_days,
        r.dead_letters_days,
        r.max_events_rows,
    )
    assert removed["incidents"] == 1
    assert [row[0] for row in store.conn.execute("SELECT device FROM incidents")] == ["pos-srv-01"]
    assert (
        store.conn.execute("SELECT count(DISTINCT incident_id) FROM incident_timeline").fetchone()[
            0
        ]
        == 1
    )
