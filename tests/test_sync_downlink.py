"""The downlink (shore -> ship) over a real fleet, and what the uplink lets off the ship.

One hub and one ship agent (SHIP-A) with its leaf server behind a link simulator that
keeps every byte crossing it. Commands go in through the hub's own `send_command` (onto
FLEET_DOWN), are sourced into the ship's DOWNLINK and applied by the agent; their results
come back as ActionResults. Policy bundles are commands too.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

from shared import wire
from shared.ids import new_id
from shared.models import Command
from shared.policy import Policy, default_dir, load_policy
from shared.timeutil import utcnow
from ship_agent.pipeline import OperatorCommand
from sync import bundles
from sync.natsserver import NatsServer
from sync.privacy import luhn_valid
from sync.topology import DOWNLINK, down_subject
from tests.conftest import logline, start_agent, wait_for
from tests.fleet import Fleet

A = "SHIP-A"
SLOW = 30.0  # generous: what a loaded 2-core CI box may need, not what it normally takes


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Fleet]:
    f = Fleet(
        tmp_path_factory.mktemp("sync-down"),
        chdb_path,
        "sync_down",
        load_policy(),
        [A],
        capture=True,
    )
    try:
        f.start()
        # The first log line starts the template detector's grace period: put it two hours
        # back, so that later new templates are reported (the privacy test needs them).
        submit(f, [logline("seed-00", "kernel", "agent warm up", time.time() - 7200)])
        wait_for(lambda: A in leafs(f), SLOW)
        yield f
    finally:
        f.stop()


# ---------------------------------------------------------------- helpers


def leafs(fleet: Fleet) -> set[str]:
    assert fleet.hub.nats_server is not None
    return {str(leaf.get("name")) for leaf in fleet.hub.nats_server.leafnodes()}


def submit(fleet: Fleet, items: list[Any]) -> None:
    """Input for SHIP-A's pipeline, committed when this returns."""
    agent = fleet.agents[A]

    async def go() -> None:  # on the agent's own loop
        while not agent.agent.submit(items):  # the ingest queue is bounded: wait for room
            await asyncio.sleep(0.05)

    agent.call(go())
    agent.drain()


def data_dir(fleet: Fleet) -> Path:
    path: Path = fleet.agents[A].agent.settings.data_dir
    return path


def command(action: str, incident_id: str | None = None, **payload: Any) -> Command:
    return Command(
        tracking_id=new_id(),
        ship_id=A,
        ts=utcnow(),
        actor="duty-officer",
        action=action,  # type: ignore[arg-type]
        incident_id=incident_id,
        payload=payload,
    )


def send(fleet: Fleet, *cmds: Command) -> None:
    for cmd in cmds:
        fleet.call(fleet.hub.send_command(cmd))


def applied(fleet: Fleet) -> list[str]:
    """Command ids in the ship's downlink table, in the order they were applied."""
    return [r[0] for r in fleet.agents[A].sql("SELECT command_id FROM downlink ORDER BY rowid")]


def wait_applied(fleet: Fleet, *cmds: Command) -> list[str]:
    ids = {c.id for c in cmds}

    def done() -> list[str] | None:
        rows = applied(fleet)
        return rows if ids <= set(rows) else None

    return list(wait_for(done, SLOW))


def results(fleet: Fleet, *cmds: Command) -> dict[str, dict[str, Any]]:
    """The hub's ActionResults of these commands, once it has all of them."""
    ids = {c.id for c in cmds}

    def found() -> dict[str, dict[str, Any]] | None:
        rows = {r["command_id"]: r for r in fleet.hub.store.actions([A], limit=1000)}
        return {i: rows[i] for i in ids} if ids <= set(rows) else None

    out: dict[str, dict[str, Any]] = wait_for(found, SLOW, interval=0.2)
    return out


def open_incident(fleet: Fleet) -> str:
    """A new open incident on the ship (a lost GPS fix on a new device); its id."""
    prefix = f"nav{uuid.uuid4().hex[:6]}"
    fleet.raise_incidents(A, 1, "urgent", prefix=prefix)
    ((inc_id,),) = fleet.agents[A].sql(
        "SELECT id FROM incidents WHERE device=?", f"{prefix}-urgent-00000"
    )
    return str(inc_id)


