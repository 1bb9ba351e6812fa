"""Syslog line builders (RFC 5424 and RFC 3164) with cached timestamp text.

Formatting a timestamp is the costliest part of a log line, and a simulated second holds
many lines, so the text of each second is built once and reused.
"""

from __future__ import annotations

import time

from .events import SimEvent

# facilities (RFC 5424 §6.2.1)
KERN, MAIL, DAEMON, AUTHPRIV, CRON, LOCAL0, LOCAL4, LOCAL7 = 0, 2, 3, 10, 9, 16, 20, 23
# severities
CRIT, ERR, WARNING, NOTICE, INFO = 2, 3, 4, 5, 6

_CACHE_LIMIT = 4096


def pri(facility: int, severity: int) -> int:
    return facility * 8 + severity


class Syslog:
    """Builds log events; one instance per simulation run (its caches are not shared)."""

    __slots__ = ("_iso", "_bsd")

    def __init__(self) -> None:
        self._iso: dict[int, str] = {}
        self._bsd: dict[int, str] = {}

    def rfc5424(self, tms: int, host: str, app: str, procid: str, prio: int, msg: str) -> SimEvent:
        """`tms` is epoch milliseconds; the line carries them, so ts and text agree exactly."""
        sec, ms = divmod(tms, 1000)
        stamp = self._iso.get(sec)
        if stamp is None:
            if len(self._iso) > _CACHE_LIMIT:
                self._iso.clear()
            stamp = self._iso[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        line = f"<{prio}>1 {stamp}.{ms:03d}Z {host} {app} {procid} - - {msg}"
        return SimEvent(tms / 1000, "log", host, line.encode())

    def rfc3164(self, tms: int, host: str, tag: str, prio: int, msg: str) -> SimEvent:
        """Legacy format: second precision, no year, day padded with a space."""
        sec = tms // 1000
        stamp = self._bsd.get(sec)
        if stamp is None:
            if len(self._bsd) > _CACHE_LIMIT:
                self._bsd.clear()
            tm = time.gmtime(sec)
            stamp = self._bsd[sec] = (
                f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:"
                f"{tm.tm_sec:02d}"
            )
        return SimEvent(tms / 1000, "log", host, f"<{prio}>{stamp} {host} {tag}: {msg}".encode())


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def split_line(line: bytes) -> tuple[int, str, str]:
    """(severity, app, message) of a line built here; what an HTTP batch needs per log."""
    text = line.decode()
    end = text.index(">")
    severity = int(text[1:end]) & 7
    rest = text[end + 1 :]
    if rest.startswith("1 "):
        _version, _ts, _host, app, _procid, _msgid, _sd, msg = rest.split(" ", 7)
        return severity, app, msg
    # RFC 3164: a 15-character timestamp, a space, the host, a space, "tag: message"
    _host, tagged = rest[16:].split(" ", 1)
    tag, msg = tagged.split(": ", 1)
    return severity, tag.split("[", 1)[0], msg
