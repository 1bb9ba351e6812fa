"""Syslog ingest: the parser (RFC 3164/5424), the RFC 6587 framer and the real listeners.

Server tests use real sockets and the util-linux `logger` binary as the sender.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import os
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ship_agent.ingest.syslog_server import DEAD_LETTER_KEEP, Rfc6587Framer, SyslogServer
from ship_agent.parse import ParseError, parse_syslog
from ship_agent.records import DeadLetter, LogEvent, RawInput

RECEIVED = calendar.timegm((2024, 6, 15, 12, 0, 0))
LOGGER = shutil.which("logger")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def parse(data: bytes, received: float = RECEIVED, peer: str = "10.1.2.3:514") -> LogEvent:
    return parse_syslog(RawInput(data, "udp", received, peer), "t-1")


def utc(*fields: int) -> float:
    return float(calendar.timegm((*fields, 0, 0, 0)[:6]))


# --- RFC 3164 ---------------------------------------------------------------------------


def test_rfc3164_fields() -> None:
    event = parse(b"<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed on /dev/pts/8\n")
    assert event == LogEvent(
        tracking_id="t-1",
        ts=utc(2023, 10, 11, 22, 14, 15),  # four months after arrival: must be last year
        device="mymachine",
        app="su",
        severity=2,
        message="'su root' failed on /dev/pts/8",
        received=RECEIVED,
        source="udp",
        facility=4,
    )


@pytest.mark.parametrize("stamp", [b"Jan  5 07:08:09", b"Jan 05 07:08:09", b"Jan 5 07:08:09"])
def test_rfc3164_day_padding(stamp: bytes) -> None:
    event = parse(b"<13>" + stamp + b" host app: hi", received=utc(2024, 1, 6))
    assert (event.ts, event.device, event.app, event.message) == (
        utc(2024, 1, 5, 7, 8, 9),
        "host",
        "app",
        "hi",
    )


@pytest.mark.parametrize(
    ("line", "received", "expected"),
    [
        (b"Dec 31 23:59:00", utc(2025, 1, 2, 0, 0, 0), utc(2024, 12, 31, 23, 59, 0)),
        (b"Jan  1 00:00:05", utc(2024, 12, 31, 23, 59, 58), utc(2025, 1, 1, 0, 0, 5)),
        (b"Jun 15 11:59:00", utc(2024, 6, 15, 12, 0, 0), utc(2024, 6, 15, 11, 59, 0)),
        (b"Feb 29 10:00:00", utc(2024, 3, 1, 0, 0, 0), utc(2024, 2, 29, 10, 0, 0)),
    ],
)
def test_rfc3164_year_comes_from_arrival(line: bytes, received: float, expected: float) -> None:
    assert parse(b"<13>" + line + b" host app: x", received=received).ts == expected


@given(
    received=st.integers(int(utc(1980, 1, 1)), int(utc(2090, 1, 1))),
    lag=st.integers(-30 * 86400, 330 * 86400),
)
def test_rfc3164_year_inference_window(received: int, lag: int) -> None:
    """A stamp up to a month ahead of arrival or eleven months behind gets its true year."""
    t = time.gmtime(received - lag)
    stamp = f"{MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    assert parse(f"<13>{stamp} h a: m".encode(), received=received).ts == received - lag


def test_rfc3164_without_hostname_uses_peer_address() -> None:
    event = parse(b"<13>Jun 15 11:00:00 myapp: no host here", peer="[fe80::1]:40000")
    assert (event.device, event.app, event.message) == ("fe80::1", "myapp", "no host here")


def test_rfc3164_without_tag_keeps_whole_text() -> None:
    event = parse(b"<13>Jun 15 11:00:00 switch-2 port 7 link down")
    assert (event.device, event.app, event.message) == ("switch-2", "", "port 7 link down")


@pytest.mark.parametrize(
    "data", [b"<13>Jun 15 11:00:00 host app:", b"<13>Jun 15 11:00:00 host app:\r\n\x00"]
)
def test_empty_message_allowed(data: bytes) -> None:
    event = parse(data)
    assert (event.device, event.app, event.message) == ("host", "app", "")


def test_rfc3164_header_with_rfc3339_stamp() -> None:
    """rsyslog's forwarding format puts an RFC 3339 time into the old header."""
    event = parse(b"<30>2024-06-15T10:00:00.250+02:00 gps-1 gpsd[77]: fix lost")
    assert (event.ts, event.device, event.app, event.message, event.facility) == (
        utc(2024, 6, 15, 8, 0, 0) + 0.25,
        "gps-1",
        "gpsd",
        "fix lost",
        3,
    )