def version(fleet: Fleet, inc_id: str) -> int:
    ((v,),) = fleet.agents[A].sql("SELECT version FROM incidents WHERE id=?", inc_id)
    return int(v)


def downlink_copies(fleet: Fleet) -> dict[str, int]:
    """How many times the ship's DOWNLINK stream holds each command id."""
    js = fleet.agents[A].agent.link.js

    async def go() -> dict[str, int]:
        counts: dict[str, int] = {}
        last = (await js.stream_info(DOWNLINK)).state.last_seq
        for seq in range(1, last + 1):
            try:
                items = wire.decode((await js.get_msg(DOWNLINK, seq)).data)
            except wire.WireError:
                continue
            for item in items:
                if isinstance(item, Command):
                    counts[item.id] = counts.get(item.id, 0) + 1
        return counts

    counts: dict[str, int] = fleet.agents[A].call(go())
    return counts


# ---------------------------------------------------------------- exactly once, in order


def test_commands_apply_once_in_order_and_their_results_reach_the_hub(fleet: Fleet) -> None:
    """Commands sent one after another are applied once each, in the order sent (the
    incident is acknowledged before it is resolved), their results arrive at the hub; and
    when the stream delivers the same commands again, nothing is applied a second time and
    the downlink carries on with the next command."""
    inc = open_incident(fleet)
    ack, resolve = command("ack", inc), command("resolve", inc)
    decision = command("approval_decision", approval_id="AP-1", decision="approved")
    send(fleet, ack, resolve, decision)

    order = wait_applied(fleet, ack, resolve, decision)
    assert [i for i in order if i in {ack.id, resolve.id, decision.id}] == [
        ack.id,
        resolve.id,
        decision.id,
    ]
    events = fleet.agents[A].sql(
        "SELECT event, version FROM incident_timeline WHERE incident_id=?"
        " AND event IN ('acknowledged', 'resolved') ORDER BY version",
        inc,
    )
    assert [e for e, _ in events] == ["acknowledged", "resolved"]
    assert events[0][1] < events[1][1]
    got = results(fleet, ack, resolve, decision)
    assert got[ack.id]["ok"] and got[resolve.id]["ok"], got
    assert got[ack.id]["detail"] == "status acknowledged"
    assert got[resolve.id]["detail"] == "status resolved"
    # a decision on a request the ship never made is answered, and refused
    assert not got[decision.id]["ok"]
    assert got[decision.id]["detail"] == "no action request AP-1 on this ship"
    assert got[ack.id]["target"] == inc

    # The same commands again, under new message ids: the stream really holds them twice.
    before_rows, before_version = applied(fleet), version(fleet, inc)
    for cmd in (ack, resolve, decision):
        headers = {"Nats-Msg-Id": f"again:{cmd.id}"}
        data = wire.encode([cmd])
        fleet.call(fleet.hub.js.publish(down_subject(A, "command"), data, headers=headers))
    after = command("approval_decision", approval_id="AP-2", decision="rejected")
    send(fleet, after)
    wait_applied(fleet, after)  # the downlink reads in stream order: the copies came first
    copies = downlink_copies(fleet)
    assert [copies[c.id] for c in (ack, resolve, decision)] == [2, 2, 2]
    assert applied(fleet) == [*before_rows, after.id]
    assert version(fleet, inc) == before_version
    outbox = fleet.agents[A].sql(
        "SELECT incident_id, count(*) FROM outbox WHERE kind='action_result' GROUP BY incident_id"
    )
    assert {i: n for i, n in outbox if i in {ack.id, resolve.id, decision.id}} == {
        ack.id: 1,
        resolve.id: 1,
        decision.id: 1,
    }


