"""The hub's end of the link: ship registration, FLEET_UP sourcing of every ship's outbox,
FLEET_DOWN for commands and receipts, and restarting a ship's sourcing when it reconnects.

Adding or removing a ship happens at runtime: its user goes into the server config
(reloaded with SIGHUP, no restart) and its outbox into FLEET_UP's sources.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import httpx
import nats
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

from shared import log, wire
from shared.ids import new_id
from shared.models import Command, Receipt
from shared.timeutil import utcnow
from sync import sourcing
from sync.natsserver import NatsServer
from sync.registry import ShipRegistry
from sync.topology import (
    FLEET_DOWN,
    FLEET_UP,
    HUB_DOMAIN,
    OUTBOX,
    check_ship_id,
    down_subject,
    hub_config,
    up_deliver,
)

_log = log.get("sync.hub")
RECEIPT_LINGER_S = 1.0
RECEIPT_FLUSH_KEYS = 500


def outbox_source(ship_id: str) -> StreamSource:
    return StreamSource(
        name=OUTBOX,
        filter_subject=f"fleet.up.{ship_id}.>",
        external=ExternalStream(api=f"$JS.{ship_id}.API", deliver=up_deliver(ship_id)),
    )


class FleetLink:
    def __init__(self, registry: ShipRegistry, leaf_host: str, leaf_port: int) -> None:
        self.registry = registry
        self.leaf_host = leaf_host
        self.leaf_port = leaf_port
        self.server: NatsServer | None = None  # set when the hub runs its own server
        self.nc: Any = None
        self.js: Any = None
        self.kicks = 0
        self._pending: defaultdict[str, list[str]] = defaultdict(list)
        self._flushed: asyncio.Future[None] | None = None
        self._flush_timer: asyncio.Task[None] | None = None

    def server_config(self) -> str:
        return hub_config(
            self.leaf_host, self.leaf_port, self.registry.hub_password, self.registry.hashes()
        )

    async def start(
        self, nc: Any, js: Any, max_age_s: float, duplicate_window_s: float, replicas: int = 1
    ) -> None:
        """Create or update FLEET_UP and FLEET_DOWN, each with `replicas` copies across the
        members of a NATS cluster (an update changes an existing stream's copies too)."""
        self.nc, self.js = nc, js
        up = StreamConfig(
            name=FLEET_UP,
            subjects=["fleet.up.>"],
            storage=StorageType.FILE,
            duplicate_window=duplicate_window_s,
            max_age=max_age_s,
            num_replicas=replicas,
            sources=[outbox_source(s) for s in self.registry.ships()] or None,
        )
        down = StreamConfig(
            name=FLEET_DOWN,
            subjects=["fleet.down.>"],
            storage=StorageType.FILE,
            duplicate_window=duplicate_window_s,
            max_age=max_age_s,
            num_replicas=replicas,
        )
        for config in (up, down):
            try:
                await js.update_stream(config)
            except nats.js.errors.NotFoundError:
                await js.add_stream(config)

    # ---------------------------------------------------------------- ships

    async def add_ship(self, ship_id: str) -> str:
        """Register (or re-key) a ship; returns its secret, shown once."""
        known = ship_id in self.registry.ships()
        secret = self.registry.add(check_ship_id(ship_id))
        await self._reload(drop_connections=known)
        await self._set_source(ship_id, present=True)
        return secret

    async def remove_ship(self, ship_id: str) -> bool:
        if not self.registry.remove(ship_id):
            return False
        await self._reload(drop_connections=True)
        await self._set_source(ship_id, present=False)
        return True

    async def _reload(self, drop_connections: bool) -> None:
        """A new user takes a config reload. A reload does not close a leaf connection
        that authenticated with a secret now revoked, so revoking or re-keying restarts the
        server (same ports, same store): every ship reconnects within seconds, and the
        revoked one is refused."""
        if self.server is None:  # an external NATS: its own config holds the ship users
            _log.warning(
                "ship registry changed; the external NATS must be given the ship's leaf user",
                ships=len(self.registry.ships()),
            )
            return
        if drop_connections:
            self.server.extra_config = self.server_config()
            await asyncio.to_thread(self.server.stop)
            await asyncio.to_thread(self.server.start)
        else:
            self.server.reload(self.server_config())

    async def _set_source(self, ship_id: str, *, present: bool) -> None:
        config = (await self.js.stream_info(FLEET_UP)).config
        others = [s for s in config.sources or [] if s.filter_subject != f"fleet.up.{ship_id}.>"]
        config.sources = [*others, outbox_source(ship_id)] if present else others
        await self.js.update_stream(config)

    async def restart_source(self, ship_id: str) -> None:
        """Re-adding a source resumes it at once, where it left off (the stream knows the
        last sequence it took from that source), instead of after the server's back-off."""
        await self._set_source(ship_id, present=False)
        await self._set_source(ship_id, present=True)
        self.kicks += 1

    async def source_lag(self) -> dict[str, tuple[int, float | None]]:
        """Per ship: messages not yet sourced, and seconds since its source was last active."""
        out: dict[str, tuple[int, float | None]] = {}
        for src in await sourcing.sources(self.nc, HUB_DOMAIN, FLEET_UP):
            api = (src.get("external") or {}).get("api", "")
            if api.startswith("$JS.") and api.endswith(".API"):
                out[api[4:-4]] = (int(src.get("lag", 0)), sourcing.idle_s(src))
        return out

    async def watch_leafs(self, interval: float = 0.5) -> None:
        """A ship's leaf connection that is new since the last look restarts its sourcing
        (sync.sourcing.resume: again and again until it flows)."""
        if self.server is None:
            return  # an external server: sourcing resumes after its own back-off
        seen: set[tuple[str, str]] = set()
        resuming: dict[str, asyncio.Task[bool]] = {}
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                while True:
                    await asyncio.sleep(interval)
                    try:
                        url = f"http://{self.server.host}:{self.server.monitor_port}/leafz"
                        leafs = (await client.get(url)).json().get("leafs") or []
                    except (httpx.HTTPError, ValueError):
                        continue
                    now = {(str(leaf.get("name")), str(leaf.get("port"))) for leaf in leafs}
                    for name, _ in now - seen:
                        if name in self.registry.ships():
                            if name in resuming:
                                resuming[name].cancel()
                            resuming[name] = asyncio.create_task(self._resume(name))
                    seen = now
        finally:
            for task in resuming.values():
                task.cancel()

    async def _resume(self, ship_id: str) -> bool:
        async def active() -> bool:
            api = f"$JS.{ship_id}.API"
            return any(
                sourcing.is_active(src)
                for src in await sourcing.sources(self.nc, HUB_DOMAIN, FLEET_UP)
                if (src.get("external") or {}).get("api") == api
            )

        return await sourcing.resume(ship_id, lambda: self.restart_source(ship_id), active)

    # ---------------------------------------------------------------- downlink

    async def send(self, cmd: Command) -> None:
        """Queue a command for one ship; it is delivered when (and as soon as) it is online."""
        await self.js.publish(
            down_subject(cmd.ship_id, "command"),
            wire.encode([cmd]),
            headers={"Nats-Msg-Id": f"cmd:{cmd.id}"},
        )

    async def receipts(self, stored: Iterable[tuple[str, str]]) -> None:
        """Tell each ship which of its items (ship_id, "id:version") are durably stored;
        returns once they are on FLEET_DOWN. Items trickling in are gathered for up to
        RECEIPT_LINGER_S into one receipt per ship: on a slow link a receipt per version
        would cost more downlink than the version itself costs up."""
        for ship_id, key in stored:
            self._pending[ship_id].append(key)
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
            self._flush_timer = asyncio.create_task(self._flush_after(RECEIPT_LINGER_S))
        flushed = self._flushed
        if sum(map(len, self._pending.values())) >= RECEIPT_FLUSH_KEYS:
            await self._flush()
        await asyncio.shield(flushed)

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._flush()

    async def _flush(self) -> None:
        pending, flushed = self._pending, self._flushed
        self._pending, self._flushed = defaultdict(list), None
        if self._flush_timer is not None and self._flush_timer is not asyncio.current_task():
            self._flush_timer.cancel()
        self._flush_timer = None
        try:
            for ship_id, keys in pending.items():
                receipt = Receipt(tracking_id=new_id(), ship_id=ship_id, ts=utcnow(), stored=keys)
                await self.js.publish(down_subject(ship_id, "receipt"), wire.encode([receipt]))
        except Exception as exc:
            if flushed is not None and not flushed.done():
                flushed.set_exception(exc)
            return
        if flushed is not None and not flushed.done():
            flushed.set_result(None)

    def close(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
