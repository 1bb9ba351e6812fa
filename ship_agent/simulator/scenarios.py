"""Labelled faults. Each scenario is a small class: metric shapes plus the log lines it writes.

A shape bends one metric away from what the device would report anyway (towards a level,
by an offset, by a factor, or blanks it) under an envelope that ramps in and out over
the fault's window; scenarios applied to the same device compose in injection order.
To add one: subclass `Scenario`, set the class attributes, list its `shapes`, write its
`logs` if it has any, and add it to `SCENARIOS`. Override `envelope` for a pattern that
a ramp cannot draw (see `LinkFlap`). `targets` lists the devices where the fault is
plausible (the benchmark rotates through them); `device` is the default.

Every default below clears the agent's thresholds by a wide margin (see the tests), and
every scenario keeps to its own signature so that the expected incident is unambiguous.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

from .background import SCANNER_NETS
from .events import Label, SimEvent
from .ship import HOST as HOST_METRICS
from .ship import SWITCH as SWITCH_METRICS
from .syslog import (
    AUTHPRIV,
    CRIT,
    DAEMON,
    ERR,
    INFO,
    KERN,
    LOCAL0,
    LOCAL4,
    LOCAL7,
    NOTICE,
    WARNING,
    Syslog,
    pri,
)

Mode = Literal["to", "add", "mul", "log_to", "drop"]
MODEM = "vsat-modem-01"
_AUTH_INFO = pri(AUTHPRIV, INFO)


@dataclass(frozen=True, slots=True)
class Shape:
    """How one metric departs from normal over a fault's window.

    `to` moves towards `value`, `log_to` does so in log10 (for BER), `add` offsets, `mul`
    scales, `drop` blanks the reading (the device reports nothing). `device` None means
    the fault's own device. Noise is bounded (±3 x `noise`) and scales with the envelope.
    """

    metric: str
    mode: Mode
    value: float = 0.0
    ramp_in_s: float = 0.0
    ramp_out_s: float = 0.0
    delay_s: float = 0.0
    noise: float = 0.0
    device: str | None = None
    modulo: float = 0.0
    ndigits: int | None = 2

    def envelope(self, t_rel: float, duration: float) -> float:
        if t_rel < self.delay_s or t_rel >= duration:
            return 0.0
        up = (t_rel - self.delay_s) / self.ramp_in_s if self.ramp_in_s else 1.0
        down = (duration - t_rel) / self.ramp_out_s if self.ramp_out_s else 1.0
        return min(1.0, up, down)

    def apply(self, base: float, env: float, noise: float) -> float:
        mode = self.mode
        if mode == "drop":
            return math.nan
        if mode == "to":
            value = base + (self.value - base) * env + noise * self.noise * env
        elif mode == "log_to":
            low = math.log10(base)
            value = 10 ** (low + (math.log10(self.value) - low) * env + noise * self.noise * env)
        elif mode == "add":
            value = base + self.value * env + noise * self.noise * env
        else:
            value = base * (1 + (self.value - 1) * env)
        if self.modulo:
            value %= self.modulo
        if self.ndigits is None:
            return float(f"{value:.3g}")
        return round(value, self.ndigits) + 0.0  # + 0.0 turns -0.0 into 0.0


class Scenario:
    """One injected fault: a window on a root-cause device, its shapes and its log lines."""

    name: ClassVar[str]
    incident_type: ClassVar[str]
    device: ClassVar[str]
    duration_s: ClassVar[float]
    shapes: ClassVar[tuple[Shape, ...]] = ()
    targets: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def devices_for(cls) -> tuple[str, ...]:
        """Where this fault can happen: its default device first."""
        return (cls.device, *(d for d in cls.targets if d != cls.device))

    def __init__(self, device: str, start_ts: float, duration_s: float, rng: random.Random):
        self.root = device
        self.start_ts = start_ts
        self.end_ts = start_ts + duration_s
        self.duration = duration_s
        self.rng = rng
        self._shapes: dict[tuple[str, str], list[Shape]] = {}
        for shape in self.shapes:
            self._shapes.setdefault((shape.device or device, shape.metric), []).append(shape)
        self.devices = frozenset(dev for dev, _metric in self._shapes)

    @classmethod
    def own_metrics(cls) -> set[str]:
        """Metrics the root device must report for this scenario to make sense there."""
        return {shape.metric for shape in cls.shapes if shape.device is None}

    def label(self) -> Label:
        return Label(self.name, self.incident_type, self.root, self.start_ts, self.end_ts)

    def envelope(self, shape: Shape, t_rel: float) -> float:
        return shape.envelope(t_rel, self.duration)

    def noise(self) -> float:
        r = self.rng.random
        return (r() + r() + r() - 1.5) * 2.0

    def apply(self, device: str, metrics: tuple[str, ...], ts: float, values: list[float]) -> None:
        """Bend one poll's `values` (aligned with `metrics`) in place."""
        t_rel = ts - self.start_ts
        for i, metric in enumerate(metrics):
            for shape in self._shapes.get((device, metric), ()):
                env = self.envelope(shape, t_rel)
                if env > 0.0:
                    values[i] = shape.apply(values[i], env, self.noise())

    def logs(self, log: Syslog) -> Iterable[SimEvent]:
        """The fault's own log lines, any order; the engine sorts and clips them to the window."""
        return ()

    def at(self, t_rel: float) -> int:
        """Epoch milliseconds of a moment in the window."""
        return int((self.start_ts + t_rel) * 1000)

    def every(self, first: float, last: float, lo: float, hi: float) -> Iterator[float]:
        """Moments from `first` to `last` (relative), spaced `lo`..`hi` seconds apart."""
        t = first
        while t <= last:
            yield t
            t += lo + self.rng.random() * (hi - lo)