def test_a_lost_downlink_consumer_replays_everything_and_applies_nothing_twice(
    fleet: Fleet,
) -> None:
    """If the ship's durable downlink consumer is lost (its state deleted while the agent
    is down), the agent reads DOWNLINK from the start again on restart, and every command
    it already applied is recognised as such: the downlink table and the incidents do not
    change, and the next new command is applied as usual."""
    inc = open_incident(fleet)
    ack, decision = command("ack", inc), command("approval_decision", approval_id="AP-0")
    send(fleet, ack, decision)
    wait_applied(fleet, ack, decision)
    rows_before, version_before = applied(fleet), version(fleet, inc)
    replayed = [i for i in downlink_copies(fleet) if i in rows_before]
    assert {ack.id, decision.id} <= set(replayed)

    home = data_dir(fleet)
    fleet.stop_agent(A)
    server = NatsServer(A, home / "nats", domain=A)  # the ship's store, without its link
    server.start()
    try:

        async def forget() -> None:
            nc = await nats.connect(server.url)
            try:
                await nc.jetstream(domain=A).delete_consumer(DOWNLINK, "agent")
            finally:
                await nc.close()

        fleet.call(forget())
    finally:
        server.stop()
    fleet.start_agent(A)

    after = command("approval_decision", approval_id="AP-3", decision="approved")
    send(fleet, after)
    wait_applied(fleet, after)
    assert applied(fleet) == [*rows_before, after.id]
    assert version(fleet, inc) == version_before
    assert fleet.agents[A].agent.link.downlink.duplicates >= len(replayed)


def test_commands_sent_while_the_link_is_cut_apply_after_restore_in_order(fleet: Fleet) -> None:
    """The hub queues commands for a ship whose link is down; once the link is back they
    are applied, in the order they were sent, and answered."""
    inc = open_incident(fleet)
    link = fleet.links[A]
    link.cut()
    try:
        wait_for(lambda: A not in leafs(fleet), SLOW)
        wait_for(lambda: not fleet.agents[A].agent.link.uplink.link.leaf_up, SLOW)
        cmds = [
            command("approval_decision", approval_id="AP-4", decision="approved"),
            command("ack", inc),
            command("resolve", inc),
        ]
        send(fleet, *cmds)
        queued = fleet.call(fleet.hub.js.get_last_msg("FLEET_DOWN", down_subject(A, "command")))
        assert [getattr(c, "id", None) for c in wire.decode(queued.data)] == [cmds[-1].id]
        assert not {c.id for c in cmds} & set(applied(fleet))
    finally:
        link.restore()
    order = wait_applied(fleet, *cmds)
    assert [i for i in order if i in {c.id for c in cmds}] == [c.id for c in cmds]
    got = results(fleet, *cmds)
    assert [got[c.id]["ok"] for c in cmds] == [False, True, True]  # no request AP-4 aboard
    events = fleet.agents[A].sql(
        "SELECT event FROM incident_timeline WHERE incident_id=?"
        " AND event IN ('acknowledged', 'resolved') ORDER BY version",
        inc,
    )
    assert [e for (e,) in events] == ["acknowledged", "resolved"]


# ---------------------------------------------------------------- policy bundles


def bundle_files(version_: str, **sync: Any) -> dict[str, str]:
    """The package's default policy as a bundle: a new version, some sync values changed."""
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(default_dir().glob("*.yaml"))}
    files["policy.yaml"], n = re.subn(
        r"(?m)^version:.*$", f'version: "{version_}"', files["policy.yaml"]
    )
    assert n == 1
    for key, value in sync.items():
        files["sync.yaml"], n = re.subn(
            rf"(?m)^(\s+{key}:).*$", rf"\g<1> {value}", files["sync.yaml"]
        )
        assert n == 1, key
    return files


def heartbeat(fleet: Fleet) -> dict[str, Any]:
    (row,) = fleet.hub.store.fleet([A])
    return row


