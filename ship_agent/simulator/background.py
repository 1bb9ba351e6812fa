"""Normal log traffic: the noise a healthy ship makes, and none of the fault signatures.

Two kinds of source:
- chatter: Poisson streams per audience (guest, crew, plant) whose rate follows the daily
  rhythm; each arrival picks a weighted template (firewall, Wi-Fi, POS, sshd, modem ...);
- jobs: periodic generators (cron, systemd timers, the midnight burst, DHCP renewals, the
  odd mistyped password, access ports going down and up) with minimum spacings that keep
  them under the agent's thresholds by construction, not by luck.

Guest Wi-Fi, captive-portal and POS lines carry PII on purpose (names, device names,
e-mail addresses, guest IPs): the privacy layer must find and redact them.
"""

from __future__ import annotations

import math
import random
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate

from .devices import Context
from .events import SimEvent
from .ship import DeviceSpec
from .syslog import (
    AUTHPRIV,
    CRON,
    DAEMON,
    ERR,
    INFO,
    KERN,
    LOCAL0,
    LOCAL4,
    LOCAL7,
    MAIL,
    NOTICE,
    WARNING,
    Syslog,
    pri,
)

Template = Callable[[int, list[SimEvent]], None]

# fmt: off
_FIRST = (
    "Anna", "Maria", "Lukas", "Sofia", "Ahmed", "Chen", "Olga", "James", "Emma", "Mateo",
    "Yuki", "Priya", "Lars", "Zoë", "José", "Fatima", "Noah", "Chloé", "Marco", "Ingrid",
    "Kwame", "Elena", "Tomasz", "Aiko", "Hannah", "Omar", "Giulia", "Sean",
)
_LAST = (
    "Berg", "Gonzalez", "Müller", "Rossi", "Haddad", "Wang", "Ivanova", "Smith", "Dubois",
    "Silva", "Tanaka", "Patel", "Nilsson", "Kowalski", "Okafor", "García", "Jensen", "Moreau",
    "Costa", "Novak", "O'Brien", "Schmidt",
)
_MAIL = (
    "gmail.com", "outlook.com", "yahoo.com", "icloud.com", "gmx.de", "web.de", "libero.it",
    "orange.fr", "hotmail.co.uk",
)
# fmt: on
_DEVICE_NAMES = ("{}-s-iPhone", "{}s-iPad", "Galaxy-S23-{}", "{}-MacBook-Air", "Pixel-8-{}")
_OUIS = ("3c:22:fb", "f0:18:98", "8c:f5:a3", "3c:28:6d", "a4:c3:f0", "dc:a6:32")
_CREW = ("j.okafor", "m.santos", "a.petrov", "l.nguyen", "r.haugen", "k.tanaka")
_OPS = ("ops", "netadmin", "backup", "deploy")
# networks that real guest traffic goes to and real scanners come from
_SERVICES = ("142.250", "157.240", "17.253", "151.101", "104.16", "13.107", "31.13", "23.215")
SCANNER_NETS = ("61.177.172", "218.92.0", "45.148.10", "193.32.162", "141.98.11", "185.224.128")
_OUTLETS = ("Deck5-Atrium-Bar", "Deck12-Pool-Bar", "Deck7-Bistro", "Deck3-Shop", "Deck14-Spa")
_VENUES = ("Sakura", "Le-Jardin", "Steakhouse", "Chefs-Table", "Trattoria")
_TITLES = ("Ocean Giants", "The Last Harbour", "Night Train", "Blue Planet II", "Deep Water")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_UID = {"ops": 1001, "netadmin": 1002, "backup": 1003, "deploy": 1004}
_ASA_INFO, _ASA_WARN = pri(LOCAL4, INFO), pri(LOCAL4, WARNING)
_NET_INFO, _NET_NOTICE = pri(LOCAL7, INFO), pri(LOCAL7, NOTICE)
_APP_INFO, _APP_WARN = pri(LOCAL0, INFO), pri(LOCAL0, WARNING)
_DAEMON_INFO, _AUTH_INFO, _KERN_INFO = pri(DAEMON, INFO), pri(AUTHPRIV, INFO), pri(KERN, INFO)
_CRON_INFO, _LINK_ERR = pri(CRON, INFO), pri(LOCAL7, ERR)


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().replace("'", "")