# --- RFC 5424 ---------------------------------------------------------------------------


def test_rfc5424_rfc_example_with_bom() -> None:
    data = (
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8"
    )
    event = parse(data)
    assert event.ts == pytest.approx(utc(2003, 10, 11, 22, 14, 15) + 0.003, abs=1e-6)
    assert (event.device, event.app, event.severity, event.facility) == (
        "mymachine.example.com",
        "su",
        2,
        4,
    )
    assert event.message == "'su root' failed for lonvick on /dev/pts/8"


def test_rfc5424_offset_and_microseconds() -> None:
    event = parse(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - do-nuts")
    assert event.ts == pytest.approx(utc(2003, 8, 24, 12, 14, 15) + 3e-6, abs=1e-7)
    assert (event.device, event.app, event.severity, event.facility, event.message) == (
        "192.0.2.1",
        "myproc",
        5,
        20,
        "do-nuts",
    )


@pytest.mark.parametrize(
    ("sd", "message"),
    [
        (b'[exampleSDID@32473 iut="3" eventSource="Application"][examplePriority@32473]', "ev"),
        (b'[x@1 a="close \\] and \\" quote" b="back\\\\slash"]', "ev"),
        (b'[x@1 a="with ] unescaped and spaces"]', "ev"),
        (b'[origin ip="10.0.0.1"]', ""),
    ],
)
def test_rfc5424_structured_data_is_not_message(sd: bytes, message: str) -> None:
    tail = b" " + message.encode() if message else b""
    event = parse(b"<13>1 2024-06-15T11:00:00Z host app - - " + sd + tail)
    assert event.message == message


def test_rfc5424_nil_values() -> None:
    event = parse(b"<14>1 - - - - - -", peer="192.0.2.9:5140")
    assert (event.ts, event.device, event.app, event.message) == (RECEIVED, "192.0.2.9", "", "")


def test_rfc5424_message_keeps_inner_spaces_and_unicode() -> None:
    event = parse("<11>1 2024-06-15T11:00:00Z eng-1 pms - - -  Öltemperatur  95 °C ".encode())
    assert event.message == " Öltemperatur  95 °C "


_HEADER_CHARS = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1)