def _modem(log: Syslog, tms: int, severity: int, msg: str) -> SimEvent:
    return log.rfc5424(tms, MODEM, "modem", "611", pri(DAEMON, severity), msg)


class RainFade(Scenario):
    """Heavy rain over the ship: SNR and Es/No sink together, BER climbs, ACM downshifts."""

    name = "rain_fade"
    incident_type = "link_degradation"
    device = MODEM
    duration_s = 1500
    shapes = (  # five minutes to fade, four to recover
        Shape("vsat.snr_db", "to", 9.2, 300, 240, noise=0.25),
        Shape("vsat.esno_db", "to", 7.2, 300, 240, noise=0.2),
        Shape("vsat.ber", "log_to", 2e-4, 300, 240, noise=0.1, ndigits=None),
        Shape("vsat.signal_dbm", "add", -5.5, 300, 240, ndigits=1),
        Shape("vsat.rain_fade_margin_db", "to", 0.2, 300, 240, noise=0.05),
        Shape("vsat.rx_kbps", "mul", 0.35, 300, 240, ndigits=1),
        Shape("vsat.tx_kbps", "mul", 0.35, 300, 240, ndigits=1),
    )

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        yield _modem(log, self.at(150), WARNING, "ACM: MODCOD change 8PSK 3/4 -> QPSK 3/4")
        yield _modem(log, self.at(260), WARNING, "ACM: MODCOD change QPSK 3/4 -> QPSK 1/2")
        for t in self.every(300, self.duration - 250, 60, 90):
            esno = 7.2 + 0.2 * self.noise()
            yield _modem(
                log,
                self.at(t),
                WARNING,
                f"rain fade: Es/No {esno:.1f} dB, fade margin 0.2 dB below 1.0 dB",
            )
        yield _modem(
            log, self.at(self.duration - 150), NOTICE, "ACM: MODCOD change QPSK 1/2 -> QPSK 3/4"
        )
        yield _modem(
            log, self.at(self.duration - 60), NOTICE, "ACM: MODCOD change QPSK 3/4 -> 8PSK 3/4"
        )