class _Guest:
    __slots__ = ("name", "host", "mac", "ip", "email", "cabin")

    def __init__(self, rng: random.Random) -> None:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        self.name = f"{first} {last}"
        self.host = rng.choice(_DEVICE_NAMES).format(_ascii(first))
        self.mac = rng.choice(_OUIS) + "".join(f":{rng.randrange(256):02x}" for _ in range(3))
        self.ip = f"10.20.{rng.randrange(1, 16)}.{rng.randrange(2, 255)}"
        self.email = f"{_ascii(first).lower()}.{_ascii(last).lower()}@{rng.choice(_MAIL)}"
        self.cabin = f"{rng.randrange(4, 15)}{rng.randrange(1, 100):03d}"


def _cisco_mac(mac: str) -> str:
    h = mac.replace(":", "")
    return f"{h[0:4]}.{h[4:8]}.{h[8:12]}"


def _ssid(ap: str) -> str:
    return "Ocean-Cabin" if ap.startswith("ap-cabin-") else "Ocean-Guest"


def _slot(start: float, period: float, offset: float) -> float:
    """First time from `start` on that is `offset` past a multiple of `period` (UTC-aligned)."""
    return math.ceil((start - offset) / period) * period + offset


class Chatter:
    """A Poisson stream for one audience; its rate follows the day, its lines a weight table."""

    __slots__ = ("rate", "audience", "rng", "next_t", "_cum", "_fns", "_total")

    def __init__(
        self,
        rate: float,
        audience: str,
        templates: Sequence[tuple[float, Template]],
        rng: random.Random,
        start: float,
    ) -> None:
        self.rate = rate
        self.audience = audience
        self.rng = rng
        self._cum = list(accumulate(w for w, _fn in templates))
        self._fns = [fn for _w, fn in templates]
        self._total = self._cum[-1]
        self._cum[-1] = math.inf  # r() * total may round up to total: still the last template
        self.next_t = start + rng.expovariate(rate)

    def emit(self, until: float, ctx: Context, out: list[SimEvent]) -> None:
        if self.audience == "guest":
            lam = self.rate * ctx.guest_rate
        elif self.audience == "crew":
            lam = self.rate * ctx.crew_rate
        else:
            lam = self.rate
        r, log, cum, fns, total = self.rng.random, math.log, self._cum, self._fns, self._total
        t = self.next_t
        while t < until:
            fns[bisect_right(cum, r() * total)](int(t * 1000), out)
            t -= log(1.0 - r()) / lam
        self.next_t = t


