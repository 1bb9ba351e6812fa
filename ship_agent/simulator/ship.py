"""The simulated ship: its devices, its voyage and the daily rhythm of life on board.

Device ids and roles are a contract: the agent's policy maps id prefixes to roles and roles
to network paths, so the fixed ship below must keep these names.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

ACU = ("acu.elevation_deg", "acu.azimuth_deg", "acu.blocked")
MODEM = (
    "vsat.snr_db",
    "vsat.esno_db",
    "vsat.ber",
    "vsat.signal_dbm",
    "vsat.rain_fade_margin_db",
    "vsat.rx_kbps",
    "vsat.tx_kbps",
    "vsat.link_up",
)
NET = ("net.cpu_pct", "net.mem_pct", "net.temp_c", "net.if_errors_per_s", "net.util_pct")
SWITCH = (*NET, "net.poe_w")
AP = ("net.cpu_pct", "net.temp_c", "net.clients", "net.util_pct")
HOST = ("host.cpu_pct", "host.mem_pct", "host.disk_pct", "host.load1", "host.temp_c")
GPS = (
    "nav.fix_quality",
    "nav.sats",
    "nav.hdop",
    "nav.lat",
    "nav.lon",
    "nav.heading_deg",
    "nav.speed_kn",
)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device as the agent sees it: id, kind, poll interval and the metrics it reports.

    `audience` says whose day drives its load: guests (evening peak) or crew (daytime).
    """

    id: str
    kind: str
    interval_s: float
    metrics: tuple[str, ...]
    audience: str = "crew"


BASE_DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec("acu-01", "acu", 20, ACU),
    DeviceSpec("vsat-modem-01", "modem", 20, MODEM, "guest"),
    DeviceSpec("core-rtr-01", "router", 60, NET, "guest"),
    DeviceSpec("fw-01", "firewall", 45, NET, "guest"),
    DeviceSpec("sw-core-01", "switch", 60, SWITCH, "guest"),
    DeviceSpec("sw-guest-01", "switch", 60, SWITCH, "guest"),
    DeviceSpec("sw-bridge-01", "switch", 60, SWITCH),
    *(DeviceSpec(f"ap-guest-{i:02d}", "ap", 90, AP, "guest") for i in range(1, 5)),
    DeviceSpec("pos-srv-01", "host", 30, HOST, "guest"),
    DeviceSpec("res-srv-01", "host", 30, HOST, "guest"),
    DeviceSpec("ent-srv-01", "host", 30, HOST, "guest"),
    DeviceSpec("crew-srv-01", "host", 30, HOST),
    DeviceSpec("gps-01", "gps", 10, GPS),
)


def ship_devices(extra: int) -> tuple[DeviceSpec, ...]:
    """The fixed ship plus `extra` access switches, cabin APs and app servers, in turn."""
    extras = []
    for i in range(extra):
        n = i // 3 + 1
        if i % 3 == 0:
            extras.append(DeviceSpec(f"sw-acc-{n:03d}", "switch", 60, SWITCH))
        elif i % 3 == 1:
            extras.append(DeviceSpec(f"ap-cabin-{n:03d}", "ap", 90, AP, "guest"))
        else:
            extras.append(DeviceSpec(f"srv-app-{n:03d}", "host", 30, HOST))
    return BASE_DEVICES + tuple(extras)


# --- daily rhythm -------------------------------------------------------------------------


def _wave(peak_h: float, a1: float, a2: float) -> tuple[float, ...]:
    """Per-minute load multipliers for a day; the mean is exactly 1 (pure harmonics)."""
    return tuple(
        1.0
        + a1 * math.cos(2 * math.pi * (m / 60 - peak_h) / 24)
        + a2 * math.cos(4 * math.pi * (m / 60 - peak_h) / 24)
        for m in range(1440)
    )


GUEST_RATE = _wave(21.0, 0.55, 0.25)  # bars, cabins and Wi-Fi peak in the evening
CREW_RATE = _wave(13.0, 0.6, 0.15)  # offices, galley and maintenance peak at midday


def _activity(rates: tuple[float, ...]) -> tuple[float, ...]:
    lo, hi = min(rates), max(rates)
    return tuple((r - lo) / (hi - lo) for r in rates)