@given(
    host=_HEADER_CHARS.filter(lambda s: s != "-"),
    app=_HEADER_CHARS.filter(lambda s: s != "-"),
    message=st.text().filter(lambda s: s == s.rstrip("\r\n\x00")),
    when=st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=45)), timezone(-timedelta(hours=9))]
        ),
    ),
    zulu=st.booleans(),
    pri=st.integers(0, 191),
)
def test_rfc5424_round_trip(
    host: str, app: str, message: str, when: datetime, zulu: bool, pri: int
) -> None:
    stamp = when.isoformat()
    if zulu and when.utcoffset() == timedelta(0):
        stamp = stamp.replace("+00:00", "Z")
    data = f"<{pri}>1 {stamp} {host} {app} - - - \ufeff{message}".encode()
    event = parse(data)
    assert event.ts == pytest.approx(when.timestamp(), abs=1e-5)
    assert (event.device, event.app, event.message) == (host, app, message)
    assert (event.facility, event.severity) == (pri >> 3, pri & 7)


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<13>Jun 15 11:00:00 host app: caf\xe9 au lait", "not UTF-8 at byte 33"),
        (b"", "missing <PRI>: empty message"),
        (b"\n", "missing <PRI>: empty message"),
        (b"hello world", "missing <PRI>"),
        (b"<abc>Jun 15 11:00:00 h a: m", "missing <PRI>: starts '<abc>Jun'"),
        (b"<1234>Jun 15 11:00:00 h a: m", "missing <PRI>: starts '<1234>Ju'"),
        (b"<999>Jun 15 11:00:00 h a: m", "PRI 999 out of range 0..191"),
        (b"<192>Jun 15 11:00:00 h a: m", "PRI 192 out of range 0..191"),
        (b"<13>Foo 15 11:00:00 h a: m", "bad RFC 3164 timestamp 'Foo 15 11:00:00'"),
        (b"<13>Jun 31 11:00:00 h a: m", "bad RFC 3164 timestamp 'Jun 31 11:00:00'"),
        (b"<13>Jun 15 24:00:00 h a: m", "bad RFC 3164 timestamp 'Jun 15 24:00:00'"),
        (b"<13>Jun 15 11:00:00.123 h a: m", "bad RFC 3164 timestamp 'Jun 15 11:00:00.'"),
        (b"<13>just some text", "bad RFC 3164 timestamp 'just some text'"),
        (b"<13>2 2024-06-15T11:00:00Z h a - - - m", "unsupported syslog version 2"),
        (b"<13>1 2024-06-15T11:00:00Z host", "RFC 5424 header needs"),
        (b"<13>1", "RFC 5424 header needs"),
        (
            b"<13>1 2024-13-01T00:00:00Z h a - - - m",
            "bad RFC 5424 timestamp '2024-13-01T00:00:00Z'",
        ),
        (
            b"<13>1 2023-02-29T00:00:00Z h a - - - m",
            "bad RFC 5424 timestamp '2023-02-29T00:00:00Z'",
        ),
        (b"<13>1 2024-06-15T11:00:00 h a - - - m", "bad RFC 5424 timestamp '2024-06-15T11:00:00'"),
        (b"<13>1 2024-06-15T11:00:00.Z h a - - - m", "bad RFC 5424 timestamp"),
        (b"<13>1 2024-06-15T11:00:00+24:00 h a - - - m", "bad RFC 5424 timestamp"),
        (b"<13>1 2024-06-15 11:00:00Z h a - - - m", "bad RFC 5424 timestamp '2024-06-15'"),
        (b'<13>1 - h a - - [x@1 a="1" m', "bad RFC 5424 structured data"),
        (b"<13>1 - h a - - x m", "bad RFC 5424 structured data"),
        (b"<13>1 - h a - - [x@1]m", "no space after RFC 5424 structured data"),
        (b"<13>1 - h a - -", "RFC 5424 header needs"),
    ],
)
def test_parse_errors_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(data)
    assert str(caught.value).startswith(reason)


_VALID = [
    b"<13>Jun 15 11:00:00 host app[1]: message",
    b'<13>1 2024-06-15T11:00:00.5+01:00 host app 1 ID [x@1 a="b"] message',
    b"<30>2024-06-15T10:00:00Z gps-1 gpsd: fix",
]


@given(st.binary())
def test_arbitrary_bytes_give_event_or_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        assert isinstance(parse(data), LogEvent)


@given(st.sampled_from(_VALID), st.data())
def test_mutated_valid_lines_give_event_or_parse_error(line: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(line)))
    keep = data.draw(st.integers(cut, len(line)))
    noise = data.draw(st.binary(max_size=8) | st.text(max_size=8).map(str.encode))
    with contextlib.suppress(ParseError):
        assert isinstance(parse(line[:cut] + noise + line[keep:]), LogEvent)


# --- RFC 6587 framing (pure) ------------------------------------------------------------


