"""Redaction of everything that leaves the ship.

Guest Wi-Fi, captive-portal, DHCP and point-of-sale logs carry personal data (guests'
e-mail addresses, names, device names and IP addresses, card numbers), and any of it can
reach an incident's free text: a new log template is quoted in its evidence summary and
timeline, a detector's evidence keeps a sample line, an operator note or a narrative may
quote one. The satellite link takes it off the ship, so the privacy policy decides what
may cross and this module applies it to every outgoing wire message. What the shore
needs for diagnosis stays: identifiers, device names, crew and infrastructure addresses,
timestamps, versions and counters.

Every rule is a precompiled expression behind a cheap substring pre-check, and short
strings are answered from a bounded cache (an incident's timeline is resent with every
new version), so redaction costs microseconds per incident.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from shared.policy import PrivacyPolicy

M = TypeVar("M", bound=BaseModel)
Rule = Callable[[str], str]

# Message fields that identify or classify (ids, devices, enums, keys, versions): never
# touched, whatever they contain. Every other string field is free text and redacted.
IDENTIFIER_FIELDS = frozenset(
    {
        "schema_version",
        "kind",
        "id",
        "tracking_id",
        "ship_id",
        "incident_id",
        "anomaly_id",
        "command_id",
        "version",
        "type",
        "incident_type",
        "severity",
        "status",
        "device",
        "devices",
        "service",
        "path",
        "corr_key",
        "suppress_key",
        "detector",
        "event",
        "runbook_refs",
        "citations",
        "model",
        "agent_version",
        "policy_version",
        "link_state",
        "action",
        "target",
        "actor",
        "stored",  # receipts' and gaps' "incident_id:version" keys
        "evicted",
    }
)
# Keys of evidence/context mappings that hold raw log text (the detectors' "sample").
RAW_LOG_KEYS = frozenset({"sample", "samples", "message", "line", "lines", "raw", "log"})
_FLAGS = ("email", "card_numbers", "phone_numbers", "wifi_client_names")
_CACHE_MAX = 4096  # at most a few MB
_CACHE_LEN = 512  # longer strings (narratives) are rarely repeated: not worth memory
_MAX_PASSES = 4

_EMAIL = re.compile(
    r"[\w.%+\-]{1,64}@[^\W_](?:[\w\-]{0,62})(?:\.[\w\-]{1,63})*\.[^\W\d_]{2,24}(?![\w\-])"
)
# 13-19 digits of a major scheme (first digit 2-6), optionally grouped by spaces or dashes
_CARD = re.compile(r"(?<![\w.:/\-])[2-6](?:[ \-]?\d){12,18}(?![\w:/\-]|[.,]\d)")
_PHONE = re.compile(
    r"(?:"
    # international: +cc then digit groups, each after a space or dash, or one compact run
    r"(?<![\w+])\+[1-9](?:\d{6,14}|\d{0,3}(?:[ \-]?\(\d{1,4}\)[ \-]?\d{1,10}|[ \-]\d{1,10})"
    r"(?:[ \-]\d{1,10}){0,5})"
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567
    r"|(?<![\w.:/+\-])(?:\([2-9]\d\d\)[ \-]?|[2-9]\d\d[\-.])[2-9]\d\d[\-.]\d{4}"
    # national with a trunk 0: 030 1234567, 0170-1234567, (030) 123 45 67, 06 12 34 56 78
    r"|(?<![\w.:/+\-])(?:\(0\d{1,4}\)|0\d{1,4})(?:[ /\-]\d{2,8}){1,4}"
    r")(?![\w]|[.:/\-]\d)"
)
_INTERNATIONAL_DIGITS = (8, 15)  # E.164 allows 15
_NATIONAL_DIGITS = (9, 13)
# Pre-checks: the digit runs (with separators) that a phone or card number needs. They start
# with a character class, which the regex engine scans for fast, unlike the full patterns.
_PHONE_RUN = re.compile(r"\d(?:[ ()./\-]{0,2}\d){7}")
_CARD_RUN = re.compile(r"\d(?:[ \-]?\d){12}")
_IPV4 = re.compile(r"(?<![\w.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\w]|\.\d)")
_MAC = (
    r"(?:[0-9A-Fa-f]{2}[:\-]){5}[0-9A-Fa-f]{2}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}"
    r"|<MAC>"  # as the agent's log templates mask it
)
_MAC_RE = re.compile(_MAC)
_MAC_HINT = re.compile(r"[:\-.](?:[0-9A-Fa-f]{2}[:\-][0-9A-Fa-f]{2}[:\-]|[0-9A-Fa-f]{4}\.)")
# A client's name beside its MAC address: `client <name> (<mac>)` (WLC association lines),
# `<mac> (<name>)` (ISC dhcpd), `DHCPACK(if) <ip> <mac> <name>` (dnsmasq).
_NAMED_CLIENT = re.compile(
    rf"\b(?i:client|station|sta|guest)\s+(?P<a>[^()\n]{{1,64}}?)\s+\((?:{_MAC})\)"
    rf"|(?:{_MAC})\s+\((?P<b>[^()\n]{{1,64}})\)"
    rf"|\bDHCP[A-Z]+(?:\([^)\n]*\))?\s+\S+\s+(?:{_MAC})\s+(?P<c>[^\s()]{{1,64}})"
)
_VALUE = r"(?P<v>\"[^\"\n]*\"|'[^'\n]*'|[^\s,;)\]}>\"']+)"
# key=value fields that always name a guest or a guest's device ...
_CLIENT_FIELD = re.compile(
    r"(?<![\w\-])(?i:(?:client|device|guest)[-_]?(?:host)?name|(?:client[-_])?host[-_]?name"
    rf"|guest)={_VALUE}"
)
# ... and those that do when the text is about a client (carries a MAC address)
_CONTEXT_FIELD = re.compile(rf"(?<![\w\-])(?i:device|host|client|name|sta|station)={_VALUE}")
_PLACEHOLDER = re.compile(r"<[A-Z*]+>")
# A syslog line: RFC 5424 (`<pri>1 ts host app ...`), or RFC 3164 / ISO time, host, `tag:`
_RAW_LINE = re.compile(
    r"(?m)^[ \t]*(?:<\d{1,3}>1 \S+ \S+ \S+ \S+ \S+ "
    r"|(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*)"
    r" \S+ [^\s:]+: ).*$"
)


# (first digits from, to, lengths) of the card schemes: a number outside them is no card
_CARD_SCHEMES = (
    ("4", "4", (13, 16, 19)),  # Visa
    ("51", "55", (16,)),  # Mastercard
    ("2221", "2720", (16,)),
    ("34", "34", (15,)),  # American Express
    ("37", "37", (15,)),
    ("300", "305", (14,)),  # Diners Club
    ("36", "36", (14,)),
    ("38", "39", (14, 16)),
    ("3528", "3589", (16, 17, 18, 19)),  # JCB
    ("50", "50", (13, 14, 15, 16, 17, 18, 19)),  # Maestro
    ("56", "58", (13, 14, 15, 16, 17, 18, 19)),
    ("6", "6", (16, 17, 18, 19)),  # Discover, UnionPay, Maestro, RuPay
)


def is_card_number(digits: str) -> bool:
    """A scheme's prefix and length, and a valid Luhn check digit."""
    n = len(digits)
    known = any(
        low <= digits[: len(low)] <= high and n in lengths for low, high, lengths in _CARD_SCHEMES
    )
    return known and luhn_valid(digits)


