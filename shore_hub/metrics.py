"""Prometheus metrics of the hub itself."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared.notify import NotifyMetrics


class HubMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.ingested = Counter(
            "seawatch_hub_ingested_total", "Wire messages stored", ["kind"], registry=r
        )
        self.dead_letters = Counter(
            "seawatch_hub_dead_letters_total", "Uplink messages rejected with a reason", registry=r
        )
        self.batch_seconds = Histogram(
            "seawatch_hub_ingest_batch_seconds",
            "Decode + store + ack per fetched batch",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.live_clients = Gauge("seawatch_hub_live_clients", "SSE subscribers", registry=r)
        self.source_lag = Gauge(
            "seawatch_hub_source_lag_messages",
            "Messages in a ship's outbox stream not yet sourced into FLEET_UP",
            ["ship"],
            registry=r,
        )
        self.source_idle = Gauge(
            "seawatch_hub_source_idle_seconds",
            "Since FLEET_UP last heard from a ship's outbox stream",
            ["ship"],
            registry=r,
        )
        self.memory_backlog = Gauge(
            "seawatch_hub_memory_backlog", "Incidents waiting to be embedded", registry=r
        )
        self.ask_answers = Counter(
            "seawatch_hub_ask_answers_total",
            "Answers of /ask by who wrote them: the model, or the extractive fallback",
            ["source"],
            registry=r,
        )
        self.ask_rejected = Counter(
            "seawatch_hub_ask_rejected_total",
            "Model answers to /ask rejected by the validator, by why",
            ["reason"],
            registry=r,
        )
        self.ask_seconds = Histogram(
            "seawatch_hub_ask_seconds",
            "/ask from question to answer: retrieval, generation, validation",
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30),
            registry=r,
        )
        self.fleet_issues = Gauge(
            "seawatch_hub_fleet_issues", "Fleet issues found by the last patterns run", registry=r
        )

        self.notify = NotifyMetrics(r, "seawatch_hub")  # operations' notifications

    def render(self) -> bytes:
        return generate_latest(self.registry)