class Frames:
    def __init__(self, max_message_bytes: int) -> None:
        self.frames: list[bytes] = []
        self.errors: list[tuple[str, bytes]] = []
        self.framer = Rfc6587Framer(
            max_message_bytes, self.frames.append, lambda r, d: self.errors.append((r, d))
        )


_BODY = st.binary(max_size=300).map(lambda b: b"<13>" + b)
_LINE_BODY = _BODY.map(lambda b: b.replace(b"\n", b"").replace(b"\x00", b"").rstrip(b"\r"))


@st.composite
def framed(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """One message and its bytes on the wire in a randomly chosen framing."""
    kind = draw(st.sampled_from(["octet", "lf", "crlf", "nul"]))
    if kind == "octet":
        body = draw(_BODY)
        return body, b"%d %s" % (len(body), body)
    body = draw(_LINE_BODY)
    return body, body + {"lf": b"\n", "crlf": b"\r\n", "nul": b"\x00"}[kind]


@settings(max_examples=300)
@given(st.lists(framed(), max_size=12), st.data())
def test_framer_any_mix_and_split(messages: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
    """Mixed framings, cut at arbitrary points, come out as the same messages in order."""
    limit = 200
    wire = b"".join(w for _, w in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    sink = Frames(limit)
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        assert sink.framer.feed(wire[a:b])
    sink.framer.finish()
    assert sink.frames == [m for m, _ in messages if len(m) <= limit]
    assert sink.errors == [
        (f"oversize: {len(m)} bytes > limit {limit}", m[:DEAD_LETTER_KEEP])
        for m, _ in messages
        if len(m) > limit
    ]


def test_framer_unterminated_last_line_is_delivered_at_close() -> None:
    sink = Frames(100)
    sink.framer.feed(b"<13>one\n<13>two")
    assert sink.frames == [b"<13>one"]
    sink.framer.finish()
    assert sink.frames == [b"<13>one", b"<13>two"]


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"20 <13>short", "truncated: connection closed inside an octet-counted message"),
        (b"20", "truncated: connection closed inside an octet-counted message"),
        (b"5000 <13>x", "oversize: 5000 bytes > limit 100 (connection closed after 5)"),
        (b"<13>" + b"x" * 200, "oversize: at least 204 bytes > limit 100 (connection closed"),
    ],
)
def test_framer_reports_what_a_close_cut_off(wire: bytes, reason: str) -> None:
    sink = Frames(100)
    sink.framer.feed(wire)
    sink.framer.finish()
    assert sink.frames == []
    assert len(sink.errors) == 1 and sink.errors[0][0].startswith(reason)


@pytest.mark.parametrize(
    ("wire", "count"), [(b"12x <13>msg", b"12x"), (b"05 <13>x", b"05"), (b"1" * 12, b"1" * 11)]
)
def test_framer_bad_octet_count_breaks_stream(wire: bytes, count: bytes) -> None:
    sink = Frames(100)
    assert not sink.framer.feed(wire)
    assert sink.errors == [(f"bad octet count {count!r}: closing connection", wire)]
    assert not sink.framer.feed(b"<13>later\n")
    assert sink.frames == []


# --- real listeners ---------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.inputs: list[RawInput] = []
        self.dead: list[DeadLetter] = []


