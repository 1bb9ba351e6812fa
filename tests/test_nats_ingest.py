"""The local NATS subject for on-board producers, against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import orjson
import pytest

from shared.policy import Policy
from sync.natsserver import NatsServer
from tests.conftest import SHIP, start_agent, stop_agent, wait_for


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = NatsServer("ship-local", tmp_path / "nats", domain="MV-TEST")
    server.start()
    yield server.url
    server.stop()


def test_nats_batches_are_ingested_and_bad_ones_dead_lettered(
    tmp_path: Path, policy: Policy, nats_url: str
) -> None:
    running = start_agent(tmp_path, policy, nats_url=nats_url)
    subject = f"{policy.ingest.nats_subject}.{SHIP}"
    try:

        async def publish() -> None:
            nc = await nats.connect(nats_url)
            good = {
                "logs": [
                    {
                        "ts": "2026-09-21T14:00:00Z",
                        "device": "pos-srv-01",
                        "app": "pos",
                        "severity": 6,
                        "message": "till 3 opened",
                    }
                ],
                "metrics": [
                    {
                        "ts": "2026-09-21T14:00:00Z",
                        "device": "pos-srv-01",
                        "metric": "host.disk_pct",
                        "value": 55.5,
                    }
                ],
            }
            await nc.publish(subject, orjson.dumps(good))
            await nc.publish(subject, b"{broken")
            await nc.publish(subject, orjson.dumps({"ship_id": "MV-ELSE", "logs": []}))
            await nc.flush()
            await nc.close()

        asyncio.run(publish())
        events = wait_for(
            lambda: (
                (r := running.sql("SELECT kind, source, device FROM events ORDER BY kind"))
                and len(r) == 2
                and r
            )
        )
        assert events == [("log", "nats", "pos-srv-01"), ("metric", "nats", "pos-srv-01")]
        dead = wait_for(
            lambda: (
                (r := running.sql("SELECT source, reason, peer FROM dead_letters ORDER BY id"))
                and len(r) == 2
                and r
            )
        )
        assert dead[0][0] == "nats" and "invalid batch" in dead[0][1] and dead[0][2] == subject
        assert "MV-ELSE" in dead[1][1]
    finally:
        stop_agent(running)
