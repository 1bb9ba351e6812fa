"""The simulator: merges every source into one time-ordered stream, a minute at a time.

Each source (device poller, chatter stream, periodic job, fault script) appends the events
of the next simulated minute to a list; the list is sorted (stable, so ties keep source
order) and yielded. That is much cheaper than a heap over single events and keeps the
whole run a pure generator: a simulated day takes seconds and never sleeps.

Every source draws from its own RNG, seeded from (ship, seed, source name), so a run is
reproducible, and injecting a fault changes nothing before it starts nor anything on the
devices it does not touch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

from .background import Background
from .devices import Context, make_poller
from .events import Label, SimEvent
from .scenarios import MAINTENANCE, MAINTENANCE_WINDOW, SCENARIOS, Scenario
from .ship import DeviceSpec, Voyage, ship_devices
from .syslog import Syslog

CHUNK_S = 60.0
_WEEK = 7 * 86_400.0
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
LOG_SHARE = 0.7  # of all events, at the default log rate
_TS = attrgetter("ts")


class Source(Protocol):
    def emit(self, until: float, ctx: Context, out: list[SimEvent]) -> None: ...


class _Stream:
    """Adapts a time-ordered iterator of events (a job, a fault script) to chunked emission."""

    __slots__ = ("_it", "_next")

    def __init__(self, it: Iterator[SimEvent]) -> None:
        self._it = it
        self._next = next(it, None)

    def emit(self, until: float, ctx: Context, out: list[SimEvent]) -> None:
        event = self._next
        while event is not None and event.ts < until:
            out.append(event)
            event = next(self._it, None)
        self._next = event


@dataclass(frozen=True, slots=True)
class _Injection:
    scenario: type[Scenario]
    device: str
    start_ts: float
    duration_s: float
    index: int

    def label(self) -> Label:
        s = self.scenario
        return Label(
            s.name, s.incident_type, self.device, self.start_ts, self.start_ts + self.duration_s
        )


class Simulator:
    """Telemetry of one ship, deterministic for a given (ship_id, seed, start_ts).

    `log_rate_per_s` is the mean rate of background log lines; by default it is set so
    that logs make up ~70 % of all events, whatever `extra_devices` adds. With
    `maintenance`, the crew does its planned work in the weekly maintenance window
    (`MAINTENANCE_WINDOW`): a switch reload and host patching that look like faults and
    are not; `maintenance_labels` says when.
    """

    def __init__(
        self,
        ship_id: str,
        seed: int = 0,
        start_ts: float | None = None,
        extra_devices: int = 0,
        *,
        log_rate_per_s: float | None = None,
        maintenance: bool = False,
    ) -> None:
        self.ship_id = ship_id
        self.seed = seed
        self.start_ts = round(time.time() if start_ts is None else start_ts, 3)
        self.devices: tuple[DeviceSpec, ...] = ship_devices(extra_devices)
        self._by_id = {spec.id: spec for spec in self.devices}
        if log_rate_per_s is not None and log_rate_per_s < 0:
            raise ValueError("log_rate_per_s cannot be negative")
        metric_rate = sum(len(spec.metrics) / spec.interval_s for spec in self.devices)
        self.log_rate_per_s = (
            metric_rate * LOG_SHARE / (1 - LOG_SHARE) if log_rate_per_s is None else log_rate_per_s
        )
        self._injections: list[_Injection] = []
        self.maintenance = maintenance

    def inject(
        self,
        scenario_name: str,
        at_ts: float,
        duration_s: float | None = None,
        device: str | None = None,
    ) -> Label:
        """Schedule a labelled fault on `device` (default: the scenario's root device).

        A run already under way picks it up while `at_ts` is still ahead of it; lines that
        would fall before the run's current minute are dropped.
        """
        try:
            scenario = SCENARIOS[scenario_name]
        except KeyError:
            known = ", ".join(sorted(SCENARIOS))
            raise ValueError(f"unknown scenario {scenario_name!r} (known: {known})") from None
        device = device or scenario.device
        spec = self._by_id.get(device)
        if spec is None:
            raise ValueError(f"no device {device!r} on this ship")
        missing = scenario.own_metrics() - set(spec.metrics)
        if missing:
            raise ValueError(f"{scenario_name} needs {sorted(missing)}, which {device} lacks")
        if at_ts < self.start_ts:
            raise ValueError("a fault cannot start before the simulation does")
        duration = scenario.duration_s if duration_s is None else duration_s
        if duration <= 0:
            raise ValueError("duration_s must be positive")
        injection = _Injection(scenario, device, at_ts, duration, len(self._injections))
        self._injections.append(injection)
        return injection.label()

    @property
    def labels(self) -> list[Label]:
        return [i.label() for i in sorted(self._injections, key=attrgetter("start_ts", "index"))]

    def maintenance_labels(self, duration_s: float) -> list[Label]:
        """The planned work a run of `duration_s` contains (none without `maintenance`)."""
        return [i.label() for i in self._maintenance(self.start_ts + duration_s)]

    def _maintenance(self, end: float) -> list[_Injection]:
        if not self.maintenance:
            return []
        weekday, opens, _closes = MAINTENANCE_WINDOW
        hours, minutes = opens.split(":")
        # 1970-01-01 was a Thursday: Sunday is 3 days after the epoch, plus whole weeks
        offset = (_WEEKDAYS.index(weekday) - 3) % 7 * 86_400 + int(hours) * 3600 + int(minutes) * 60
        first = (self.start_ts - offset) // _WEEK * _WEEK + offset
        out: list[_Injection] = []
        week = first
        while week < end:
            for after, job in MAINTENANCE:
                at = week + after
                if self.start_ts <= at < end:
                    out.append(_Injection(job, job.device, at, job.duration_s, -1 - len(out)))
            week += _WEEK
        return out

    def events(self, duration_s: float) -> Iterator[SimEvent]:
        """Events with start_ts <= ts < start_ts + duration_s, in timestamp order.

        Each call starts afresh: the same simulator yields the same events every time.
        """
        return self._run(self.start_ts + duration_s)

    def _rng(self, name: str) -> random.Random:
        return random.Random(f"{self.ship_id}/{self.seed}/{name}")

    def _run(self, end: float) -> Iterator[SimEvent]:
        start, log = self.start_ts, Syslog()
        voyage_rng = self._rng("voyage")
        ctx = Context(Voyage(16.5 + voyage_rng.random() * 3, voyage_rng.random() * 1e6), log)
        background = Background(self.devices, self._rng("background"), log, start)
        sources: list[Source] = [make_poller(s, self._rng(s.id), start) for s in self.devices]
        sources += background.chatter(self.log_rate_per_s)
        sources += [_Stream(job) for job in background.jobs()]
        seen = 0
        pending = self._maintenance(end)
        active: list[Scenario] = []
        t = start
        while t < end:
            until = min(t + CHUNK_S, end)
            if seen < len(self._injections):
                pending += self._injections[seen:]
                pending.sort(key=attrgetter("start_ts", "index"))
                seen = len(self._injections)
            while pending and pending[0].start_ts < until:
                active.append(self._activate(pending.pop(0), t, log, sources))
            active = [fault for fault in active if fault.end_ts > t]
            ctx.update(t)
            ctx.faults = {}
            for fault in active:
                for device in fault.devices:
                    ctx.faults.setdefault(device, []).append(fault)
            out: list[SimEvent] = []
            for source in sources:
                source.emit(until, ctx, out)
            out.sort(key=_TS)
            yield from out
            t = until

    def _activate(
        self, injection: _Injection, now: float, log: Syslog, sources: list[Source]
    ) -> Scenario:
        rng = self._rng(f"fault-{injection.index}-{injection.scenario.name}")
        fault = injection.scenario(injection.device, injection.start_ts, injection.duration_s, rng)
        lines = sorted(
            (e for e in fault.logs(log) if max(now, fault.start_ts) <= e.ts < fault.end_ts),
            key=_TS,
        )
        sources.append(_Stream(iter(lines)))
        return fault