def test_policy_bundle_rolls_out_rolls_back_and_survives_a_restart(fleet: Fleet) -> None:
    """A valid bundle becomes the ship's policy at once (its sync settings in use, the
    heartbeat reporting its version, `active` pointing to it); an invalid one is refused
    with the policy check's report, whether it comes under a new version or under the
    active one's, and leaves the active bundle as it was; a restart comes back on it."""
    good = f"2026.11.0-dl{uuid.uuid4().hex[:6]}"
    before = fleet.agents[A].agent.policy.version
    rollout = command("policy_bundle", version=good, files=bundle_files(good, heartbeat_s=2))
    send(fleet, rollout)
    result = results(fleet, rollout)[rollout.id]
    assert result["ok"] and result["detail"] == f"policy {good} active", result
    policy: Policy = fleet.agents[A].agent.policy
    assert before != good and (policy.version, policy.sync.heartbeat_s) == (good, 2)
    home = data_dir(fleet)
    active = bundles.active_dir(home)
    assert active is not None and active.parent == (home / "policy" / "bundles").resolve()
    assert load_policy(active, A).version == good
    wait_for(lambda: heartbeat(fleet)["policy_version"] == good, SLOW, interval=0.2)
    link_before = os.readlink(home / "policy" / "active")

    bad_files = bundle_files(f"{good}-bad", uplink_budget_bps=-1)
    refused = [
        command("policy_bundle", version=f"{good}-bad", files=bad_files),
        command("policy_bundle", version=good, files=bundle_files(good, uplink_budget_bps=-1)),
    ]
    send(fleet, *refused)
    got = results(fleet, *refused)
    for cmd in refused:
        detail = got[cmd.id]["detail"]
        assert not got[cmd.id]["ok"]
        assert detail.startswith("policy check failed: 1 problem(s)"), detail
        assert "sync.uplink_budget_bps: Input should be greater than 0" in detail
        assert detail.endswith(f"kept {good}")
    assert fleet.agents[A].agent.policy.version == good
    assert os.readlink(home / "policy" / "active") == link_before
    on_disk = load_policy(bundles.active_dir(home), A)  # what a restart would load
    assert (on_disk.version, on_disk.sync.heartbeat_s, on_disk.sync.uplink_budget_bps) == (
        good,
        2,
        policy.sync.uplink_budget_bps,
    )

    # ship_agent.run loads the active bundle first; an in-process agent is given it
    fleet.stop_agent(A)
    restarted = load_policy(bundles.active_dir(home), A)
    since = time.time()
    fleet.agents[A] = start_agent(
        fleet.root / A,
        restarted,
        ship_id=A,
        hub_leaf_url=f"nats-leaf://127.0.0.1:{fleet.links[A].port}",
        ship_secret=fleet.secrets[A],
    )
    assert fleet.agents[A].agent.policy.version == good

    def reported_after_restart() -> bool:
        row = heartbeat(fleet)
        stamp = datetime.fromisoformat(row["last_heartbeat"]).timestamp()
        return row["policy_version"] == good and stamp >= since

    wait_for(reported_after_restart, SLOW, interval=0.2)


# ---------------------------------------------------------------- malformed input


def test_malformed_downlink_input_is_dead_lettered_and_does_not_block(fleet: Fleet) -> None:
    """Bytes that are no wire frame, and a frame addressed to another ship, become dead
    letters on the ship with the reason; a bundle the ship cannot even stage is refused
    with a result; and the commands sent after them are applied."""
    token = uuid.uuid4().hex
    garbage = f"\x00garbage-{token}".encode()
    foreign = Command(
        tracking_id=new_id(),
        ship_id="SHIP-Z",
        ts=utcnow(),
        actor="duty-officer",
        action="approval_decision",
        payload={"approval_id": token, "decision": "approved"},
    )
    too_long = {"policy.yaml": 'version: "x-long"\n', "x" * 300 + ".yaml": "{}"}
    unstageable = command("policy_bundle", version="x-long", files=too_long)

    async def publish() -> None:
        subject = down_subject(A, "command")
        await fleet.hub.js.publish(subject, garbage)
        await fleet.hub.js.publish(subject, wire.encode([foreign]))

    fleet.call(publish())
    send(fleet, unstageable)
    later = command("approval_decision", approval_id="AP-5", decision="approved")
    send(fleet, later)
    wait_applied(fleet, later)

    dead = fleet.agents[A].sql(
        "SELECT reason, data FROM dead_letters WHERE source='downlink' ORDER BY id"
    )
    assert ("not a Seawatch wire frame (bad magic)", garbage) in [(r, bytes(d)) for r, d in dead]
    assert any(r == "unexpected command for SHIP-A" and token.encode() in d for r, d in dead)
    assert foreign.id not in applied(fleet)
    got = results(fleet, unstageable, later)
    assert not got[unstageable.id]["ok"]
    assert got[unstageable.id]["detail"].startswith("bundle refused: bundle file names:")
    assert not list((data_dir(fleet) / "policy" / "bundles").glob("x-long*"))
    assert got[later.id]["detail"] == "no action request AP-5 on this ship"  # read and answered


