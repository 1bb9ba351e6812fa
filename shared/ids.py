"""Time-ordered identifiers.

Ids sort by creation time (lexicographically, as strings), so SQLite and ClickHouse
indexes on them stay append-only and a glance at two ids tells which came first.
The layout is ULID's: 48 bits of milliseconds then 80 bits that are random at the
start of each millisecond and incremented within it, in Crockford base32.
"""

from __future__ import annotations

import base64
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
# RFC 4648 base32 -> Crockford, letter for letter: both alphabets are in ascending order,
# so the C encoder can do the work and ids still sort by value.
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class IdGenerator:
    """Monotonic ULID generator; thread-safe, well under a microsecond per id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0
        self._prefix = ""

    def new(self) -> str:
        now_ms = time.time_ns() // 1_000_000
        with self._lock:
            if now_ms > self._last_ms:
                self._last_ms = now_ms
                self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1
                self._prefix = _encode(now_ms, 10)
            else:
                self._last_rand = (self._last_rand + 1) & _RANDOM_MAX
            tail = base64.b32encode(self._last_rand.to_bytes(10, "big"))
            return self._prefix + tail.translate(_TO_CROCKFORD).decode()


_default = IdGenerator()


def new_id() -> str:
    """A new time-ordered id (26 characters)."""
    return _default.new()


def id_time_ms(value: str) -> int:
    """Milliseconds since the epoch at which an id was made."""
    out = 0
    for ch in value[:10]:
        out = out * 32 + _ALPHABET.index(ch)
    return out


def id_floor(ts: float) -> str:
    """The smallest id that can be made at epoch second `ts` (for range deletes)."""
    return _encode(int(ts * 1000), 10) + "0" * 16