class AntennaBlockage(Scenario):
    """The ship turns and the funnel shadows the dish: ACU flags it a poll before the modem."""

    name = "antenna_blockage"
    incident_type = "link_degradation"
    device = "acu-01"
    duration_s = 600
    shapes = (  # the turn takes 90 s; the modem fades one 20 s poll after the ACU flags it
        Shape("acu.blocked", "to", 1.0, ndigits=0),
        Shape("acu.azimuth_deg", "add", -38.0, 90, 90, modulo=360.0, ndigits=1),
        Shape("nav.heading_deg", "add", 38.0, 90, 90, device="gps-01", modulo=360.0, ndigits=1),
        # degraded, not lost: lock is held above the 7 dB floor (below it is a comms outage)
        Shape("vsat.snr_db", "to", 8.5, 10, 30, delay_s=20, noise=0.3, device=MODEM),
        Shape("vsat.esno_db", "to", 6.5, 10, 30, delay_s=20, noise=0.3, device=MODEM),
        Shape(
            "vsat.ber", "log_to", 1e-4, 10, 30, delay_s=20, noise=0.2, device=MODEM, ndigits=None
        ),
        Shape("vsat.rx_kbps", "mul", 0.1, 10, 30, delay_s=20, device=MODEM, ndigits=1),
        Shape("vsat.tx_kbps", "mul", 0.1, 10, 30, delay_s=20, device=MODEM, ndigits=1),
    )

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        def acu(t: float, severity: int, msg: str) -> SimEvent:
            return log.rfc3164(self.at(t), self.root, "acu", pri(DAEMON, severity), msg)

        yield acu(2, WARNING, "blockage zone entered (sector 160-200 deg relative), tracking held")
        for t in self.every(21, self.duration - 60, 60, 120):
            yield _modem(
                log,
                self.at(t),
                WARNING,
                f"Rx lock degraded, Es/No {6.5 + 0.3 * self.noise():.1f} dB",
            )
        yield acu(self.duration - 20, NOTICE, "blockage zone left, tracking resumed")
        yield _modem(log, self.at(self.duration - 5), NOTICE, "Rx lock stable, Es/No 13.1 dB")


class LinkFlap(Scenario):
    """The modem keeps losing and regaining lock (a failing LNB): the link goes up and down."""

    name = "link_flap"
    incident_type = "comms_outage"
    device = MODEM
    duration_s = 900
    shapes = (
        Shape("vsat.link_up", "to", 0.0, ndigits=0),
        Shape("vsat.rx_kbps", "to", 0.0, ndigits=1),
        Shape("vsat.tx_kbps", "to", 0.0, ndigits=1),
    )

    def __init__(self, device: str, start_ts: float, duration_s: float, rng: random.Random):
        super().__init__(device, start_ts, duration_s, rng)
        # the fault begins with the first loss of lock; down 70-90 s (>= 3 polls at 20 s),
        # up 50-80 s: >= 4 losses in the first 600 s
        self.downs: list[tuple[float, float]] = []
        t = rng.random() * 5
        while True:
            down = 70 + rng.random() * 20
            if t + down > duration_s - 30:
                break
            self.downs.append((t, t + down))
            t += down + 50 + rng.random() * 30

    def envelope(self, shape: Shape, t_rel: float) -> float:
        return 1.0 if any(a <= t_rel < b for a, b in self.downs) else 0.0

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        for a, b in self.downs:
            yield _modem(log, self.at(a), ERR, "Rx lock lost, carrier not found (demod searching)")
            yield _modem(log, self.at(a + 1), WARNING, "Tx muted: no Rx lock")
            yield _modem(
                log,
                self.at(b),
                NOTICE,
                f"Rx lock acquired, Es/No {13.2 + 0.2 * self.noise():.1f} dB",
            )
            yield _modem(log, self.at(b + 2), NOTICE, "Tx unmuted")


class SwitchPortErrors(Scenario):
    """A damaged uplink cable: CRC errors pour in and the port bounces."""

    name = "switch_port_errors"
    incident_type = "network_issue"
    device = "sw-core-01"
    duration_s = 900
    shapes = (
        Shape("net.if_errors_per_s", "to", 180.0, 60, 60, noise=20, ndigits=1),
        Shape("net.util_pct", "mul", 0.6, 60, 60, ndigits=1),
    )
    targets = ("sw-bridge-01", "sw-guest-01")

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        port = "GigabitEthernet1/0/48"
        for t in self.every(45, self.duration - 90, 45, 70):
            up = t + 4 + self.rng.random() * 8
            for at, state in ((t, "down"), (up, "up")):
                yield log.rfc3164(
                    self.at(at),
                    self.root,
                    "%LINK-3-UPDOWN",
                    pri(LOCAL7, ERR),
                    f"Interface {port}, changed state to {state}",
                )
                yield log.rfc3164(
                    self.at(at + 1),
                    self.root,
                    "%LINEPROTO-5-UPDOWN",
                    pri(LOCAL7, NOTICE),
                    f"Line protocol on Interface {port}, changed state to {state}",
                )


