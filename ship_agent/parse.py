"""Syslog bytes (RFC 3164 or RFC 5424) -> LogEvent.

This runs once per event on the fast path, so it slices with str methods and converts
timestamps through small caches instead of calling strptime per line. Anything it
cannot read raises ParseError whose text is the reason kept with the dead letter.
"""

from __future__ import annotations

import calendar
import re
import time

from ship_agent.records import LogEvent, RawInput


class ParseError(ValueError):
    """The message is not syslog we can read; str(error) says why, for the dead letter."""


_PRI = {str(p): p for p in range(192)}
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}  # English by RFC, whatever the locale
_MAX_DAY = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_OFFSETS = {
    f"{sign}{h:02d}:{m:02d}": (1 if sign == "+" else -1) * (h * 3600 + m * 60)
    for sign in "+-"
    for h in range(24)
    for m in range(60)
}
_RFC3339_SECONDS = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)", re.ASCII)
# One or more SD-ELEMENTs; names are PRINTUSASCII minus '=', ' ', ']' and '"'.
_SD_NAME = r"[!#-<>-\\^-~]{1,32}"
_STRUCTURED_DATA = re.compile(
    rf'(?:\[{_SD_NAME}(?: {_SD_NAME}="(?:[^"\\]++|\\.)*+")*+\])++', re.DOTALL
)
_CACHE_LIMIT = 4096  # distinct stamps kept; emptied when full so memory stays flat
_DAY = 86400.0
# A 3164 stamp has no year: pick the one that puts it at most a month ahead of arrival
# (device clocks run fast) and at most eleven months behind (Dec lines read in Jan).
_AHEAD = 31 * _DAY
_BEHIND = 334 * _DAY


def _clip(text: str) -> str:
    return text if len(text) <= 64 else text[:64] + "..."


_seconds_cache: dict[str, float] = {}


def _rfc3339(stamp: str) -> float:
    """Epoch seconds of an RFC 3339 time with Z or an offset, cached per whole second."""
    base = _seconds_cache.get(stamp[:19])
    if base is None:
        m = _RFC3339_SECONDS.fullmatch(stamp, 0, 19)
        if m is None:
            raise ParseError(f"bad RFC 5424 timestamp {_clip(stamp)!r}")
        year, month, day, hour, minute, second = map(int, m.groups())
        if not (
            1 <= month <= 12
            and 1 <= day <= calendar.monthrange(year, month)[1]
            and hour < 24
            and minute < 60
            and second < 60
        ):
            raise ParseError(f"bad RFC 5424 timestamp {_clip(stamp)!r}")
        if len(_seconds_cache) >= _CACHE_LIMIT:
            _seconds_cache.clear()
        base = _seconds_cache[stamp[:19]] = float(
            calendar.timegm((year, month, day, hour, minute, second))
        )
    tail = stamp[19:]
    if tail[-1:] == "Z":
        frac = tail[:-1]
        offset = 0
    else:
        frac = tail[:-6]
        found = _OFFSETS.get(tail[-6:])
        if found is None:
            raise ParseError(f"bad RFC 5424 timestamp {_clip(stamp)!r}")
        offset = found
    if frac:
        if frac[0] != "." or not (2 <= len(frac) <= 10 and frac.isascii() and frac[1:].isdigit()):
            raise ParseError(f"bad RFC 5424 timestamp {_clip(stamp)!r}")
        base += float(frac)
    return base - offset


class _Rfc3164Clock:
    """Epoch seconds of 'Mmm dd hh:mm:ss' stamps, cached per stamp for one arrival year."""

    __slots__ = ("_year", "_start", "_end", "_cache")

    def __init__(self) -> None:
        self._year = 0
        self._start = 0.0
        self._end = -1.0
        self._cache: dict[str, float] = {}

    def epoch(self, stamp: str, received: float) -> float:
        if not self._start <= received < self._end:
            self._year = time.gmtime(received).tm_year
            self._start = float(calendar.timegm((self._year, 1, 1, 0, 0, 0)))
            self._end = float(calendar.timegm((self._year + 1, 1, 1, 0, 0, 0)))
            self._cache.clear()
        ts = self._cache.get(stamp)
        if ts is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            ts = self._cache[stamp] = self._convert(stamp, self._year)
        if ts > received + _AHEAD:
            return self._convert(stamp, self._year - 1)
        if ts < received - _BEHIND:
            return self._convert(stamp, self._year + 1)
        return ts

    @staticmethod
    def _convert(stamp: str, year: int) -> float:
        parts = stamp.split()
        if len(parts) == 3 and len(parts[2]) == 8 and parts[2].isascii():
            month = _MONTHS.get(parts[0], 0)
            hms = parts[2].split(":")
            fields = [parts[1], *hms]
            if month and len(hms) == 3 and all(f.isdigit() and len(f) <= 2 for f in fields):
                day, hour, minute, second = map(int, fields)
                if 1 <= day <= _MAX_DAY[month] and hour < 24 and minute < 60 and second < 60:
                    return float(calendar.timegm((year, month, day, hour, minute, second)))
        raise ParseError(f"bad RFC 3164 timestamp {_clip(stamp)!r}")