StartServer = Callable[..., Awaitable[tuple[SyslogServer, Sink]]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    servers: list[SyslogServer] = []

    async def start(max_message_bytes: int = 65536) -> tuple[SyslogServer, Sink]:
        sink = Sink()
        server = SyslogServer(
            "127.0.0.1", 0, 0, max_message_bytes, sink.inputs.append, sink.dead.append
        )
        await server.start()
        servers.append(server)
        return server, sink

    yield start
    for server in servers:
        await server.stop()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def wait_tcp_bytes(server: SyslogServer, total: int) -> None:
    """Frames are cut in the same callback that counts the bytes, so this is a barrier."""
    await eventually(lambda: server.tcp_bytes == total)


async def run_logger(port: int, *args: str) -> None:
    assert LOGGER is not None
    proc = await asyncio.create_subprocess_exec(
        LOGGER, "--server", "127.0.0.1", "--port", str(port), *args, env={**os.environ, "TZ": "UTC"}
    )
    assert await asyncio.wait_for(proc.wait(), 10) == 0


needs_logger = pytest.mark.skipif(LOGGER is None, reason="util-linux logger not installed")


@needs_logger
@pytest.mark.parametrize(
    "flags",
    [
        ("--udp", "--rfc3164"),
        ("--udp", "--rfc5424"),
        ("--tcp", "--rfc3164"),
        ("--tcp", "--rfc5424"),
        ("--tcp", "--rfc3164", "--octet-count"),
        ("--tcp", "--rfc5424", "--octet-count"),
    ],
)
async def test_logger_message_arrives_parsed(
    start_server: StartServer, flags: tuple[str, ...]
) -> None:
    server, sink = await start_server()
    transport = flags[0].lstrip("-")
    port = server.udp_port if transport == "udp" else server.tcp_port
    assert port
    text = "Kühlwasser pump 2: pressure 0.8 bar [low]"
    before = time.time()
    await run_logger(port, *flags, "-p", "local3.err", "-t", "myapp", "--id=4242", text)
    await eventually(lambda: len(sink.inputs) == 1)
    raw = sink.inputs[0]
    assert raw.source == transport and raw.peer.startswith("127.0.0.1:")
    event = parse_syslog(raw, "t-9")
    assert (event.app, event.message, event.severity, event.facility) == ("myapp", text, 3, 19)
    assert event.device in {socket.gethostname(), socket.gethostname().split(".")[0]}
    assert before - 1 <= event.ts <= time.time() + 1
    assert (event.source, event.received, event.tracking_id) == (transport, raw.received, "t-9")
    assert getattr(server, f"{transport}_frames") == 1
    assert getattr(server, f"{transport}_bytes") >= len(text)
    assert sink.dead == []


@needs_logger
async def test_logger_oversize_octet_counted_is_dead_lettered(start_server: StartServer) -> None:
    server, sink = await start_server(max_message_bytes=512)
    assert server.tcp_port
    flags = ("--tcp", "--octet-count", "--rfc5424", "--size", "4096", "-t", "myapp")
    await run_logger(server.tcp_port, *flags, "x" * 2000)
    await run_logger(server.tcp_port, *flags, "small")
    await eventually(lambda: len(sink.inputs) == 1 and len(sink.dead) == 1)
    dead = sink.dead[0]
    size = re.fullmatch(r"oversize: (\d+) bytes > limit 512", dead.reason)
    assert size and int(size.group(1)) > 2000
    assert dead.source == "tcp" and len(dead.data) == DEAD_LETTER_KEEP
    assert dead.data.startswith(b"<13>1 ") and dead.data.endswith(b"x" * 100)
    assert parse_syslog(sink.inputs[0], "t").message == "small"
    assert server.dead_letters == 1


async def test_udp_oversize_and_non_utf8(start_server: StartServer) -> None:
    server, sink = await start_server(max_message_bytes=100)
    assert server.udp_port
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.sendto(b"<13>Jun 15 11:00:00 h a: " + b"y" * 200, ("127.0.0.1", server.udp_port))
        sock.sendto(b"<13>Jun 15 11:00:00 h a: caf\xe9\n", ("127.0.0.1", server.udp_port))
    finally:
        sock.close()
    await eventually(lambda: len(sink.inputs) == 1 and len(sink.dead) == 1)
    assert sink.dead[0].reason == "oversize: 225 bytes > limit 100"
    assert sink.dead[0].data.endswith(b"y" * 200)
    with pytest.raises(ParseError, match="not UTF-8 at byte 28"):
        parse_syslog(sink.inputs[0], "t")
    assert (server.udp_frames, server.udp_bytes) == (1, 225 + 30)


async def open_tcp(server: SyslogServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert server.tcp_port
    return await asyncio.open_connection("127.0.0.1", server.tcp_port)


def line(text: str) -> bytes:
    return f"<13>Jun 15 11:00:00 host app: {text}".encode()


def messages(sink: Sink) -> list[str]:
    return [parse_syslog(raw, "t").message for raw in sink.inputs]


async def test_tcp_mixed_framings_on_one_connection(start_server: StartServer) -> None:
    server, sink = await start_server()
    _, writer = await open_tcp(server)
    two = line("two\nspans lines")
    writer.write(
        line("one")
        + b"\n"
        + b"%d %s" % (len(two), two)
        + line("three")
        + b"\r\n"
        + line("four")
        + b"\x00"
        + b"%d %s" % (len(line("five")), line("five"))
    )
    await writer.drain()
    await eventually(lambda: len(sink.inputs) == 5)
    assert messages(sink) == ["one", "two\nspans lines", "three", "four", "five"]
    assert server.tcp_frames == 5
    writer.close()


async def test_tcp_message_split_across_writes(start_server: StartServer) -> None:
    server, sink = await start_server()
    _, writer = await open_tcp(server)
    counted = line("counted")
    wire = b"%d %s" % (len(counted), counted) + line("by newline") + b"\n"
    end_counted = len(b"%d " % len(counted)) + len(counted)
    # inside the count, after it, inside the message, inside the next line, before its LF
    cuts = [1, 3, 20, end_counted + 10, len(wire) - 1]
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        writer.write(wire[a:b])
        await writer.drain()
        await wait_tcp_bytes(server, b)
        expected = ["counted"][: b >= end_counted] + ["by newline"][: b == len(wire)]
        assert messages(sink) == expected
    writer.close()


async def test_tcp_oversize_skipped_and_connection_keeps_going(start_server: StartServer) -> None:
    server, sink = await start_server(max_message_bytes=512)
    _, writer = await open_tcp(server)
    big_counted = line("c" * 3000)
    big_line = line("l" * 1500)
    writer.write(b"%d %s" % (len(big_counted), big_counted) + line("after counted") + b"\n")
    writer.write(big_line + b"\n" + line("after line") + b"\n")
    await writer.drain()
    await eventually(lambda: len(sink.inputs) == 2 and len(sink.dead) == 2)
    assert [d.reason for d in sink.dead] == [
        f"oversize: {len(big_counted)} bytes > limit 512",
        f"oversize: {len(big_line)} bytes > limit 512",
    ]
    assert [d.data for d in sink.dead] == [big_counted[:1024], big_line[:1024]]
    assert messages(sink) == ["after counted", "after line"]
    writer.write(line("still open") + b"\n")
    await writer.drain()
    await eventually(lambda: len(sink.inputs) == 3)
    assert messages(sink)[-1] == "still open"
    writer.close()


async def test_tcp_bad_octet_count_closes_only_that_connection(
    start_server: StartServer,
) -> None:
    server, sink = await start_server()
    _, good = await open_tcp(server)
    bad_reader, bad = await open_tcp(server)
    bad.write(b"12x " + line("garbage") + b"\n")
    await bad.drain()
    assert await asyncio.wait_for(bad_reader.read(), 5) == b""  # the server closed it
    assert [(d.reason, d.data) for d in sink.dead] == [
        ("bad octet count b'12x': closing connection", b"12x " + line("garbage") + b"\n")
    ]
    good.write(line("unaffected") + b"\n")
    await good.drain()
    await eventually(lambda: len(sink.inputs) == 1)
    assert messages(sink) == ["unaffected"]
    assert server.tcp_connections == 2
    good.close()
    bad.close()


async def test_stop_flushes_open_connections(start_server: StartServer) -> None:
    server, sink = await start_server()
    reader, writer = await open_tcp(server)
    writer.write(line("no newline yet"))
    await writer.drain()
    await wait_tcp_bytes(server, len(line("no newline yet")))
    assert sink.inputs == []
    await server.stop()
    assert messages(sink) == ["no newline yet"]
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