# ---------------------------------------------------------------- privacy at the boundary


# What a ship's leaf server sends first on every connection, and where its S2 stream starts.
LEAF_HELLO = b'INFO {"server_id":""'
S2_STREAM = b"\xff\x06\x00\x00S2sTwO"


def link_protocol(raw: bytes) -> bytes:
    """The NATS protocol text of every leaf connection in a capture: the handshake as
    sent, then the connection's S2-framed stream, decompressed and checksum-verified."""
    out = bytearray()
    starts = [m.start() for m in re.finditer(re.escape(LEAF_HELLO), raw)] or [0]
    for begin, end in zip(starts, [*starts[1:], len(raw)], strict=True):
        conn = raw[begin:end]
        framed = conn.find(S2_STREAM)
        out += conn if framed < 0 else conn[:framed] + s2_stream(conn[framed:])
    return bytes(out)


def s2_stream(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while pos + 4 <= len(data):
        kind, size = data[pos], int.from_bytes(data[pos + 1 : pos + 4], "little")
        body = data[pos + 4 : pos + 4 + size]
        if len(body) < size:
            break  # the link was cut inside this chunk
        pos += 4 + size
        if kind in (0x00, 0x01):  # compressed or stored data, after a masked CRC-32C
            chunk = s2_block(body[4:]) if kind == 0x00 else body[4:]
            assert masked_crc32c(chunk) == int.from_bytes(body[:4], "little"), "S2 checksum"
            out += chunk
        else:
            assert kind >= 0x80, f"unknown S2 chunk type {kind:#x}"  # id, padding, skippable
    return bytes(out)


def s2_block(src: bytes) -> bytes:
    """One S2 block: Snappy's format, plus copies that repeat the previous offset."""
    size = shift = s = 0
    while True:  # the decoded length, a uvarint
        size |= (src[s] & 0x7F) << shift
        shift, s = shift + 7, s + 1
        if src[s - 1] < 0x80:
            break
    dst, offset = bytearray(), 0
    while s < len(src):
        tag = src[s]
        if tag & 3 == 0:  # literal: its length - 1 in the tag, or in 1-4 bytes after it
            n, s = tag >> 2, s + 1
            if n >= 60:
                n, s = int.from_bytes(src[s : s + n - 59], "little"), s + n - 59
            dst += src[s : s + n + 1]
            s += n + 1
            continue
        if tag & 3 == 1:
            length, near = (tag >> 2) & 7, ((tag & 0xE0) << 3) | src[s + 1]
            s += 2
            if near:
                offset = near
            elif length >= 5:  # a repeat with a longer length, in 1-3 more bytes
                extra = length - 4
                length = int.from_bytes(src[s : s + extra], "little") + (4, 256, 65536)[extra - 1]
                s += extra
            length += 4
        else:
            width = 2 if tag & 3 == 2 else 4
            length, offset = 1 + (tag >> 2), int.from_bytes(src[s + 1 : s + 1 + width], "little")
            s += 1 + width
        assert 0 < offset <= len(dst), "S2 copy before the start"
        for _ in range(length):  # a copy may overlap what it writes
            dst.append(dst[-offset])
    assert len(dst) == size, "S2 block length"
    return bytes(dst)


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        table.append(n)
    return table


_CRC32C = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """The checksum of Snappy/S2 framing: CRC-32C, rotated and offset."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def message_bodies(protocol: bytes) -> list[bytes]:
    """The payload of every message (LMSG, or HMSG past its headers) in protocol text."""
    bodies, pos = [], 0
    while (end := protocol.find(b"\r\n", pos)) >= 0:
        line = protocol[pos:end].split()
        pos = end + 2
        if line[:1] in ([b"LMSG"], [b"HMSG"]):
            size, header = int(line[-1]), int(line[-2]) if line[0] == b"HMSG" else 0
            bodies.append(protocol[pos + header : pos + size])
            pos += size + 2
    return bodies


def decoded_text(frames: list[bytes]) -> str:
    """Every wire frame among the bodies, decoded (so decompressed) to JSON text."""
    texts = []
    for frame in frames:
        try:
            items = wire.decode(frame)
        except wire.WireError:
            continue
        texts.append(orjson.dumps([i.model_dump(mode="json") for i in items]).decode())
    return "\n".join(texts)


def test_pii_never_crosses_the_link(fleet: Fleet) -> None:
    """Guests' personal data that reaches an incident on the ship (through new log
    templates on a guest Wi-Fi controller, and a crew member's note) is redacted before it
    leaves: neither the frames in FLEET_UP nor any byte that crossed the link, decoded or
    raw, holds an e-mail address, card or phone number, guest IP or Wi-Fi client name,
    while the incident itself arrives, at its latest version."""
    device = f"guest-wlc-{uuid.uuid4().hex[:6]}"
    email, card, phone = "alice.guest@example.com", "4539 1488 0343 6467", "+44 20 7946 0958"
    guest_ip, client, dhcp_client = "10.20.7.42", "Alices-iPhone", "Bobs-Galaxy-S21"
    assert luhn_valid(card.replace(" ", ""))
    seeded = [email, card, phone, guest_ip, client, dhcp_client]
    pii = [*seeded, card.replace(" ", ""), phone.replace(" ", ""), "alice.guest"]

    mac = "a4:5e:60:d1:22:9f"
    now = time.time()
    submit(fleet, [logline(device, "wlc", "temperature above threshold on radio 2", now)])
    ((inc,),) = fleet.agents[A].sql("SELECT id FROM incidents WHERE device=?", device)
    lines = [
        f"client {client} ({mac}) associated to guest portal as {email}",
        f"DHCPACK(wlan1) {guest_ip} {mac} {dhcp_client}",
        f"payment declined for card {card} of guest {email} callback {phone}",
    ]
    submit(fleet, [logline(device, "wlc", text, now + 1 + i) for i, text in enumerate(lines)])
    note = f"guest {email}, client {client} ({mac}) at {guest_ip}, rang from {phone}: card {card}"
    agent = fleet.agents[A]
    agent.call(agent.agent.command(OperatorCommand("ack", inc, "crew:purser", note)))

    ((doc, latest),) = agent.sql("SELECT doc, version FROM incidents WHERE id=?", inc)
    assert [p for p in seeded if p not in doc] == []  # all of it is in the incident aboard
    wait_for(lambda: fleet.stored(A).get(inc) == latest, SLOW, interval=0.2)

    async def fleet_up() -> list[bytes]:
        js, frames = fleet.hub.js, []
        last = (await js.stream_info("FLEET_UP")).state.last_seq
        for seq in range(1, last + 1):
            msg = await js.get_msg("FLEET_UP", seq)
            if msg.subject.startswith(f"fleet.up.{A}."):
                frames.append(msg.data)
        return frames

    stored = decoded_text(fleet.call(fleet_up()))
    protocol = link_protocol(bytes(fleet.links[A].sim.captured_up))
    crossed = decoded_text(message_bodies(protocol))
    assert [p for p in pii if p in stored] == [], "FLEET_UP"
    assert [p for p in pii if p in crossed] == [], "decoded from the link"
    assert [p for p in pii if p.encode() in protocol] == [], "as the link carried it"
    assert device in stored and device in crossed and inc in crossed  # the controls
    assert "[redacted]" in crossed
