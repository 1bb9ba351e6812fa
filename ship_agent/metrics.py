"""Prometheus metrics of the agent itself, in a registry per agent (several may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared.notify import NotifyMetrics

STAGES = ("parse", "template", "detect", "enrich", "correlate", "commit")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class AgentMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter(
            "seawatch_events_total", "Events through the fast path", ["kind", "source"], registry=r
        )
        self.dead_letters = Counter(
            "seawatch_dead_letters_total", "Inputs rejected with a reason", ["source"], registry=r
        )
        self.anomalies = Counter(
            "seawatch_anomalies_total", "Anomalies by detector", ["detector"], registry=r
        )
        self.incident_versions = Counter(
            "seawatch_incident_versions_total", "Incident versions committed", ["type"], registry=r
        )
        self.stage_seconds = Histogram(
            "seawatch_fastpath_stage_seconds",
            "Time per micro-batch in each fast-path stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e_seconds = Histogram(
            "seawatch_fastpath_latency_seconds",
            "Ingest -> committed, per event",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "seawatch_batch_events",
            "Events per micro-batch",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.queue_depth = Gauge("seawatch_ingest_queue_depth", "Items waiting", registry=r)
        self.active_incidents = Gauge(
            "seawatch_active_incidents", "Open, acknowledged or suppressed", registry=r
        )
        self.outbox_unsent = Gauge("seawatch_outbox_unsent", "Outbox rows not yet sent", registry=r)
        self.outbox_depth = Gauge(
            "seawatch_outbox_depth", "Unsent outbox rows by uplink lane", ["lane"], registry=r
        )
        self.oldest_unsent = Gauge(
            "seawatch_outbox_oldest_unsent_seconds", "Age of the oldest unsent row", registry=r
        )
        self.uplink_bytes = Counter(
            "seawatch_uplink_bytes_total",
            "Bytes released to the link (payload+framing)",
            ["lane"],
            registry=r,
        )
        self.link_up = Gauge(
            "seawatch_link_up", "1 when the leaf link to the hub is up", registry=r
        )
        self.catchup_seconds = Gauge(
            "seawatch_uplink_catchup_seconds",
            "From the last link restore until nothing was left unsent",
            registry=r,
        )
        self.evicted = Counter(
            "seawatch_outbox_evicted_total",
            "Rows a full outbox gave up (sent as gaps)",
            registry=r,
        )

        self.insights = Counter(
            "seawatch_insights_total",
            "Insights delivered, by how they were written (model, cache, fallback)",
            ["outcome"],
            registry=r,
        )
        self.insight_seconds = Histogram(
            "seawatch_insight_latency_seconds",
            "Incident queued for explanation -> insight ready",
            buckets=(0.01, 0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 30.0, 60.0),
            registry=r,
        )
        self.insight_queue = Gauge(
            "seawatch_insight_queue_depth", "Incidents waiting for the insight worker", registry=r
        )
        self.insight_rejected = Counter(
            "seawatch_insight_rejected_total",
            "Model narratives rejected (uncited or citing ids not given)",
            registry=r,
        )
        self.insight_failures = Counter(
            "seawatch_insight_model_failures_total",
            "Model calls that failed or ran past their deadline",
            registry=r,
        )
        self.insight_dropped = Counter(
            "seawatch_insight_dropped_total",
            "Requests a full insight queue gave up (explained by rules instead)",
            registry=r,
        )

        self.notify = NotifyMetrics(r, "seawatch")  # the crew's notifications

    def render(self) -> bytes:
        return generate_latest(self.registry)