class Background:
    """Builds the normal traffic sources for one run."""

    def __init__(
        self, devices: Sequence[DeviceSpec], rng: random.Random, log: Syslog, start: float
    ) -> None:
        self.rng = rng
        self.log = log
        self.start = start
        by_kind: dict[str, list[str]] = {}
        for spec in devices:
            by_kind.setdefault(spec.kind, []).append(spec.id)
        self.hosts = by_kind["host"]
        self.aps = by_kind["ap"]
        self.switches = by_kind["switch"]
        self.extra_hosts = [h for h in self.hosts if h.startswith("srv-app-")]
        self.host_ip = {h: f"10.10.{2 + i // 200}.{10 + i % 200}" for i, h in enumerate(self.hosts)}
        self.guests = [_Guest(rng) for _ in range(400)]
        self.public_ip = f"185.{rng.randrange(16, 250)}.{rng.randrange(256)}.{rng.randrange(256)}"
        self._conn = rng.randrange(10**6, 10**7)
        self._check = rng.randrange(10**4, 10**5)
        self._pid = rng.randrange(2000, 30000)

    # --- helpers ---------------------------------------------------------------------------

    def _next_pid(self) -> str:
        self._pid = self._pid + 1 if self._pid < 4_000_000 else 2000
        return str(self._pid)

    def _guest(self) -> _Guest:
        return self.guests[int(self.rng.random() * len(self.guests))]

    def _pick(self, pool: Sequence[str]) -> str:
        return pool[int(self.rng.random() * len(pool))]

    def _service_ip(self) -> str:
        r = self.rng.random
        return f"{_SERVICES[int(r() * 8)]}.{int(r() * 256)}.{int(r() * 254) + 1}"

    def _scanner_ip(self) -> str:
        return f"{SCANNER_NETS[int(self.rng.random() * 6)]}.{int(self.rng.random() * 254) + 1}"

    def _port(self) -> int:
        return 32768 + int(self.rng.random() * 28000)

    # --- guest audience --------------------------------------------------------------------

    def fw_built(self, tms: int, out: list[SimEvent]) -> None:
        self._conn += 1
        g, dst, port = self._guest(), self._service_ip(), 443 if self.rng.random() < 0.85 else 80
        msg = (
            f"Built outbound TCP connection {self._conn} for outside:{dst}/{port} ({dst}/{port}) "
            f"to guest:{g.ip}/{self._port()} ({self.public_ip}/{self._port()})"
        )
        out.append(self.log.rfc3164(tms, "fw-01", "%ASA-6-302013", _ASA_INFO, msg))

    def fw_teardown(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        g, dst = self._guest(), self._service_ip()
        msg = (
            f"Teardown TCP connection {self._conn - int(r() * 500)} for outside:{dst}/443 to "
            f"guest:{g.ip}/{self._port()} duration 0:{int(r() * 30):02d}:{int(r() * 60):02d} "
            f"bytes {int(r() ** 3 * 5e7)} TCP FINs"
        )
        out.append(self.log.rfc3164(tms, "fw-01", "%ASA-6-302014", _ASA_INFO, msg))

    def fw_dns(self, tms: int, out: list[SimEvent]) -> None:
        self._conn += 1
        g = self._guest()
        msg = (
            f"Built outbound UDP connection {self._conn} for outside:9.9.9.9/53 (9.9.9.9/53) "
            f"to guest:{g.ip}/{self._port()} ({self.public_ip}/{self._port()})"
        )
        out.append(self.log.rfc3164(tms, "fw-01", "%ASA-6-302015", _ASA_INFO, msg))

    def fw_deny(self, tms: int, out: list[SimEvent]) -> None:
        port = (23, 445, 3389, 22, 8080, 5060)[int(self.rng.random() * 6)]
        msg = (
            f"Deny tcp src outside:{self._scanner_ip()}/{self._port()} dst inside:"
            f'{self.public_ip}/{port} by access-group "OUTSIDE_IN" [0x0, 0x0]'
        )
        out.append(self.log.rfc3164(tms, "fw-01", "%ASA-4-106023", _ASA_WARN, msg))

    def fw_dhcp(self, tms: int, out: list[SimEvent]) -> None:
        g = self._guest()
        msg = f"DHCP daemon interface guest: address granted {_cisco_mac(g.mac)} ({g.ip})"
        out.append(self.log.rfc3164(tms, "fw-01", "%ASA-6-604103", _ASA_INFO, msg))

    def wifi_assoc(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        g, ap = self._guest(), self._pick(self.aps)
        radio = (
            f"5GHz ch {36 + 4 * int(r() * 8)}" if r() < 0.7 else f"2.4GHz ch {1 + 5 * int(r() * 3)}"
        )
        msg = f'client {g.host} ({g.mac}) associated to SSID "{_ssid(ap)}" on {radio}, ip {g.ip}'
        out.append(self.log.rfc3164(tms, ap, "wlc", _DAEMON_INFO, msg))

    def wifi_disassoc(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        g, ap = self._guest(), self._pick(self.aps)
        msg = (
            f'client {g.host} ({g.mac}) disassociated from SSID "{_ssid(ap)}": reason 8 '
            f"(station leaving), session {int(r() * 240) + 1} min, rx {r() * 900:.1f} MB, "
            f"tx {r() * 90:.1f} MB"
        )
        out.append(self.log.rfc3164(tms, ap, "wlc", _DAEMON_INFO, msg))

    def wifi_roam(self, tms: int, out: list[SimEvent]) -> None:
        g, ap, other = self._guest(), self._pick(self.aps), self._pick(self.aps)
        rssi = 55 + int(self.rng.random() * 25)
        msg = f"client {g.host} ({g.mac}) roamed from {other}, rssi -{rssi} dBm, ip {g.ip}"
        out.append(self.log.rfc3164(tms, ap, "wlc", _DAEMON_INFO, msg))

    def portal_login(self, tms: int, out: list[SimEvent]) -> None:
        g, ap = self._guest(), self._pick(self.aps)
        plan = ("Premium-24h", "Social-7d", "Voyage-Unlimited")[int(self.rng.random() * 3)]
        msg = (
            f"login ok user={g.email} ip={g.ip} mac={g.mac} device={g.host} cabin={g.cabin} "
            f"plan={plan}"
        )
        out.append(self.log.rfc3164(tms, ap, "portal", _DAEMON_INFO, msg))

    def portal_fail(self, tms: int, out: list[SimEvent]) -> None:
        g, ap = self._guest(), self._pick(self.aps)
        msg = f"login failed user={g.email} ip={g.ip} reason=invalid voucher code"
        out.append(self.log.rfc3164(tms, ap, "portal", pri(DAEMON, NOTICE), msg))

    def media(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        g, title = self._guest(), _TITLES[int(r() * len(_TITLES))]
        if r() < 0.55:
            kbps = (1500, 2500, 4000)[int(r() * 3)]
            msg = f'INFO stream start title="{title}" client={g.ip} cabin={g.cabin} bitrate={kbps}k'
        else:
            msg = f'INFO stream stop title="{title}" client={g.ip} watched={int(r() * 110) + 1}min'
        out.append(self.log.rfc5424(tms, "ent-srv-01", "mediasrv", "1733", _APP_INFO, msg))

    # --- crew audience (and the guest-facing apps the crew run) ----------------------------

    def pos_sale(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        self._check += 1
        outlet, items = _OUTLETS[int(r() * len(_OUTLETS))], int(r() * 5) + 1
        if r() < 0.7:
            tender = (
                f"tender=card pan=************{int(r() * 9000) + 1000} auth={int(r() * 1e6):06d}"
            )
        else:
            g = self._guest()
            tender = f'tender=room cabin={g.cabin} guest="{g.name}"'
        msg = (
            f"INFO sale outlet={outlet} check={self._check} items={items} "
            f"total={items * (4.5 + r() * 14):.2f} EUR {tender} status=approved"
        )
        out.append(self.log.rfc5424(tms, "pos-srv-01", "pos", "2210", _APP_INFO, msg))

    def pos_warn(self, tms: int, out: list[SimEvent]) -> None:
        terminal = int(self.rng.random() * 24) + 1
        msg = f"WARN terminal T{terminal:02d} response timeout after 15000 ms, retrying"
        out.append(self.log.rfc5424(tms, "pos-srv-01", "pos", "2210", _APP_WARN, msg))

    def res_booking(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        g = self._guest()
        msg = (
            f'INFO booking confirmed ref=RSV-{int(r() * 90000) + 10000} guest="{g.name}" '
            f"cabin={g.cabin} venue={_VENUES[int(r() * 5)]} party={int(r() * 6) + 1} "
            f"slot={17 + int(r() * 5)}:{(0, 15, 30, 45)[int(r() * 4)]:02d}"
        )
        out.append(self.log.rfc5424(tms, "res-srv-01", "reservations", "1408", _APP_INFO, msg))

    def res_http(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        msg = (
            f"INFO GET /api/v1/availability?venue={_VENUES[int(r() * 5)]} 200 "
            f"{int(12 + r() ** 2 * 180)}ms"
        )
        out.append(self.log.rfc5424(tms, "res-srv-01", "reservations", "1408", _APP_INFO, msg))

    def res_slow(self, tms: int, out: list[SimEvent]) -> None:
        msg = (
            f"WARN slow query {int(1000 + self.rng.random() * 900)}ms: "
            "SELECT * FROM bookings WHERE slot_date = $1 AND venue_id = $2"
        )
        out.append(self.log.rfc5424(tms, "res-srv-01", "reservations", "1408", _APP_WARN, msg))

    def ssh_accept(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        host, user, pid = self._pick(self.hosts), _OPS[int(r() * 4)], self._next_pid()
        fp = "".join(_B64[int(r() * 64)] for _ in range(43))
        msg = (
            f"Accepted publickey for {user} from 10.10.1.{int(r() * 40) + 20} port {self._port()}"
            f" ssh2: ED25519 SHA256:{fp}"
        )
        out.append(self.log.rfc5424(tms, host, "sshd", pid, _AUTH_INFO, msg))
        msg = f"pam_unix(sshd:session): session opened for user {user}(uid={_UID[user]}) by (uid=0)"
        out.append(self.log.rfc5424(tms, host, "sshd", pid, _AUTH_INFO, msg))

    def ssh_close(self, tms: int, out: list[SimEvent]) -> None:
        host, user = self._pick(self.hosts), _OPS[int(self.rng.random() * 4)]
        msg = f"pam_unix(sshd:session): session closed for user {user}"
        out.append(self.log.rfc5424(tms, host, "sshd", self._next_pid(), _AUTH_INFO, msg))

    def mail(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        msg = (
            f"{int(r() * 0xFFFFFFFFF):09X}: to=<{_CREW[int(r() * 6)]}@crew.oceanline.example>, "
            f"relay=mail.oceanline.example[198.51.100.25]:587, delay={1 + r() * 4:.1f}, "
            "dsn=2.0.0, status=sent (250 2.0.0 Ok)"
        )
        prio = pri(MAIL, INFO)
        out.append(
            self.log.rfc5424(tms, "crew-srv-01", "postfix/smtp", self._next_pid(), prio, msg)
        )

    def crew_portal(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        src = f"10.30.{int(r() * 4) + 1}.{int(r() * 250) + 2}"
        msg = f"INFO login user={_CREW[int(r() * 6)]} from {src}"
        out.append(self.log.rfc5424(tms, "crew-srv-01", "crewportal", "988", _APP_INFO, msg))

    def app_generic(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        path = ("/health", "/api/v1/items", "/api/v1/orders", "/metrics")[int(r() * 4)]
        msg = f"INFO request completed path={path} status=200 ms={int(2 + r() ** 2 * 90)}"
        host = self._pick(self.extra_hosts)
        out.append(self.log.rfc5424(tms, host, "appsrv", "740", _APP_INFO, msg))

    def router_acl(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        if r() < 0.8:
            acl, src, dst = "CREW_IN permitted", "10.30", 443
        else:
            acl, src, dst = "GUEST_IN denied", "10.20", 22
        msg = (
            f"list {acl} tcp {src}.{int(r() * 15) + 1}.{int(r() * 250) + 2}({self._port()}) -> "
            f"10.10.2.{int(r() * 4) + 10}({dst}), 1 packet"
        )
        out.append(self.log.rfc3164(tms, "core-rtr-01", "%SEC-6-IPACCESSLOGP", _NET_INFO, msg))

    def ufw_block(self, tms: int, out: list[SimEvent]) -> None:
        host, g = self._pick(self.hosts), self._guest()
        msg = (
            f"[UFW BLOCK] IN=eno1 OUT= SRC={g.ip} DST={self.host_ip[host]} LEN=52 TOS=0x00 TTL=63 "
            f"ID={int(self.rng.random() * 65535)} DF PROTO=TCP SPT={self._port()} DPT=445 "
            "WINDOW=64240 SYN URGP=0"
        )
        out.append(self.log.rfc5424(tms, host, "kernel", "-", pri(KERN, WARNING), msg))

    # --- plant: steady, no rhythm ---------------------------------------------------------

    def modem_keepalive(self, tms: int, out: list[SimEvent]) -> None:
        msg = f"NMS keepalive ok, hub 10.250.0.1 rtt {590 + int(self.rng.random() * 60)} ms"
        out.append(self.log.rfc5424(tms, "vsat-modem-01", "modem", "611", _DAEMON_INFO, msg))

    def modem_acm(self, tms: int, out: list[SimEvent]) -> None:
        up = self.rng.random() < 0.5
        msg = "ACM: MODCOD change " + ("8PSK 3/4 -> 8PSK 5/6" if up else "8PSK 5/6 -> 8PSK 3/4")
        out.append(self.log.rfc5424(tms, "vsat-modem-01", "modem", "611", _DAEMON_INFO, msg))

    def acu_tracking(self, tms: int, out: list[SimEvent]) -> None:
        msg = f"tracking ok sat=E9B pol=H agc {int(self.rng.random() * 8) + 60}"
        out.append(self.log.rfc3164(tms, "acu-01", "acu", _DAEMON_INFO, msg))

    def switch_ssh(self, tms: int, out: list[SimEvent]) -> None:
        msg = (
            "User 'netadmin' authentication for SSH2 Session from 10.10.1.23 (tty = 0) using "
            "crypto cipher 'aes256-ctr', hmac 'hmac-sha2-256' Succeeded"
        )
        switch = self._pick(self.switches)
        out.append(self.log.rfc3164(tms, switch, "%SSH-5-SSH2_USERAUTH", _NET_NOTICE, msg))

    def switch_macflap(self, tms: int, out: list[SimEvent]) -> None:
        r = self.rng.random
        msg = (
            f"Host {_cisco_mac(self._guest().mac)} in vlan 20 is flapping between port "
            f"Gi1/0/{int(r() * 12) + 1} and port Gi1/0/{int(r() * 12) + 13}"
        )
        prio = pri(LOCAL7, WARNING)
        out.append(self.log.rfc3164(tms, "sw-guest-01", "%SW_MATM-4-MACFLAP_NOTIF", prio, msg))

    def timesync(self, tms: int, out: list[SimEvent]) -> None:
        msg = "Contacted time server 10.10.0.1:123 (ntp.ship.lan)."
        host = self._pick(self.hosts)
        out.append(self.log.rfc5424(tms, host, "systemd-timesyncd", "402", _DAEMON_INFO, msg))

    def kernel_link(self, tms: int, out: list[SimEvent]) -> None:
        msg = "e1000e 0000:00:1f.6 eno1: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx"
        out.append(self.log.rfc5424(tms, self._pick(self.hosts), "kernel", "-", _KERN_INFO, msg))

    # --- sources ----------------------------------------------------------------------------

    def chatter(self, rate_per_s: float) -> list[Chatter]:
        """Split the background rate: mostly guest-driven, a third crew-driven, a trickle flat."""
        if rate_per_s <= 0:
            return []
        hosts = len(self.hosts) / 4  # pooled templates scale with the pool they draw from
        aps = len(self.aps) / 4
        guest: list[tuple[float, Template]] = [
            (14, self.fw_built),
            (10, self.fw_teardown),
            (5, self.fw_dns),
            (3, self.fw_deny),
            (1, self.fw_dhcp),
            (6 * aps, self.wifi_assoc),
            (5 * aps, self.wifi_disassoc),
            (2 * aps, self.wifi_roam),
            (1.2 * aps, self.portal_login),
            (0.2 * aps, self.portal_fail),
            (3, self.media),
        ]
        crew: list[tuple[float, Template]] = [
            (6, self.pos_sale),
            (0.05, self.pos_warn),
            (3, self.res_booking),
            (5, self.res_http),
            (0.05, self.res_slow),
            (0.06 * hosts, self.ssh_accept),
            (0.06 * hosts, self.ssh_close),
            (2, self.mail),
            (1, self.crew_portal),
            (2, self.router_acl),
            (0.3 * hosts, self.ufw_block),
        ]
        if self.extra_hosts:
            crew.append((3.0 * len(self.extra_hosts), self.app_generic))
        plant: list[tuple[float, Template]] = [
            (3, self.modem_keepalive),
            (0.5, self.modem_acm),
            (1.5, self.acu_tracking),
            (0.01 * len(self.switches) / 3, self.switch_ssh),
            (0.2, self.switch_macflap),
            (1 * hosts, self.timesync),
            (0.002 * hosts, self.kernel_link),
        ]
        rng, start = self.rng, self.start
        return [
            Chatter(rate_per_s * 0.58, "guest", guest, rng, start),
            Chatter(rate_per_s * 0.4, "crew", crew, rng, start),
            Chatter(rate_per_s * 0.02, "plant", plant, rng, start),
        ]

    def jobs(self) -> list[Iterator[SimEvent]]:
        jobs: list[Iterator[SimEvent]] = []
        hourly = ("root", "cd / && run-parts --report /etc/cron.hourly")
        for host in self.hosts:
            every_5min = _CRON_5MIN.get(host, ("app", "/opt/app/bin/healthcheck --quiet"))
            jobs += [
                self._cron(host, 300, 0.0, *every_5min),
                self._cron(host, 3600, 17 * 60, *hourly),
                self._sysstat(host),
                self._midnight(host),
                self._dhcp(host),
                self._typo(host),
            ]
        for switch in self.switches:
            busy = switch == "sw-guest-01" or switch.startswith("sw-acc-")
            jobs.append(self._port_flap(switch, (600, 5400) if busy else (3000, 20000)))
        return jobs

    def _crond(self, tms: int, host: str, msg: str) -> SimEvent:
        return self.log.rfc3164(tms, host, f"CRON[{self._next_pid()}]", _CRON_INFO, msg)

    def _systemd(self, tms: int, host: str, msg: str) -> SimEvent:
        return self.log.rfc5424(tms, host, "systemd", "1", _DAEMON_INFO, msg)

    def _cron(
        self, host: str, period: float, offset: float, user: str, cmd: str
    ) -> Iterator[SimEvent]:
        t = _slot(self.start, period, offset)
        while True:
            yield self._crond(
                int((t + 0.2 + self.rng.random() * 0.7) * 1000), host, f"({user}) CMD ({cmd})"
            )
            t += period

    def _sysstat(self, host: str) -> Iterator[SimEvent]:
        t = _slot(self.start, 600, 0.0)
        unit = "sysstat-collect.service"
        while True:
            tms = int(t * 1000) + int(self.rng.random() * 200)
            yield self._systemd(tms, host, f"Starting {unit} - system activity accounting tool...")
            yield self._systemd(tms + 40, host, f"{unit}: Deactivated successfully.")
            yield self._systemd(
                tms + 41, host, f"Finished {unit} - system activity accounting tool."
            )
            t += 600

    def _midnight(self, host: str) -> Iterator[SimEvent]:
        """The nightly burst: cron.daily, logrotate, man-db, apt, the backup, app close-out."""
        t = _slot(self.start, 86400, 0.0)
        crontab = [(0.4, _CRON_DAILY), (0.5, "(root) CMD (/usr/local/sbin/backup-nightly)")]
        if host in _CRON_CLOSE_DAY:
            crontab.append((0.6, _CRON_CLOSE_DAY[host]))
        while True:
            r = self.rng.random
            lines = [self._crond(int((t + at) * 1000), host, msg) for at, msg in crontab]
            for unit, desc, took in _DAILY_UNITS:
                begin = t + 1 + r() * 3
                end = int((begin + took * (0.5 + r())) * 1000)
                lines += [
                    self._systemd(int(begin * 1000), host, f"Starting {unit} - {desc}..."),
                    self._systemd(end, host, f"{unit}: Deactivated successfully."),
                    self._systemd(end, host, f"Finished {unit} - {desc}."),
                ]
            msg = f"INFO {1 + r() * 9:.1f} GB written to nas-01 in {int(40 + r() * 50)} s"
            tms = int((t + 30 + r() * 60) * 1000)
            lines.append(
                self.log.rfc5424(tms, host, "backup-nightly", self._next_pid(), _APP_INFO, msg)
            )
            lines.sort(key=lambda e: e.ts)
            yield from lines
            t += 86400

    def _dhcp(self, host: str) -> Iterator[SimEvent]:
        t = self.start + self.rng.random() * 3600
        gateway = "gateway 10.10.2.1 acquired from 10.10.2.1"
        msg = f"eno1: DHCPv4 address {self.host_ip[host]}/24, {gateway}"
        while True:
            yield self.log.rfc5424(
                int(t * 1000), host, "systemd-networkd", "388", _DAEMON_INFO, msg
            )
            t += 3300 + self.rng.random() * 600

    def _typo(self, host: str) -> Iterator[SimEvent]:
        """A mistyped password, then success: spaced >= 2000 s, so never more than 2 an hour."""
        t = self.start + self.rng.random() * 7000
        while True:
            r = self.rng.random
            pid = self._next_pid()
            who = f"{_OPS[int(r() * 4)]} from 10.10.1.{int(r() * 40) + 20} port {self._port()} ssh2"
            yield self.log.rfc5424(
                int(t * 1000), host, "sshd", pid, _AUTH_INFO, f"Failed password for {who}"
            )
            tms = int((t + 4 + r() * 5) * 1000)
            yield self.log.rfc5424(
                tms, host, "sshd", pid, _AUTH_INFO, f"Accepted password for {who}"
            )
            t += 2000 + r() * 5000

    def _port_flap(self, switch: str, gap: tuple[float, float]) -> Iterator[SimEvent]:
        """An access port going down and up (a laptop unplugged), spaced >= gap[0] seconds."""
        lo, hi = gap
        t = self.start + lo * self.rng.random()
        while True:
            r = self.rng.random
            port = f"Interface GigabitEthernet1/0/{int(r() * 24) + 1}"
            up = t + 3 + r() * 40
            for at, state in ((t, "down"), (up, "up")):
                tms = int(at * 1000)
                msg = f"{port}, changed state to {state}"
                yield self.log.rfc3164(tms, switch, "%LINK-3-UPDOWN", _LINK_ERR, msg)
                msg = f"Line protocol on {port}, changed state to {state}"
                yield self.log.rfc3164(tms + 1000, switch, "%LINEPROTO-5-UPDOWN", _NET_NOTICE, msg)
            t = up + lo + r() * (hi - lo)


_CRON_5MIN = {
    "pos-srv-01": ("pos", "/opt/pos/bin/export-sales --incremental"),
    "res-srv-01": ("resv", "/opt/reservations/bin/send-reminders --due"),
    "ent-srv-01": ("media", "/usr/local/bin/epg-refresh"),
    "crew-srv-01": ("root", "/usr/local/sbin/mailq-check"),
}
_CRON_CLOSE_DAY = {
    "pos-srv-01": "(pos) CMD (/opt/pos/bin/close-day --all-outlets)",
    "res-srv-01": "(resv) CMD (/opt/reservations/bin/purge-expired --days 30)",
}
_CRON_DAILY = "(root) CMD (test -x /usr/sbin/anacron || run-parts --report /etc/cron.daily)"
_DAILY_UNITS = (  # unit, description, typical seconds
    ("logrotate.service", "Rotate log files", 3.0),
    ("man-db.service", "Daily man-db regeneration", 8.0),
    ("apt-daily.service", "Daily apt download activities", 18.0),
    ("dpkg-db-backup.service", "Daily dpkg database backup service", 1.5),
)