class FirewallCpu(Scenario):
    """A scan flood pins the firewall's CPU; threat detection says why."""

    name = "firewall_cpu"
    incident_type = "resource_pressure"
    device = "fw-01"
    duration_s = 1200
    shapes = (
        Shape("net.cpu_pct", "to", 97.5, 90, 120, noise=0.5, ndigits=1),
        Shape("net.util_pct", "to", 88.0, 90, 120, noise=2, ndigits=1),
    )

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        total = 0
        for t in self.every(30, self.duration - 120, 20, 40):
            burst = int(380 + 60 * self.noise())
            total += burst * 20
            yield log.rfc3164(
                self.at(t),
                self.root,
                "%ASA-4-733100",
                pri(LOCAL4, WARNING),
                f"[ Scanning] drop rate-1 exceeded. Current burst rate is {burst} per second, "
                f"max configured rate is 10; Current average rate is {burst // 2} per second, "
                f"max configured rate is 5; Cumulative total count is {total}",
            )


class DiskFilling(Scenario):
    """Debug logging left on: the POS journal fills the disk until writes fail."""

    name = "disk_filling"
    incident_type = "resource_pressure"
    device = "pos-srv-01"
    duration_s = 1800
    shapes = (Shape("host.disk_pct", "to", 98.0, 900, 60, noise=0.1),)
    targets = ("res-srv-01", "ent-srv-01", "crew-srv-01")

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        app = _APPS.get(self.root, "appsrv")

        def line(t: float, severity: int, msg: str) -> SimEvent:
            return log.rfc5424(self.at(t), self.root, app, "2210", pri(LOCAL0, severity), msg)

        yield line(5, INFO, "INFO debug logging enabled for module payments by admin")
        yield line(640, WARNING, f"WARN disk usage above 85% on /var/lib/{app}")
        for t in self.every(900, self.duration - 70, 20, 40):
            yield line(
                t,
                ERR,
                "ERROR journal write failed: [Errno 28] No space left on device: "
                f"'/var/lib/{app}/journal/checks.db-wal'",
            )
        yield line(self.duration - 50, INFO, "INFO debug logs purged, journal writes resumed")


class ServiceCrashLoop(Scenario):
    """The host's main service cannot reach its database: systemd restarts it over and over."""

    name = "service_crash_loop"
    incident_type = "app_degradation"
    device = "res-srv-01"
    duration_s = 900
    shapes = (Shape("host.cpu_pct", "add", 12.0, 30, 30, noise=1, ndigits=1),)
    targets = ("pos-srv-01", "ent-srv-01")

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        app = _APPS.get(self.root, "appsrv")
        unit, title = f"{app}.service", _TITLES.get(app, "Application Server")

        def systemd(t: float, severity: int, msg: str) -> SimEvent:
            return log.rfc5424(self.at(t), self.root, "systemd", "1", pri(DAEMON, severity), msg)

        pid = 4100 + int(self.rng.random() * 5000)
        for n, t in enumerate(self.every(5, self.duration - 40, 20, 40), start=1):
            yield log.rfc5424(
                self.at(t),
                self.root,
                app,
                str(pid),
                pri(LOCAL0, CRIT),
                "FATAL could not connect to database at 10.10.2.14:5432: Connection refused",
            )
            yield systemd(
                t + 0.05, NOTICE, f"{unit}: Main process exited, code=exited, status=1/FAILURE"
            )
            yield systemd(t + 0.06, WARNING, f"{unit}: Failed with result 'exit-code'.")
            yield systemd(t + 5, INFO, f"{unit}: Scheduled restart job, restart counter is at {n}.")
            yield systemd(t + 5.01, INFO, f"Stopped {unit} - {title}.")
            yield systemd(t + 5.02, INFO, f"Started {unit} - {title}.")
            pid += 1 + int(self.rng.random() * 40)
        yield log.rfc5424(
            self.at(self.duration - 10),
            self.root,
            app,
            str(pid),
            pri(LOCAL0, INFO),
            "INFO connected to database at 10.10.2.14:5432",
        )


