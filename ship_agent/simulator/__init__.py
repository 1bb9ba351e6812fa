"""Telemetry simulator for one ship: deterministic, labelled faults, faster than real time.

`Simulator(...).events(duration_s)` is a pure generator (a simulated day takes seconds);
`run_simulation` sends the same stream to the agent over syslog or HTTP, optionally paced
against the wall clock. See `scenarios` for the fault catalogue.
"""

from .engine import Simulator
from .events import Label, SimEvent
from .scenarios import MAINTENANCE_WINDOW, SCENARIOS, Scenario, Shape
from .sinks import (
    HttpIngestSink,
    JsonlFileSink,
    Sink,
    TcpSyslogSink,
    UdpSyslogSink,
    read_jsonl,
    run_simulation,
)

__all__ = [
    "MAINTENANCE_WINDOW",
    "SCENARIOS",
    "HttpIngestSink",
    "JsonlFileSink",
    "Label",
    "Scenario",
    "Shape",
    "SimEvent",
    "Simulator",
    "Sink",
    "TcpSyslogSink",
    "UdpSyslogSink",
    "read_jsonl",
    "run_simulation",
]
