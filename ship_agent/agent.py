"""The ship agent process: ingest servers, the micro-batch loop, housekeeping, local API.

One asyncio loop. Ingest only queues; the batch loop takes up to `max_events` items (or
whatever arrived within `max_delay_ms`) and runs them through the pipeline in one go.
The queue is bounded by policy: when it is full HTTP answers 503 and syslog/NATS input
becomes an "overload" dead letter, so nothing is ever dropped without a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from shared import log
from shared.http import HttpServer
from shared.ids import new_id
from shared.models import ActionRequest, ActionResult, Command, Heartbeat, Incident
from shared.notify import Notifier, Spool
from shared.policy import Policy, PolicyError, load_policy
from shared.runbooks import RunbookError, load_runbooks
from shared.settings import AgentSettings
from ship_agent.ingest.nats_ingest import NatsIngest
from ship_agent.ingest.syslog_server import SyslogServer
from ship_agent.insight import (
    UNEXPLAINED,
    Knowledge,
    needs_insight,
    reconfigure,
    ship_runbooks,
    start_worker,
)
from ship_agent.metrics import AgentMetrics
from ship_agent.pipeline import Item, OperatorCommand, Pipeline
from ship_agent.records import DeadLetter, Explanation, RawInput
from ship_agent.remediate import DecisionError, Remediator
from ship_agent.store import Batch, Store
from sync import bundles
from sync.outbox import Outbox
from sync.topology import STREAM_AGE_FACTOR

_log = log.get("ship_agent")
AGENT_VERSION = version("seawatch")


class ShipAgent:
    def __init__(self, settings: AgentSettings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy
        self.ship_id = settings.ship_id
        self.metrics = AgentMetrics()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.data_dir / "agent.db", self.ship_id)
        self.pipeline = Pipeline(policy, self.store, self.metrics)
        self.outbox = Outbox(self.store.conn, self.ship_id)
        self.link: Any = None  # sync.shiplink.ShipLink when an uplink is configured
        self._queue: deque[Item] = deque()
        self._limit = policy.ingest.queue_limit
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.syslog: SyslogServer | None = None
        self.nats: NatsIngest | None = None
        self._http: HttpServer | None = None
        self.http_port: int | None = None
        self.listeners: list[Any] = []  # callables(Batch) told of every committed batch
        self.insight: Any = None  # ship_agent.insight.InsightWorker when explaining
        self.notifier = Notifier(policy.notify, "ship", Spool(self.store.conn), self.metrics.notify)
        self.remediator = Remediator(
            self.store, policy.remediate, self._knowledge(), policy.ingest.role_of
        )
        self._act = asyncio.Event()  # a request was approved: run what is due

    # ---------------------------------------------------------------- intake

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def submit(self, items: Iterable[Item]) -> bool:
        """Queue items for the pipeline; False (nothing queued) when the queue is full."""
        batch = list(items)
        if len(self._queue) + len(batch) > self._limit:
            return False
        self._queue.extend(batch)
        self._wake.set()
        return True

    def dead_letter(self, dl: DeadLetter) -> None:
        """Dead letters are always queued, even over the limit: they are the trace of a drop."""
        self._queue.append(dl)
        self._wake.set()

    def _on_syslog(self, raw: RawInput) -> None:
        if len(self._queue) >= self._limit:
            self.dead_letter(
                DeadLetter(
                    raw.source, "overload: ingest queue full", raw.data, raw.received, raw.peer
                )
            )
            return
        self._queue.append(raw)
        self._wake.set()

    async def command(self, cmd: OperatorCommand) -> Any:
        cmd.done = asyncio.get_running_loop().create_future()
        self._queue.append(cmd)
        self._wake.set()
        await cmd.done
        if isinstance(cmd.result, Exception):
            raise cmd.result
        return cmd.result

    async def drained(self) -> None:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        while self._queue:
            self._idle.clear()
            await self._idle.wait()

    # ---------------------------------------------------------------- life cycle

    async def start(self, serve_http: bool = True) -> None:
        t0 = time.perf_counter()
        self.pipeline.warm_start()
        warm_s = time.perf_counter() - t0
        s, ingest = self.settings, self.policy.ingest
        self.syslog = SyslogServer(
            s.host,
            s.syslog_port,
            s.syslog_port,
            ingest.max_message_bytes,
            self._on_syslog,
            self.dead_letter,
        )
        await self.syslog.start()
        if s.nats_url:
            self.nats = NatsIngest(
                s.nats_url,
                f"{ingest.nats_subject}.{self.ship_id}",
                self.ship_id,
                self.submit,
                self.dead_letter,
                ingest.max_http_body_bytes,
            )
            await self.nats.start()
        self._tasks = [
            asyncio.create_task(self._batch_loop(), name="batch-loop"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
            asyncio.create_task(self._run_actions(), name="remediation"),
        ]
        self.listeners.append(self._remediate)
        self.store.committing.append(self._notify)
        self.notifier.start()
        if s.insight and self.policy.features.get("llm_insight", False):
            self._start_insight()
        if s.hub_leaf_url:
            await self._start_link()
        if serve_http:
            await self._start_http()
        _log.info(
            "agent started",
            ship_id=self.ship_id,
            warm_start_s=round(warm_s, 3),
            syslog_udp=self.syslog.udp_port,
            syslog_tcp=self.syslog.tcp_port,
            http_port=self.http_port,
        )

    async def _start_link(self) -> None:
        from sync.shiplink import ShipLink  # a ship without an uplink never loads it

        s = self.settings
        self.link = ShipLink(
            self.ship_id,
            s.data_dir,
            lambda: self.policy,
            self.store.conn,
            self,
            self.heartbeat,
            self.metrics,
            hub_leaf_url=s.hub_leaf_url,
            secret=s.ship_secret.get_secret_value() if s.ship_secret else None,
            port=s.sync_nats_port,
        )
        await self.link.start()

    def _start_insight(self) -> None:
        loop = asyncio.get_running_loop()

        def deliver(explanation: Explanation) -> None:  # from a worker thread
            loop.call_soon_threadsafe(self._explained, explanation)

        self.insight = start_worker(self.settings, self.policy, self.metrics, deliver)
        self.listeners.append(self._explain_new)
        for inc in self.store.active_incidents():  # left unexplained by a stop or a crash
            if not inc.narrative and inc.status in UNEXPLAINED:
                self.insight.submit(inc)

    def _explained(self, explanation: Explanation) -> None:
        self._queue.append(explanation)  # like a dead letter: never refused, few and small
        self._wake.set()

    def _notify(self, versions: list[Incident]) -> None:
        """In the batch's transaction: the crew's notifications commit with the incidents,
        so no crash between the two can lose them. A failure here is the notifier's alone:
        logged, its rows rolled back, the batch committed. The crew hears of its own ship's
        incidents: not redacted, since nothing here crosses the link."""
        try:
            self.notifier.offer(versions)
        except Exception:
            _log.exception("notifications not spooled", incidents=len(versions))

    def _explain_new(self, batch: Batch) -> None:
        for inc in batch.incidents:
            if needs_insight(inc):
                self.insight.submit(inc.to_model(self.ship_id))

    async def _start_http(self) -> None:
        from ship_agent.api import create_app  # the API imports the agent's types

        self._http = HttpServer(create_app(self), self.settings.host, self.settings.http_port)
        self.http_port = await self._http.start()

    async def stop(self) -> None:
        """Stop intake, commit what is queued, checkpoint models, close the store."""
        if self.syslog is not None:
            await self.syslog.stop()
        if self.nats is not None:
            await self.nats.stop()
        if self._http is not None:
            await self._http.stop()
        if self.link is not None:
            await self.link.stop()
        if self.insight is not None:
            await asyncio.to_thread(self.insight.stop)
            self.insight.knowledge.close()
        await self.drained()
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.notifier.stop()
        self.pipeline.checkpoint()
        self.remediator.knowledge.close()
        self.store.close()
        _log.info("agent stopped", ship_id=self.ship_id)

    # ---------------------------------------------------------------- shore (sync.downlink)

    def command_applied(self, command_id: str) -> bool:
        return self.store.command_applied(command_id)

    async def apply_command(self, cmd: Command) -> None:
        """Apply a shore command once; its record commits with its effect. Raises if
        nothing could be recorded (the downlink then keeps the message for later)."""
        if cmd.action in ("ack", "resolve", "suppress") and cmd.incident_id:
            op = OperatorCommand(
                cmd.action, cmd.incident_id, f"shore:{cmd.actor}", cmd.reason, command_id=cmd.id
            )
            with contextlib.suppress(LookupError, ValueError):
                await self.command(op)
        elif cmd.action == "policy_bundle":
            self.store.record_applied([self._apply_bundle(cmd)])
        elif cmd.action == "approval_decision":
            if self.remediator.decide_ashore(cmd).ok:
                self._act.set()
        else:
            self.store.record_applied([self._result(cmd, False, "incident_id is required")])
        if not self.store.command_applied(cmd.id):
            raise RuntimeError(f"command {cmd.id} was not applied")

    def _apply_bundle(self, cmd: Command) -> ActionResult:
        version_ = str(cmd.payload.get("version", ""))
        files = cmd.payload.get("files")
        try:
            if not isinstance(files, dict):
                raise bundles.BundleError("payload.files must map file names to YAML text")
            path = bundles.stage(self.settings.data_dir, version_, files)
            policy = load_policy(path, self.ship_id)
            if (path / "runbooks").is_dir():
                load_runbooks(path / "runbooks", policy.remediate.actions)
        except (bundles.BundleError, RunbookError) as exc:
            return self._result(cmd, False, f"bundle refused: {exc}")
        except PolicyError as exc:
            return self._result(cmd, False, f"{exc.report()}; kept {self.policy.version}")
        old = self.policy
        try:
            self.use_policy(policy)
        except Exception as exc:  # the new policy does not run: back to the old one
            self.use_policy(old)
            return self._result(cmd, False, f"bundle failed to start: {exc}; kept {old.version}")
        bundles.activate(self.settings.data_dir, path)
        _log.info("policy bundle active", version=policy.version, previous=old.version)
        return self._result(cmd, True, f"policy {policy.version} active")

    def use_policy(self, policy: Policy) -> None:
        """Between two batches: keep what was learned, rebuild the stages on the new policy."""
        self.pipeline.checkpoint()
        pipeline = Pipeline(policy, self.store, self.metrics)
        pipeline.warm_start()
        self.pipeline, self.policy = pipeline, policy
        self._limit = policy.ingest.queue_limit
        self.notifier.use_policy(policy.notify)
        if self.insight is not None:
            reconfigure(self.insight, policy, self.settings.data_dir)
        self.remediator.knowledge.close()
        self.remediator.configure(policy.remediate, self._knowledge(), policy.ingest.role_of)

    def _knowledge(self) -> Knowledge:
        """The runbooks remediation proposes from (the bundle's, if shore sent some)."""
        return Knowledge(None, ship_runbooks(self.settings.data_dir))

    def _result(self, cmd: Command, ok: bool, detail: str) -> ActionResult:
        return ActionResult(
            tracking_id=new_id(),
            ship_id=self.ship_id,
            ts=datetime.now(UTC),
            command_id=cmd.id,
            action=cmd.action,
            target=cmd.incident_id or str(cmd.payload.get("version", "")),
            ok=ok,
            detail=detail,
        )

    def heartbeat(self, link_state: str) -> Heartbeat:
        oldest = self.outbox.oldest_unsent()
        open_by_severity = Counter(
            inc.severity.value for inc in self.pipeline.correlate.active.values()
        )
        return Heartbeat(
            tracking_id=new_id(),
            ship_id=self.ship_id,
            ts=datetime.now(UTC),
            agent_version=AGENT_VERSION,
            policy_version=self.policy.version,
            link_state=link_state,  # type: ignore[arg-type]
            queue_depths={**self.outbox.depths(), "ingest": len(self._queue)},
            oldest_unsent_s=time.time() - oldest if oldest else None,
            open_incidents=dict(open_by_severity),
        )

    # ---------------------------------------------------------------- loops

    async def _batch_loop(self) -> None:
        mb = self.policy.ingest.micro_batch
        delay = mb.max_delay_ms / 1000.0
        queue = self._queue
        while not self._stopping:
            if not queue:
                self._idle.set()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                except TimeoutError:
                    self._run([])  # the clock moves: quiet incidents resolve
                    continue
            if len(queue) < mb.max_events:
                await asyncio.sleep(delay)
            n = min(len(queue), mb.max_events)
            items = [queue.popleft() for _ in range(n)]
            self._run(items)
            self.metrics.queue_depth.set(len(queue))
            if not queue:
                self._idle.set()

    def _run(self, items: list[Item]) -> Batch | None:
        try:
            batch = self.pipeline.run_batch(items)
        except Exception:
            # The store rolled back; keep the inputs as dead letters so nothing vanishes.
            _log.exception("batch failed", items=len(items))
            for it in items:
                if isinstance(it, OperatorCommand):
                    it.result = RuntimeError("pipeline error")
                    if it.done is not None:
                        it.done.set_result(None)
                elif isinstance(it, RawInput | DeadLetter):
                    self.dead_letter(
                        DeadLetter(it.source, "pipeline error", it.data, it.received, it.peer)
                    )
                elif isinstance(it, Explanation):
                    self.dead_letter(
                        DeadLetter("insight", "pipeline error", repr(it).encode(), time.time())
                    )
                else:
                    self.dead_letter(
                        DeadLetter(it.source, "pipeline error", repr(it).encode(), it.received)
                    )
            return None
        for it in items:
            if isinstance(it, OperatorCommand) and it.done is not None:
                it.done.set_result(None)
        for listener in self.listeners:
            listener(batch)
        return batch

    def link_state(self) -> str:
        """up, degraded or down as the uplink sees it; "not configured" without a hub."""
        if self.link is None:
            return "not configured"
        return str(self.link.uplink.link.state(self.policy.sync.receipt_timeout_s, time.time()))

    def _remediate(self, batch: Batch) -> None:
        if self.remediator.propose_for(batch):
            self._act.set()

    def decide_on_board(
        self, request_id: str, actor: str, decision: str, reason: str
    ) -> ActionRequest:
        """The crew's decision; raises DecisionError when it may not be taken now."""
        if self.link_state() not in ("down", "not configured"):
            raise DecisionError("the shore link is up: decisions are made ashore")
        request = self.remediator.decide_on_board(request_id, actor, decision, reason)
        if request.status == "approved":
            self._act.set()
        return request

    async def _run_actions(self) -> None:
        """Runs approved actions one at a time, off the event loop; wakes on a decision,
        and every minute for actions waiting for their maintenance window."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._act.wait(), timeout=60.0)
            self._act.clear()
            for request_id in self.remediator.due():
                request = self.remediator.claim(request_id)
                if request is None:
                    continue
                ok, detail = await asyncio.to_thread(self.remediator.execute, request)
                self.remediator.finish(request, ok, detail)

    async def _housekeeping(self) -> None:
        """Every second: a slice of the device models is checkpointed, so that each is saved
        once per `checkpoint_s` without ever pausing the fast path for all of them."""
        s, r = self.settings, self.policy.retention.ship
        last_checkpoint = last_retention = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            hst = self.pipeline.detect.hst
            if hst is not None and hst.devices:
                self.pipeline.checkpoint_devices(math.ceil(len(hst.devices) / s.checkpoint_s))
            if now - last_checkpoint >= s.checkpoint_s:
                self.pipeline.checkpoint_core()
                last_checkpoint = now
            if now - last_retention >= s.retention_check_s:
                removed = self.store.apply_retention(
                    time.time(),
                    r.events_days,
                    r.incidents_days,
                    r.dead_letters_days,
                    r.max_events_rows,
                )
                out = self.policy.retention.outbox
                max_age = out["max_age_days"] * 86_400
                evicted = self.outbox.evict(
                    int(out["max_bytes"]), max_age, time.time(), STREAM_AGE_FACTOR * max_age
                )
                self.metrics.evicted.inc(len(evicted))
                removed["outbox"] = self.outbox.purge(
                    time.time() - 86_400, time.time() - STREAM_AGE_FACTOR * max_age
                )
                _log.info("retention", evicted=len(evicted), **removed)
                last_retention = now
            self.metrics.outbox_unsent.set(self.store.unsent_count())
