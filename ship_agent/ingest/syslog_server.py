"""Syslog listeners: UDP datagrams and TCP streams (RFC 6587) -> RawInput, unparsed.

Parsing happens later on the fast path; here we only cut the byte stream into messages,
so a listener never blocks on parsing and every framing problem becomes a DeadLetter
with its reason instead of a silently lost message.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable
from typing import Any

from ship_agent.records import DeadLetter, RawInput

DEAD_LETTER_KEEP = 1024  # bytes of an oversize or unframeable input kept for inspection
_MAX_COUNT_DIGITS = 10  # an octet count longer than this is garbage, not a big message
_UDP_RCVBUF = 4 << 20  # bursts after a link or device restart overflow the kernel default
_TERMINATOR = re.compile(rb"[\n\x00]")


def _peer(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr or "")


class Rfc6587Framer:
    """Cuts one TCP stream into syslog messages, choosing the framing per message.

    A message starting with a digit is octet-counted (`<len> <msg>`); anything else runs
    to the next LF or NUL (a CR before the LF is dropped). Oversize messages are skipped
    and reported, so the stream keeps going; a malformed octet count means we can no
    longer tell where messages start, so `feed` returns False and the caller closes.
    """

    def __init__(
        self,
        max_message_bytes: int,
        on_frame: Callable[[bytes], None],
        on_error: Callable[[str, bytes], None],
    ) -> None:
        self._max = max_message_bytes
        self._on_frame = on_frame
        self._on_error = on_error
        self._buf = bytearray()  # the start of a message still arriving
        self._scanned = 0  # bytes of _buf already searched for a terminator
        # an oversize message being skipped: what we keep, its size so far, and for an
        # octet-counted one its declared size (None: runs to the next terminator)
        self._skip_kept: bytes | None = None
        self._skip_seen = 0
        self._skip_size: int | None = None
        self._broken = False

    def feed(self, data: bytes) -> bool:
        """Consume bytes; False once the stream cannot be framed any more."""
        if self._broken:
            return False
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        try:
            pos = self._cut(buf)
        except BaseException:
            self._broken = True  # a callback failed mid-buffer: never deliver anything twice
            raise
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < len(buf):
            self._buf = bytearray(buf[pos:])
        return not self._broken

    def _cut(self, buf: bytes | bytearray) -> int:
        """Deliver every complete message in buf; return how many bytes were consumed."""
        n = len(buf)
        pos = 0
        while pos < n:
            if self._skip_kept is not None:
                pos = self._skip(buf, pos)
                continue
            if 0x30 <= buf[pos] <= 0x39:  # octet counting
                space = buf.find(b" ", pos, pos + _MAX_COUNT_DIGITS + 1)
                digits = buf[pos : space if space >= 0 else pos + _MAX_COUNT_DIGITS + 1]
                if not digits.isdigit() or digits[0] == 0x30 or len(digits) > _MAX_COUNT_DIGITS:
                    self._on_error(
                        f"bad octet count {bytes(digits)!r}: closing connection",
                        bytes(buf[pos : pos + DEAD_LETTER_KEEP]),
                    )
                    self._broken = True
                    return n
                if space < 0:
                    return pos  # the count is still arriving
                size = int(digits)
                start = space + 1
                if size > self._max:
                    self._skip_kept = b""
                    self._skip_seen = 0
                    self._skip_size = size
                    pos = start
                    continue
                if n - start < size:
                    return pos
                self._on_frame(bytes(buf[start : start + size]))
                pos = start + size
            else:
                found = _TERMINATOR.search(buf, pos + self._scanned)
                if found is None:
                    if n - pos > self._max:
                        self._skip_kept = b""
                        self._skip_seen = 0
                        self._skip_size = None
                        self._scanned = 0
                        continue
                    self._scanned = n - pos  # the caller keeps buf[pos:] as the new _buf
                    return pos
                end = found.start()
                self._scanned = 0
                stop = end - 1 if end > pos and buf[end - 1] == 0x0D else end
                if stop - pos > self._max:
                    self._dead_oversize(bytes(buf[pos : pos + DEAD_LETTER_KEEP]), stop - pos)
                elif stop > pos:  # blank lines between messages carry nothing
                    self._on_frame(bytes(buf[pos:stop]))
                pos = end + 1
        return pos

    def _skip(self, buf: bytes | bytearray, pos: int) -> int:
        """Advance through an oversize message, keeping its first DEAD_LETTER_KEEP bytes."""
        assert self._skip_kept is not None
        if self._skip_size is not None:
            end = min(len(buf), pos + self._skip_size - self._skip_seen)
            done = self._skip_seen + end - pos == self._skip_size
            resume = end
        else:
            found = _TERMINATOR.search(buf, pos)
            end = found.start() if found else len(buf)
            done = found is not None
            resume = end + 1 if done else end
        room = DEAD_LETTER_KEEP - len(self._skip_kept)
        if room > 0:
            self._skip_kept += bytes(buf[pos : min(end, pos + room)])
        self._skip_seen += end - pos
        if done:
            self._dead_oversize(self._skip_kept, self._skip_size or self._skip_seen)
            self._skip_kept = None
        return resume

    def _dead_oversize(self, kept: bytes, size: int) -> None:
        self._on_error(f"oversize: {size} bytes > limit {self._max}", kept)

    def finish(self) -> None:
        """The connection ended: deliver an unterminated last line, report anything cut off."""
        if self._broken:
            return
        buf = bytes(self._buf)
        self._buf.clear()
        if self._skip_kept is not None:
            size = self._skip_size
            reason = (
                f"oversize: {size} bytes > limit {self._max} "
                f"(connection closed after {self._skip_seen})"
                if size is not None
                else f"oversize: at least {self._skip_seen} bytes > limit {self._max} "
                "(connection closed before its end)"
            )
            self._on_error(reason, self._skip_kept)
            self._skip_kept = None
        elif buf[:1].isdigit():
            self._on_error("truncated: connection closed inside an octet-counted message", buf)
        elif buf.rstrip(b"\r"):
            self._on_frame(buf.rstrip(b"\r"))


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        server = self._server
        server.udp_bytes += len(data)
        now = time.time()
        if len(data) > server.max_message_bytes:
            server.dead_letter(
                "udp",
                f"oversize: {len(data)} bytes > limit {server.max_message_bytes}",
                data[:DEAD_LETTER_KEEP],
                now,
                _peer(addr),
            )
        else:
            server.udp_frames += 1
            server.on_input(RawInput(data, "udp", now, _peer(addr)))


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, server: SyslogServer) -> None:
        self._server = server
        self._framer = Rfc6587Framer(server.max_message_bytes, self._frame, self._error)
        self._transport: asyncio.BaseTransport | None = None
        self._peer = ""
        self._now = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._peer = _peer(transport.get_extra_info("peername"))
        self._server.tcp_connections += 1
        self._server._open.add(self)

    def data_received(self, data: bytes) -> None:
        self._server.tcp_bytes += len(data)
        self._now = time.time()
        if not self._framer.feed(data):
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._open.discard(self)
        self.closed.set_result(None)
        self._now = time.time()
        self._framer.finish()

    def _frame(self, frame: bytes) -> None:
        self._server.tcp_frames += 1
        self._server.on_input(RawInput(frame, "tcp", self._now, self._peer))

    def _error(self, reason: str, data: bytes) -> None:
        self._server.dead_letter("tcp", reason, data, self._now, self._peer)


class SyslogServer:
    """UDP and TCP syslog listeners handing raw messages and framing failures to callbacks.

    `host` is one address. Port 0 binds a free port (read the bound one from
    `udp_port`/`tcp_port` after `start()`); None disables that transport. `*_frames`
    count messages handed to `on_input`, `*_bytes` everything read from the sockets.
    The callbacks run on the event loop and must not raise or block (queue the work):
    an exception from one closes that TCP connection.
    """

    def __init__(
        self,
        host: str,
        udp_port: int | None,
        tcp_port: int | None,
        max_message_bytes: int,
        on_input: Callable[[RawInput], None],
        on_dead_letter: Callable[[DeadLetter], None],
    ) -> None:
        self.host = host
        self.udp_port = udp_port
        self.tcp_port = tcp_port
        self.max_message_bytes = max_message_bytes
        self.on_input = on_input
        self.on_dead_letter = on_dead_letter
        self.udp_frames = 0
        self.udp_bytes = 0
        self.tcp_frames = 0
        self.tcp_bytes = 0
        self.tcp_connections = 0
        self.dead_letters = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._open: set[_TcpProtocol] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.udp_port is not None:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.udp_port)
            )
            sock = self._udp.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
            self.udp_port = sock.getsockname()[1]
        if self.tcp_port is not None:
            self._tcp = await loop.create_server(
                lambda: _TcpProtocol(self), self.host, self.tcp_port
            )
            self.tcp_port = self._tcp.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close open connections, flushing what they had buffered."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            closing = list(self._open)
            for connection in closing:
                connection.close()
            await asyncio.gather(*(c.closed for c in closing))
            await self._tcp.wait_closed()
            self._tcp = None

    def dead_letter(
        self, source: str, reason: str, data: bytes, received: float, peer: str
    ) -> None:
        self.dead_letters += 1
        self.on_dead_letter(DeadLetter(source, reason, data, received, peer))