class SshdBruteforce(Scenario):
    """A password-guessing bot from the internet hammers the crew server's sshd."""

    name = "sshd_bruteforce"
    incident_type = "security_alert"
    device = "crew-srv-01"
    duration_s = 600
    shapes = (Shape("host.cpu_pct", "add", 6.0, 30, 30, noise=1, ndigits=1),)
    targets = ("res-srv-01",)
    _USERS = ("admin", "test", "ubuntu", "oracle", "postgres", "pi", "git", "support")

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        r = self.rng.random
        nets = SCANNER_NETS
        bots = [f"{nets[int(r() * len(nets))]}.{int(r() * 254) + 1}" for _ in range(3)]
        for t in self.every(3, self.duration - 15, 0.35, 0.85):
            user, ip = self._USERS[int(r() * len(self._USERS))], bots[int(r() * 3)]
            who = f"{user} from {ip} port {30000 + int(r() * 35000)}"
            pid, tms = str(int(r() * 6e4)), self.at(t)
            for delay, msg in (
                (0, f"Invalid user {who}"),
                (120, f"Failed password for invalid user {who} ssh2"),
                (180, f"Connection closed by invalid user {who} [preauth]"),
            ):
                yield log.rfc5424(tms + delay, self.root, "sshd", pid, _AUTH_INFO, msg)


class GpsFixLoss(Scenario):
    """The GPS antenna feed goes open-circuit: no fix, no position, gpsd complains."""

    name = "gps_fix_loss"
    incident_type = "navigation_data"
    device = "gps-01"
    duration_s = 600
    shapes = (
        Shape("nav.fix_quality", "to", 0.0, ndigits=0),
        Shape("nav.sats", "to", 2.5, noise=0.8, ndigits=0),
        Shape("nav.hdop", "to", 99.99),
        Shape("nav.lat", "drop"),
        Shape("nav.lon", "drop"),
        Shape("nav.heading_deg", "drop"),
        Shape("nav.speed_kn", "drop"),
    )

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        def gpsd(t: float, severity: int, msg: str) -> SimEvent:
            return log.rfc5424(self.at(t), self.root, "gpsd", "812", pri(DAEMON, severity), msg)

        yield gpsd(0.5, WARNING, "antenna status OPEN (no current on active antenna feed)")
        yield gpsd(1.5, ERR, "GPS fix lost (mode 1, 0 satellites used)")
        for t in self.every(60, self.duration - 30, 60, 120):
            visible = int(self.rng.random() * 4)
            yield gpsd(t, WARNING, f"no fix: {visible} satellites visible, 0 used")
        yield gpsd(self.duration - 8, NOTICE, "antenna status OK")
        yield gpsd(self.duration - 2, NOTICE, "GPS fix acquired (mode 3D), 9 satellites used")


class Overheating(Scenario):
    """A fan dies in the bridge switch: the inlet temperature climbs past the critical line."""

    name = "overheating"
    incident_type = "hardware_environment"
    device = "sw-bridge-01"
    duration_s = 1800
    shapes = (Shape("net.temp_c", "to", 58.5, 600, 300, noise=0.4, ndigits=1),)
    targets = ("sw-core-01", "sw-guest-01")

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        yield log.rfc3164(
            self.at(2),
            self.root,
            "%ENVMON-3-FAN_FAILED",
            pri(LOCAL7, ERR),
            "Fan 2 has failed, airflow reduced",
        )
        for t in self.every(600, self.duration - 300, 60, 90):
            yield log.rfc3164(
                self.at(t),
                self.root,
                "%ENVMON-4-TEMP_WARNING",
                pri(LOCAL7, WARNING),
                f"Inlet temperature above threshold: {58 + int(self.rng.random() * 2)}C"
                " (threshold 55C)",
            )
        yield log.rfc3164(
            self.at(self.duration - 30),
            self.root,
            "%ENVMON-5-TEMP_OK",
            pri(LOCAL7, NOTICE),
            "Inlet temperature back to normal: 47C",
        )


class VsatOutage(Scenario):
    """The BUC's power supply fails: no carrier at all until the crew swaps it."""

    name = "vsat_outage"
    incident_type = "comms_outage"
    device = MODEM
    duration_s = 900
    shapes = (
        Shape("vsat.link_up", "to", 0.0, ndigits=0),
        Shape("vsat.snr_db", "to", 1.5, noise=0.4),
        Shape("vsat.esno_db", "to", 0.0, noise=0.2),
        Shape("vsat.ber", "log_to", 5e-2, noise=0.05, ndigits=None),
        Shape("vsat.rain_fade_margin_db", "to", 0.0),
        Shape("vsat.rx_kbps", "to", 0.0, ndigits=1),
        Shape("vsat.tx_kbps", "to", 0.0, ndigits=1),
    )

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        yield _modem(log, self.at(0.5), CRIT, "BUC alarm: PSU fault, Tx disabled")
        yield _modem(log, self.at(1.5), ERR, "Rx lock lost, carrier not found (demod searching)")
        for t in self.every(120, self.duration - 60, 120, 180):
            yield _modem(log, self.at(t), WARNING, "demod searching: no carrier on 11.451 GHz")
        yield _modem(log, self.at(self.duration - 20), NOTICE, "BUC alarm cleared, Tx enabled")
        yield _modem(
            log,
            self.at(self.duration - 8),
            NOTICE,
            f"Rx lock acquired, Es/No {13.2 + 0.2 * self.noise():.1f} dB",
        )