_rfc3164_clock = _Rfc3164Clock()


def _peer_host(peer: str) -> str:
    host, colon, _port = peer.rpartition(":")
    return host.strip("[]") if colon else peer


def parse_syslog(raw: RawInput, tracking_id: str) -> LogEvent:
    """Parse one syslog message; raise ParseError with the reason if it is not readable."""
    data = raw.data.rstrip(b"\r\n\x00")
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise ParseError(f"not UTF-8 at byte {e.start}") from None
    if text[:1] != "<":
        raise ParseError("missing <PRI>" if text else "missing <PRI>: empty message")
    gt = text.find(">", 1, 5)
    pri = _PRI.get(text[1:gt]) if gt > 0 else None
    if pri is None:
        digits = text[1:gt]
        if gt > 0 and digits.isascii() and digits.isdigit():
            pri = int(digits)
            if pri > 191:
                raise ParseError(f"PRI {pri} out of range 0..191")
        else:
            raise ParseError(f"missing <PRI>: starts {_clip(text[:8])!r}")
    rest = text[gt + 1 :]

    if rest[:2] == "1 " or rest == "1":
        fields = rest.split(" ", 6)
        if len(fields) < 7 or not all(fields[1:6]):
            raise ParseError("RFC 5424 header needs VERSION TIMESTAMP HOST APP PROCID MSGID SD")
        stamp, host, app = fields[1], fields[2], fields[3]
        ts = raw.received if stamp == "-" else _rfc3339(stamp)
        sd_msg = fields[6]
        if sd_msg[:1] == "-":
            message = sd_msg[1:]
        else:
            sd = _STRUCTURED_DATA.match(sd_msg)
            if sd is None:
                raise ParseError(f"bad RFC 5424 structured data {_clip(sd_msg)!r}")
            message = sd_msg[sd.end() :]
        if message:
            if message[0] != " ":
                raise ParseError(f"no space after RFC 5424 structured data: {_clip(message)!r}")
            message = message[2:] if message[1:2] == "\ufeff" else message[1:]
        if host == "-":
            host = _peer_host(raw.peer)
        if app == "-":
            app = ""
    else:
        if rest[3:4] == " ":  # 'Jan  5 12:00:00', 'Jan 05 12:00:00' or 'Jan 5 12:00:00'
            width = 15 if rest[6:7] == " " else 14
            if rest[width : width + 1] not in ("", " "):
                raise ParseError(f"bad RFC 3164 timestamp {_clip(rest[: width + 1])!r}")
            ts = _rfc3164_clock.epoch(rest[:width], raw.received)
            after = rest[width + 1 :]
        elif rest[4:5] == "-" and rest[:4].isdigit():  # rsyslog's RFC 3339 stamp in a 3164 header
            stamp, _, after = rest.partition(" ")
            ts = _rfc3339(stamp)
        else:
            version = rest.partition(" ")[0]
            if version.isascii() and version.isdigit():
                raise ParseError(f"unsupported syslog version {_clip(version)}")
            raise ParseError(f"bad RFC 3164 timestamp {_clip(rest[:15])!r}")
        host, _, message = after.partition(" ")
        if not host or host[-1] == ":":  # no HOSTNAME: the first word is already the tag
            host, message = _peer_host(raw.peer), after
        tag, _, tail = message.partition(" ")
        if tag[-1:] == ":":
            app = tag[:-1]
            bracket = app.find("[")
            if bracket >= 0:
                app = app[:bracket]
            message = tail
        else:
            app = ""
    return LogEvent(
        tracking_id=tracking_id,
        ts=ts,
        device=host,
        app=app,
        severity=pri & 7,
        message=message,
        received=raw.received,
        source=raw.source,
        facility=pri >> 3,
    )
