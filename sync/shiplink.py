"""A ship's end of the link: its leaf nats-server, its streams, and the uplink and downlink
tasks, supervised.

The leaf server runs JetStream in the ship's own domain, so the OUTBOX and DOWNLINK streams
live on the ship and keep working with the link down. Sourcing across the leaf resumes on
its own after a reconnect, but only after a back-off that grows with the outage (48 s after
a 120 s outage, docs/sync.md); re-adding the DOWNLINK source when the leaf comes back
resumes it at once (the hub does the same for FLEET_UP).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js.api import DiscardPolicy, ExternalStream, StorageType, StreamConfig, StreamSource
from pydantic import BaseModel

from shared import log
from shared.models import Heartbeat
from shared.policy import Policy, PrivacyPolicy
from sync import sourcing
from sync.downlink import Downlink, Ship
from sync.natsserver import NatsServer
from sync.outbox import Outbox
from sync.privacy import Redactor
from sync.topology import (
    DOWNLINK,
    FLEET_DOWN,
    HUB_DOMAIN,
    OUTBOX,
    STREAM_AGE_FACTOR,
    down_deliver,
    ship_config,
)
from sync.uplink import Uplink

DUPLICATE_WINDOW_S = 7_200.0  # longer than any agent restart after a crash mid-publish
STOP_WAIT_S = 10.0  # for the link's tasks to end once cancelled and told to stop
_log = log.get("sync.ship")


def downlink_source(ship_id: str) -> StreamSource:
    return StreamSource(
        name=FLEET_DOWN,
        filter_subject=f"fleet.down.{ship_id}.>",
        external=ExternalStream(api=f"$JS.{HUB_DOMAIN}.API", deliver=down_deliver(ship_id)),
    )


class ShipLink:
    def __init__(
        self,
        ship_id: str,
        data_dir: Path,
        policy: Callable[[], Policy],
        store_conn: Any,
        ship: Ship,
        heartbeat: Callable[[str], Heartbeat],
        metrics: Any,
        *,
        hub_leaf_url: str | None,
        secret: str | None,
        port: int = 0,
    ) -> None:
        self.ship_id = ship_id
        self._policy = policy
        leaf = ship_config(ship_id, hub_leaf_url, secret or "") if hub_leaf_url else ""
        # On loopback whatever the agent's `host`: only the agent itself connects (the leaf
        # link is dialled out to the hub), and its client port takes no credentials.
        self.server = NatsServer(
            ship_id, data_dir / "nats", domain=ship_id, host="127.0.0.1", port=port,
            extra_config=leaf,
        )  # fmt: skip
        self.outbox = Outbox(store_conn, ship_id)
        self._ship = ship
        self._heartbeat = heartbeat
        self._metrics = metrics
        self.nc: Any = None
        self.js: Any = None
        self.uplink: Uplink | None = None
        self.downlink: Downlink | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._redactor: tuple[PrivacyPolicy, Redactor] | None = None
        self._resuming: asyncio.Task[bool] | None = None
        self._stopping = False

    async def start(self) -> None:
        await asyncio.to_thread(self.server.start)
        self.nc = await nats.connect(
            self.server.url, name=f"seawatch-{self.ship_id}", max_reconnect_attempts=-1
        )
        self.js = self.nc.jetstream(domain=self.ship_id)
        await self._ensure_streams()
        self.uplink = Uplink(
            self.outbox,
            self.js,
            self.ship_id,
            lambda: self._policy().sync,
            self._redact,
            self._heartbeat,
            self._metrics,
        )
        self.downlink = Downlink(self.js, self.ship_id, self._ship, self.uplink.receipts)
        self._tasks = [
            asyncio.create_task(self.uplink.run(), name="uplink"),
            asyncio.create_task(self.downlink.run(), name="downlink"),
            asyncio.create_task(self._watch_leaf(), name="leaf-watch"),
            asyncio.create_task(self.server.supervise(), name="nats-supervise"),
        ]
        _log.info("ship link started", ship_id=self.ship_id, nats=self.server.url)

    def _redact(self, messages: Sequence[BaseModel]) -> list[BaseModel]:
        """With the privacy rules of the policy in force now (a bundle may change them)."""
        privacy = self._policy().privacy
        if self._redactor is None or self._redactor[0] is not privacy:
            self._redactor = (privacy, Redactor.from_policy(privacy))
        return self._redactor[1].redact(messages)

    async def stop(self) -> None:
        """Every task cancelled and its loop told to stop as well: on Python 3.11 a cancel
        that lands as an `asyncio.wait_for` completes is lost, and a loop that never saw
        it would hold the agent's stop forever. One that still runs after STOP_WAIT_S is
        logged and left behind; the server stops regardless."""
        try:
            self._stopping = True
            for loop in (self.uplink, self.downlink):
                if loop is not None:
                    loop.stopping = True
            tasks = [*self._tasks, *([self._resuming] if self._resuming else [])]
            for task in tasks:
                task.cancel()
            if tasks:  # a task that died of an error must not keep the server up either
                _, running = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
                for task in running:
                    _log.warning("ship link task did not stop", task=task.get_name())
            if self.nc is not None:
                await self.nc.close()
        finally:
            await asyncio.to_thread(self.server.stop)

    def _stream_configs(self, downlink_sources: bool = True) -> list[StreamConfig]:
        """OUTBOX holds what was released and is not yet stored ashore (the uplink trims
        the rest); when full it refuses new messages, which then wait in the SQLite outbox
        where eviction is explicit and reported. Its max age is twice the outbox's, so the
        outbox's own (reported) eviction always comes first; what the stream may still
        have expired is reported as a gap too (sync.outbox.Outbox.evict)."""
        r = self._policy().retention.outbox
        max_age, max_bytes = r["max_age_days"] * 86_400, int(r["max_bytes"])
        return [
            StreamConfig(
                name=OUTBOX,
                subjects=[f"fleet.up.{self.ship_id}.>"],
                storage=StorageType.FILE,
                max_age=STREAM_AGE_FACTOR * max_age,
                max_bytes=max_bytes,
                discard=DiscardPolicy.NEW,
                duplicate_window=DUPLICATE_WINDOW_S,
            ),
            StreamConfig(
                name=DOWNLINK,
                sources=[downlink_source(self.ship_id)] if downlink_sources else [],
                storage=StorageType.FILE,
                max_age=max_age,
                max_bytes=max_bytes,
                discard=DiscardPolicy.OLD,
            ),
        ]

    async def _ensure_streams(self) -> None:
        for config in self._stream_configs():
            try:
                await self.js.update_stream(config)
            except nats.js.errors.NotFoundError:
                await self.js.add_stream(config)

    async def _watch_leaf(self) -> None:
        """Leaf up/down as the ship's own server sees it; a reconnect restarts sourcing."""
        up = False
        async with httpx.AsyncClient(timeout=2.0) as client:
            while not self._stopping:
                try:
                    url = f"http://{self.server.host}:{self.server.monitor_port}/leafz"
                    now_up = bool((await client.get(url)).json().get("leafnodes"))
                except (httpx.HTTPError, ValueError):
                    now_up = False  # our own server is down: so is the link
                if now_up != up:
                    up = now_up
                    _log.info("link " + ("up" if up else "down"), ship_id=self.ship_id)
                    assert self.uplink is not None
                    self.uplink.link_changed(up)
                    if up:
                        self._resume_downlink()
                await asyncio.sleep(0.5)

    def _resume_downlink(self) -> None:
        if self._resuming is not None:
            self._resuming.cancel()
        self._resuming = asyncio.create_task(
            sourcing.resume("downlink", self._restart_downlink_source, self._downlink_active)
        )

    async def _restart_downlink_source(self) -> None:
        await self.js.update_stream(self._stream_configs(downlink_sources=False)[1])
        await self.js.update_stream(self._stream_configs()[1])

    async def _downlink_active(self) -> bool:
        return any(map(sourcing.is_active, await sourcing.sources(self.nc, self.ship_id, DOWNLINK)))