GUEST_ACTIVITY = _activity(GUEST_RATE)  # the same curves scaled to 0..1 for metric levels
CREW_ACTIVITY = _activity(CREW_RATE)


def local_minute(t: float, lon: float) -> int:
    """Minute of the ship's solar day; the rhythm follows the sun, not UTC."""
    return int((t / 60 + lon * 4) % 1440)


# --- voyage -------------------------------------------------------------------------------

# A western-Mediterranean loop: (port or None for a waypoint, lat, lon, hours alongside).
ROUTE: tuple[tuple[str | None, float, float, float], ...] = (
    ("Barcelona", 41.35, 2.18, 9),
    (None, 41.9, 3.6, 0),
    (None, 42.8, 4.5, 0),
    ("Marseille", 43.30, 5.35, 8),
    (None, 43.0, 5.6, 0),
    (None, 42.9, 6.5, 0),
    (None, 43.45, 7.6, 0),
    ("Genoa", 44.40, 8.93, 9),
    (None, 43.9, 9.4, 0),
    (None, 42.9, 10.0, 0),
    (None, 42.3, 11.2, 0),
    ("Civitavecchia", 42.09, 11.79, 10),
    (None, 41.32, 9.25, 0),
    (None, 40.9, 5.0, 0),
)
SATELLITE_LON = 9.0  # the GEO satellite the antenna tracks
_EARTH_NM = 3440.065


def bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360


def _distance_nm(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * _EARTH_NM * math.asin(math.sqrt(a))


def look_angles(lat: float, lon: float) -> tuple[float, float]:
    """Elevation and true azimuth (degrees) from the ship to the GEO satellite."""
    cos_g = math.cos(math.radians(lat)) * math.cos(math.radians(SATELLITE_LON - lon))
    elevation = math.degrees(math.atan2(cos_g - 0.15127, math.sqrt(1 - cos_g * cos_g)))
    return elevation, bearing(lat, lon, 0.0, SATELLITE_LON)


class Voyage:
    """Where the ship is at any time: a repeating loop of sea legs and port calls."""

    __slots__ = ("_starts", "_legs", "_cycle", "_offset")

    def __init__(self, speed_kn: float, offset_s: float) -> None:
        # (start, length, lat1, lon1, lat2, lon2, heading, speed); alongside, heading stays
        # what it was on arrival
        legs: list[tuple[float, float, float, float, float, float, float, float]] = []
        t = 0.0
        _last, lat0, lon0, _stay = ROUTE[-1]
        heading = bearing(lat0, lon0, ROUTE[0][1], ROUTE[0][2])
        for i, (_port, lat, lon, stay_h) in enumerate(ROUTE):
            _next_port, lat2, lon2, _next_stay = ROUTE[(i + 1) % len(ROUTE)]
            if stay_h:
                legs.append((t, stay_h * 3600, lat, lon, lat, lon, heading, 0.0))
                t += stay_h * 3600
            heading = bearing(lat, lon, lat2, lon2)
            sail = _distance_nm(lat, lon, lat2, lon2) / speed_kn * 3600
            legs.append((t, sail, lat, lon, lat2, lon2, heading, speed_kn))
            t += sail
        self._legs = legs
        self._starts = [leg[0] for leg in legs]
        self._cycle = t
        self._offset = offset_s % t

    def alongside(self, t: float) -> float:
        """Seconds until departure while the ship is alongside in port, else -1."""
        pos = (t + self._offset) % self._cycle
        start, length, *_rest, speed = self._legs[bisect_right(self._starts, pos) - 1]
        return start + length - pos if speed == 0.0 else -1.0

    def at(self, t: float) -> tuple[float, float, float, float]:
        """(lat, lon, heading_deg, speed_kn); linear along each leg, which is close enough."""
        pos = (t + self._offset) % self._cycle
        start, length, lat1, lon1, lat2, lon2, heading, speed = self._legs[
            bisect_right(self._starts, pos) - 1
        ]
        f = (pos - start) / length
        return lat1 + (lat2 - lat1) * f, lon1 + (lon2 - lon1) * f, heading, speed