class MemoryLeak(Scenario):
    """A media server process leaks memory until the kernel's OOM killer steps in."""

    name = "memory_leak"
    incident_type = "resource_pressure"
    device = "ent-srv-01"
    duration_s = 1800
    shapes = (Shape("host.mem_pct", "to", 97.5, 900, 60, noise=0.3, ndigits=1),)
    targets = ("res-srv-01", "crew-srv-01")

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        app = _APPS.get(self.root, "appsrv")
        pid = 2000 + int(self.rng.random() * 20000)
        yield log.rfc5424(
            self.at(600),
            self.root,
            app,
            str(pid),
            pri(LOCAL0, WARNING),
            "WARN heap usage above 85%",
        )
        for t in self.every(960, self.duration - 90, 150, 250):
            kb = 3_000_000 + int(self.rng.random() * 900_000)
            yield log.rfc5424(
                self.at(t),
                self.root,
                "kernel",
                "-",
                pri(KERN, ERR),
                f"Out of memory: Killed process {pid} ({app}) total-vm:{kb + 400_000}kB, "
                f"anon-rss:{kb}kB, file-rss:0kB, shmem-rss:0kB, UID:998 pgtables:{kb // 500}kB "
                "oom_score_adj:0",
            )
            pid += 1 + int(self.rng.random() * 30)


class CrewLoginFailures(Scenario):
    """A crew member's password expired and a mail client keeps retrying the old one."""

    name = "crew_login_failures"
    incident_type = "auth_failure"
    device = "crew-srv-01"
    duration_s = 600
    targets = ("ent-srv-01",)

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        r = self.rng.random
        user = _CREW_USERS[int(r() * len(_CREW_USERS))]
        src = f"10.30.{int(r() * 4) + 1}.{int(r() * 250) + 2}"
        for t in self.every(10, self.duration - 30, 40, 70):
            pid, tms = str(int(r() * 6e4)), self.at(t)
            who = f"{user} from {src} port {30000 + int(r() * 35000)} ssh2"
            pam = (
                "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
                f"ruser= rhost={src}  user={user}"
            )
            yield log.rfc5424(tms, self.root, "sshd", pid, _AUTH_INFO, pam)
            yield log.rfc5424(
                tms + 40, self.root, "sshd", pid, _AUTH_INFO, f"Failed password for {who}"
            )


class PaymentGatewayErrors(Scenario):
    """The card acquirer ashore stops answering: every card sale on board fails."""

    name = "payment_gateway_errors"
    incident_type = "app_degradation"
    device = "pos-srv-01"
    duration_s = 900
    shapes = (Shape("host.cpu_pct", "add", 4.0, 30, 30, noise=1, ndigits=1),)

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        r = self.rng.random
        for t in self.every(2, self.duration - 20, 0.3, 1.2):
            msg = (
                f"ERROR card authorisation failed: acquirer gateway timeout after 30000 ms "
                f"(terminal T{int(r() * 24) + 1:02d}, check {int(r() * 90000) + 10000})"
            )
            yield log.rfc5424(self.at(t), self.root, "pos", "2210", pri(LOCAL0, ERR), msg)


class CpuRunaway(Scenario):
    """A report job loops forever and pins every core of an application server."""

    name = "cpu_runaway"
    incident_type = "resource_pressure"
    device = "res-srv-01"
    duration_s = 1200
    shapes = (
        Shape("host.cpu_pct", "to", 99.0, 30, 60, noise=0.3, ndigits=1),
        Shape("host.load1", "to", 17.0, 60, 60, noise=0.5),
    )
    targets = ("ent-srv-01", "pos-srv-01")

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        app = _APPS.get(self.root, "appsrv")
        for t in self.every(120, self.duration - 60, 90, 150):
            busy = int(900 + self.rng.random() * 900)
            yield log.rfc5424(
                self.at(t),
                self.root,
                app,
                "1408",
                pri(LOCAL0, WARNING),
                f"WARN worker pool saturated: 64/64 busy, {busy} requests queued",
            )