def luhn_valid(digits: str) -> bool:
    """The payment-card check digit (ISO/IEC 7812) over a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i & 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card_grouping_ok(text: str) -> bool:
    """Ungrouped, or grouped as cards print: fours (the last may be short), or 4-6-4/4-6-5."""
    if " " in text and "-" in text:
        return False
    groups = [len(g) for g in re.split(r"[ \-]", text)]
    if len(groups) == 1:
        return True
    return all(n == 4 for n in groups[:-1]) or groups in ([4, 6, 4], [4, 6, 5])


class Redactor:
    """Applies one privacy policy to text and to wire messages; thread-safe, reusable."""

    def __init__(
        self,
        *,
        email: bool = True,
        card_numbers: bool = True,
        phone_numbers: bool = True,
        guest_networks: Iterable[str] = (),
        wifi_client_names: bool = True,
        raw_logs_leave_ship: bool = False,
        replacement: str = "[redacted]",
    ) -> None:
        self.replacement = replacement
        self.raw_logs_leave_ship = raw_logs_leave_ship
        nets = []
        for cidr in guest_networks:
            try:
                nets.append(ipaddress.IPv4Network(cidr))
            except ValueError as exc:
                raise ValueError(f"guest_networks: {cidr!r} is not an IPv4 network: {exc}") from exc
        self._nets = [(int(n.network_address), int(n.netmask)) for n in nets]
        # text every address of a network starts with ("10.20."), to skip the regex cheaply
        prefixes = [".".join(str(n.network_address).split(".")[: n.prefixlen // 8]) for n in nets]
        self._ip_hints = None if any(not p for p in prefixes) else tuple(f"{p}." for p in prefixes)
        rules: list[Rule] = []
        if not raw_logs_leave_ship:
            rules.append(self._raw_lines)
        if email:
            rules.append(self._emails)
        if wifi_client_names:
            rules.append(self._client_names)
        if nets:
            rules.append(self._guest_ips)
        if card_numbers:
            rules.append(self._cards)
        if phone_numbers:
            rules.append(self._phones)
        self._rules = tuple(rules)
        self._cache: dict[str, str] = {}
        if self._apply(replacement) != replacement:
            raise ValueError(f"replacement {replacement!r} would itself be redacted")

    @classmethod
    def from_policy(cls, policy: PrivacyPolicy) -> Redactor:
        redact = dict(policy.redact)
        unknown = sorted(set(redact) - {*_FLAGS, "guest_networks"})
        if unknown:
            raise ValueError(f"privacy.redact: unknown key(s) {', '.join(unknown)}")
        flags = {}
        for name in _FLAGS:
            value = redact.get(name, True)
            if not isinstance(value, bool):
                raise ValueError(f"privacy.redact.{name}: must be true or false")
            flags[name] = value
        nets = redact.get("guest_networks") or []
        if not isinstance(nets, list):
            raise ValueError("privacy.redact.guest_networks: must be a list of CIDR networks")
        return cls(
            **flags,
            guest_networks=[str(n) for n in nets],
            raw_logs_leave_ship=policy.raw_logs_leave_ship,
            replacement=policy.replacement,
        )

    # ---------------------------------------------------------------- text

    def redact_text(self, text: str) -> str:
        short = len(text) <= _CACHE_LEN
        if short:
            hit = self._cache.get(text)
            if hit is not None:
                return hit
        out = self._apply(text)
        if short:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[text] = out
        return out

    def _apply(self, text: str) -> str:
        # A replacement can make a neighbour match a rule that ran before it; repeat until
        # nothing changes, so that redacting twice is the same as redacting once.
        for _ in range(_MAX_PASSES):
            before = text
            for rule in self._rules:
                text = rule(text)
            if text == before:
                break
        return text

    def _raw_lines(self, text: str) -> str:
        if ":" not in text:
            return text
        return _RAW_LINE.sub(self.replacement, text)

    def _emails(self, text: str) -> str:
        if "@" not in text:
            return text
        return _EMAIL.sub(self.replacement, text)

    def _client_names(self, text: str) -> str:
        about_client = _about_client(text)
        if about_client:
            text = _NAMED_CLIENT.sub(self._named_client, text)
        if "=" in text:
            lower = text.lower()
            if "name=" in lower or "guest=" in lower:
                text = _CLIENT_FIELD.sub(self._field, text)
            if about_client:
                text = _CONTEXT_FIELD.sub(self._field, text)
        return text

    def _named_client(self, m: re.Match[str]) -> str:
        group = m.lastgroup or "a"  # the one of a, b, c that matched
        if _is_address(m.group(group)):
            return m.group()
        start, end = m.start(group) - m.start(), m.end(group) - m.start()
        whole = m.group()
        return whole[:start] + self.replacement + whole[end:]

    def _field(self, m: re.Match[str]) -> str:
        if m.string.startswith(self.replacement, m.start("v")):
            return m.group()
        value = m.group("v")
        quoted = value[:1] in "\"'" and len(value) > 1
        inner = value[1:-1] if quoted else value
        if not inner or _is_address(inner):
            return m.group()
        new = f"{value[0]}{self.replacement}{value[-1]}" if quoted else self.replacement
        return m.group()[: m.start("v") - m.start()] + new

    def _guest_ips(self, text: str) -> str:
        hints = self._ip_hints
        if "." not in text or (hints is not None and not any(h in text for h in hints)):
            return text
        return _IPV4.sub(self._guest_ip, text)

    def _guest_ip(self, m: re.Match[str]) -> str:
        a, b, c, d = (int(x) for x in m.groups())
        if max(a, b, c, d) > 255:
            return m.group()
        value = (a << 24) | (b << 16) | (c << 8) | d
        if any(value & mask == net for net, mask in self._nets):
            return self.replacement
        return m.group()

    def _cards(self, text: str) -> str:
        if _CARD_RUN.search(text) is None:
            return text
        return _CARD.sub(self._card, text)

    def _card(self, m: re.Match[str]) -> str:
        found = m.group()
        digits = found.replace(" ", "").replace("-", "")
        if is_card_number(digits) and _card_grouping_ok(found):
            return self.replacement
        return found

    def _phones(self, text: str) -> str:
        if _PHONE_RUN.search(text) is None:
            return text
        return _PHONE.sub(self._phone, text)

    def _phone(self, m: re.Match[str]) -> str:
        found = m.group()
        digits = sum(ch.isdigit() for ch in found)
        low, high = _INTERNATIONAL_DIGITS if found[0] == "+" else _NATIONAL_DIGITS
        return self.replacement if low <= digits <= high else found

    # ---------------------------------------------------------------- messages

    def redact(self, messages: Sequence[M]) -> list[M]:
        """Copies of the messages with every free-text string redacted; identifiers kept.

        The inputs are not changed. Nested models and containers that need no change are
        shared with the input rather than copied.
        """
        return [m.model_copy(update=self._model_changes(m)) for m in messages]

    def _model_changes(self, model: BaseModel) -> dict[str, Any]:
        changes = {}
        values = model.__dict__
        for name in _free_fields(type(model)):
            value = values[name]
            new = self._value(value)
            if new is not value:
                changes[name] = new
        return changes

    def _value(self, value: Any) -> Any:
        """The redacted value, or the very same object when nothing in it changed."""
        if isinstance(value, str):
            new = self.redact_text(value)
            return value if new == value else new
        if isinstance(value, BaseModel):
            changes = self._model_changes(value)
            return value.model_copy(update=changes) if changes else value
        if isinstance(value, list | tuple):
            items = [self._value(v) for v in value]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return type(value)(items)
        if isinstance(value, dict):
            return self._mapping(value)
        return value

    def _mapping(self, value: dict[Any, Any]) -> dict[Any, Any]:
        out = {}
        changed = False
        for key, item in value.items():
            if not self.raw_logs_leave_ship and key in RAW_LOG_KEYS:
                # raw log text stays aboard; the line's template says what kind it was
                template = value.get("template")
                changed = True
                if isinstance(template, str):
                    out[key] = self.redact_text(template)
                continue
            new = self._value(item)
            changed = changed or new is not item
            out[key] = new
        return out if changed else value


_FREE_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def _free_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a message class that may hold free text: all but the identifiers."""
    names = _FREE_FIELDS.get(cls)
    if names is None:
        names = tuple(n for n in cls.model_fields if n not in IDENTIFIER_FIELDS)
        _FREE_FIELDS[cls] = names
    return names


def _about_client(text: str) -> bool:
    """Whether the text carries a MAC address or a `mac=` field: then it is about a client."""
    if "<MAC>" in text or "mac=" in text:
        return True
    return _MAC_HINT.search(text) is not None and _MAC_RE.search(text) is not None


def _is_address(text: str) -> bool:
    """An IP or MAC address (or a template's mask of one): the address rules decide."""
    text = text.strip("\"' ")
    return bool(_IPV4.fullmatch(text) or _MAC_RE.fullmatch(text) or _PLACEHOLDER.fullmatch(text))


__all__ = ["IDENTIFIER_FIELDS", "RAW_LOG_KEYS", "Redactor", "is_card_number", "luhn_valid"]
