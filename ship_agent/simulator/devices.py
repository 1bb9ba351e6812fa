"""Metric pollers, one per device, each a small model of what that kind of device reports.

Noise is the sum of three uniforms (Irwin-Hall, scaled to sd 1): it looks Gaussian but is
bounded at ±3, so normal traffic has a hard envelope that provably stays clear of every
fault threshold, and it costs three C calls instead of `random.gauss`.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from .events import SimEvent
from .ship import (
    CREW_ACTIVITY,
    CREW_RATE,
    GUEST_ACTIVITY,
    GUEST_RATE,
    DeviceSpec,
    Voyage,
    local_minute,
    look_angles,
)
from .syslog import DAEMON, NOTICE, WARNING, Syslog, pri

if TYPE_CHECKING:
    from .scenarios import Scenario

_DAY = 86400.0
BOARDING_S = 3600.0  # the last hour alongside
ASHORE_FROM_MIN, ASHORE_UNTIL_MIN = 8 * 60, 17 * 60  # local time guests spend ashore


class Context:
    """What every source needs to know about the current chunk of simulated time.

    In port the day changes shape: guests go ashore in the day and all come back in the
    last hour before departure, a benign burst of Wi-Fi joins and captive-portal logins.
    """

    __slots__ = ("voyage", "log", "faults", "guest", "crew", "guest_rate", "crew_rate")

    def __init__(self, voyage: Voyage, log: Syslog) -> None:
        self.voyage = voyage
        self.log = log
        self.faults: dict[str, list[Scenario]] = {}
        self.guest = self.crew = 0.0  # activity 0..1, for metric levels
        self.guest_rate = self.crew_rate = 1.0  # multipliers with a daily mean of 1, for logs

    def update(self, t: float) -> None:
        minute = local_minute(t, self.voyage.at(t)[1])
        self.guest, self.crew = GUEST_ACTIVITY[minute], CREW_ACTIVITY[minute]
        self.guest_rate, self.crew_rate = GUEST_RATE[minute], CREW_RATE[minute]
        to_departure = self.voyage.alongside(t)
        if to_departure < 0:
            return
        if to_departure <= BOARDING_S:
            # all aboard: guests stream back and every phone rejoins the Wi-Fi at once
            self.guest = min(1.0, self.guest + 0.4)
            self.guest_rate *= 2.5
        elif ASHORE_FROM_MIN <= minute < ASHORE_UNTIL_MIN:
            # a port day: most guests are ashore
            self.guest *= 0.5
            self.guest_rate *= 0.5


class Poller:
    """Polls one device every `interval_s` (with a little jitter) and emits its metrics."""

    __slots__ = ("id", "metrics", "interval", "rng", "next_ts", "_nominal", "audience")

    def __init__(self, spec: DeviceSpec, rng: random.Random, start: float) -> None:
        self.id = spec.id
        self.metrics = spec.metrics
        self.interval = spec.interval_s
        self.audience = spec.audience
        self.rng = rng
        self._nominal = start + rng.random() * spec.interval_s
        self.next_ts = self._nominal

    def noise(self) -> float:
        r = self.rng.random
        return (r() + r() + r() - 1.5) * 2.0

    def load(self, ctx: Context) -> float:
        return ctx.guest if self.audience == "guest" else ctx.crew

    def sample(self, t: float, ctx: Context, out: list[SimEvent]) -> list[float]:
        raise NotImplementedError

    def emit(self, until: float, ctx: Context, out: list[SimEvent]) -> None:
        dev, metrics = self.id, self.metrics
        faults = ctx.faults.get(dev)
        while self.next_ts < until:
            ts = int(self.next_ts * 1000) / 1000
            values = self.sample(ts, ctx, out)
            if faults:
                for fault in faults:
                    if fault.start_ts <= ts < fault.end_ts:
                        fault.apply(dev, metrics, ts, values)
            for name, value in zip(metrics, values, strict=True):
                if value == value:  # a fault may blank a reading with NaN
                    out.append(SimEvent(ts, "metric", dev, b"", name, value))
            self._nominal += self.interval
            self.next_ts = self._nominal + self.rng.random() * 0.3


class Acu(Poller):
    """Antenna pointing relative to the bow: it swings whenever the ship turns."""

    __slots__ = ()

    def sample(self, t: float, ctx: Context, out: list[SimEvent]) -> list[float]:
        lat, lon, heading, _speed = ctx.voyage.at(t)
        elevation, azimuth = look_angles(lat, lon)
        return [
            round(elevation + 0.05 * self.noise(), 2),
            round((azimuth - heading + 0.1 * self.noise()) % 360, 1),
            0.0,
        ]


class Modem(Poller):
    """Ku-band VSAT: SNR with a slow daily drift, the rest derived from it."""

    __slots__ = ("_phase",)

    def __init__(self, spec: DeviceSpec, rng: random.Random, start: float) -> None:
        super().__init__(spec, rng, start)
        self._phase = rng.random() * 2 * math.pi

    def sample(self, t: float, ctx: Context, out: list[SimEvent]) -> list[float]:
        n = self.noise
        snr = 15.2 + 0.5 * math.sin(2 * math.pi * t / _DAY + self._phase) + 0.3 * n()
        g = ctx.guest
        return [
            round(snr, 2),
            round(snr - 2.0 + 0.1 * n(), 2),
            float(f"{10.0 ** (-7.5 - 0.3 * (snr - 15.2) + 0.1 * n()):.3g}"),
            round(-47.0 + 0.4 * n(), 1),
            round(6.0 + 0.8 * (snr - 15.2) + 0.1 * n(), 2),
            round((1800 + 5200 * g) * (1 + 0.06 * n()), 1),
            round((350 + 900 * g) * (1 + 0.06 * n()), 1),
            1.0,
        ]


class NetDevice(Poller):
    """Router, firewall or switch (SNMP): load follows the audience it serves."""

    __slots__ = ("_cpu", "_cpu_span", "_mem", "_temp", "_util", "_poe", "_switch")

    _CPU = {"firewall": (12.0, 30.0), "router": (8.0, 18.0), "switch": (6.0, 18.0)}

    def __init__(self, spec: DeviceSpec, rng: random.Random, start: float, kind: str) -> None:
        super().__init__(spec, rng, start)
        self._cpu, self._cpu_span = self._CPU[kind]
        self._mem = 35 + rng.random() * 18
        self._temp = 33 + rng.random() * 2
        self._util = 3 + rng.random() * 5
        self._poe = 40 + rng.random() * 60
        self._switch = kind == "switch"

    def sample(self, t: float, ctx: Context, out: list[SimEvent]) -> list[float]:
        n, r = self.noise, self.rng.random
        g = self.load(ctx)
        values = [
            round(self._cpu + self._cpu_span * g + 1.5 * n(), 1),
            round(self._mem + 3 * g + 0.3 * n(), 1),
            round(self._temp + 3 * g + 0.4 * n(), 1),
            round(r() * 0.8, 2) if r() < 0.15 else 0.0,
            round(max(0.0, self._util + 40 * g + 2 * n()), 1),
        ]
        if self._switch:
            values.append(round(self._poe + 8 * g + 0.5 * n(), 1))
        return values


class AccessPoint(Poller):
    """Wi-Fi AP: clients pile up in the evening, the crowded-bar benign burst."""

    __slots__ = ("_capacity",)

    def __init__(self, spec: DeviceSpec, rng: random.Random, start: float) -> None:
        super().__init__(spec, rng, start)
        self._capacity = 60 + rng.random() * 80

    def sample(self, t: float, ctx: Context, out: list[SimEvent]) -> list[float]:
        n = self.noise
        g = self.load(ctx)
        return [
            round(5 + 30 * g + 1.5 * n(), 1),
            round(37 + 4 * g + 0.4 * n(), 1),
            float(round(2 + self._capacity * g * (1 + 0.08 * n()))),
            round(max(0.0, 4 + 60 * g + 2 * n()), 1),
        ]


class Host(Poller):
    """Linux server (node-exporter style); the disk creeps and is trimmed nightly."""

    __slots__ = ("_cpu", "_mem", "_disk")

    def __init__(self, spec: DeviceSpec, rng: random.Random, start: float) -> None:
        super().__init__(spec, rng, start)
        self._cpu = 6 + rng.random() * 6
        self._mem = 40 + rng.random() * 18
        self._disk = 45 + rng.random() * 17

    def sample(self, t: float, ctx: Context, out: list[SimEvent]) -> list[float]:
        n = self.noise
        g = self.load(ctx)
        of_day = t % _DAY
        cpu = self._cpu + 30 * g + (20 if of_day < 300 else 0) + 2 * n()  # midnight cron jobs
        return [
            round(cpu, 1),
            round(self._mem + 8 * g + 0.5 * n(), 1),
            round(self._disk + 0.4 * of_day / _DAY + 0.02 * n(), 2),
            round(cpu / 25 * (1 + 0.1 * n()), 2),
            round(36 + 6 * cpu / 100 + 0.4 * n(), 1),
        ]


class Gps(Poller):
    """NMEA receiver: a voyage track, DGPS corrections that come and go now and then."""

    __slots__ = ("_sats", "_dgps", "_next_switch")

    def __init__(self, spec: DeviceSpec, rng: random.Random, start: float) -> None:
        super().__init__(spec, rng, start)
        self._sats = 8 + int(rng.random() * 5)
        self._dgps = True
        self._next_switch = start + 3600 + rng.random() * 14400

    def sample(self, t: float, ctx: Context, out: list[SimEvent]) -> list[float]:
        n, r = self.noise, self.rng.random
        if r() < 0.05:
            self._sats = min(12, max(8, self._sats + (1 if r() < 0.5 else -1)))
        if t >= self._next_switch and self.id not in ctx.faults:
            self._dgps = not self._dgps
            self._next_switch = t + (3600 + r() * 14400 if self._dgps else 600 + r() * 1800)
            msg = (
                f"DGPS corrections restored, fix quality 2 (DGPS), {self._sats} satellites"
                if self._dgps
                else f"DGPS corrections unavailable, fix quality 1 (GPS), {self._sats} satellites"
            )
            prio = pri(DAEMON, NOTICE if self._dgps else WARNING)
            out.append(ctx.log.rfc5424(int(t * 1000), self.id, "gpsd", "812", prio, msg))
        lat, lon, heading, speed = ctx.voyage.at(t)
        return [
            2.0 if self._dgps else 1.0,
            float(self._sats),
            round(0.6 + (12 - self._sats) * 0.12 + 0.03 * n(), 2),
            round(lat, 5),
            round(lon, 5),
            round((heading + 0.8 * n()) % 360, 1),
            round(speed + 0.15 * n(), 1) if speed else round(abs(0.03 * n()), 2),
        ]


def make_poller(spec: DeviceSpec, rng: random.Random, start: float) -> Poller:
    kind = spec.kind
    if kind in ("firewall", "router", "switch"):
        return NetDevice(spec, rng, start, kind)
    poller: type[Poller] = {
        "acu": Acu,
        "modem": Modem,
        "ap": AccessPoint,
        "host": Host,
        "gps": Gps,
    }[kind]
    return poller(spec, rng, start)