# --- planned work in the weekly maintenance window: looks like faults, is not ------------

MAINTENANCE_WINDOW = ("sunday", "02:00", "04:00")  # UTC, as in the remediation policy


class SwitchReload(Scenario):
    """Firmware upgrade of the guest switch: every port drops, the switch goes silent."""

    name = "maintenance_switch_reload"
    incident_type = "network_issue"
    device = "sw-guest-01"
    duration_s = 480
    shapes = tuple(Shape(m, "drop") for m in SWITCH_METRICS)

    def envelope(self, shape: Shape, t_rel: float) -> float:
        return 1.0 if 60 <= t_rel < 360 else 0.0

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        def ios(t: float, tag: str, severity: int, msg: str) -> SimEvent:
            return log.rfc3164(self.at(t), self.root, tag, pri(LOCAL7, severity), msg)

        yield ios(
            5,
            "%SYS-5-RELOAD",
            NOTICE,
            "Reload requested by netadmin on vty0 (10.10.1.23). Reload Reason: firmware upgrade.",
        )
        for port in range(1, 25):
            msg = f"Interface GigabitEthernet1/0/{port}, changed state to down"
            yield ios(58 + port * 0.05, "%LINK-3-UPDOWN", ERR, msg)
        yield ios(361, "%SYS-5-RESTART", NOTICE, "System restarted -- firmware 17.9.4a")
        for port in range(1, 25):
            msg = f"Interface GigabitEthernet1/0/{port}, changed state to up"
            yield ios(375 + port * 0.5, "%LINK-3-UPDOWN", ERR, msg)


class HostPatching(Scenario):
    """Monthly patches on the crew server: services restart, then the host reboots."""

    name = "maintenance_host_patching"
    incident_type = "app_degradation"
    device = "crew-srv-01"
    duration_s = 900
    shapes = tuple(Shape(m, "drop") for m in HOST_METRICS)

    def envelope(self, shape: Shape, t_rel: float) -> float:
        return 1.0 if 420 <= t_rel < 600 else 0.0

    def logs(self, log: Syslog) -> Iterator[SimEvent]:
        def systemd(t: float, severity: int, msg: str) -> SimEvent:
            return log.rfc5424(self.at(t), self.root, "systemd", "1", pri(DAEMON, severity), msg)

        yield log.rfc5424(
            self.at(10),
            self.root,
            "apt",
            str(3000 + int(self.rng.random() * 900)),
            pri(DAEMON, INFO),
            "upgrade: 37 packages upgraded, 0 newly installed, 0 to remove",
        )
        for i, unit in enumerate(("postfix.service", "crewportal.service", "nginx.service")):
            t = 300 + 20 * i
            yield systemd(t, INFO, f"Stopping {unit}...")
            yield systemd(
                t + 1, NOTICE, f"{unit}: Main process exited, code=killed, status=15/TERM"
            )
            yield systemd(t + 2, INFO, f"Started {unit}.")
        yield systemd(400, NOTICE, "Reached target reboot.target - System Reboot.")
        yield log.rfc5424(
            self.at(610),
            self.root,
            "kernel",
            "-",
            pri(KERN, NOTICE),
            "Linux version 6.8.0-49-generic",
        )
        yield systemd(640, INFO, "Startup finished in 4.112s (kernel) + 23.705s (userspace).")


MAINTENANCE: tuple[tuple[float, type[Scenario]], ...] = (
    (10 * 60, SwitchReload),  # seconds after the window opens
    (40 * 60, HostPatching),
)

_APPS = {"pos-srv-01": "pos", "res-srv-01": "reservations", "ent-srv-01": "mediasrv"}
_TITLES = {
    "pos": "Point of Sale",
    "reservations": "Ship Reservations API",
    "mediasrv": "Media Streaming Server",
}
_CREW_USERS = ("j.okafor", "m.santos", "a.petrov", "l.nguyen")

SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls
    for cls in (
        RainFade,
        AntennaBlockage,
        LinkFlap,
        SwitchPortErrors,
        FirewallCpu,
        DiskFilling,
        ServiceCrashLoop,
        SshdBruteforce,
        GpsFixLoss,
        Overheating,
        VsatOutage,
        MemoryLeak,
        CrewLoginFailures,
        PaymentGatewayErrors,
        CpuRunaway,
    )
}
